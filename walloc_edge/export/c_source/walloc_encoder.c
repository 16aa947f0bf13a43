/* WaLLoC sensor encoder in portable C99: uint8 image or int16 audio in, int8 latents out.
 *
 * The same function as the exported graphs (walloc_edge/codec/sensor.py), after reflect
 * padding to a multiple of 2^J as the Python runtime pads; the compander and rounding are a
 * threshold search (no erf on the device). Weights are const arrays in walloc_model.h, which
 * also says which of the two encoders this build has. No malloc.
 *
 * Images: a periodic wrap, one strided filter bank along the rows (all J wavelet levels
 * fused), one along the columns that also applies the 1x1 encoder. Memory is fixed: a ring
 * buffer of row-pass results WALLOC_TAPS * 2^J rows deep and WALLOC_MAX_WIDTH pixels wide.
 *
 * Audio: the packet transform level by level, in place in the caller's workspace (a fused
 * bank, as the image encoder uses, would cost ~10x the multiplies and weights at J = 8),
 * then the 1x1 encoder, with the reference's one latent of zero padding at each end.
 *
 * Built with -DWALLOC_FIXED_POINT, the same loops run in integers, with no float at all
 * (for cores without an FPU): the arrays rounded as walloc_edge/export/c_fixed_point.py
 * says, int32 samples and ring, int64 sums, int64 thresholds. Every sum fits its type on
 * every input, so the only differences from the float build are the arrays' rounding.
 */
#include "walloc_encoder.h"

#include <limits.h>
#include <string.h>

#define B WALLOC_BLOCK

#ifdef WALLOC_FIXED_POINT
typedef int64_t acc_t;   /* a sum of products */
typedef int32_t weight_t;
#define ROW_FILTERS walloc_row_filters_q
#define COL_WEIGHTS walloc_col_weights_q
#define DEC_LO walloc_dec_lo_q
#define DEC_HI walloc_dec_hi_q
#define WEIGHT walloc_weight_q
#define BIAS walloc_bias_q
#define THRESHOLDS walloc_thresholds_q
/* a level's output: its sum (filters 2^30) back to the samples' scale, rounded */
#define LEVEL_OUT(sum) ((int32_t)(((sum) + ((int64_t)1 << 29)) >> 30))
#define PCM(v) ((int32_t)(v) * ((int32_t)1 << WALLOC_INPUT_SHIFT))
#else
typedef float acc_t;
typedef float weight_t;
#define ROW_FILTERS walloc_row_filters
#define COL_WEIGHTS walloc_col_weights
#define DEC_LO walloc_dec_lo
#define DEC_HI walloc_dec_hi
#define WEIGHT walloc_weight
#define BIAS walloc_bias
#define THRESHOLDS walloc_thresholds
#define LEVEL_OUT(sum) (sum)
#define PCM(v) ((float)(v))
#endif

long walloc_reflect(long p, long size, long before) {
    long i = p - before;
    if (size == 1) return 0;
    long period = 2 * (size - 1);
    i %= period;
    if (i < 0) i += period;
    return i >= size ? period - i : i;
}

static long wrap(long i, long n) {
    i %= n;
    return i < 0 ? i + n : i;
}

void walloc_padding(long size, long *before, long *after) {
    long total = (B - size % B) % B;
    *before = total / 2;
    *after = total - total / 2;
}

static int8_t quantize(acc_t y) {
    /* The latent is the number of thresholds <= y, less WALLOC_CLIP (binary search). */
    long lo = 0, hi = WALLOC_THRESHOLDS;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (THRESHOLDS[mid] <= y) lo = mid + 1; else hi = mid;
    }
    return (int8_t)(lo - WALLOC_CLIP);
}

#if WALLOC_AUDIO

long walloc_audio_workspace(long n) {
    long before, after;
    walloc_padding(n, &before, &after);
    return (n + before + after) * (WALLOC_CHANNELS + 1);
}

/* One periodized DWT level of each of `count` channels of `len` samples, in place: channel
 * k becomes channels 2k (low) and 2k + 1 (high) of len / 2 samples, in the same place.
 * c[o] = sum_j dec[j] x[(2o + F/2 - j) mod len], as pywt's "periodization" mode. */
static void dwt_level(walloc_sample *x, long count, long len, walloc_sample *scratch) {
    const long F = WALLOC_FILTER_LENGTH, half = len / 2;
    for (long k = 0; k < count; k++) {
        walloc_sample *channel = x + k * len;
        memcpy(scratch, channel, (size_t)len * sizeof *scratch);
        for (long o = 0; o < half; o++) {
            acc_t lo = 0, hi = 0;
            for (long j = 0; j < F; j++) {
                acc_t v = scratch[wrap(2 * o + F / 2 - j, len)];
                lo += DEC_LO[j] * v;
                hi += DEC_HI[j] * v;
            }
            channel[o] = LEVEL_OUT(lo);
            channel[half + o] = LEVEL_OUT(hi);
        }
    }
}

