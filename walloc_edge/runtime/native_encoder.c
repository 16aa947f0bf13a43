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
#include "native_parallel.h"

#include <stdlib.h>
#include <string.h>

int walloc_native_abi(void) { return WALLOC_NATIVE_ABI; }

#define STRIP 64 /* columns of one height-pass work item */

/* The four lifting steps: odd += c0 (even + next even), even += c1 (previous odd + odd),
 * odd += c2 (…), even += c3 (…), indices periodic. */
typedef struct {
    float c[4];
} Lifting;

/* --- one DWT level, by lifting ------------------------------------------------------- */

/* One level on a row y of 2m samples (periodic): its even samples lifted into s, its odd
 * ones into d (m each). The first two steps read y, so the split costs no pass of its own. */
VECTOR_CLONES
static void split_lift_row(const float *restrict y, float *restrict s, float *restrict d,
                           int64_t m, const Lifting *L) {
    const float c0 = L->c[0], c1 = L->c[1], c2 = L->c[2], c3 = L->c[3];
    for (int64_t i = 0; i < m - 1; i++) d[i] = y[2 * i + 1] + c0 * (y[2 * i] + y[2 * i + 2]);
    d[m - 1] = y[2 * m - 1] + c0 * (y[2 * m - 2] + y[0]);
    s[0] = y[0] + c1 * (d[m - 1] + d[0]);
    for (int64_t i = 1; i < m; i++) s[i] = y[2 * i] + c1 * (d[i - 1] + d[i]);
    for (int64_t i = 0; i < m - 1; i++) d[i] += c2 * (s[i] + s[i + 1]);
    d[m - 1] += c2 * (s[m - 1] + s[0]);
    s[0] += c3 * (d[m - 1] + d[0]);
    for (int64_t i = 1; i < m; i++) s[i] += c3 * (d[i - 1] + d[i]);
}

/* Where the width pass reads: the caller's interleaved integers, converted as read. */
typedef struct {
    const uint8_t *u8;      /* (rows, cols, channels) */
    const int16_t *i16;     /* or (cols, channels): audio */
    int64_t channels;
} Source;

/* Width pass: each row of each channel → its 2^J width subbands, all J levels while the row
 * is in cache (scratch: 2 cols floats). Out: planes c * 2^J + band of rows x cols / 2^J, band
 * bits the low/high choice per level, first level first. A work item is one row. */
typedef struct {
    Source in;
    float *out;
    int64_t rows, cols, J;
    const Lifting *lifting;
} WidthPass;

static void width_items(void *ctx, int64_t begin, int64_t end, float *scratch) {
    const WidthPass *c = ctx;
    const int64_t C = c->in.channels, w = c->cols >> c->J;
    float *buffer[2] = {scratch, scratch + c->cols};
    for (int64_t row = begin; row < end; row++) {
        int64_t ch = row / c->rows, r = row % c->rows;
        float *x = buffer[0];
        if (c->in.u8) {
            const uint8_t *in = c->in.u8 + r * c->cols * C + ch;
            for (int64_t i = 0; i < c->cols; i++) x[i] = in[i * C];
        } else {
            const int16_t *in = c->in.i16 + ch;
            for (int64_t i = 0; i < c->cols; i++) x[i] = in[i * C];
        }
        for (int64_t level = 0, m = c->cols / 2; level < c->J; level++, m /= 2) {
            const float *from = buffer[level & 1];
            for (int64_t band = 0; band < (int64_t)1 << level; band++) {
                float *s, *d; /* the last level writes the output planes */
                if (level == c->J - 1) {
                    s = c->out + ((ch << c->J) + 2 * band) * c->rows * w + r * w;
                    d = s + c->rows * w;
                } else {
                    s = buffer[!(level & 1)] + 2 * band * m, d = s + m;
                }
                split_lift_row(from + 2 * band * m, s, d, m, c->lifting);
            }
        }
    }
}

/* out = y + c (a + b), n floats: one lifting step on a row (inlined into each clone). */
static inline void axpy2(float *out, const float *y, const float *restrict a,
                         const float *restrict b, float c, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = y[i] + c * (a[i] + b[i]);
}

/* One level down the columns of rows 0 .. 2m - 1 of x (row stride xs; n floats a row,
 * periodic): the even rows lifted into s, the odd ones into d (row stride ys). The first
 * two steps read x, so the split costs no pass of its own. */
