/* The sensor encoder in C: uint8 image or int16 audio in, int8 latents out, on T threads.
 *
 * It computes what the exported graphs and the numpy backend compute, in another order: the
 * wavelet packet transform as a cascade of one-level periodic DWTs, each by lifting (each
 * level splits every plane along the width, then along the height), then the 1x1 encoder
 * and the compander as a threshold search. The fused filter banks of the graphs cost ~480
 * multiply-adds per RGB pixel at J = 3, a convolution cascade ~216, lifting ~100: four
 * steps x[i] += c (y[i] + y[i +- 1]) per level and axis, the two scale factors and the
 * normalisation folded into the 1x1 weights and the bias (native_backend.py checks that the
 * model's filters factor so and computes the folding), so the transform runs on the raw
 * integers.
 *
 * Loops are written so the compiler vectorises them (-O3): the width pass splits each row
 * into even and odd samples and lifts them as two contiguous arrays; the height pass lifts
 * whole rows, a strip of columns at a time; the 1x1 keeps 12 sums in vector registers while
 * 16 planes stream past. Work is shared by row, strip or run of positions over POSIX
 * threads; each thread writes only its own.
 *
 * Plain C99 with POSIX threads (no Python here): pip builds it with _native_encoder.c, which
 * only makes it importable, as an optional extension that native_backend.py calls through
 * ctypes; tests/test_cross_compile.py builds it for ARM with a small test program.
 */
#include "native_encoder.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int walloc_native_abi(void) { return WALLOC_NATIVE_ABI; }

#define STRIP 64 /* columns of one height-pass work item */

/* The four lifting steps: odd += c0 (even + next even), even += c1 (previous odd + odd),
 * odd += c2 (…), even += c3 (…), indices periodic. */
typedef struct {
    float c[4];
} Lifting;

/* --- threads ------------------------------------------------------------------------- */

typedef void (*Work)(void *ctx, int64_t begin, int64_t end, float *scratch);

typedef struct {
    Work work;
    void *ctx;
    int64_t begin, end;
    float *scratch;
} Share;

static void *run_share(void *arg) {
    Share *s = arg;
    s->work(s->ctx, s->begin, s->end, s->scratch);
    return NULL;
}

/* work(ctx, begin, end, scratch) over [0, items) cut into `threads` contiguous shares; each
 * share has `scratch_floats` floats of scratch of its own. Returns -1 when memory runs out. */
static int parallel(Work work, void *ctx, int64_t items, int threads, int64_t scratch_floats) {
    if (items < 1) return 0;
    if (threads < 1) threads = 1;
    if (threads > items) threads = (int)items;
    float *scratch = malloc((size_t)(threads * scratch_floats + 1) * sizeof(float));
    Share *shares = malloc((size_t)threads * sizeof(Share));
    pthread_t *ids = malloc((size_t)threads * sizeof(pthread_t));
    char *started = calloc((size_t)threads, 1);
    if (!scratch || !shares || !ids || !started) {
        free(scratch); free(shares); free(ids); free(started);
        return -1;
    }
    for (int t = 0; t < threads; t++)
        shares[t] = (Share){work, ctx, items * t / threads, items * (t + 1) / threads,
                            scratch + t * scratch_floats};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_share, &shares[t]) == 0;
    for (int t = 0; t < threads; t++)
        if (!started[t]) run_share(&shares[t]); /* share 0, and any no thread took */
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(ids[t], NULL);
    free(scratch); free(shares); free(ids); free(started);
    return 0;
}

/* --- one DWT level, by lifting ------------------------------------------------------- */

/* The hot loops get an AVX2 build beside the baseline one on x86-64 (chosen at load time).
 * ISO C (-std=c99) contracts no multiply-add, so every build computes the same floats. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* The lifting steps on a row's even samples s and odd samples d (m each, periodic). */
