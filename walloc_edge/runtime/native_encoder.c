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
 * read its interleaved samples (the split costs no pass of its own; on AVX-512 a width
 * level's four steps run in one pass, split_lift_row_avx512), a column level's four steps
 * run in one sweep along the row, the 1x1 keeps 12 sums in vector registers while 16
 * planes stream past, and the compander's threshold search is a table lookup and two
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

#ifdef WALLOC_X86_CLONES
#include <immintrin.h>

/* quantize_row's grid lookup on 8 positions at once in AVX-512 (the compiler leaves the
 * loop scalar): the same cell, clamped the same way (max returns its second operand for
 * NaN, so NaN takes cell 0), and the same two comparisons (false against the NaN pad).
 * Returns the positions done: whole blocks of 8. */
__attribute__((target("arch=x86-64-v4")))
static int64_t quantize_grid_avx512(const float *acc, float bias, const Grid *g, int32_t clip,
                                    int64_t n, int8_t *out) {
    const __m256 b = _mm256_set1_ps(bias);
    const __m512d lo = _mm512_set1_pd(g->lo), inverse = _mm512_set1_pd(g->inverse_width),
                  zero = _mm512_setzero_pd(), last = _mm512_set1_pd((double)(g->cells - 1));
    const __m256i one = _mm256_set1_epi32(1), minus_clip = _mm256_set1_epi32(-clip);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d v = _mm512_cvtps_pd(_mm256_add_ps(_mm256_loadu_ps(acc + i), b));
        const __m512d at = _mm512_min_pd(_mm512_max_pd(_mm512_mul_pd(_mm512_sub_pd(v, lo),
                                                                     inverse), zero), last);
        const __m256i base = _mm256_i32gather_epi32(g->base, _mm512_cvttpd_epi32(at), 4);
        const __mmask8 le0 = _mm512_cmp_pd_mask(_mm512_i32gather_pd(base, g->padded, 8), v,
                                                _CMP_LE_OQ),
                       le1 = _mm512_cmp_pd_mask(
                           _mm512_i32gather_pd(_mm256_add_epi32(base, one), g->padded, 8), v,
                           _CMP_LE_OQ);
        __m256i count = _mm256_add_epi32(base, minus_clip);
        count = _mm256_mask_add_epi32(count, le0, count, one);
        count = _mm256_mask_add_epi32(count, le1, count, one);
        _mm_storel_epi64((__m128i *)(out + i), _mm256_cvtepi32_epi8(count));
    }
    return i;
}
#endif

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
    int64_t i = 0;
#ifdef WALLOC_X86_CLONES
    if (__builtin_cpu_supports("x86-64-v4")) i = quantize_grid_avx512(acc, bias, g, clip, n, out);
#endif
    for (; i < n; i++) {
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
 * latent_dim * SPAN floats of scratch. Each plane of x is readable to the next whole block
 * of PB positions past n (images pad each plane to whole blocks; audio's planes run on into
 * the next, the last into a block of zeros), so the last positions run as a whole block, its
 * extra sums unused. */
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
                    if (nl == LB) {
                        project_block(x + q0 + i0, stride, mo->weight, L, l0, k0, k1, a);
                        continue;
                    }
                    for (int64_t k = k0; k < k1; k++) /* the last latents */
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

/* --- the transform (native_transform.h), in floats ------------------------------------ */

typedef float sample;
typedef float coef;
#define STEP(c, p) ((c) * (p))
#define LOAD(L, v) ((void)(L), (float)(v))
#define ACC_SAMPLES(model) ((model)->latent_dim * SPAN)

#ifdef WALLOC_X86_CLONES
/* A width level's four lifting steps in one pass, in AVX-512 registers: split_lift_row's
 * values (the same sums in the same order), its four passes over the row's halves made
 * one. Per 16 outputs two loads, two permutes (even and odd samples apart), four
 * alignments and two stores, where the four passes load about twelve times and store
 * four. Block k's last two steps read block k + 1's first two (s1 at i + 1, d0 at i - 1 of
 * the next step), so round k loads block k + 1, lifts its first two steps and finishes
 * block k - 1. The row is periodic: the loads read it as repeated (a block that runs past
 * its end continues at its start), and before block 0 stand d0 and d2 of index -1. A last
 * block that is not whole stores only its outputs (lanes past m are the periodic row's
 * next values, computed and dropped), so any row length of 16 pairs or more takes it. */
typedef int32_t v16i __attribute__((vector_size(64)));

/* [a1 .. a15, b0] and [a15, b0 .. b14]: a's neighbours one lane up and down, as valignd
 * (a general shuffle compiles to a two-source permute). */
__attribute__((target("arch=x86-64-v4")))
static v16 up(v16 a, v16 b) {
    return (v16)_mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512((__m512)b),
                                                        _mm512_castps_si512((__m512)a), 1));
}

