/* The fixed-point core: the sensor encoder of native_encoder.c in integers only, for devices
 * without an FPU (and SIMD lanes of integers). Same transform and streaming
 * (native_transform.h); backends/fixed.py folds the model into the integers below and proves
 * that none of them overflows.
 *
 * Scaling and rounding (every shift arithmetic, every rounding a floor unless it says so):
 *   input     int32 x = (v - offset) << F: pixels centred on 128, PCM as it is; F is the
 *             largest shift that keeps every lifting value below 2^30 in magnitude (its
 *             worst case, the L1 norm of the transform up to that step, times the input's);
 *   lifting   the four steps v += STEP(c, a + b), c = round(c_real 2^30) in int32 and
 *             STEP = (c (a + b) + 2^29) >> 30 in int64 (round half up);
 *   subbands  each plane k splits into two int16: hi = x >> sh_k (sh_k: the smallest shift
 *             that fits its worst case in 15 bits) and the next bits lo = (x >> d_k) & mask_k
 *             (lob_k = sh_k - d_k <= 8 bits, so lo >= 0);
 *   the 1x1   int16 x int16 -> int32 products in two sums per latent: A = sum w_hi hi
 *             (wrapping modulo 2^32: its partial sums may overflow, its total cannot) and
 *             E = sum (w_lo hi + w_r lo) (never overflows); the pre-activation, scaled by
 *             2^G, is acc = A + (E >> lo_shift) + bias; w_hi + w_lo 2^-lo_shift is the real
 *             weight to 15 + lo_shift bits;
 *   compander acc against the int32 thresholds ceil(t_k 2^G): the latent is the count of
 *             thresholds <= acc, less clip (a table lookup and two comparisons, as the float
 *             core's grid, on unsigned keys acc ^ 2^31).
 * Plain C99 with POSIX threads; built into the same extension as native_encoder.c. */
#include "native_encoder.h"
#include "native_parallel.h"

#include <stdlib.h>
#include <string.h>

/* --- the 1x1 encoder and the compander, in integers ------------------------------------ */

#define SIGN 0x80000000u /* acc ^ SIGN: the unsigned key that sorts as the signed acc */

/* The compander's table: cells of 2^shift keys, at most a third of the closest gap between
 * thresholds, so that base[k] (the count of thresholds below the start of cell k - 1) and
 * two comparisons count the thresholds <= a key of cell k. No table (cells 0) where the
 * thresholds are too close or span too much: a binary search. */
typedef struct {
    uint32_t lo;
    int shift;
    int64_t cells;
    int32_t *base;
    uint32_t *keys; /* the thresholds as keys, two of UINT32_MAX after them */
    int64_t n;
} Table;

static int table_init(Table *g, const int32_t *t, int64_t n) {
    *g = (Table){0};
    g->n = n;
    g->keys = malloc(sizeof(uint32_t) * (size_t)(n + 2));
    if (!g->keys) return -1;
    for (int64_t i = 0; i < n; i++) g->keys[i] = (uint32_t)t[i] ^ SIGN;
    g->keys[n] = g->keys[n + 1] = UINT32_MAX; /* above every key: acc < 2^31 - 1 (fold) */
    uint32_t gap = UINT32_MAX;
    for (int64_t i = 1; i < n; i++)
        gap = g->keys[i] - g->keys[i - 1] < gap ? g->keys[i] - g->keys[i - 1] : gap;
    if (n < 2 || gap < 3) return 0;
    int shift = 0;
    while (shift < 31 && ((uint64_t)3 << (shift + 1)) <= gap) shift++;
    const int64_t cells = ((int64_t)(g->keys[n - 1] - g->keys[0]) >> shift) + 3;
    if (cells > (1 << 16)) return 0;
    g->base = malloc(sizeof(int32_t) * (size_t)cells);
    if (!g->base) return -1;
    g->lo = g->keys[0], g->shift = shift, g->cells = cells;
    for (int64_t k = 0, below = 0; k < cells; k++) {
        const int64_t start = (int64_t)g->lo + (k - 1) * ((int64_t)1 << shift);
        while (below < n && (int64_t)g->keys[below] < start) below++;
        g->base[k] = (int32_t)below;
    }
    return 0;
}

