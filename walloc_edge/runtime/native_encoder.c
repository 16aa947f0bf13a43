/* The sensor encoder in C: uint8 image or int16 audio in, int8 latents out, on T threads.
 *
 * It computes what the exported graphs and the numpy backend compute, in another order: the
 * wavelet packet transform as one-level DWTs by lifting, then the 1x1 encoder and the
 * compander as a threshold search. The fused filter banks of the graphs cost ~480
 * multiply-adds per RGB pixel at J = 3, a convolution cascade ~216, lifting ~100: four
 * steps x[i] += c (y[i] + y[i +- 1]) per level and axis, the two scale factors and the
 * normalisation folded into the 1x1 weights and the bias (backends/native.py checks that the
 * model's filters factor so and computes the folding), so the transform runs on the raw
 * integers.
 *
 * The packet transform is separable (every level splits every subband along both axes), so
 * an axis's J levels can run together, and an image goes through in one pass, a block row
 * (the 2^J rows of one row of latents) at a time:
 *   1. columns, streamed: each row of the input (read through row and column indices, so a
 *      tile is read in place, its wrap and reflections included) enters the J levels down
 *      the columns of its channel, which lift rows as they come; every 2^J rows the last
 *      level has the block row's 2^J rows of each channel;
 *   2. the block row: each of those rows through its J levels along the width into a small
 *      buffer in channel order, then at once the 1x1 and the compander,
 * so nothing larger than a few rows a level is kept and the subbands never go to memory
 * (audio: each channel's levels along the signal, then the 1x1 on runs of positions).
 * Loops are written so the compiler vectorises them (-O3): a row's first two lifting steps
 * read its interleaved samples (the split costs no pass of its own), a column level's four
 * steps run in one sweep along the row, the 1x1 keeps 12 sums in vector registers while
 * 16 planes stream past, and the compander's threshold search is a table lookup and two
 * comparisons. Work goes over POSIX threads in chunks of block rows (each chunk streams
 * its own rows), handed out as threads come free; each chunk writes only its own.
 *
 * Plain C99 with POSIX threads (no Python here): pip builds it with _native_encoder.c, which
 * only makes it importable, as an optional extension that backends/native.py calls through
 * ctypes; tests/test_cross_compile.py builds it for ARM with a small test program.
 */
#include "native_encoder.h"
#include "native_parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int walloc_native_abi(void) { return WALLOC_NATIVE_ABI; }

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

/* --- the column levels, streamed (images) ------------------------------------------- */

/* A stream is not periodic, so each chunk feeds its block rows HALO(J) rows of their
 * neighbours before and after (source rows modulo the run's, so the run stays periodic):
 * the latents of a block row depend on no more (4 (2^J - 1) rows to a side), so they are
 * the periodic transform's, the same sums in the same order; the halo's outputs are
 * dropped. */
#define HALO(J) ((int64_t)4 << (J))
#define MAX_J 6

/* One level's lifter on its stream of rows (n floats): slot k % 3 holds index k's even and
 * odd row while they are lifted; index i - 1's four steps finish when row 2i + 2 arrives. */
typedef struct {
    float *even[3], *odd[3];
    int64_t pushed;
} Lifter;

/* The J column levels of one channel: lifter (1 << level) - 1 + band, band the low/high
 * choice per level so far. The last level writes its index `first + b` (b in [0, blocks))
 * to rows band of `bands` (n floats each) and says so in `ready` (b, else -1); the halo's
 * outputs go to `spare` (two rows). */
typedef struct {
    Lifter lifter[(1 << MAX_J) - 1];
    int64_t J, n, first, blocks, ready;
    const Lifting *lifting;
    float *bands, *spare;
} Cascade;

static Lifter *lifter(Cascade *c, int64_t level, int64_t band) {
    return &c->lifter[((int64_t)1 << level) - 1 + band];
}

