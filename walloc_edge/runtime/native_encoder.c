/* The sensor encoder in C: uint8 image or int16 audio in, int8 latents out, on T threads.
 *
 * It computes what the exported graphs and the numpy backend compute, in another order: the
 * wavelet packet transform as periodic one-level DWTs by lifting, then the 1x1 encoder and
 * the compander as a threshold search. The fused filter banks of the graphs cost ~480
 * multiply-adds per RGB pixel at J = 3, a convolution cascade ~216, lifting ~100: four
 * steps x[i] += c (y[i] + y[i +- 1]) per level and axis, the two scale factors and the
 * normalisation folded into the 1x1 weights and the bias (native_backend.py checks that the
 * model's filters factor so and computes the folding), so the transform runs on the raw
 * integers.
 *
 * The packet transform is separable (every level splits every subband along both axes), so
 * an axis's J levels can run together, and an image takes two passes over memory:
 *   1. columns: a strip of STRIP columns of one channel, read from the caller's image
 *      through row and column indices (a tile in place, its wrap and reflections
 *      included), all J levels down the columns while the strip is in cache, into the
 *      workspace (planes c * 2^J + height band);
 *   2. block rows: the 2^J rows of one row of latents, each plane's row through its J
 *      levels along the width into a small buffer in channel order, then at once the 1x1
 *      and the compander, so the 4^J subbands never go back to memory (audio: each
 *      channel's levels along the signal, then the 1x1 on runs of positions).
 * Loops are written so the compiler vectorises them (-O3): a row's first two lifting steps
 * read its interleaved samples (the split costs no pass of its own), a column level lifts
 * whole rows of the strip in one sweep, and the 1x1 keeps 12 sums in vector registers
 * while 16 planes stream past; the compander's threshold searches run eight in step. Work
 * is shared by strip or block row over POSIX threads; each thread writes only its own.
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

#define STRIP 64 /* columns of one column-pass work item */

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

/* out = y + c (a + b), n floats: one lifting step on a row (inlined into each clone). */
static inline void axpy2(float *out, const float *y, const float *restrict a,
                         const float *restrict b, float c, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = y[i] + c * (a[i] + b[i]);
}

/* One level down the columns of rows 0 .. 2m - 1 of x (row stride xs; n floats a row,
 * periodic): the even rows lifted into s, the odd ones into d (row stride ys). One sweep
 * down the rows does all four steps, each a row or two behind the one before (the rows it
 * reads are final by then), so each row is read and written about once, not four times;
 * the wrap's values come first (d1[m - 1]) and last (d3[m - 1], s4[m - 1], s4[0]). Every
 * value is the same sum as step by step. */
VECTOR_CLONES
static void split_lift_rows(const float *x, int64_t xs, float *s, float *d, int64_t ys,
                            int64_t m, int64_t n, const Lifting *L) {
    const float c0 = L->c[0], c1 = L->c[1], c2 = L->c[2], c3 = L->c[3];
#define EVEN(i) (x + 2 * ((i) % m) * xs)
#define S(i) (s + (((i) + m) % m) * ys)
#define D(i) (d + (((i) + m) % m) * ys)
    axpy2(D(m - 1), EVEN(m - 1) + xs, EVEN(m - 1), EVEN(m), c0, n);
    for (int64_t i = 0; i < m; i++) {
        if (i < m - 1) axpy2(D(i), EVEN(i) + xs, EVEN(i), EVEN(i + 1), c0, n);
        axpy2(S(i), EVEN(i), D(i - 1), D(i), c1, n);
        if (i >= 1) axpy2(D(i - 1), D(i - 1), S(i - 1), S(i), c2, n);
        if (i >= 2) axpy2(S(i - 1), S(i - 1), D(i - 2), D(i - 1), c3, n);
    }
    axpy2(D(m - 1), D(m - 1), S(m - 1), S(0), c2, n);
    if (m >= 2) axpy2(S(m - 1), S(m - 1), D(m - 2), D(m - 1), c3, n);
    axpy2(S(0), S(0), D(m - 1), D(0), c3, n);
#undef EVEN
#undef S
#undef D
}