static void table_free(Table *g) { free(g->base); free(g->keys); }

/* The latent of key: the count of thresholds <= it, less clip. */
static int8_t quantize_key(uint32_t key, const Table *g, int64_t clip) {
    if (!g->cells) {
        int64_t lo = 0, hi = g->n;
        while (lo < hi) {
            const int64_t mid = (lo + hi) / 2;
            if (g->keys[mid] <= key) lo = mid + 1; else hi = mid;
        }
        return (int8_t)(lo - clip);
    }
    int64_t cell = key < g->lo ? 0 : (int64_t)((key - g->lo) >> g->shift);
    cell = cell < g->cells ? cell : g->cells - 1;
    const int32_t b = g->base[cell];
    return (int8_t)(b + (g->keys[b] <= key) + (g->keys[b + 1] <= key) - clip);
}

/* The folded model in integers: weight (planes, 3, latent_pad) as w_hi, w_lo, w_r; shifts
 * (planes, 2) as sh, d; bias (latent_dim); the compander's table. */
typedef struct {
    int64_t planes, latent_dim, latent_pad;
    const int16_t *weight; /* (planes, 3, latent_pad) */
    const int32_t *shifts, *bias;
    int lo_shift;
    int64_t clip;
    Table table;
} Model;

/* The latents of n accumulators (the two sums and the bias, as the file's comment says);
 * the table's lookup vectorises (a gather and two comparisons). */
VECTOR_CLONES
static void quantize_row(const uint32_t *restrict hi, const int32_t *restrict lo,
                         int lo_shift, int32_t bias, const Table *g, int64_t clip, int64_t n,
                         int8_t *restrict out) {
    if (!g->cells) {
        for (int64_t i = 0; i < n; i++)
            out[i] = quantize_key((hi[i] + (uint32_t)(lo[i] >> lo_shift) + (uint32_t)bias) ^
                                  SIGN, g, clip);
        return;
    }
    const uint32_t start = g->lo, last = (uint32_t)(g->cells - 1);
    const int shift = g->shift;
    const int32_t *restrict base = g->base, c = (int32_t)clip;
    const uint32_t *restrict keys = g->keys;
    for (int64_t i = 0; i < n; i++) {
        const uint32_t key = (hi[i] + (uint32_t)(lo[i] >> lo_shift) + (uint32_t)bias) ^ SIGN;
        uint32_t cell = key < start ? 0 : (key - start) >> shift;
        cell = cell < last ? cell : last;
        const int32_t b = base[cell];
        out[i] = (int8_t)(b + (keys[b] <= key) + (keys[b + 1] <= key) - c);
    }
}

/* The 1x1 on SPAN positions at a time: first each plane's two int16 (hi, lo) for the span,
 * then blocks of LB latents at PB positions stay in vector registers (16 int32: one AVX-512
 * register, two AVX2 ones) while KB planes pass. */
#define LB 6
#define PB 16
#define KB 16
#define SPAN 256
typedef int32_t vi16 __attribute__((vector_size(64)));
typedef uint32_t vu16 __attribute__((vector_size(64)));
typedef int16_t vh16 __attribute__((vector_size(32)));

/* Plane k's n values of x as its two int16, hi = x >> sh and lo = (x >> d) & mask. */
VECTOR_CLONES
static void split_plane(const int32_t *restrict x, int64_t n, int32_t sh, int32_t d,
                        int16_t *restrict hi, int16_t *restrict lo) {
    const int32_t mask = (int32_t)(((uint32_t)1 << (sh - d)) - 1);
    for (int64_t i = 0; i < n; i++) {
        hi[i] = (int16_t)(x[i] >> sh);
        lo[i] = (int16_t)((x[i] >> d) & mask);
    }
}