/* Where a lifter's next row goes. */
static float *next_row(const Lifter *f) {
    return (f->pushed & 1 ? f->odd : f->even)[f->pushed / 2 % 3];
}

/* The four steps that finish index i - 1 once row 2i + 2 (e1) is in: e0, o0 index i's even
 * and odd rows (→ its first two steps), ep, op index i - 1's (op keeps its final odd row,
 * which index i's last step reads), oq the final odd row of i - 2; the final rows of i - 1
 * also go to s_out and d_out. Each value the same sum as split_lift_row's, step by step. */
VECTOR_CLONES
static void lift_step(float *restrict e0, float *restrict o0, const float *restrict e1,
                      const float *restrict ep, float *restrict op, const float *restrict oq,
                      float *restrict s_out, float *restrict d_out, int64_t n,
                      const Lifting *L) {
    const float c0 = L->c[0], c1 = L->c[1], c2 = L->c[2], c3 = L->c[3];
    for (int64_t k = 0; k < n; k++) {
        const float d = o0[k] + c0 * (e0[k] + e1[k]), s = e0[k] + c1 * (op[k] + d);
        const float dp = op[k] + c2 * (ep[k] + s);
        s_out[k] = ep[k] + c3 * (oq[k] + dp);
        d_out[k] = op[k] = dp;
        o0[k] = d, e0[k] = s;
    }
}

/* A row has gone to next_row(lifter (level, band)): when it completes a step, the level's
 * index i - 1 goes on into the next level's lifters (or the block row's bands). */
static void advance(Cascade *c, int64_t level, int64_t band) {
    Lifter *f = lifter(c, level, band);
    const int64_t j = f->pushed++, n = c->n, last = level + 1 == c->J;
    if (j < 2 || j & 1) return;
    const int64_t i = j / 2 - 1, b = i - 1 - c->first;
    float *s_out = c->spare, *d_out = c->spare + n;
    if (i >= 1 && !last)
        s_out = next_row(lifter(c, level + 1, 2 * band)),
        d_out = next_row(lifter(c, level + 1, 2 * band + 1));
    else if (i >= 1 && b >= 0 && b < c->blocks)
        s_out = c->bands + 2 * band * n, d_out = s_out + n, c->ready = b;
    lift_step(f->even[i % 3], f->odd[i % 3], f->even[(i + 1) % 3], f->even[(i + 2) % 3],
              f->odd[(i + 2) % 3], f->odd[(i + 1) % 3], s_out, d_out, n, c->lifting);
    if (i >= 1 && !last) {
        advance(c, level + 1, 2 * band);
        advance(c, level + 1, 2 * band + 1);
    }
}

/* Scratch floats of one cascade: 6 rows a lifter, two spare. */
static int64_t cascade_floats(int64_t J, int64_t n) {
    return (6 * (((int64_t)1 << J) - 1) + 2) * n;
}

/* A cascade over rows of n floats whose last level keeps blocks [0, blocks) of its stream
 * after `first` (the halo's), writing them to `bands`; its slots in `scratch`. */
