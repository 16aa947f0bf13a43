/* The transform both C cores share (included once by each, not compiled on its own): the
 * packet transform by lifting, streamed a block row at a time, and the work items that feed
 * it and hand each block row's subbands to the core's 1x1 (see native_encoder.c for the
 * design). The includer defines first:
 *   sample          the numbers lifted: float (native_encoder.c) or int32_t (native_fixed.c);
 *   coef            a lifting step's constant, in the same way;
 *   STEP(c, p)      a step's product c * p (the fixed core rounds it in integers);
 *   LOAD(L, v)      an input value (uint8 pixel or int16 sample) as a sample;
 *   ACC_SAMPLES(m)  the scratch samples project needs for model m;
 *   Model, project(model, x, stride, n, out, out_stride, acc) and PB, SPAN: its 1x1.
 * Samples are 4 bytes (walloc_parallel's scratch is counted in floats). */
#ifndef WALLOC_NATIVE_TRANSFORM_H
#define WALLOC_NATIVE_TRANSFORM_H

#include <string.h>

#include "native_parallel.h"

/* The four lifting steps: odd += c0 (even + next even), even += c1 (previous odd + odd),
 * odd += c2 (…), even += c3 (…), indices periodic. */
typedef struct {
    coef c[4];
    sample offset, scale; /* the fixed core's input: (v - offset) * scale (see LOAD) */
} Lifting;

/* --- one DWT level, by lifting ------------------------------------------------------- */

/* One level on a row y of 2m samples (periodic): its even samples lifted into s, its odd
 * ones into d (m each), a pass a step. The first two steps read y, so the split costs no
 * pass of its own. */
VECTOR_CLONES
static void split_lift_passes(const sample *restrict y, sample *restrict s,
                              sample *restrict d, int64_t m, const Lifting *L) {
    const coef c0 = L->c[0], c1 = L->c[1], c2 = L->c[2], c3 = L->c[3];
    for (int64_t i = 0; i < m - 1; i++) d[i] = y[2 * i + 1] + STEP(c0, y[2 * i] + y[2 * i + 2]);
    d[m - 1] = y[2 * m - 1] + STEP(c0, y[2 * m - 2] + y[0]);
    s[0] = y[0] + STEP(c1, d[m - 1] + d[0]);
    for (int64_t i = 1; i < m; i++) s[i] = y[2 * i] + STEP(c1, d[i - 1] + d[i]);
    for (int64_t i = 0; i < m - 1; i++) d[i] += STEP(c2, s[i] + s[i + 1]);
    d[m - 1] += STEP(c2, s[m - 1] + s[0]);
    s[0] += STEP(c3, d[m - 1] + d[0]);
    for (int64_t i = 1; i < m; i++) s[i] += STEP(c3, d[i - 1] + d[i]);
}

/* split_lift_passes, or the includer's faster form of it (SPLIT_LIFT_ROW_FAST: the same
 * values) where it takes the row. */
static void split_lift_row(const sample *restrict y, sample *restrict s, sample *restrict d,
                           int64_t m, const Lifting *L) {
#ifdef SPLIT_LIFT_ROW_FAST
    if (SPLIT_LIFT_ROW_FAST(y, s, d, m, L)) return;
#endif
    split_lift_passes(y, s, d, m, L);
}

/* --- the column levels, streamed (images) ------------------------------------------- */

/* A stream is not periodic, so each chunk feeds its block rows HALO(J) rows of their
 * neighbours before and after (source rows modulo the run's, so the run stays periodic):
 * the latents of a block row depend on no more (4 (2^J - 1) rows to a side), so they are
 * the periodic transform's, the same sums in the same order; the halo's outputs are
 * dropped. */
#define HALO(J) ((int64_t)4 << (J))
#define MAX_J 6

/* Samples from one lifter row to the next: a row and 80 more. Rows a multiple of 4 KiB
 * apart (2048 floats) make each load of a step look, to the CPU, like a load of the store
 * just before it to another row (the same address bits 0-11: "4K aliasing"), and wait for
 * it; 320 bytes more spreads a cascade's rows over the page (1.2x at 2048 RGB pixels). */