VECTOR_CLONES
static void lift_row(float *restrict s, float *restrict d, int64_t m, const Lifting *L) {
    for (int k = 0; k < 4; k += 2) {
        const float odd = L->c[k], even = L->c[k + 1];
        for (int64_t i = 0; i < m - 1; i++) d[i] += odd * (s[i] + s[i + 1]);
        d[m - 1] += odd * (s[m - 1] + s[0]);
        for (int64_t i = m - 1; i > 0; i--) s[i] += even * (d[i - 1] + d[i]);
        s[0] += even * (d[m - 1] + d[0]);
    }
}

/* Where a width pass reads: float planes, or (the first level) the caller's interleaved
 * integers, converted as they are read. */
typedef struct {
    const float *planes;    /* (planes, rows, cols) */
    const uint8_t *u8;      /* or (rows, cols, channels) */
    const int16_t *i16;     /* or (cols, channels): audio */
    int64_t channels;
} Source;

/* Width pass: every row of each plane (rows x cols) → planes 2p (even: low) and 2p + 1
 * (odd: high) of rows x cols/2, lifted in place there. A work item is one row. */
typedef struct {
    Source in;
    float *out;
    int64_t rows, cols;
    const Lifting *lifting;
} WidthPass;

static void width_items(void *ctx, int64_t begin, int64_t end, float *unused) {
    (void)unused;
    const WidthPass *c = ctx;
    const int64_t m = c->cols / 2, C = c->in.channels;
    for (int64_t row = begin; row < end; row++) {
        int64_t p = row / c->rows, r = row % c->rows;
        float *restrict s = c->out + (2 * p * c->rows + r) * m, *restrict d = s + c->rows * m;
        if (c->in.planes) {
            const float *x = c->in.planes + row * c->cols;
            for (int64_t i = 0; i < m; i++) s[i] = x[2 * i], d[i] = x[2 * i + 1];
        } else if (c->in.u8) {
            const uint8_t *x = c->in.u8 + r * c->cols * C + p;
            for (int64_t i = 0; i < m; i++) s[i] = x[2 * i * C], d[i] = x[(2 * i + 1) * C];
        } else {
            const int16_t *x = c->in.i16 + r * c->cols * C + p;
            for (int64_t i = 0; i < m; i++) s[i] = x[2 * i * C], d[i] = x[(2 * i + 1) * C];
        }
        lift_row(s, d, m, c->lifting);
    }
}

/* Height pass: every plane (rows x cols) → planes 2p (low) and 2p + 1 (high) of rows/2 x
 * cols: even and odd rows copied there, then lifted as whole rows. A work item is one strip
 * of STRIP columns of one plane (its rows stay in cache across the four steps). */
typedef struct {
    const float *in;
    float *out;
    int64_t rows, cols, strips;
    const Lifting *lifting;
} HeightPass;

VECTOR_CLONES
static void axpy2(float *restrict y, const float *restrict a, const float *restrict b,
                  float c, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += c * (a[i] + b[i]);
}

static void height_items(void *ctx, int64_t begin, int64_t end, float *unused) {
    (void)unused;
    const HeightPass *c = ctx;
    const int64_t w = c->cols, m = c->rows / 2;
    for (int64_t item = begin; item < end; item++) {
        int64_t p = item / c->strips, x0 = (item % c->strips) * STRIP;
        int64_t n = x0 + STRIP < w ? STRIP : w - x0;
        const float *plane = c->in + p * c->rows * w + x0;
        float *s = c->out + 2 * p * m * w + x0, *d = s + m * w;
        for (int64_t i = 0; i < m; i++) {
            memcpy(s + i * w, plane + 2 * i * w, (size_t)n * sizeof(float));
            memcpy(d + i * w, plane + (2 * i + 1) * w, (size_t)n * sizeof(float));
        }
        for (int k = 0; k < 4; k += 2) {
            const float odd = c->lifting->c[k], even = c->lifting->c[k + 1];
            for (int64_t i = 0; i < m; i++)
                axpy2(d + i * w, s + i * w, s + (i + 1 < m ? i + 1 : 0) * w, odd, n);
            for (int64_t i = m - 1; i >= 0; i--)
                axpy2(s + i * w, d + (i > 0 ? i - 1 : m - 1) * w, d + i * w, even, n);
        }
    }
}

