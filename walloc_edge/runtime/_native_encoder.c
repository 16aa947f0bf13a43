/* The sensor encoder in C: uint8 image or int16 audio in, int8 latents out, on T threads.
 *
 * It computes what the exported graphs and the numpy backend compute, in another order: the
 * wavelet packet transform as a cascade of one-level periodic DWTs (each level splits every
 * plane along the width, then along the height), then the 1x1 encoder and the compander as
 * a threshold search. The fused filter banks of the graphs cost ~480 multiply-adds per RGB
 * pixel at J = 3; the cascade costs ~16 per sample per level (~180 per pixel with the 1x1).
 * The normalisation and the compander's scale are folded into the 1x1 weights and the bias
 * (native_backend.py), so the transform runs on the raw integers.
 *
 * Loops are written so the compiler vectorises them (-O3): the width pass splits each
 * periodically extended row into even and odd samples, so every tap is a contiguous
 * multiply-add; the height pass and the 1x1 run along rows of positions. Work is shared
 * by row (or run of samples) over POSIX threads; each thread writes only its own rows.
 *
 * Built by pip as an optional extension and called through ctypes from native_backend.py;
 * PyInit__native_encoder only makes it importable.
 */
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bumped whenever a signature below changes (native_backend.py refuses another version). */
#define WALLOC_ENCODER_ABI 1

int walloc_encoder_abi(void) { return WALLOC_ENCODER_ABI; }

#define MAX_TAPS 32
#define CHUNK 2048 /* outputs of one width-pass work item (audio runs are long rows) */

typedef struct {
    const float *lo, *hi; /* analysis kernels (cross-correlation, torch's), taps each */
    int64_t taps;
} Filters;

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

/* --- one DWT level ------------------------------------------------------------------- */

/* The hot loops get an AVX2 build beside the baseline one on x86-64 (chosen at load time).
 * ISO C (-std=c99) contracts no multiply-add, so every build computes the same floats. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* i mod n in [0, n), the division only for indices outside (the periodic extension). */
static inline int64_t wrap(int64_t i, int64_t n) {
    if ((uint64_t)i < (uint64_t)n) return i;
    i %= n;
    return i < 0 ? i + n : i;
}

/* Where a width pass reads: float planes, or (the first level) the caller's interleaved
 * integers, converted as they are read. */
typedef struct {
    const float *planes;    /* (planes, rows, cols) */
    const uint8_t *u8;      /* or (rows, cols, channels) */
    const int16_t *i16;     /* or (cols, channels): audio */
    int64_t channels;
} Source;

/* Samples start, start + 2, … into `even` and start + 1, start + 3, … into `odd` (len each)
 * of row r of plane p, a periodic row of n samples. */
static void gather(const Source *s, int64_t p, int64_t r, int64_t rows, int64_t n,
                   int64_t start, int64_t len, float *restrict even, float *restrict odd) {
    /* [i0, i1): the pairs inside the row, read without wrapping */
    int64_t i0 = start >= 0 ? 0 : (1 - start) / 2, i1 = (n - 1 - start) / 2 + 1;
    i1 = i1 < len ? i1 : len;
    i0 = i0 < i1 ? i0 : i1;
    /* x: the row's first sample, C apart; the ends wrap around the row */
#define GATHER(x, C)                                                                       \
    for (int64_t i = 0; i < len; i++) {                                                    \
        if (i == i0) i = i1;                                                               \
        if (i == len) break;                                                               \
        even[i] = x[wrap(start + 2 * i, n) * C];                                           \
        odd[i] = x[wrap(start + 2 * i + 1, n) * C];                                        \
    }                                                                                      \
    for (int64_t i = i0; i < i1; i++) {                                                    \
        even[i] = x[(start + 2 * i) * C];                                                  \
        odd[i] = x[(start + 2 * i + 1) * C];                                               \
    }
    if (s->planes) {
        const float *restrict x = s->planes + (p * rows + r) * n;
        GATHER(x, 1)
    } else if (s->u8) {
        const uint8_t *restrict x = s->u8 + r * n * s->channels + p;
        GATHER(x, s->channels)
    } else {
        const int16_t *restrict x = s->i16 + r * n * s->channels + p;
        GATHER(x, s->channels)
    }
#undef GATHER
}

/* lo[o], hi[o] for o in [o0, o1) of the periodic analysis of a row x of n samples (n even):
 * lo[o] = sum_j f.lo[j] x[(2o + j - off) mod n], off = taps / 2 - 1, as torch's strided
 * convolution over the periodically padded signal; with the even and odd samples apart,
 * each pair of taps is a contiguous multiply-add. */