static int64_t pitch(int64_t n) { return n + 80; }

/* One level's lifter on its stream of rows (n samples): slot k % 3 holds index k's even and
 * odd row while they are lifted; index i - 1's four steps finish when row 2i + 2 arrives. */
typedef struct {
    sample *even[3], *odd[3];
    int64_t pushed;
} Lifter;

/* The J column levels of one channel: lifter (1 << level) - 1 + band, band the low/high
 * choice per level so far. The last level writes its index `first + b` (b in [0, blocks))
 * to rows band of `bands` (n samples each) and says so in `ready` (b, else -1); the halo's
 * outputs go to `spare` (two rows). */
typedef struct {
    Lifter lifter[(1 << MAX_J) - 1];
    int64_t J, n, first, blocks, ready;
    const Lifting *lifting;
    sample *bands, *spare;
} Cascade;

static Lifter *lifter(Cascade *c, int64_t level, int64_t band) {
    return &c->lifter[((int64_t)1 << level) - 1 + band];
}

/* Where a lifter's next row goes. */
static sample *next_row(const Lifter *f) {
    return (f->pushed & 1 ? f->odd : f->even)[f->pushed / 2 % 3];
}

/* The four steps that finish index i - 1 once row 2i + 2 (e1) is in: e0, o0 index i's even
 * and odd rows (→ its first two steps), ep, op index i - 1's (op keeps its final odd row,
 * which index i's last step reads), oq the final odd row of i - 2; the final rows of i - 1
 * also go to s_out and d_out. Each value the same sum as split_lift_row's, step by step. */