int walloc_encode_audio(const int16_t *pcm, long n, walloc_sample *work, int8_t *latents) {
    long before, after;
    walloc_padding(n, &before, &after);
    long len = n + before + after, lb = len / B;
    walloc_sample *scratch = work + WALLOC_CHANNELS * len;
    for (long c = 0; c < WALLOC_CHANNELS; c++)
        for (long p = 0; p < len; p++)
            work[c * len + p] = PCM(pcm[walloc_reflect(p, n, before) * WALLOC_CHANNELS + c]);
    for (long level = 0; level < WALLOC_J; level++)
        dwt_level(work, (long)WALLOC_CHANNELS << level, len >> level, scratch);
    /* Subband k of channel c now lies at work[(c * 2^J + k) * lb], lb samples long. */
    for (long m = 0; m < lb + 2; m++) {
        acc_t y[WALLOC_LATENT_DIM];
        for (long l = 0; l < WALLOC_LATENT_DIM; l++) y[l] = BIAS[l];
        if (m >= 1 && m <= lb)
            for (long k = 0; k < WALLOC_CHANNELS * B; k++) {
                acc_t v = work[k * lb + m - 1];
                for (long l = 0; l < WALLOC_LATENT_DIM; l++) y[l] += WEIGHT[k][l] * v;
            }
        for (long l = 0; l < WALLOC_LATENT_DIM; l++)
            latents[l * (lb + 2) + m] = quantize(y[l]);
    }
    return 0;
}

#else

#define RING (WALLOC_TAPS * B)
#define MAX_BLOCKS (WALLOC_MAX_WIDTH / B)

/* Row-pass results of padded row r (unwrapped: below 0 or past the padded height where the
 * periodic extension reaches over the edges) in ring[r mod RING][channel][subband][block]. */
static walloc_sample ring[RING][WALLOC_CHANNELS][B][MAX_BLOCKS];
static long ring_row[RING];
/* Source column of every column a row pass reads (padding and wrap resolved once). */
static long source_col[WALLOC_MAX_WIDTH + RING];

/* Row pass for padded row r (unwrapped) of the image. */
static void row_pass(const uint8_t *image, long h, long w, long r, long hp, long wp,
                     long top) {
    long slot = wrap(r, RING);
    if (ring_row[slot] == r) return;
    long src_row = walloc_reflect(wrap(r, hp), h, top);
    long wb = wp / B;
    for (long c = 0; c < WALLOC_CHANNELS; c++) {
        for (long m = 0; m < wb; m++) {
            walloc_sample acc[B];  /* the fixed build's fit int32 (c_fixed_point.py) */
            memset(acc, 0, sizeof acc);
            const long *cols = source_col + B * m;
            for (long j = 0; j < RING; j++) {
                walloc_sample v = image[(src_row * w + cols[j]) * WALLOC_CHANNELS + c];
                for (long s = 0; s < B; s++) acc[s] += ROW_FILTERS[s][j] * v;
            }
            for (long s = 0; s < B; s++) ring[slot][c][s][m] = acc[s];
        }
    }
    ring_row[slot] = r;
}

int walloc_encode_image(const uint8_t *image, long h, long w, int8_t *latents) {
    long top, bottom, left_pad, right_pad;
    walloc_padding(h, &top, &bottom);
    walloc_padding(w, &left_pad, &right_pad);
    long hp = h + top + bottom, wp = w + left_pad + right_pad;
    long hb = hp / B, wb = wp / B;
    if (wp > WALLOC_MAX_WIDTH) return -1;
    for (long i = 0; i < RING; i++) ring_row[i] = LONG_MIN;
    for (long k = 0; k < wp + RING; k++)
        source_col[k] = walloc_reflect(wrap(k - WALLOC_LEFT, wp), w, left_pad);
    for (long bh = 0; bh < hb; bh++) {
        long first = B * bh - WALLOC_LEFT;  /* padded row of the first tap */
        for (long r = first; r < first + RING; r++)
            row_pass(image, h, w, r, hp, wp, top);
        for (long m = 0; m < wb; m++) {
            acc_t y[WALLOC_LATENT_DIM];
            for (long l = 0; l < WALLOC_LATENT_DIM; l++) y[l] = BIAS[l];
            for (long t = 0; t < RING; t++) {
                long slot = wrap(first + t, RING);
                for (long c = 0; c < WALLOC_CHANNELS; c++)
                    for (long s = 0; s < B; s++) {
                        acc_t v = ring[slot][c][s][m];
                        const weight_t *wl = COL_WEIGHTS[c][s][t];
                        for (long l = 0; l < WALLOC_LATENT_DIM; l++) y[l] += wl[l] * v;
                    }
            }
            for (long l = 0; l < WALLOC_LATENT_DIM; l++)
                latents[(l * hb + bh) * wb + m] = quantize(y[l]);
        }
    }
    return 0;
}

#endif
