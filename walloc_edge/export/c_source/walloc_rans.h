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
#define WALLOC_RANS_MAX_EARLIER 16    /* a channel is predicted from at most this many before it */
#define WALLOC_RANS_OWN (WALLOC_AUDIO ? 3 : 4)  /* own-neighbour taps: W N NW NE, or 3 previous */
#define WALLOC_RANS_MAX_TAPS (WALLOC_RANS_OWN + 3 * WALLOC_RANS_MAX_EARLIER)

/* The levels, as the Python coder's (walloc_edge/runtime/coders/rans/levels.py): the number
 * is the level's byte in the coder parameters. PLANAR is what firmware wrote before levels
 * (model version 3: W + N - NW, no constant channels). BEST and FAST fit the predictors by
 * least squares in double (walloc_rans_fit.c; not in a -DWALLOC_FIXED_POINT build); FASTEST
 * and PLANAR are integers only. */
enum { WALLOC_RANS_PLANAR = -1, WALLOC_RANS_BEST = 0, WALLOC_RANS_FAST = 1,
       WALLOC_RANS_FASTEST = 2 };

/* The model version a level writes (of the payload: walloc_edge/runtime/coders/rans/payload.py). */
#define WALLOC_RANS_MODEL_VERSION(level) ((level) == WALLOC_RANS_PLANAR ? 3 : 5)

/* Code one image tile of latents (latent_dim x h x w, in that order) at `level` into `out`;
 * returns the payload's length, or -1 if the tile is too large, `capacity` too small or
 * memory short (the fit allocates), -2 if this build has no such level (no float). */
long walloc_rans_encode(const int8_t *latents, long h, long w, int level, uint8_t *out,
                        long capacity);

/* The same for one audio tile of latents (latent_dim x l). */
long walloc_rans_encode_audio(const int8_t *latents, long l, int level, uint8_t *out,
                              long capacity);

/* The fit (walloc_rans_fit.c): channel c's Q8 coefficients into coefs[c] (its own taps, then
 * the value, west and north taps of its m[c] earlier channels) for each channel not
 * `constant`, by least squares on the latents the level looks at. `own(x, p, k)` reads latent
 * p's k-th own neighbour of a channel x (k = 0: west, 1: north, as the earlier channels'
 * taps). Returns 0, or -1 without memory. */
typedef long (*walloc_rans_neighbour)(const int8_t *x, long p, long k);
int walloc_rans_fit(const int8_t *latents, long n, int level, const uint8_t *constant,
                    walloc_rans_neighbour own, int16_t coefs[][WALLOC_RANS_MAX_TAPS],
                    uint8_t *m);

#endif
