/* WaLLoC sensor encoder (C99, no malloc): see walloc_encoder.c. */
#ifndef WALLOC_ENCODER_H
#define WALLOC_ENCODER_H

#include <stdint.h>

/* (before, after) reflect padding of an axis of `size` samples to a multiple of 2^J. */
void walloc_padding(long size, long *before, long *after);

/* Encode an h x w image (uint8, rows of w pixels of WALLOC_CHANNELS interleaved values)
 * into latents (int8, latent_dim x ceil(h/2^J) x ceil(w/2^J), in that order).
 * Returns 0, or -1 when the padded width exceeds WALLOC_MAX_WIDTH. */
int walloc_encode_image(const uint8_t *image, long h, long w, int8_t *latents);

#endif