__attribute__((target("arch=x86-64-v4")))
static v16 down(v16 a, v16 b) {
    return (v16)_mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512((__m512)b),
                                                        _mm512_castps_si512((__m512)a), 15));
}

/* Samples 32 j .. 32 j + 31 of the row y (2m samples, m >= 16) repeated, even ones in E,
 * odd ones in O. A block over the row's end is its last r samples (masked loads, which
 * read nothing past it) followed by its first 32 - r, moved up r lanes by a permute. */
__attribute__((target("arch=x86-64-v4")))
static void load_pairs(const float *y, int64_t m, int64_t j, v16 *E, v16 *O) {
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    int64_t at = 32 * j;
    while (at >= 2 * m) at -= 2 * m;
    v16 lo, hi;
    if (at + 32 <= 2 * m) {
        memcpy(&lo, y + at, sizeof lo);
        memcpy(&hi, y + at + 16, sizeof hi);
    } else {
        const int r = (int)(2 * m - at); /* 1 .. 31 samples before the end */
        const __mmask16 tail_lo = (__mmask16)(r >= 16 ? 0xFFFF : (1u << r) - 1),
                        tail_hi = (__mmask16)(r <= 16 ? 0 : (1u << (r - 16)) - 1);
        const __m512 first = _mm512_loadu_ps(y), second = _mm512_loadu_ps(y + 16);
        const __m512i from_lo = (__m512i)((lane - r) & 31), from_hi = (__m512i)((lane + 16 - r) & 31);
        lo = (v16)_mm512_mask_loadu_ps(_mm512_permutex2var_ps(first, from_lo, second), tail_lo,
                                       y + at);
        hi = (v16)_mm512_permutex2var_ps(first, from_hi, second);
        if (tail_hi) /* (no pointer past the row's end otherwise) */
            hi = (v16)_mm512_mask_loadu_ps((__m512)hi, tail_hi, y + at + 16);
    }
    *E = __builtin_shuffle(lo, hi, lane * 2), *O = __builtin_shuffle(lo, hi, lane * 2 + 1);
}

/* Lanes [0, count) of v to out. */
__attribute__((target("arch=x86-64-v4")))
static void store_lanes(float *out, v16 v, int64_t count) {
    if (count >= 16) memcpy(out, &v, sizeof v);
    else _mm512_mask_storeu_ps(out, (__mmask16)((1u << count) - 1), (__m512)v);
}

