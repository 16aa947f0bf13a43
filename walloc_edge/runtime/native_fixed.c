/* The fixed-point core: the sensor encoder of native_encoder.c in integers only, for devices
 * without an FPU (and SIMD lanes of integers). Same transform and streaming
 * (native_transform.h); backends/fixed_point.py folds the model into the integers below
 * and proves that none of them overflows.
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
 * Every kernel computes the same integers (pmaddwd on x86, the compiler's vectors elsewhere),
 * so the latents are the same on every CPU. Plain C99 with POSIX threads (and x86
 * intrinsics where GCC targets x86-64 Linux); built into the same extension as
 * native_encoder.c. */
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

/* One block: hi/lo (LB rows of SPAN sums) gain the planes k0 .. k1 of pairs (rows of SPAN)
 * times the paired weights w (planes, 2, latent_pad) of latents l0 .. l0 + LB. */
typedef void (*Block)(const uint32_t *pairs, const uint32_t *w, int64_t L, int64_t k0,
                      int64_t k1, uint32_t *hi, int32_t *lo);

/* The folded model in integers: weight (from w_hi, w_lo, w_r, paired); shifts
 * (planes, 2) as sh, d; bias (latent_dim); the compander's table. */
typedef struct {
    int64_t planes, latent_dim, latent_pad;
    const uint32_t *weight; /* paired: (planes, 2, latent_pad), see pad_weights */
    const int32_t *shifts, *bias;
    int lo_shift;
    int64_t clip;
    Table table;
    Block block; /* the 1x1's kernel for this CPU */
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

/* The 1x1 on SPAN positions at a time: first each plane's two int16 for the span, paired
 * in an int32 (hi in the low half, lo in the high half), then blocks of LB latents at PB
 * positions stay in vector registers while KB planes pass. The weights are paired the same
 * way: (w_hi, 0) and (w_lo, w_r), so that each sum gains a pair's two products at once, what
 * x86's pmaddwd computes (used where the CPU has AVX-512BW or AVX2; elsewhere the same
 * integers by shifts and multiplies, vectorised by the compiler). */
#define LB 6
#define PB 16
#define KB 16
#define SPAN 256
typedef int32_t vi16 __attribute__((vector_size(64)));
typedef uint32_t vu16 __attribute__((vector_size(64)));

/* Plane k's n values of x as pairs: hi = x >> sh, lo = (x >> d) & mask. */
VECTOR_CLONES
static void split_plane(const int32_t *restrict x, int64_t n, int32_t sh, int32_t d,
                        uint32_t *restrict pairs) {
    const int32_t mask = (int32_t)(((uint32_t)1 << (sh - d)) - 1);
    for (int64_t i = 0; i < n; i++)
        pairs[i] = (uint32_t)(uint16_t)(x[i] >> sh) | (uint32_t)((x[i] >> d) & mask) << 16;
}

VECTOR_CLONES
static void block_portable(const uint32_t *pairs, const uint32_t *w, int64_t L, int64_t k0,
                           int64_t k1, uint32_t *restrict hi, int32_t *restrict lo) {
    vu16 a[LB];
    vi16 e[LB];
    for (int l = 0; l < LB; l++) {
        memcpy(&a[l], hi + l * SPAN, sizeof a[l]);
        memcpy(&e[l], lo + l * SPAN, sizeof e[l]);
    }
    for (int64_t k = k0; k < k1; k++) {
        const uint32_t *wk = w + 2 * k * L;
        vi16 in;
        memcpy(&in, pairs + k * SPAN, sizeof in);
        const vi16 top = (vi16)((vu16)in << 16) >> 16, low = in >> 16;
        for (int l = 0; l < LB; l++) {
            const int32_t w_hi = (int16_t)(wk[l] & 0xffff);
            const int32_t w_lo = (int16_t)(wk[L + l] & 0xffff), w_r = (int16_t)(wk[L + l] >> 16);
            a[l] += (uint32_t)w_hi * (vu16)top;
            e[l] += w_lo * top + w_r * low;
        }
    }
    for (int l = 0; l < LB; l++) {
        memcpy(hi + l * SPAN, &a[l], sizeof a[l]);
        memcpy(lo + l * SPAN, &e[l], sizeof e[l]);
    }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#define PMADDWD 1

__attribute__((target("avx512bw")))
static void block_avx512(const uint32_t *pairs, const uint32_t *w, int64_t L, int64_t k0,
                         int64_t k1, uint32_t *hi, int32_t *lo) {
    __m512i a[LB], e[LB];
    for (int l = 0; l < LB; l++) {
        a[l] = _mm512_loadu_si512(hi + l * SPAN);
        e[l] = _mm512_loadu_si512(lo + l * SPAN);
    }
    for (int64_t k = k0; k < k1; k++) {
        const uint32_t *wk = w + 2 * k * L;
        const __m512i in = _mm512_loadu_si512(pairs + k * SPAN);
        for (int l = 0; l < LB; l++) {
            a[l] = _mm512_add_epi32(a[l], _mm512_madd_epi16(in, _mm512_set1_epi32((int)wk[l])));
            e[l] = _mm512_add_epi32(e[l],
                                    _mm512_madd_epi16(in, _mm512_set1_epi32((int)wk[L + l])));
        }
    }
    for (int l = 0; l < LB; l++) {
        _mm512_storeu_si512(hi + l * SPAN, a[l]);
        _mm512_storeu_si512(lo + l * SPAN, e[l]);
    }
}

__attribute__((target("avx2")))
static void block_avx2(const uint32_t *pairs, const uint32_t *w, int64_t L, int64_t k0,
                       int64_t k1, uint32_t *hi, int32_t *lo) {
    for (int half = 0; half < PB; half += 8) { /* 8 positions: 12 registers of sums */
        __m256i a[LB], e[LB];
        for (int l = 0; l < LB; l++) {
            a[l] = _mm256_loadu_si256((const __m256i *)(hi + l * SPAN + half));
            e[l] = _mm256_loadu_si256((const __m256i *)(lo + l * SPAN + half));
        }
        for (int64_t k = k0; k < k1; k++) {
            const uint32_t *wk = w + 2 * k * L;
            const __m256i in = _mm256_loadu_si256((const __m256i *)(pairs + k * SPAN + half));
            for (int l = 0; l < LB; l++) {
                a[l] = _mm256_add_epi32(a[l],
                                        _mm256_madd_epi16(in, _mm256_set1_epi32((int)wk[l])));
                e[l] = _mm256_add_epi32(e[l],
                                        _mm256_madd_epi16(in, _mm256_set1_epi32((int)wk[L + l])));
            }
        }
        for (int l = 0; l < LB; l++) {
            _mm256_storeu_si256((__m256i *)(hi + l * SPAN + half), a[l]);
            _mm256_storeu_si256((__m256i *)(lo + l * SPAN + half), e[l]);
        }
    }
}
#endif

/* The block kernel for this CPU. */
static Block block_kernel(void) {
#ifdef PMADDWD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bw")) return block_avx512;
    if (__builtin_cpu_supports("avx2")) return block_avx2;
#endif
    return block_portable;
}

/* Latents of positions 0 .. n - 1 of x (planes, stride) → out[l * out_stride + i]; acc:
 * ACC_SAMPLES(mo) int32 of scratch (the two sums, then each plane's pairs). The 1x1 runs
 * in whole blocks: the last block's positions past n read zeros, and the weights are
 * padded to whole blocks of latents (their sums are not read). */
static void project(const Model *mo, const int32_t *x, int64_t stride, int64_t n, int8_t *out,
                    int64_t out_stride, int32_t *acc) {
    const int64_t L = mo->latent_pad, P = mo->planes;
    uint32_t *hi = (uint32_t *)acc, *pairs = (uint32_t *)acc + 2 * L * SPAN;
    int32_t *lo = acc + L * SPAN;
    for (int64_t q0 = 0; q0 < n; q0 += SPAN) {
        const int64_t span = q0 + SPAN < n ? SPAN : n - q0, whole = (span + PB - 1) / PB * PB;
        memset(acc, 0, sizeof(int32_t) * (size_t)(2 * L * SPAN));
        for (int64_t k = 0; k < P; k++) {
            split_plane(x + k * stride + q0, span, mo->shifts[2 * k], mo->shifts[2 * k + 1],
                        pairs + k * SPAN);
            memset(pairs + k * SPAN + span, 0, sizeof(uint32_t) * (size_t)(whole - span));
        }
        for (int64_t k0 = 0; k0 < P; k0 += KB)
            for (int64_t l0 = 0; l0 < L; l0 += LB)
                for (int64_t i0 = 0; i0 < whole; i0 += PB)
                    mo->block(pairs + i0, mo->weight + l0, L, k0, k0 + KB < P ? k0 + KB : P,
                              hi + l0 * SPAN + i0, lo + l0 * SPAN + i0);
        for (int64_t l = 0; l < mo->latent_dim; l++)
            quantize_row(hi + l * SPAN, lo + l * SPAN, mo->lo_shift, mo->bias[l], &mo->table,
                         mo->clip, span, out + l * out_stride + q0);
    }
}

/* The model's weights (planes, 3, latent_dim) paired, (w_hi, 0) and (w_lo, w_r) as int16 in
 * an int32 (planes, 2, latent_pad), padded with zeros to whole blocks of LB latents. */
static uint32_t *pad_weights(Model *mo, const int16_t *weight) {
    const int64_t L = mo->latent_dim, pad = (L + LB - 1) / LB * LB;
    uint32_t *w = calloc((size_t)(2 * mo->planes * pad), sizeof(uint32_t));
    for (int64_t k = 0; w && k < mo->planes; k++)
        for (int64_t l = 0; l < L; l++) {
            const int16_t *v = weight + 3 * k * L + l;
            w[2 * k * pad + l] = (uint16_t)v[0];
            w[(2 * k + 1) * pad + l] =
                (uint32_t)(uint16_t)v[L] | (uint32_t)(uint16_t)v[2 * L] << 16;
        }
    mo->weight = w, mo->latent_pad = pad, mo->block = block_kernel();
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
                   {0}, NULL};
    uint32_t *padded = pad_weights(&model, weight);
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
    Model model = {channels << J, latent_dim, 0, NULL, shifts, bias, scaling[6], clip, {0},
                   NULL};
    uint32_t *padded = pad_weights(&model, weight);
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