/* --- pass 1 (images): the J levels down the columns ---------------------------------- */

/* A strip of STRIP columns of each channel of the input (rows x cols pixels of channels
 * bytes: pixel (r, x) is the source's (row_of[r], col_of[x]), so a tile is read in place,
 * its wrap and reflections included) → planes c * 2^J + band (rows / 2^J x cols) of
 * `out`, band bits the low/high choice per level, first level first. Scratch: 2 rows x
 * STRIP floats. A work item is one strip of one channel. */
typedef struct {
    const uint8_t *raw;
    int64_t raw_cols;
    const int64_t *row_of, *col_of;
    float *out;
    int64_t rows, cols, channels, J;
    const Lifting *lifting;
} Columns;

/* Whether idx[0 .. n) is one rising run (a run's samples read at a constant stride: all
 * but the runs at the input's edges, which wrap or reflect). */
static int is_run(const int64_t *idx, int64_t n) {
    for (int64_t i = 1; i < n; i++)
        if (idx[i] != idx[0] + i) return 0;
    return 1;
}

/* x[i] = in[i * C]: a constant stride for the usual channel counts, so it vectorises. */
VECTOR_CLONES
static void to_floats(float *restrict x, const uint8_t *restrict in, int64_t n, int64_t C) {
    if (C == 3)
        for (int64_t i = 0; i < n; i++) x[i] = in[3 * i];
    else if (C == 1)
        for (int64_t i = 0; i < n; i++) x[i] = in[i];
    else
        for (int64_t i = 0; i < n; i++) x[i] = in[i * C];
}