VECTOR_CLONES
static void split_lift_rows(const float *x, int64_t xs, float *s, float *d, int64_t ys,
                            int64_t m, int64_t n, const Lifting *L) {
    const float c0 = L->c[0], c1 = L->c[1], c2 = L->c[2], c3 = L->c[3];
#define EVEN(i) (x + 2 * (i) * xs)
    for (int64_t i = 0; i < m; i++)
        axpy2(d + i * ys, EVEN(i) + xs, EVEN(i), EVEN(i + 1 < m ? i + 1 : 0), c0, n);
    for (int64_t i = 0; i < m; i++)
        axpy2(s + i * ys, EVEN(i), d + (i > 0 ? i - 1 : m - 1) * ys, d + i * ys, c1, n);
#undef EVEN
    for (int64_t i = 0; i < m; i++)
        axpy2(d + i * ys, d + i * ys, s + i * ys, s + (i + 1 < m ? i + 1 : 0) * ys, c2, n);
    for (int64_t i = 0; i < m; i++)
        axpy2(s + i * ys, s + i * ys, d + (i > 0 ? i - 1 : m - 1) * ys, d + i * ys, c3, n);
}

/* Bits of v spread to the even bit positions (bit i to bit 2i). */
static int64_t spread(int64_t v) {
    int64_t out = 0;
    for (int i = 0; v >> i; i++) out |= ((v >> i) & 1) << (2 * i);
    return out;
}

/* Height pass: each width-subband plane (rows x cols) → its 2^J height subbands, all J
 * levels on a strip of STRIP columns while it is in cache (scratch: 2 rows x STRIP floats).
 * Out: the codec's channel order, c * 4^J + the width and height bits interleaved per level
 * (width first), planes of rows / 2^J x cols. A work item is one strip of one plane. */
typedef struct {
    const float *in;
    float *out;
    int64_t rows, cols, strips, J;
    const Lifting *lifting;
} HeightPass;

static void height_items(void *ctx, int64_t begin, int64_t end, float *scratch) {
    const HeightPass *c = ctx;
    const int64_t w = c->cols, bands = (int64_t)1 << c->J, rows_out = c->rows >> c->J;
    float *buffer[2] = {scratch, scratch + c->rows * STRIP};
    for (int64_t item = begin; item < end; item++) {
        int64_t p = item / c->strips, x0 = (item % c->strips) * STRIP;
        int64_t n = x0 + STRIP < w ? STRIP : w - x0;
        int64_t ch = p / bands, first = ch * bands * bands + 2 * spread(p % bands);
        const float *from = c->in + p * c->rows * w + x0;
        int64_t stride = w;
        for (int64_t level = 0, m = c->rows / 2; level < c->J; level++, m /= 2) {
            for (int64_t band = 0; band < (int64_t)1 << level; band++) {
                float *s, *d;
                int64_t ys = n;
                if (level == c->J - 1) { /* into the output planes, in channel order */
                    s = c->out + (first + spread(2 * band)) * rows_out * w + x0;
                    d = c->out + (first + spread(2 * band + 1)) * rows_out * w + x0;
                    ys = w;
                } else {
                    s = buffer[!(level & 1)] + 2 * band * m * n, d = s + m * n;
                }
                split_lift_rows(from + 2 * band * m * stride, stride, s, d, ys, m, n,
                                c->lifting);
            }
            from = buffer[!(level & 1)], stride = n;
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

/* The packet transform of `in`'s channels (rows x cols each; audio: rows = 1): the width
 * pass into workspace a, then (images) the height pass into b. Returns the workspace holding
 * the channels * 4^J (audio 2^J) unscaled subbands in channel order, or NULL when memory
 * runs out. Workspaces: channels * rows * cols floats each. */
static const float *packet(Source in, float *a, float *b, int64_t rows, int64_t cols,
                           int64_t J, const Lifting *lifting, int threads) {
    WidthPass wp = {in, a, rows, cols, J, lifting};
    if (walloc_parallel(width_items, &wp, in.channels * rows, threads, 2 * cols)) return NULL;
    if (rows == 1) return a;
    int64_t w = cols >> J, strips = (w + STRIP - 1) / STRIP;
    HeightPass hp = {a, b, rows, w, strips, J, lifting};
    if (walloc_parallel(height_items, &hp, (in.channels << J) * strips, threads,
                        2 * rows * STRIP))
        return NULL;
    return b;
}

static int project(const float *x, int64_t planes, int64_t positions, int64_t edge,
                   const float *weight, const float *bias, int64_t latent_dim,
                   const double *thresholds, int64_t n_thresholds, int64_t clip, int8_t *out,
                   int threads) {
    if (!x) return -1;
    int64_t stride = positions + 2 * edge;
    Project pr = {x, planes, positions, latent_dim, edge, stride, weight, bias, thresholds,
                  n_thresholds, clip, out};
    if (walloc_parallel(project_items, &pr, (positions + SPAN - 1) / SPAN, threads,
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
    const float *x = packet((Source){raw, NULL, channels}, a, b, rows, cols, J, &steps,
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
    const float *x = packet((Source){NULL, raw, channels}, a, b, 1, samples, J, &steps,
                            threads);
    return project(x, channels << J, samples >> J, 1, weight, bias, latent_dim, thresholds,
                   n_thresholds, clip, out, threads);
}
