/* The rans coder in C (encoder side): see walloc_rans.c. */
#ifndef WALLOC_RANS_H
#define WALLOC_RANS_H

#include <stdint.h>

#include "walloc_model.h"

/* Latents per tile side in a .wlc written by the C encoder (a tile is coded on its own). */
#if WALLOC_AUDIO
#ifndef WALLOC_TILE
#define WALLOC_TILE 1024
#endif
#define WALLOC_RANS_MAX_LATENTS (WALLOC_LATENT_DIM * WALLOC_TILE)
#else
#ifndef WALLOC_TILE
#define WALLOC_TILE 64
#endif
#define WALLOC_RANS_MAX_LATENTS (WALLOC_LATENT_DIM * WALLOC_TILE * WALLOC_TILE)
#endif
#define WALLOC_RANS_PREC 15           /* probability bits */
#define WALLOC_RANS_MODEL_VERSION 3  /* of the payload (walloc_edge/runtime/coders/rans/payload.py) */

/* Code one image tile of latents (latent_dim x h x w, in that order) into `out`; returns the
 * payload's length, or -1 if the tile is too large or `capacity` too small. */
long walloc_rans_encode(const int8_t *latents, long h, long w, uint8_t *out, long capacity);

/* The same for one audio tile of latents (latent_dim x l). */
long walloc_rans_encode_audio(const int8_t *latents, long l, uint8_t *out, long capacity);

#endif