VECTOR_CLONES
static void project_block(const int16_t *top, const int16_t *low, const Model *mo, int64_t l0,
                          int64_t k0, int64_t k1, uint32_t *restrict hi,
                          int32_t *restrict lo) {
    const int64_t L = mo->latent_pad;
    vu16 a[LB];
    vi16 e[LB];
    for (int l = 0; l < LB; l++) {
        memcpy(&a[l], hi + l * SPAN, sizeof a[l]);
        memcpy(&e[l], lo + l * SPAN, sizeof e[l]);
    }
    for (int64_t k = k0; k < k1; k++) {
        const int16_t *w = mo->weight + 3 * k * L + l0;
        vh16 t16, r16;
        memcpy(&t16, top + k * SPAN, sizeof t16);
        memcpy(&r16, low + k * SPAN, sizeof r16);
        const vi16 t = __builtin_convertvector(t16, vi16), r = __builtin_convertvector(r16, vi16);
        for (int l = 0; l < LB; l++) {
            a[l] += (uint32_t)w[l] * (vu16)t;
            e[l] += (int32_t)w[L + l] * t + (int32_t)w[2 * L + l] * r;
        }
    }
    for (int l = 0; l < LB; l++) {
        memcpy(hi + l * SPAN, &a[l], sizeof a[l]);
        memcpy(lo + l * SPAN, &e[l], sizeof e[l]);
    }
}

/* Latents of positions 0 .. n - 1 of x (planes, stride) → out[l * out_stride + i]; acc:
 * ACC_SAMPLES(mo) int32 of scratch (the two sums, then each plane's two int16). The 1x1
 * runs in whole blocks: the last block's positions past n read zeros, and the weights
 * are padded to whole blocks of latents (their sums are not read). */
static void project(const Model *mo, const int32_t *x, int64_t stride, int64_t n, int8_t *out,
                    int64_t out_stride, int32_t *acc) {
    const int64_t L = mo->latent_pad, P = mo->planes;
    uint32_t *hi = (uint32_t *)acc;
    int32_t *lo = acc + L * SPAN;
    int16_t *top = (int16_t *)(lo + L * SPAN), *low = top + P * SPAN;
    for (int64_t q0 = 0; q0 < n; q0 += SPAN) {
        const int64_t span = q0 + SPAN < n ? SPAN : n - q0, whole = (span + PB - 1) / PB * PB;
        memset(acc, 0, sizeof(int32_t) * (size_t)(2 * L * SPAN));
        for (int64_t k = 0; k < P; k++) {
            split_plane(x + k * stride + q0, span, mo->shifts[2 * k], mo->shifts[2 * k + 1],
                        top + k * SPAN, low + k * SPAN);
            memset(top + k * SPAN + span, 0, sizeof(int16_t) * (size_t)(whole - span));
            memset(low + k * SPAN + span, 0, sizeof(int16_t) * (size_t)(whole - span));
        }
        for (int64_t k0 = 0; k0 < P; k0 += KB)
            for (int64_t l0 = 0; l0 < L; l0 += LB)
                for (int64_t i0 = 0; i0 < whole; i0 += PB)
                    project_block(top + i0, low + i0, mo, l0, k0, k0 + KB < P ? k0 + KB : P,
                                  hi + l0 * SPAN + i0, lo + l0 * SPAN + i0);
        for (int64_t l = 0; l < mo->latent_dim; l++)
            quantize_row(hi + l * SPAN, lo + l * SPAN, mo->lo_shift, mo->bias[l], &mo->table,
                         mo->clip, span, out + l * out_stride + q0);
    }
}

/* The model's weights padded with zeros to whole blocks of LB latents (mo->latent_pad). */
static int16_t *pad_weights(Model *mo, const int16_t *weight) {
    const int64_t L = mo->latent_dim, pad = (L + LB - 1) / LB * LB;
    int16_t *w = calloc((size_t)(3 * mo->planes * pad), sizeof(int16_t));
    for (int64_t k = 0; w && k < 3 * mo->planes; k++)
        memcpy(w + k * pad, weight + k * L, sizeof(int16_t) * (size_t)L);
    mo->weight = w, mo->latent_pad = pad;
    return w;
}

/* --- the transform (native_transform.h), in int32 -------------------------------------- */