VECTOR_CLONES
static void lift_step(sample *restrict e0, sample *restrict o0, const sample *restrict e1,
                      const sample *restrict ep, sample *restrict op, const sample *restrict oq,
                      sample *restrict s_out, sample *restrict d_out, int64_t n,
                      const Lifting *L) {
    const coef c0 = L->c[0], c1 = L->c[1], c2 = L->c[2], c3 = L->c[3];
    for (int64_t k = 0; k < n; k++) {
        const sample d = o0[k] + STEP(c0, e0[k] + e1[k]), s = e0[k] + STEP(c1, op[k] + d);
        const sample dp = op[k] + STEP(c2, ep[k] + s);
        s_out[k] = ep[k] + STEP(c3, oq[k] + dp);
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
    sample *s_out = c->spare, *d_out = c->spare + pitch(n);
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

/* Scratch samples of one cascade: 6 rows a lifter, two spare, each of pitch(n). */
static int64_t cascade_samples(int64_t J, int64_t n) {
    return (6 * (((int64_t)1 << J) - 1) + 2) * pitch(n);
}

/* A cascade over rows of n samples whose last level keeps blocks [0, blocks) of its stream
 * after `first` (the halo's), writing them to `bands`; its slots in `scratch`. */
static void cascade_init(Cascade *c, int64_t J, int64_t n, int64_t first, int64_t blocks,
                         const Lifting *lifting, sample *bands, sample *scratch) {
    const int64_t lifters = ((int64_t)1 << J) - 1;
    *c = (Cascade){.J = J, .n = n, .first = first, .blocks = blocks, .ready = -1,
                   .lifting = lifting, .bands = bands,
                   .spare = scratch + 6 * lifters * pitch(n)};
    memset(scratch, 0, sizeof(sample) * (size_t)cascade_samples(J, n)); /* the start's steps
                                                                          read them: finite */
    for (int64_t k = 0; k < lifters; k++)
        for (int s = 0; s < 3; s++) {
            c->lifter[k].even[s] = scratch + (6 * k + 2 * s) * pitch(n);
            c->lifter[k].odd[s] = scratch + (6 * k + 2 * s + 1) * pitch(n);
        }
}

/* --- the J levels along the width, then the 1x1 ------------------------------------- */

/* A row of plane p (cols samples) through J levels along the width → its subbands in
 * channel order (c * 4^J + width and height bits interleaved per level, width first),
 * planes of `stride` >= cols / 2^J samples (a multiple of PB, so the 1x1 runs in whole
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
    sample *sub;               /* audio: the subbands, shared by the threads */
} Rows;

/* x[i] = in[i * C], int16: a constant stride for the usual channel counts, so it
 * vectorises (to_samples does the same for uint8). */
VECTOR_CLONES
static void pcm_to_samples(sample *restrict x, const int16_t *restrict in, int64_t n,
                           int64_t C, const Lifting *L) {
    if (C == 2)
        for (int64_t i = 0; i < n; i++) x[i] = LOAD(L, in[2 * i]);
    else if (C == 1)
        for (int64_t i = 0; i < n; i++) x[i] = LOAD(L, in[i]);
    else
        for (int64_t i = 0; i < n; i++) x[i] = LOAD(L, in[i * C]);
}

/* Bits of v spread to the even bit positions (bit i to bit 2i). */
static int64_t spread(int64_t v) {
    int64_t out = 0;
    for (int i = 0; v >> i; i++) out |= ((v >> i) & 1) << (2 * i);
    return out;
}

/* Plane p's row (cols samples) through the J levels along the width, into its subbands of
 * sub (planes of c->stride samples): subband rw is channel first + rw (audio: plane p is
 * channel c) or first + 2 spread(rw) (images: p = (c, height band h)). */
static void width_levels(const Rows *c, const sample *row, int64_t p, sample *buffer[2],
                         sample *sub) {
    const int64_t J = c->J, bands = (int64_t)1 << J;
    const int64_t first = c->audio ? p * bands : (p / bands) * bands * bands + spread(p % bands);
    for (int64_t level = 0, m = c->cols / 2; level < J; level++, m /= 2) {
        const sample *from = level ? buffer[level & 1] : row;
        for (int64_t band = 0; band < (int64_t)1 << level; band++) {
            sample *s, *d;
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

/* The rising runs of idx[0 .. n) (a run's samples are read at a constant stride, so
 * vectorised; the input's edges, which wrap or reflect, are runs of one or a few): their
 * starts in starts[0 .. runs), and n in starts[runs]; returns runs. */
static int64_t runs_of(const int64_t *idx, int64_t n, int64_t *starts) {
    int64_t runs = 0;
    for (int64_t i = 0; i < n; i++)
        if (!i || idx[i] != idx[i - 1] + 1) starts[runs++] = i;
    starts[runs] = n;
    return runs;
}

/* x[i] = in[i * C]: a constant stride for the usual channel counts, so it vectorises. */
VECTOR_CLONES
static void to_samples(sample *restrict x, const uint8_t *restrict in, int64_t n, int64_t C,
                       const Lifting *L) {
    if (C == 3)
        for (int64_t i = 0; i < n; i++) x[i] = LOAD(L, in[3 * i]);
    else if (C == 1)
        for (int64_t i = 0; i < n; i++) x[i] = LOAD(L, in[i]);
    else
        for (int64_t i = 0; i < n; i++) x[i] = LOAD(L, in[i * C]);
}

/* Scratch samples of a thread encoding image chunks: a cascade a channel, the block row's
 * bands, two rows for the width levels, the subbands, the 1x1's sums. */
static int64_t image_samples(const Image *im) {
    const Rows *w = &im->width;
    const int64_t C = im->channels, n = w->cols;
    return C * cascade_samples(w->J, n) + (C << w->J) * n + 2 * n +
           w->model->planes * w->stride + ACC_SAMPLES(w->model);
}

/* A chunk, block rows [begin, end): their rows and the halo's through the column cascades,
 * and each block row, as it completes, through the width levels and the 1x1. */
static int image_rows(void *ctx, int64_t begin, int64_t end, float *floats) {
    sample *scratch = (sample *)floats; /* the same 4 bytes */
    const Image *im = ctx;
    const Rows *w = &im->width;
    const int64_t rows = im->rows, C = im->channels, n = w->cols, J = w->J, B = (int64_t)1 << J;
    const int64_t halo = HALO(J), blocks_w = n >> J;
    Cascade *cc = malloc(sizeof(Cascade) * (size_t)C);
    int64_t *starts = malloc(sizeof(int64_t) * (size_t)(n + 1));
    sample *bands = scratch + C * cascade_samples(J, n), *rows_w = bands + C * B * n;
    sample *buffer[2] = {rows_w, rows_w + n}, *sub = rows_w + 2 * n;
    sample *acc = sub + w->model->planes * w->stride;
    if (!cc || !starts) {
        free(cc);
        free(starts);
        return -1;
    }
    for (int64_t ch = 0; ch < C; ch++)
        cascade_init(&cc[ch], J, n, halo >> J, end - begin, w->lifting, bands + ch * B * n,
                     scratch + ch * cascade_samples(J, n));
    if (w->stride > blocks_w) /* the padding the 1x1's blocks read: zeros, never written */
        for (int64_t k = 0; k < w->model->planes; k++)
            memset(sub + k * w->stride + blocks_w, 0,
                   sizeof(sample) * (size_t)(w->stride - blocks_w));
    const int64_t runs = runs_of(im->col_of, n, starts);
    for (int64_t r = begin * B - halo; r < end * B + halo; r++) {
        const uint8_t *in = im->raw + im->row_of[(r % rows + rows) % rows] * im->raw_cols * C;
        for (int64_t ch = 0; ch < C; ch++) {
            sample *x = next_row(lifter(&cc[ch], 0, 0));
            for (int64_t k = 0; k < runs; k++)
                to_samples(x + starts[k], in + im->col_of[starts[k]] * C + ch,
                           starts[k + 1] - starts[k], C, w->lifting);
            advance(&cc[ch], 0, 0);
        }
        const int64_t b = cc[0].ready;
        if (b < 0) continue;
        for (int64_t ch = 0; ch < C; ch++) cc[ch].ready = -1;
        for (int64_t p = 0; p < C * B; p++) width_levels(w, bands + p * n, p, buffer, sub);
        project(w->model, sub, w->stride, blocks_w, w->out + (begin + b) * blocks_w,
                w->out_stride, acc);
    }
    free(starts);
    free(cc);
    return 0;
}

/* Audio, a work item a channel: its samples at[0 .. cols), loaded, through the J levels
 * into the shared subbands c->sub. Scratch: 2 cols samples. */
static int audio_channels(void *ctx, int64_t begin, int64_t end, float *floats) {
    sample *scratch = (sample *)floats; /* the same 4 bytes */
    const Rows *c = ctx;
    const int64_t cols = c->cols, C = c->planes;
    sample *buffer[2] = {scratch, scratch + cols};
    int64_t *starts = malloc(sizeof(int64_t) * (size_t)(cols + 1));
    if (!starts) return -1;
    const int64_t runs = runs_of(c->at, cols, starts);
    for (int64_t p = begin; p < end; p++) {
        for (int64_t k = 0; k < runs; k++)
            pcm_to_samples(buffer[0] + starts[k], c->audio + c->at[starts[k]] * C + p,
                           starts[k + 1] - starts[k], C, c->lifting);
        width_levels(c, buffer[0], p, buffer, c->sub);
    }
    free(starts);
    return 0;
}

/* Audio, a work item SPAN positions: their latents from c->sub. Scratch: as project. */
static int audio_spans(void *ctx, int64_t begin, int64_t end, float *floats) {
    sample *acc = (sample *)floats; /* the same 4 bytes */
    const Rows *c = ctx;
    const int64_t w = c->cols >> c->J;
    for (int64_t item = begin; item < end; item++) {
        const int64_t q0 = item * SPAN, n = q0 + SPAN < w ? SPAN : w - q0;
        project(c->model, c->sub + q0, c->stride, n, c->out + c->edge + q0, c->out_stride,
                acc);
    }
    return 0;
}

#endif