__attribute__((target("arch=x86-64-v4")))
static void split_lift_row_avx512(const float *restrict y, float *restrict s,
                                  float *restrict d, int64_t m, const coef c[4]) {
    const v16 c0 = (v16){0} + c[0], c1 = (v16){0} + c[1], c2 = (v16){0} + c[2],
              c3 = (v16){0} + c[3];
    const float d0_2 = y[2 * m - 3] + c[0] * (y[2 * m - 4] + y[2 * m - 2]),
                d0_1 = y[2 * m - 1] + c[0] * (y[2 * m - 2] + y[0]),
                d0_0 = y[1] + c[0] * (y[0] + y[2]);
    const float s1_1 = y[2 * m - 2] + c[1] * (d0_2 + d0_1), s1_0 = y[0] + c[1] * (d0_1 + d0_0);
    v16 E, O, D0 = {0}, S1 = {0}, D2 = {0};
    D0[15] = d0_1, D2[15] = d0_1 + c[2] * (s1_1 + s1_0); /* index -1 */
    load_pairs(y, m, 0, &E, &O);
    const int64_t blocks = (m + 15) / 16;
    for (int64_t k = 0; k <= blocks; k++) {
        v16 En, On;
        load_pairs(y, m, k + 1, &En, &On);
        const v16 D0k = O + c0 * (E + up(E, En));
        const v16 S1k = E + c1 * (down(D0, D0k) + D0k);
        if (k) {
            const v16 D2k = D0 + c2 * (S1 + up(S1, S1k));
            const v16 S3 = S1 + c3 * (down(D2, D2k) + D2k);
            store_lanes(s + 16 * (k - 1), S3, m - 16 * (k - 1));
            store_lanes(d + 16 * (k - 1), D2k, m - 16 * (k - 1));
            D2 = D2k;
        }
        D0 = D0k, S1 = S1k, E = En, O = On;
    }
}

/* split_lift_row in one pass where the CPU has what the function is built for (x86-64-v4:
 * AVX-512 F, BW, DQ, VL) and the row has 16 pairs or more. */
#define SPLIT_LIFT_ROW_FAST(y, s, d, m, L)                                                 \
    ((m) >= 16 && __builtin_cpu_supports("x86-64-v4") &&                                   \
     (split_lift_row_avx512(y, s, d, m, (L)->c), 1))
#endif
#include "native_transform.h"

/* --- the whole encoder --------------------------------------------------------------- */

int walloc_native_quantize(const float *y, int64_t n, const double *thresholds,
                           int64_t n_thresholds, int64_t clip, int8_t *out) {
    Model model = {.thresholds = thresholds, .n_thresholds = n_thresholds, .clip = clip};
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
    const Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}, 0, 1};
    Model model = {.planes = channels << (2 * J), .latent_dim = latent_dim, .weight = weight,
                   .bias = bias, .thresholds = thresholds, .n_thresholds = n_thresholds,
                   .clip = clip};
    const int64_t rows_out = rows >> J, w = cols >> J, stride = (w + PB - 1) / PB * PB;
    Image im = {raw, raw_cols, row_of, col_of, rows, channels,
                {NULL, NULL, channels << J, cols, J, stride, &steps, &model, out,
                 rows_out * w, 0, NULL}};
    int status = grid_init(&model.grid, thresholds, n_thresholds) ||
                 walloc_parallel(image_rows, &im, rows_out, walloc_chunk(rows_out, threads, 2),
                                 threads, image_samples(&im)) ? -1 : 0;
    grid_free(&model.grid);
    return status;
}

int walloc_native_encode_audio(const int16_t *raw, const int64_t *at, int64_t samples,
                               int64_t channels, int64_t J, const float *lifting,
                               const float *weight, const float *bias, int64_t latent_dim,
                               const double *thresholds, int64_t n_thresholds, int64_t clip,
                               int8_t *out, int threads) {
    const Lifting steps = {{lifting[0], lifting[1], lifting[2], lifting[3]}, 0, 1};
    Model model = {.planes = channels << J, .latent_dim = latent_dim, .weight = weight,
                   .bias = bias, .thresholds = thresholds, .n_thresholds = n_thresholds,
                   .clip = clip};
    const int64_t w = samples >> J, stride = w + 2;
    float *sub = malloc(sizeof(float) * (size_t)(model.planes * w + PB)); /* see project */
    if (sub) memset(sub + model.planes * w, 0, sizeof(float) * PB);
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
