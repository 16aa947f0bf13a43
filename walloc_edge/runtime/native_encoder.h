/* The runtime's C cores (native_encoder.c in floats, native_fixed.c in integers): the sensor
 * encoder, uint8 image or int16 audio in, int8 latents out, on `threads` POSIX threads. Called by the Python runtime (ctypes,
 * backends/native.py, which folds the model) and by the C export's host program (the model
 * folded into walloc_model.h). */
#ifndef WALLOC_NATIVE_ENCODER_H
#define WALLOC_NATIVE_ENCODER_H

#include <stdint.h>

/* Bumped whenever a signature below changes (backends/native.py refuses another version). */
#define WALLOC_NATIVE_ABI 8

int walloc_native_abi(void);

/* The compander alone, as the encoders apply it: out[i] = the number of thresholds (n,
 * ascending) <= y[i], less clip. Returns 0, or -1 when memory runs out. */
int walloc_native_quantize(const float *y, int64_t n, const double *thresholds,
                           int64_t n_thresholds, int64_t clip, int8_t *out);

/* The tile of rows x cols pixels (multiples of 2^J) whose pixel (r, x) is raw's (row_of[r],
 * col_of[x]) (raw: an image of raw_cols columns of `channels` uint8; the maps hold the
 * tile's wrap and reflections, so nothing is copied) → out (latent_dim, rows / 2^J,
 * cols / 2^J): the periodic packet transform of the tile. lifting: the four step
 * constants; weight (planes, latent_dim) and bias folded (backends.native.fold); thresholds:
 * the compander's, ascending. Memory: a few rows of floats a level and channel per
 * thread. Returns 0, -1 when memory runs out, -2 for J outside 1 .. 6. */
int walloc_native_encode_image(const uint8_t *raw, int64_t raw_cols, const int64_t *row_of,
                               const int64_t *col_of, int64_t rows, int64_t cols,
                               int64_t channels, int64_t J, const float *lifting,
                               const float *weight, const float *bias, int64_t latent_dim,
                               const double *thresholds, int64_t n_thresholds, int64_t clip,
                               int8_t *out, int threads);

/* The run of `samples` (a multiple of 2^J) whose sample i is raw's at[i] (raw: interleaved
 * int16 of `channels`) → out (latent_dim, samples / 2^J + 2): the reference's one latent
 * of zero padding at each end. The rest as for images (channels, then runs of positions,
 * over the threads). */
int walloc_native_encode_audio(const int16_t *raw, const int64_t *at, int64_t samples,
                               int64_t channels, int64_t J, const float *lifting,
                               const float *weight, const float *bias, int64_t latent_dim,
                               const double *thresholds, int64_t n_thresholds, int64_t clip,
                               int8_t *out, int threads);

/* The fixed-point core (native_fixed.c, whose comment spells the scaling and rounding), the
 * model folded into integers by backends/fixed_point.py: scaling (7): the lifting constants in
 * Q30, the input's offset and shift, the second sum's shift; weight (planes, 3, latent_dim):
 * each plane's three int16 weights per latent; shifts (planes, 2); bias (latent_dim) and
 * thresholds (ascending) in the accumulator's scale. The rest as for the float core. */
int walloc_fixed_encode_image(const uint8_t *raw, int64_t raw_cols, const int64_t *row_of,
                              const int64_t *col_of, int64_t rows, int64_t cols,
                              int64_t channels, int64_t J, const int32_t *scaling,
                              const int16_t *weight, const int32_t *shifts,
                              const int32_t *bias, int64_t latent_dim,
                              const int32_t *thresholds, int64_t n_thresholds, int64_t clip,
                              int8_t *out, int threads);

int walloc_fixed_encode_audio(const int16_t *raw, const int64_t *at, int64_t samples,
                              int64_t channels, int64_t J, const int32_t *scaling,
                              const int16_t *weight, const int32_t *shifts,
                              const int32_t *bias, int64_t latent_dim,
                              const int32_t *thresholds, int64_t n_thresholds, int64_t clip,
                              int8_t *out, int threads);

/* The fixed core's compander alone: out[i] = the number of thresholds <= acc[i], less clip.
 * Returns 0, or -1 when memory runs out. */
int walloc_fixed_quantize(const int32_t *acc, int64_t n, const int32_t *thresholds,
                          int64_t n_thresholds, int64_t clip, int8_t *out);

#endif