VECTOR_CLONES
static void split(const float *restrict even, const float *restrict odd, int64_t m,
                  const Filters *f, float *restrict lo, float *restrict hi) {
    for (int64_t o = 0; o < m; o++) lo[o] = hi[o] = 0;
    for (int64_t q = 0; q < f->taps / 2; q++) {
        const float le = f->lo[2 * q], lodd = f->lo[2 * q + 1];
        const float he = f->hi[2 * q], hodd = f->hi[2 * q + 1];
        const float *e = even + q, *d = odd + q;
        for (int64_t o = 0; o < m; o++) {
            lo[o] += le * e[o] + lodd * d[o];
            hi[o] += he * e[o] + hodd * d[o];
        }
    }
}

/* Width pass: every row of each plane (rows x cols) → planes 2p (low) and 2p + 1 (high) of
 * rows x cols/2. A work item is (plane, row, chunk of CHUNK outputs). */
typedef struct {
    Source in;
    float *out;
    int64_t rows, cols, chunks;
    const Filters *f;
} WidthPass;

static void width_items(void *ctx, int64_t begin, int64_t end, float *ext) {
    const WidthPass *c = ctx;
    const int64_t half = c->cols / 2, off = c->f->taps / 2 - 1;
    for (int64_t item = begin; item < end; item++) {
        int64_t k = item % c->chunks, row = item / c->chunks;
        int64_t p = row / c->rows, r = row % c->rows;
        int64_t o0 = k * CHUNK, m = (o0 + CHUNK < half ? o0 + CHUNK : half) - o0;
        int64_t len = m + c->f->taps / 2;  /* the even (and odd) samples those outputs read */
        gather(&c->in, p, r, c->rows, c->cols, 2 * o0 - off, len, ext, ext + len);
        float *lo = c->out + (2 * p * c->rows + r) * half + o0;
        split(ext, ext + len, m, c->f, lo, lo + c->rows * half);
    }
}

/* Height pass: every plane (rows x cols) → planes 2p (low) and 2p + 1 (high) of rows/2 x
 * cols, one output row pair a work item: the taps rows it reads, multiplied along the row. */
typedef struct {
    const float *in;
    float *out;
    int64_t rows, cols;
    const Filters *f;
} HeightPass;

VECTOR_CLONES
static void height_items(void *ctx, int64_t begin, int64_t end, float *unused) {
    (void)unused;
    const HeightPass *c = ctx;
    const int64_t h = c->rows, w = c->cols, half = h / 2, off = c->f->taps / 2 - 1;
    for (int64_t item = begin; item < end; item++) {
        int64_t p = item / half, o = item % half;
        const float *plane = c->in + p * h * w;
        float *restrict lo = c->out + (2 * p * half + o) * w, *restrict hi = lo + half * w;
        for (int64_t i = 0; i < w; i++) lo[i] = hi[i] = 0;
        for (int64_t j = 0; j < c->f->taps; j++) {
            const float *restrict x = plane + wrap(2 * o + j - off, h) * w;
            const float a = c->f->lo[j], b = c->f->hi[j];
            for (int64_t i = 0; i < w; i++) {
                lo[i] += a * x[i];
                hi[i] += b * x[i];
            }
        }
    }
}

/* --- the 1x1 encoder and the compander ----------------------------------------------- */

typedef struct {
    const float *x;       /* (planes, positions) */
    int64_t planes, positions, latent_dim, edge, stride;
    const float *weight;  /* (planes, latent_dim), folded */
    const float *bias;
    const double *thresholds;
    int64_t n_thresholds, clip;
    int8_t *out;          /* (latent_dim, stride): position i at edge + i */
} Project;

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

/* The sums of LB latents at PB positions: acc[l][i] = sum_k weight[k][l0 + l] x[k][p0 + i],
 * in 12 vector registers while every plane passes (GNU C vectors: SSE, AVX2 or NEON). */
#define LB 6
#define PB 16
typedef float v8 __attribute__((vector_size(32)));

VECTOR_CLONES
static void project_block(const Project *c, int64_t p0, int64_t l0, float *restrict result) {
    v8 acc[LB][2];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < c->planes; k++) {
        const float *x = c->x + k * c->positions + p0, *w = c->weight + k * c->latent_dim + l0;
        v8 x0, x1;
        memcpy(&x0, x, sizeof x0);
        memcpy(&x1, x + 8, sizeof x1);
        for (int l = 0; l < LB; l++) {
            acc[l][0] += w[l] * x0;
            acc[l][1] += w[l] * x1;
        }
    }
    memcpy(result, acc, sizeof acc);
}