static void cascade_init(Cascade *c, int64_t J, int64_t n, int64_t first, int64_t blocks,
                         const Lifting *lifting, float *bands, float *scratch) {
    const int64_t lifters = ((int64_t)1 << J) - 1;
    *c = (Cascade){.J = J, .n = n, .first = first, .blocks = blocks, .ready = -1,
                   .lifting = lifting, .bands = bands, .spare = scratch + 6 * lifters * n};
    memset(scratch, 0, sizeof(float) * (size_t)cascade_floats(J, n)); /* the start's steps
                                                                          read them: finite */
    for (int64_t k = 0; k < lifters; k++)
        for (int s = 0; s < 3; s++) {
            c->lifter[k].even[s] = scratch + (6 * k + 2 * s) * n;
            c->lifter[k].odd[s] = scratch + (6 * k + 2 * s + 1) * n;
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

/* The compander's thresholds on a grid of cells a third of their closest gap or less, so a
 * window of four cells holds at most two: base[k] counts the thresholds below cell k - 2,
 * and y in cell k (give or take one: the rounding of (y - lo) / w) has the count base[k]
 * plus its two comparisons with the next thresholds (padded with NaN). Exactly the
 * binary search's count, in two loads and two comparisons that vectorise. */
typedef struct {
    double lo, inverse_width;
    int64_t cells;
    int32_t *base;
    double *padded;
} Grid;

/* The grid of n ascending thresholds t; 0, or -1 when memory runs out. No grid (cells 0)
 * where the thresholds are too few or too close for a small table: the binary search. */
static int grid_init(Grid *g, const double *t, int64_t n) {
    *g = (Grid){0};
    double gap = INFINITY;
    for (int64_t i = 1; i < n; i++) gap = t[i] - t[i - 1] < gap ? t[i] - t[i - 1] : gap;
    if (n < 2 || !(gap > 0) || (t[n - 1] - t[0]) / gap > (1 << 14)) return 0;
    const double width = gap / 3;
    g->lo = t[0], g->inverse_width = 1 / width;
    g->cells = (int64_t)((t[n - 1] - t[0]) * g->inverse_width) + 4;
    g->base = malloc(sizeof(int32_t) * (size_t)g->cells);
    g->padded = malloc(sizeof(double) * (size_t)(n + 2));
    if (!g->base || !g->padded) return -1;
    memcpy(g->padded, t, sizeof(double) * (size_t)n);
    g->padded[n] = g->padded[n + 1] = NAN; /* <= nothing, +inf included */
    for (int64_t k = 0, below = 0; k < g->cells; k++) {
        while (below < n && t[below] < g->lo + (double)(k - 2) * width) below++;
        g->base[k] = (int32_t)below;
    }
    return 0;
}

static void grid_free(Grid *g) { free(g->base); free(g->padded); }

/* The folded model: weight (planes, latent_dim), bias, the compander's thresholds (and
 * their grid). */
typedef struct {
    int64_t planes, latent_dim;
    const float *weight, *bias;
    const double *thresholds;
    int64_t n_thresholds, clip;
    Grid grid;
} Model;

/* out[i] = quantize(acc[i] + bias) for n positions, on the grid where there is one. */
VECTOR_CLONES
static void quantize_row(const float *restrict acc, float bias, const Model *mo, int64_t n,
                         int8_t *restrict out) {
    const Grid *g = &mo->grid;
    if (!g->cells) {
        for (int64_t i = 0; i < n; i++)
            out[i] = quantize(acc[i] + bias, mo->thresholds, mo->n_thresholds, mo->clip);
        return;
    }
    const double lo = g->lo, inverse = g->inverse_width, last = (double)(g->cells - 1);
    const int32_t *restrict base = g->base, clip = (int32_t)mo->clip;
    const double *restrict t = g->padded;
    for (int64_t i = 0; i < n; i++) {
        const float y = acc[i] + bias;
        const double v = y, at = (v - lo) * inverse;
        const int32_t b = base[(int32_t)(at >= 0 ? at < last ? at : last : 0)]; /* NaN: 0 */
        out[i] = (int8_t)(b + (t[b] <= v) + (t[b + 1] <= v) - clip);
    }
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

/* --- the J levels along the width, then the 1x1 ------------------------------------- */

/* A row of plane p (cols floats) through J levels along the width → its subbands in
 * channel order (c * 4^J + width and height bits interleaved per level, width first),
 * planes of `stride` >= cols / 2^J floats (a multiple of PB, so the 1x1 runs in whole
 * blocks); then the 1x1 writes latents (latent_dim, out_stride) at edge + position. Audio
 * uses the same levels on each channel's samples at[0 .. cols) of `audio` (interleaved
 * int16), into the shared subbands `sub` (c * 2^J + band, stride cols / 2^J). */
typedef struct {
    const int16_t *audio;
    const int64_t *at;
    int64_t planes, cols, J, stride;
    const Lifting *lifting;
    const Model *model;
    int8_t *out;              /* (latent_dim, out_stride) */
    int64_t out_stride, edge;
    float *sub;               /* audio: the subbands, shared by the threads */
} Rows;

/* x[i] = in[i * C], int16: a constant stride for the usual channel counts, so it
 * vectorises (to_floats does the same for uint8). */
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

/* --- images: the whole encoder, block row by block row --------------------------------- */

/* The run of rows x cols pixels (channels bytes each) whose pixel (r, x) is the source's
 * (row_of[r], col_of[x]); the width levels and the 1x1 as `width` says (its out the
 * latents (latent_dim, rows / 2^J, cols / 2^J)). */
typedef struct {
    const uint8_t *raw;
    int64_t raw_cols;
    const int64_t *row_of, *col_of;
    int64_t rows, channels;
    Rows width;
} Image;

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

/* Scratch floats of a thread encoding image chunks: a cascade a channel, the block row's
 * bands, two rows for the width levels, the subbands, the 1x1's sums. */
static int64_t image_floats(const Image *im) {
    const Rows *w = &im->width;
    const int64_t C = im->channels, n = w->cols;
    return C * cascade_floats(w->J, n) + (C << w->J) * n + 2 * n +
           w->model->planes * w->stride + w->model->latent_dim * SPAN;
}

/* A chunk, block rows [begin, end): their rows and the halo's through the column cascades,
 * and each block row, as it completes, through the width levels and the 1x1. */
static int image_rows(void *ctx, int64_t begin, int64_t end, float *scratch) {
    const Image *im = ctx;
    const Rows *w = &im->width;
    const int64_t rows = im->rows, C = im->channels, n = w->cols, J = w->J, B = (int64_t)1 << J;
    const int64_t halo = HALO(J), blocks_w = n >> J;
    Cascade *cc = malloc(sizeof(Cascade) * (size_t)C);
    float *bands = scratch + C * cascade_floats(J, n), *rows_w = bands + C * B * n;
    float *buffer[2] = {rows_w, rows_w + n}, *sub = rows_w + 2 * n;
    float *acc = sub + w->model->planes * w->stride;
    if (!cc) return -1;
    for (int64_t ch = 0; ch < C; ch++)
        cascade_init(&cc[ch], J, n, halo >> J, end - begin, w->lifting, bands + ch * B * n,
                     scratch + ch * cascade_floats(J, n));
    if (w->stride > blocks_w) /* the padding the 1x1's blocks read: zeros, never written */
        for (int64_t k = 0; k < w->model->planes; k++)
            memset(sub + k * w->stride + blocks_w, 0,
                   sizeof(float) * (size_t)(w->stride - blocks_w));
    const int run = is_run(im->col_of, n);
    for (int64_t r = begin * B - halo; r < end * B + halo; r++) {
        const uint8_t *in = im->raw + im->row_of[(r % rows + rows) % rows] * im->raw_cols * C;
        for (int64_t ch = 0; ch < C; ch++) {
            float *x = next_row(lifter(&cc[ch], 0, 0));
            if (run) to_floats(x, in + im->col_of[0] * C + ch, n, C);
            else for (int64_t i = 0; i < n; i++) x[i] = in[im->col_of[i] * C + ch];
            advance(&cc[ch], 0, 0);
        }
        const int64_t b = cc[0].ready;
        if (b < 0) continue;
        for (int64_t ch = 0; ch < C; ch++) cc[ch].ready = -1;
        for (int64_t p = 0; p < C * B; p++) width_levels(w, bands + p * n, p, buffer, sub);
        project(w->model, sub, w->stride, blocks_w, w->out + (begin + b) * blocks_w,
                w->out_stride, acc);
    }
    free(cc);
    return 0;
}

/* Audio, a work item a channel: its samples at[0 .. cols) as floats, through the J levels
 * into the shared subbands c->sub. Scratch: 2 cols floats. */
static int audio_channels(void *ctx, int64_t begin, int64_t end, float *scratch) {
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
    return 0;
}

/* Audio, a work item SPAN positions: their latents from c->sub. Scratch: as project. */
static int audio_spans(void *ctx, int64_t begin, int64_t end, float *acc) {
    const Rows *c = ctx;
    const int64_t w = c->cols >> c->J;
    for (int64_t item = begin; item < end; item++) {
        const int64_t q0 = item * SPAN, n = q0 + SPAN < w ? SPAN : w - q0;
        project(c->model, c->sub + q0, c->stride, n, c->out + c->edge + q0, c->out_stride,
                acc);
    }
    return 0;
}

/* --- the whole encoder --------------------------------------------------------------- */

int walloc_native_quantize(const float *y, int64_t n, const double *thresholds,
                           int64_t n_thresholds, int64_t clip, int8_t *out) {
    Model model = {0, 0, NULL, NULL, thresholds, n_thresholds, clip, {0}};
    const int status = grid_init(&model.grid, thresholds, n_thresholds);
    if (!status) quantize_row(y, 0.0f, &model, n, out);
    grid_free(&model.grid);
    return status;
}

int walloc_native_encode_image(const uint8_t *raw, int64_t raw_cols, const int64_t *row_of,
                               const int64_t *col_of, int64_t rows, int64_t cols,
                               int64_t channels, int64_t J, const float *lifting,
                               const float *weight, const float *bias, int64_t latent_dim,
                               const double *thresholds, int64_t n_thresholds, int64_t clip,
                               int8_t *out, int threads) {
    if (J < 1 || J > MAX_J) return -2;
    const Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}};
    Model model = {channels << (2 * J), latent_dim, weight, bias, thresholds, n_thresholds,
                   clip, {0}};
    const int64_t rows_out = rows >> J, w = cols >> J, stride = (w + PB - 1) / PB * PB;
    Image im = {raw, raw_cols, row_of, col_of, rows, channels,
                {NULL, NULL, channels << J, cols, J, stride, &steps, &model, out,
                 rows_out * w, 0, NULL}};
    int status = grid_init(&model.grid, thresholds, n_thresholds) ||
                 walloc_parallel(image_rows, &im, rows_out, walloc_chunk(rows_out, threads, 2),
                                 threads, image_floats(&im)) ? -1 : 0;
    grid_free(&model.grid);
    return status;
}

int walloc_native_encode_audio(const int16_t *raw, const int64_t *at, int64_t samples,
                               int64_t channels, int64_t J, const float *lifting,
                               const float *weight, const float *bias, int64_t latent_dim,
                               const double *thresholds, int64_t n_thresholds, int64_t clip,
                               int8_t *out, int threads) {
    const Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}};
    Model model = {channels << J, latent_dim, weight, bias, thresholds, n_thresholds, clip,
                   {0}};
    const int64_t w = samples >> J, stride = w + 2;
    float *sub = malloc(sizeof(float) * (size_t)(model.planes * w + 1));
    Rows rp = {raw, at, channels, samples, J, w, &steps, &model, out, stride, 1, sub};
    int status = !sub || grid_init(&model.grid, thresholds, n_thresholds) ||
                 walloc_parallel(audio_channels, &rp, channels, 1, threads, 2 * samples) ||
                 walloc_parallel(audio_spans, &rp, (w + SPAN - 1) / SPAN, 1, threads,
                                 latent_dim * SPAN) ? -1 : 0;
    free(sub);
    grid_free(&model.grid);
    for (int64_t l = 0; l < latent_dim && !status; l++) /* the zero padding's latents */
        out[l * stride] = out[l * stride + stride - 1] =
            quantize(bias[l], thresholds, n_thresholds, clip);
    return status;
}
