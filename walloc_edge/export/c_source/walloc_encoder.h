/* WaLLoC sensor encoder (C99, no malloc): see walloc_encoder.c. */
#ifndef WALLOC_ENCODER_H
#define WALLOC_ENCODER_H

#include <stdint.h>

#include "walloc_model.h"

/* The encoder's samples: int32 in the -DWALLOC_FIXED_POINT build (no float at all). */
#ifdef WALLOC_FIXED_POINT
typedef int32_t walloc_sample;
#else
typedef float walloc_sample;
#endif

/* (before, after) reflect padding of an axis of `size` samples to a multiple of 2^J. */
void walloc_padding(long size, long *before, long *after);

/* Source index of padded position p on an axis of `size` samples padded by `before`
 * (reflection of period 2 (size - 1), as numpy's "reflect" and the Python runtime pad). */
long walloc_reflect(long p, long size, long before);

#if WALLOC_AUDIO
/* Samples of workspace walloc_encode_audio needs for n frames: (padded n) x (channels + 1). */
long walloc_audio_workspace(long n);

/* Encode n frames of int16 PCM (WALLOC_CHANNELS interleaved samples a frame) into latents
 * (int8, latent_dim x (ceil(n/2^J) + 2), in that order), using `work` (see above).
 * Returns 0. */
int walloc_encode_audio(const int16_t *pcm, long n, walloc_sample *work, int8_t *latents);
#else
/* Encode an h x w image (uint8, rows of w pixels of WALLOC_CHANNELS interleaved values)
 * into latents (int8, latent_dim x ceil(h/2^J) x ceil(w/2^J), in that order).
 * Returns 0, or -1 when the padded width exceeds WALLOC_MAX_WIDTH. */
int walloc_encode_image(const uint8_t *image, long h, long w, int8_t *latents);
#endif

#endif