static void project_items(void *ctx, int64_t begin, int64_t end, float *unused) {
    (void)unused;
    const Project *c = ctx;
    const int64_t L = c->latent_dim, P = c->planes;
    for (int64_t item = begin; item < end; item++) {
        int64_t p0 = item * PB, m = p0 + PB < c->positions ? PB : c->positions - p0;
        for (int64_t l0 = 0; l0 < L; l0 += LB) {
            int64_t n = l0 + LB < L ? LB : L - l0;
            float acc[LB][PB] = {{0}};
            if (m == PB && n == LB) {
                project_block(c, p0, l0, &acc[0][0]);
            } else { /* the last positions or latents: the same sums, one at a time */
                for (int64_t k = 0; k < P; k++)
                    for (int64_t l = 0; l < n; l++)
                        for (int64_t i = 0; i < m; i++)
                            acc[l][i] += c->weight[k * L + l0 + l] * c->x[k * c->positions + p0 + i];
            }
            for (int64_t l = 0; l < n; l++)
                for (int64_t i = 0; i < m; i++)
                    c->out[(l0 + l) * c->stride + c->edge + p0 + i] = quantize(
                        acc[l][i] + c->bias[l0 + l], c->thresholds, c->n_thresholds, c->clip);
        }
    }
}

/* --- the whole encoder --------------------------------------------------------------- */

/* J levels on `in`'s channels (rows x cols each; audio: rows = 1), alternating between the
 * workspaces a and b (channels * rows * cols floats each); the channels * 4^J (audio 2^J)
 * subbands end in the returned one, or NULL when memory runs out. */
static const float *packet(Source in, float *a, float *b, int64_t rows, int64_t cols,
                           int64_t J, const Filters *f, int threads) {
    float *buffer[2] = {a, b};
    int next = 0; /* the buffer the next pass writes; it reads the other one (or the input) */
    int64_t planes = in.channels;
    for (int64_t level = 0; level < J; level++) {
        int64_t chunks = (cols / 2 + CHUNK - 1) / CHUNK;
        WidthPass wp = {in, buffer[next], rows, cols, chunks, f};
        if (parallel(width_items, &wp, planes * rows * chunks, threads, 2 * (CHUNK + f->taps)))
            return NULL;
        planes *= 2, cols /= 2;
        if (rows > 1) {
            HeightPass hp = {buffer[next], buffer[!next], rows, cols, f};
            if (parallel(height_items, &hp, planes * (rows / 2), threads, 0)) return NULL;
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
    if (parallel(project_items, &pr, (positions + PB - 1) / PB, threads, 0))
        return -1;
    for (int64_t l = 0; l < latent_dim && edge; l++) /* the zero padding's latents */
        out[l * stride] = out[l * stride + stride - 1] =
            quantize(bias[l], thresholds, n_thresholds, clip);
    return 0;
}

/* raw (rows, cols, channels) uint8, rows and cols multiples of 2^J → out (latent_dim,
 * rows / 2^J, cols / 2^J). Workspaces a, b: rows * cols * channels floats each. Returns 0,
 * -1 when memory runs out, -2 for filters it cannot run. */
int walloc_encode_image(const uint8_t *raw, int64_t rows, int64_t cols, int64_t channels,
                        int64_t J, const float *lo, const float *hi, int64_t taps,
                        const float *weight, const float *bias, int64_t latent_dim,
                        const double *thresholds, int64_t n_thresholds, int64_t clip,
                        int8_t *out, float *a, float *b, int threads) {
    if (taps > MAX_TAPS || taps % 2 || J < 1) return -2;
    Filters f = {lo, hi, taps};
    const float *x = packet((Source){NULL, raw, NULL, channels}, a, b, rows, cols, J, &f,
                            threads);
    return project(x, channels << (2 * J), (rows >> J) * (cols >> J), 0, weight, bias,
                   latent_dim, thresholds, n_thresholds, clip, out, threads);
}

/* raw (samples, channels) int16, samples a multiple of 2^J → out (latent_dim,
 * samples / 2^J + 2): the reference's one latent of zero padding at each end. */
int walloc_encode_audio(const int16_t *raw, int64_t samples, int64_t channels, int64_t J,
                        const float *lo, const float *hi, int64_t taps, const float *weight,
                        const float *bias, int64_t latent_dim, const double *thresholds,
                        int64_t n_thresholds, int64_t clip, int8_t *out, float *a, float *b,
                        int threads) {
    if (taps > MAX_TAPS || taps % 2 || J < 1) return -2;
    Filters f = {lo, hi, taps};
    const float *x = packet((Source){NULL, NULL, raw, channels}, a, b, 1, samples, J, &f,
                            threads);
    return project(x, channels << J, samples >> J, 1, weight, bias, latent_dim, thresholds,
                   n_thresholds, clip, out, threads);
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native_encoder",
                                    "The sensor encoder in C (called through ctypes).",
                                    -1, NULL};

PyMODINIT_FUNC PyInit__native_encoder(void) { return PyModule_Create(&module); }