static void column_items(void *ctx, int64_t begin, int64_t end, float *scratch) {
    const Columns *c = ctx;
    const int64_t rows = c->rows, cols = c->cols, C = c->channels, rows_out = rows >> c->J;
    float *buffer[2] = {scratch, scratch + rows * STRIP};
    for (int64_t item = begin; item < end; item++) {
        const int64_t x0 = item / C * STRIP, n = x0 + STRIP < cols ? STRIP : cols - x0;
        const int64_t *col = c->col_of + x0, ch = item % C;
        const int run = is_run(col, n);
        for (int64_t r = 0; r < rows; r++) { /* the channel's strip, as floats */
            const uint8_t *in = c->raw + c->row_of[r] * c->raw_cols * C + ch;
            float *x = buffer[0] + r * n;
            if (run) to_floats(x, in + col[0] * C, n, C);
            else for (int64_t i = 0; i < n; i++) x[i] = in[col[i] * C];
        }
        for (int64_t level = 0, m = rows / 2; level < c->J; level++, m /= 2) {
            const float *from = buffer[level & 1];
            for (int64_t band = 0; band < (int64_t)1 << level; band++) {
                float *s, *d;
                int64_t ys = n;
                if (level == c->J - 1) { /* the last level writes the planes */
                    s = c->out + ((ch << c->J) + 2 * band) * rows_out * cols + x0;
                    d = s + rows_out * cols;
                    ys = cols;
                } else {
                    s = buffer[!(level & 1)] + 2 * band * m * n, d = s + m * n;
                }
                split_lift_rows(from + 2 * band * m * n, n, s, d, ys, m, n, c->lifting);
            }
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

/* The folded model: weight (planes, latent_dim), bias, the compander's thresholds. */
typedef struct {
    int64_t planes, latent_dim;
    const float *weight, *bias;
    const double *thresholds;
    int64_t n_thresholds, clip;
} Model;

/* out[i] = quantize(acc[i] + bias) for n positions: QG searches in step, so that their
 * loads overlap instead of each waiting on its own. */
#define QG 8
VECTOR_CLONES
static void quantize_row(const float *acc, float bias, const Model *mo, int64_t n,
                         int8_t *out) {
    const double *t = mo->thresholds;
    int64_t i = 0;
    for (; i + QG <= n; i += QG) {
        double v[QG];
        const double *base[QG];
        for (int j = 0; j < QG; j++) v[j] = acc[i + j] + bias, base[j] = t;
        for (int64_t m = mo->n_thresholds; m > 1;) {
            const int64_t half = m / 2;
            for (int j = 0; j < QG; j++)
                base[j] = base[j][half] <= v[j] ? base[j] + half : base[j];
            m -= half;
        }
        for (int j = 0; j < QG; j++)
            out[i + j] = (int8_t)((base[j] - t) + (base[j][0] <= v[j]) - mo->clip);
    }
    for (; i < n; i++) out[i] = quantize(acc[i] + bias, t, mo->n_thresholds, mo->clip);
}

/* The 1x1 on SPAN positions at a time, into acc (latent_dim, SPAN): blocks of LB latents
 * at PB positions stay in vector registers (GNU C vectors of 16 floats: one AVX-512
 * register, two AVX2 or four SSE/NEON ones) while KB planes pass, so the planes are read
 * as KB sequential streams. Each sum runs over the planes in order, whatever the blocking. */
#define LB 6
#define PB 16
#define KB 16
#define SPAN 256
typedef float v16 __attribute__((vector_size(64)));

VECTOR_CLONES
static void project_block(const float *x, int64_t stride, const float *weight, int64_t L,
                          int64_t l0, int64_t k0, int64_t k1, float *restrict acc) {
    v16 sum[LB];
    for (int l = 0; l < LB; l++) memcpy(&sum[l], acc + l * SPAN, sizeof sum[l]);
    for (int64_t k = k0; k < k1; k++) {
        const float *w = weight + k * L + l0;
        v16 in;
        memcpy(&in, x + k * stride, sizeof in);
        for (int l = 0; l < LB; l++) sum[l] += w[l] * in;
    }
    for (int l = 0; l < LB; l++) memcpy(acc + l * SPAN, &sum[l], sizeof sum[l]);
}

/* Latents of positions 0 .. n - 1 of x (planes, stride) → out[l * out_stride + i]; acc:
 * latent_dim * SPAN floats of scratch. */
static void project(const Model *mo, const float *x, int64_t stride, int64_t n, int8_t *out,
                    int64_t out_stride, float *acc) {
    const int64_t L = mo->latent_dim, P = mo->planes;
    for (int64_t q0 = 0; q0 < n; q0 += SPAN) {
        const int64_t span = q0 + SPAN < n ? SPAN : n - q0;
        memset(acc, 0, sizeof(float) * (size_t)(L * SPAN));
        for (int64_t k0 = 0; k0 < P; k0 += KB) {
            const int64_t k1 = k0 + KB < P ? k0 + KB : P;
            for (int64_t l0 = 0; l0 < L; l0 += LB)
                for (int64_t i0 = 0; i0 < span; i0 += PB) {
                    int64_t nl = l0 + LB < L ? LB : L - l0, m = i0 + PB < span ? PB : span - i0;
                    float *a = acc + l0 * SPAN + i0;
                    if (nl == LB && m == PB) {
                        project_block(x + q0 + i0, stride, mo->weight, L, l0, k0, k1, a);
                        continue;
                    }
                    for (int64_t k = k0; k < k1; k++) /* the last latents or positions */
                        for (int64_t l = 0; l < nl; l++)
                            for (int64_t i = 0; i < m; i++)
                                a[l * SPAN + i] += mo->weight[k * L + l0 + l] *
                                                   x[k * stride + q0 + i0 + i];
                }
        }
        for (int64_t l = 0; l < L; l++)
            quantize_row(acc + l * SPAN, mo->bias[l], mo, span, out + l * out_stride + q0);
    }
}

/* --- pass 2: the J levels along the width, then the 1x1 -------------------------------- */

/* Block row r: row r of each plane p of `in` (planes x rows x cols floats) through J
 * levels along the width → the block row's subbands in channel order (c * 4^J + width and
 * height bits interleaved per level, width first), planes of `stride` >= cols / 2^J floats
 * (a multiple of PB, so the 1x1 runs in whole blocks), then its latents. Scratch: 2 cols +
 * subbands + latent_dim * SPAN floats. A work item is one block row. Audio uses the same
 * levels on each channel's samples at[0 .. cols) of `audio` (interleaved int16), into the
 * shared subbands `sub` (c * 2^J + band, stride cols / 2^J). */
typedef struct {
    const float *in;
    const int16_t *audio;
    const int64_t *at;
    int64_t planes, rows, cols, J, stride;
    const Lifting *lifting;
    const Model *model;
    int8_t *out;              /* (latent_dim, out_stride), block row r at edge + r * w */
    int64_t out_stride, edge;
    float *sub;               /* audio: the subbands, shared by the threads */
} Rows;

/* x[i] = in[i * C], int16: as to_floats. */
VECTOR_CLONES
static void pcm_to_floats(float *restrict x, const int16_t *restrict in, int64_t n, int64_t C) {
    if (C == 2)
        for (int64_t i = 0; i < n; i++) x[i] = in[2 * i];
    else if (C == 1)
        for (int64_t i = 0; i < n; i++) x[i] = in[i];
    else
        for (int64_t i = 0; i < n; i++) x[i] = in[i * C];
}

/* Bits of v spread to the even bit positions (bit i to bit 2i). */
static int64_t spread(int64_t v) {
    int64_t out = 0;
    for (int i = 0; v >> i; i++) out |= ((v >> i) & 1) << (2 * i);
    return out;
}

/* Plane p's row (cols floats) through the J levels along the width, into its subbands of
 * sub (planes of c->stride floats): subband rw is channel first + rw (audio: plane p is
 * channel c) or first + 2 spread(rw) (images: p = (c, height band h)). */
static void width_levels(const Rows *c, const float *row, int64_t p, float *buffer[2],
                         float *sub) {
    const int64_t J = c->J, bands = (int64_t)1 << J;
    const int64_t first = c->audio ? p * bands : (p / bands) * bands * bands + spread(p % bands);
    for (int64_t level = 0, m = c->cols / 2; level < J; level++, m /= 2) {
        const float *from = level ? buffer[level & 1] : row;
        for (int64_t band = 0; band < (int64_t)1 << level; band++) {
            float *s, *d;
            if (level == J - 1) { /* the last level writes the subbands */
                int64_t even = 2 * band, odd = even + 1;
                s = sub + (first + (c->audio ? even : 2 * spread(even))) * c->stride;
                d = sub + (first + (c->audio ? odd : 2 * spread(odd))) * c->stride;
            } else {
                s = buffer[!(level & 1)] + 2 * band * m, d = s + m;
            }
            split_lift_row(from + 2 * band * m, s, d, m, c->lifting);
        }
    }
}

static void row_items(void *ctx, int64_t begin, int64_t end, float *scratch) {
    const Rows *c = ctx;
    const int64_t cols = c->cols, w = cols >> c->J;
    float *buffer[2] = {scratch, scratch + cols}, *sub = scratch + 2 * cols;
    float *acc = sub + c->model->planes * c->stride;
    if (c->stride > w) /* the padding the 1x1's blocks read: zeros, never kept nor written */
        for (int64_t k = 0; k < c->model->planes; k++)
            memset(sub + k * c->stride + w, 0, sizeof(float) * (size_t)(c->stride - w));
    for (int64_t r = begin; r < end; r++) {
        for (int64_t p = 0; p < c->planes; p++) {
            const float *row = c->in + (p * c->rows + r) * cols;
            if (r + 1 < end) /* the planes are far apart: fetch the next block row's early */
                for (int64_t i = 0; i < cols; i += 16) __builtin_prefetch(row + cols + i);
            width_levels(c, row, p, buffer, sub);
        }
        project(c->model, sub, c->stride, w, c->out + c->edge + r * w, c->out_stride, acc);
    }
}

/* Audio, a work item a channel: its samples at[0 .. cols) as floats, through the J levels
 * into the shared subbands c->sub. Scratch: 2 cols floats. */
static void audio_channels(void *ctx, int64_t begin, int64_t end, float *scratch) {
    const Rows *c = ctx;
    const int64_t cols = c->cols, C = c->planes;
    float *buffer[2] = {scratch, scratch + cols};
    const int run = is_run(c->at, cols);
    for (int64_t p = begin; p < end; p++) {
        if (run)
            pcm_to_floats(buffer[0], c->audio + c->at[0] * C + p, cols, C);
        else
            for (int64_t i = 0; i < cols; i++) buffer[0][i] = c->audio[c->at[i] * C + p];
        width_levels(c, buffer[0], p, buffer, c->sub);
    }
}

/* Audio, a work item SPAN positions: their latents from c->sub. Scratch: as project. */
static void audio_spans(void *ctx, int64_t begin, int64_t end, float *acc) {
    const Rows *c = ctx;
    const int64_t w = c->cols >> c->J;
    for (int64_t item = begin; item < end; item++) {
        const int64_t q0 = item * SPAN, n = q0 + SPAN < w ? SPAN : w - q0;
        project(c->model, c->sub + q0, c->stride, n, c->out + c->edge + q0, c->out_stride,
                acc);
    }
}

/* --- the whole encoder --------------------------------------------------------------- */

int walloc_native_encode_image(const uint8_t *raw, int64_t raw_cols, const int64_t *row_of,
                               const int64_t *col_of, int64_t rows, int64_t cols,
                               int64_t channels, int64_t J, const float *lifting,
                               const float *weight, const float *bias, int64_t latent_dim,
                               const double *thresholds, int64_t n_thresholds, int64_t clip,
                               int8_t *out, float *work, int threads) {
    const Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}};
    const Model model = {channels << (2 * J), latent_dim, weight, bias, thresholds,
                         n_thresholds, clip};
    const int64_t rows_out = rows >> J, w = cols >> J, stride = (w + PB - 1) / PB * PB;
    Columns cp = {raw, raw_cols, row_of, col_of, work, rows, cols, channels, J, &steps};
    if (walloc_parallel(column_items, &cp, (cols + STRIP - 1) / STRIP * channels, threads,
                        2 * rows * STRIP))
        return -1;
    Rows rp = {work, NULL, NULL, channels << J, rows_out, cols, J, stride, &steps, &model, out,
               rows_out * w, 0, NULL};
    return walloc_parallel(row_items, &rp, rows_out, threads,
                           2 * cols + model.planes * stride + latent_dim * SPAN);
}

int walloc_native_encode_audio(const int16_t *raw, const int64_t *at, int64_t samples,
                               int64_t channels, int64_t J, const float *lifting,
                               const float *weight, const float *bias, int64_t latent_dim,
                               const double *thresholds, int64_t n_thresholds, int64_t clip,
                               int8_t *out, int threads) {
    const Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}};
    const Model model = {channels << J, latent_dim, weight, bias, thresholds, n_thresholds,
                         clip};
    const int64_t w = samples >> J, stride = w + 2;
    float *sub = malloc(sizeof(float) * (size_t)(model.planes * w + 1));
    Rows rp = {NULL, raw, at, channels, 1, samples, J, w, &steps, &model, out, stride, 1, sub};
    int status = !sub ||
                 walloc_parallel(audio_channels, &rp, channels, threads, 2 * samples) ||
                 walloc_parallel(audio_spans, &rp, (w + SPAN - 1) / SPAN, threads,
                                 latent_dim * SPAN) ? -1 : 0;
    free(sub);
    for (int64_t l = 0; l < latent_dim && !status; l++) /* the zero padding's latents */
        out[l * stride] = out[l * stride + stride - 1] =
            quantize(bias[l], thresholds, n_thresholds, clip);
    return status;
}