typedef int32_t sample;
typedef int32_t coef;
#define STEP(c, p) ((int32_t)(((int64_t)(c) * (p) + ((int64_t)1 << 29)) >> 30))
#define LOAD(L, v) (((int32_t)(v) - (L)->offset) * (L)->scale)
#define ACC_SAMPLES(model) ((2 * (model)->latent_pad + (model)->planes) * SPAN)
#include "native_transform.h"

/* --- the whole encoder --------------------------------------------------------------- */

/* scaling: the four Q30 lifting constants, the input's offset and shift F, lo_shift. */
static Lifting lifting_of(const int32_t *scaling) {
    return (Lifting){{scaling[0], scaling[1], scaling[2], scaling[3]}, scaling[4],
                     (int32_t)1 << scaling[5]};
}

int walloc_fixed_quantize(const int32_t *acc, int64_t n, const int32_t *thresholds,
                          int64_t n_thresholds, int64_t clip, int8_t *out) {
    Table table;
    const int status = table_init(&table, thresholds, n_thresholds);
    for (int64_t i = 0; i < n && !status; i++)
        out[i] = quantize_key((uint32_t)acc[i] ^ SIGN, &table, clip);
    table_free(&table);
    return status;
}

int walloc_fixed_encode_image(const uint8_t *raw, int64_t raw_cols, const int64_t *row_of,
                              const int64_t *col_of, int64_t rows, int64_t cols,
                              int64_t channels, int64_t J, const int32_t *scaling,
                              const int16_t *weight, const int32_t *shifts,
                              const int32_t *bias, int64_t latent_dim,
                              const int32_t *thresholds, int64_t n_thresholds, int64_t clip,
                              int8_t *out, int threads) {
    if (J < 1 || J > MAX_J) return -2;
    const Lifting steps = lifting_of(scaling);
    Model model = {channels << (2 * J), latent_dim, 0, NULL, shifts, bias, scaling[6], clip,
                   {0}};
    int16_t *padded = pad_weights(&model, weight);
    const int64_t rows_out = rows >> J, w = cols >> J, stride = (w + PB - 1) / PB * PB;
    Image im = {raw, raw_cols, row_of, col_of, rows, channels,
                {NULL, NULL, channels << J, cols, J, stride, &steps, &model, out,
                 rows_out * w, 0, NULL}};
    int status = !padded || table_init(&model.table, thresholds, n_thresholds) ||
                 walloc_parallel(image_rows, &im, rows_out, walloc_chunk(rows_out, threads, 2),
                                 threads, image_samples(&im)) ? -1 : 0;
    table_free(&model.table);
    free(padded);
    return status;
}

int walloc_fixed_encode_audio(const int16_t *raw, const int64_t *at, int64_t samples,
                              int64_t channels, int64_t J, const int32_t *scaling,
                              const int16_t *weight, const int32_t *shifts,
                              const int32_t *bias, int64_t latent_dim,
                              const int32_t *thresholds, int64_t n_thresholds, int64_t clip,
                              int8_t *out, int threads) {
    const Lifting steps = lifting_of(scaling);
    Model model = {channels << J, latent_dim, 0, NULL, shifts, bias, scaling[6], clip, {0}};
    int16_t *padded = pad_weights(&model, weight);
    const int64_t w = samples >> J, stride = w + 2;
    int32_t *sub = malloc(sizeof(int32_t) * (size_t)(model.planes * w + 1));
    Rows rp = {raw, at, channels, samples, J, w, &steps, &model, out, stride, 1, sub};
    int status = !sub || !padded || table_init(&model.table, thresholds, n_thresholds) ||
                 walloc_parallel(audio_channels, &rp, channels, 1, threads, 2 * samples) ||
                 walloc_parallel(audio_spans, &rp, (w + SPAN - 1) / SPAN, 1, threads,
                                 ACC_SAMPLES(&model)) ? -1 : 0;
    for (int64_t l = 0; l < latent_dim && !status; l++) /* the zero padding's latents */
        out[l * stride] = out[l * stride + stride - 1] =
            quantize_key((uint32_t)bias[l] ^ SIGN, &model.table, clip);
    free(sub);
    free(padded);
    table_free(&model.table);
    return status;
}