/* --- the 1x1 encoder and the compander ----------------------------------------------- */

/* The latent of pre-activation y: the number of thresholds <= y (numpy's searchsorted,
 * side "right"), less clip; a binary search without branches (the comparisons cannot be
 * predicted), ceil(log2 n) steps. */
static int8_t quantize(float y, const double *t, int64_t n, int64_t clip) {
    const double v = y, *base = t;
    while (n > 1) {
        int64_t half = n / 2;
        base = base[half] <= v ? base + half : base;
        n -= half;
    }
    return (int8_t)((base - t) + (base[0] <= v) - clip);
}

typedef struct {
    const float *x;       /* (planes, positions) */
    int64_t planes, positions, latent_dim, edge, stride;
    const float *weight;  /* (planes, latent_dim), folded */
    const float *bias;
    const double *thresholds;
    int64_t n_thresholds, clip;
    int8_t *out;          /* (latent_dim, stride): position i at edge + i */
} Project;

/* The 1x1 on SPAN positions a work item, into acc (latent_dim, SPAN): blocks of LB latents
 * at PB positions stay in 12 vector registers (GNU C vectors: SSE, AVX2 or NEON) while KB
 * planes pass, so the planes are read as KB sequential streams. Each sum runs over the
 * planes in order, whatever the blocking. */
#define LB 6
#define PB 16
#define KB 16
#define SPAN 256
typedef float v8 __attribute__((vector_size(32)));

VECTOR_CLONES
static void project_block(const Project *c, int64_t p0, int64_t l0, int64_t k0, int64_t k1,
                          float *restrict acc) {
    v8 sum[LB][2];
    for (int l = 0; l < LB; l++) {
        memcpy(&sum[l][0], acc + l * SPAN, sizeof sum[l][0]);
        memcpy(&sum[l][1], acc + l * SPAN + 8, sizeof sum[l][1]);
    }
    for (int64_t k = k0; k < k1; k++) {
        const float *x = c->x + k * c->positions + p0, *w = c->weight + k * c->latent_dim + l0;
        v8 x0, x1;
        memcpy(&x0, x, sizeof x0);
        memcpy(&x1, x + 8, sizeof x1);
        for (int l = 0; l < LB; l++) {
            sum[l][0] += w[l] * x0;
            sum[l][1] += w[l] * x1;
        }
    }
    for (int l = 0; l < LB; l++) {
        memcpy(acc + l * SPAN, &sum[l][0], sizeof sum[l][0]);
        memcpy(acc + l * SPAN + 8, &sum[l][1], sizeof sum[l][1]);
    }
}

static void project_items(void *ctx, int64_t begin, int64_t end, float *acc) {
    const Project *c = ctx;
    const int64_t L = c->latent_dim, P = c->planes;
    for (int64_t item = begin; item < end; item++) {
        int64_t q0 = item * SPAN, span = q0 + SPAN < c->positions ? SPAN : c->positions - q0;
        memset(acc, 0, sizeof(float) * (size_t)(L * SPAN));
        for (int64_t k0 = 0; k0 < P; k0 += KB) {
            int64_t k1 = k0 + KB < P ? k0 + KB : P;
            for (int64_t l0 = 0; l0 < L; l0 += LB)
                for (int64_t i0 = 0; i0 < span; i0 += PB) {
                    int64_t n = l0 + LB < L ? LB : L - l0, m = i0 + PB < span ? PB : span - i0;
                    float *a = acc + l0 * SPAN + i0;
                    if (n == LB && m == PB) {
                        project_block(c, q0 + i0, l0, k0, k1, a);
                        continue;
                    }
                    for (int64_t k = k0; k < k1; k++) /* the last latents or positions */
                        for (int64_t l = 0; l < n; l++)
                            for (int64_t i = 0; i < m; i++)
                                a[l * SPAN + i] += c->weight[k * L + l0 + l] *
                                                   c->x[k * c->positions + q0 + i0 + i];
                }
        }
        for (int64_t l = 0; l < L; l++)
            for (int64_t i = 0; i < span; i++)
                c->out[l * c->stride + c->edge + q0 + i] = quantize(
                    acc[l * SPAN + i] + c->bias[l], c->thresholds, c->n_thresholds, c->clip);
    }
}

