/* WaLLoC sensor encoder in portable C99: uint8 image in, int8 latents out.
 *
 * The same function as the exported ONNX/TFLite graphs (walloc_edge/export/graphs.py):
 * reflect padding to a multiple of 2^J, a periodic wrap, one strided filter bank along the
 * rows (all J wavelet levels fused), one along the columns that also applies the 1x1
 * encoder, then the compander and rounding as a threshold search (no erf on the device).
 * Weights are const arrays in walloc_model.h. Memory is fixed: a ring buffer of row-pass
 * results WALLOC_TAPS * 2^J rows deep and WALLOC_MAX_WIDTH pixels wide. No malloc.
 */
#include "walloc_encoder.h"

#include <limits.h>
#include <string.h>

#include "walloc_model.h"

#define B WALLOC_BLOCK
#define RING (WALLOC_TAPS * B)
#define MAX_BLOCKS (WALLOC_MAX_WIDTH / B)

/* Row-pass results of padded row r (unwrapped: below 0 or past the padded height where the
 * periodic extension reaches over the edges) in ring[r mod RING][channel][subband][block]. */
static float ring[RING][WALLOC_CHANNELS][B][MAX_BLOCKS];
static long ring_row[RING];
/* Source column of every column a row pass reads (padding and wrap resolved once). */
static long source_col[WALLOC_MAX_WIDTH + RING];

/* Source index of padded position p on an axis of `size` samples padded by `before`
 * (reflection of period 2 (size - 1), as numpy's "reflect"). */
static long reflect(long p, long size, long before) {
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

/* Row pass for padded row r (unwrapped) of the image. */
static void row_pass(const uint8_t *image, long h, long w, long r, long hp, long wp,
                     long top) {
    long slot = wrap(r, RING);
    if (ring_row[slot] == r) return;
    long src_row = reflect(wrap(r, hp), h, top);
    long wb = wp / B;
    for (long c = 0; c < WALLOC_CHANNELS; c++) {
        for (long m = 0; m < wb; m++) {
            float acc[B];
            memset(acc, 0, sizeof acc);
            const long *cols = source_col + B * m;
            for (long j = 0; j < RING; j++) {
                float v = image[(src_row * w + cols[j]) * WALLOC_CHANNELS + c];
                for (long s = 0; s < B; s++) acc[s] += walloc_row_filters[s][j] * v;
            }
            for (long s = 0; s < B; s++) ring[slot][c][s][m] = acc[s];
        }
    }
    ring_row[slot] = r;
}

static int8_t quantize(float y) {
    /* The latent is the number of thresholds <= y, less WALLOC_CLIP (binary search). */
    long lo = 0, hi = WALLOC_THRESHOLDS;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (walloc_thresholds[mid] <= y) lo = mid + 1; else hi = mid;
    }
    return (int8_t)(lo - WALLOC_CLIP);
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
        source_col[k] = reflect(wrap(k - WALLOC_LEFT, wp), w, left_pad);
    for (long bh = 0; bh < hb; bh++) {
        long first = B * bh - WALLOC_LEFT;  /* padded row of the first tap */
        for (long r = first; r < first + RING; r++)
            row_pass(image, h, w, r, hp, wp, top);
        for (long m = 0; m < wb; m++) {
            float y[WALLOC_LATENT_DIM];
            for (long l = 0; l < WALLOC_LATENT_DIM; l++) y[l] = walloc_bias[l];
            for (long t = 0; t < RING; t++) {
                long slot = wrap(first + t, RING);
                for (long c = 0; c < WALLOC_CHANNELS; c++)
                    for (long s = 0; s < B; s++) {
                        float v = ring[slot][c][s][m];
                        const float *wl = walloc_col_weights[c][s][t];
                        for (long l = 0; l < WALLOC_LATENT_DIM; l++) y[l] += wl[l] * v;
                    }
            }
            for (long l = 0; l < WALLOC_LATENT_DIM; l++)
                latents[(l * hb + bh) * wb + m] = quantize(y[l]);
        }
    }
    return 0;
}