/* --- the whole encoder --------------------------------------------------------------- */

/* J levels on `in`'s channels (rows x cols each; audio: rows = 1), alternating between the
 * workspaces a and b (channels * rows * cols floats each); the channels * 4^J (audio 2^J)
 * unscaled subbands end in the returned one, or NULL when memory runs out. */
static const float *packet(Source in, float *a, float *b, int64_t rows, int64_t cols,
                           int64_t J, const Lifting *lifting, int threads) {
    float *buffer[2] = {a, b};
    int next = 0; /* the buffer the next pass writes; it reads the other one (or the input) */
    int64_t planes = in.channels;
    for (int64_t level = 0; level < J; level++) {
        WidthPass wp = {in, buffer[next], rows, cols, lifting};
        if (parallel(width_items, &wp, planes * rows, threads, 0)) return NULL;
        planes *= 2, cols /= 2;
        if (rows > 1) {
            int64_t strips = (cols + STRIP - 1) / STRIP;
            HeightPass hp = {buffer[next], buffer[!next], rows, cols, strips, lifting};
            if (parallel(height_items, &hp, planes * strips, threads, 0)) return NULL;
            planes *= 2, rows /= 2;
            next = !next;
        }
        in = (Source){buffer[next], NULL, NULL, 0};
        next = !next;
    }
    return in.planes;
}

static int project(const float *x, int64_t planes, int64_t positions, int64_t edge,
                   const float *weight, const float *bias, int64_t latent_dim,
                   const double *thresholds, int64_t n_thresholds, int64_t clip, int8_t *out,
                   int threads) {
    if (!x) return -1;
    int64_t stride = positions + 2 * edge;
    Project pr = {x, planes, positions, latent_dim, edge, stride, weight, bias, thresholds,
                  n_thresholds, clip, out};
    if (parallel(project_items, &pr, (positions + SPAN - 1) / SPAN, threads,
                 latent_dim * SPAN))
        return -1;
    for (int64_t l = 0; l < latent_dim && edge; l++) /* the zero padding's latents */
        out[l * stride] = out[l * stride + stride - 1] =
            quantize(bias[l], thresholds, n_thresholds, clip);
    return 0;
}

int walloc_native_encode_image(const uint8_t *raw, int64_t rows, int64_t cols, int64_t channels,
                               int64_t J, const float *lifting, const float *weight,
                               const float *bias, int64_t latent_dim, const double *thresholds,
                               int64_t n_thresholds, int64_t clip, int8_t *out, float *a,
                               float *b, int threads) {
    Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}};
    const float *x = packet((Source){NULL, raw, NULL, channels}, a, b, rows, cols, J, &steps,
                            threads);
    return project(x, channels << (2 * J), (rows >> J) * (cols >> J), 0, weight, bias,
                   latent_dim, thresholds, n_thresholds, clip, out, threads);
}

int walloc_native_encode_audio(const int16_t *raw, int64_t samples, int64_t channels,
                               int64_t J, const float *lifting, const float *weight,
                               const float *bias, int64_t latent_dim, const double *thresholds,
                               int64_t n_thresholds, int64_t clip, int8_t *out, float *a,
                               float *b, int threads) {
    Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}};
    const float *x = packet((Source){NULL, NULL, raw, channels}, a, b, 1, samples, J, &steps,
                            threads);
    return project(x, channels << J, samples >> J, 1, weight, bias, latent_dim, thresholds,
                   n_thresholds, clip, out, threads);
}
