/* The `rans` entropy coder in C99 (encoder side), at the Python coder's levels.
 *
 * Writes the payload the Python decoder reads (walloc_edge/runtime/coders/rans/payload.py;
 * docs/bitstream.md): prediction by Q8 coefficients over each latent's own neighbours (W, N,
 * NW, NE for images, the three previous samples for audio) and the value, west and north of
 * up to 16 earlier channels; residuals wrapped into the latent range, adaptive integer
 * frequencies per (channel, activity, previous-channel residual) context refreshed at the
 * same steps as the Python coder, tables spanning the tile's residual range, and interleaved
 * rANS. The coefficients: fixed ("planar": W + N - NW, model version 3, what firmware wrote
 * before levels; "fastest": 7/16 W + 7/16 N + 2/16 NE, half the previous sample for audio),
 * or fitted by least squares ("best", "fast": walloc_rans_fit.c). Version 5 (every level)
 * also sends constant channels as their value. Images: one lane per (channel, column strip),
 * the strips a wavefront (strip g starts g x width steps after strip g - 1) so that every
 * latent keeps its whole causal context. Audio: one lane per (channel, run of samples), each
 * run starting without history. Given the same latents it writes the same bytes as
 * RansCoder("planar") and RansCoder(level=...) (the fit in double: the same coefficients as
 * numpy's unless a coefficient x 256 lies within rounding of a half). Static memory only,
 * sized by WALLOC_RANS_MAX_LATENTS (one tile), but for the fit's.
 */
#include "walloc_rans.h"

#include <string.h>
#ifdef WALLOC_LZMA
#include <lzma.h>
#endif

#include "walloc_model.h"

#define PREC WALLOC_RANS_PREC
#define SCALE (1L << PREC)
#define LOWER (1UL << 16)
#define INCREMENT 32
#define HALVE_AT (1L << 22)
#define PRIOR_DECAY_Q16 34905
#define PRIOR_WEIGHT 16
#define TARGET_LANES 512
#define MIN_SPAN 1024
#define REFRESH 16
#define CONTEXTS 12                 /* 6 activity buckets x 2 previous-residual buckets */
#define A_MAX (2 * WALLOC_CLIP + 1) /* residual symbols at most */
#define TABLES (WALLOC_LATENT_DIM * CONTEXTS)
#define MAX_LANES (TARGET_LANES > WALLOC_LATENT_DIM ? TARGET_LANES : WALLOC_LATENT_DIM)
#define MAX_STEPS (WALLOC_RANS_MAX_LATENTS + WALLOC_LATENT_DIM + WALLOC_TILE)
#define K WALLOC_RANS_OWN
#define CONSTANT 0x80  /* a channel's taps byte (version 5): all its latents are one value */
#define MODE_RANS 0    /* version 5: a tile's first byte */

static const long activity_edges[5] = {1, 3, 7, 15, 30};

static uint8_t symbol[WALLOC_RANS_MAX_LATENTS];
static uint16_t table_of[WALLOC_RANS_MAX_LATENTS];
static int16_t residual[WALLOC_RANS_MAX_LATENTS];
static uint16_t freq_of[WALLOC_RANS_MAX_LATENTS], cum_of[WALLOC_RANS_MAX_LATENTS];
static int64_t counts[TABLES][A_MAX];
static uint16_t freq[TABLES][A_MAX], cum[TABLES][A_MAX];
static uint8_t touched[TABLES];
static uint32_t state[MAX_LANES];
static uint16_t words[WALLOC_RANS_MAX_LATENTS + MAX_LANES];
static long chunk_start[MAX_STEPS], chunk_length[MAX_STEPS];
static int16_t coef[WALLOC_LATENT_DIM][WALLOC_RANS_MAX_TAPS];  /* per channel, Q8 */
static uint8_t earlier[WALLOC_LATENT_DIM];   /* m: the earlier channels predicting it */
static uint8_t constant[WALLOC_LATENT_DIM];  /* version 5: all its latents are one value */

static long ceil_div(long a, long b) { return (a + b - 1) / b; }

/* The tile's lane layout: lane = channel * groups + part g, parts `strip` latents wide.
 * Images: channel c codes row r, column g * strip + j of its strip at step c + g * strip +
 * r * strip + j. Audio (rows = 0): channel c codes sample g * strip + j at step c + j.
 * A is the tables' symbol count: 2 * reach + 1 for residuals -reach ... reach. */
static long rows, width, groups, strip, A;

/* Index (channel * n + position) of the latent that `lane` codes at step t, or -1. */
static long latent_at(long lane, long t) {
    long c = lane / groups, g = lane % groups, local = t - c;
    if (constant[c]) return -1;
    if (!rows) {
        long p = g * strip + local;
        return local < 0 || local >= strip || p >= width ? -1 : c * width + p;
    }
    local -= g * strip;
    if (local < 0) return -1;
    long r = local / strip, col = g * strip + local % strip;
    return r >= rows || col >= width ? -1 : (c * rows + r) * width + col;
}

static long activity_bucket(long activity) {
    long bucket = 0;
    while (bucket < 5 && activity_edges[bucket] <= activity) bucket++;
    return bucket;
}

static long absolute(long v) { return v < 0 ? -v : v; }

/* Latent p's k-th own neighbour in channel x (0 outside the tile or before the run):
 * W, N, NW, NE for images; the previous, second and third previous sample for audio. */
static long own(const int8_t *x, long p, long k) {
    if (!rows) return p % strip > k ? x[p - 1 - k] : 0;
    long col = p % width, north = p >= width;
    switch (k) {
    case 0: return col > 0 ? x[p - 1] : 0;
    case 1: return north ? x[p - width] : 0;
    case 2: return col > 0 && north ? x[p - width - 1] : 0;
    default: return north && col + 1 < width ? x[p - width + 1] : 0;
    }
}

/* A Q8 sum as a latent: rounded (floor of (acc + 128) / 256) and clipped. */
static long prediction(long acc) {
    long a = acc + 128, pred = a >= 0 ? a / 256 : -((-a + 255) / 256);
    return pred > WALLOC_CLIP ? WALLOC_CLIP : pred < -WALLOC_CLIP ? -WALLOC_CLIP : pred;
}

/* Residual and table of every latent under the channels' coefficients; returns the
 * residuals' reach. Activity: |W - NW| + |N - NW| for images, |a - b| + |b - c| over the
 * three previous samples for audio. A constant channel's residuals are zero. */
static long residuals(const int8_t *latents, long n) {
    long reach = 0;
    for (long c = 0; c < WALLOC_LATENT_DIM; c++) {
        const int8_t *x = latents + c * n;
        const int16_t *w = coef[c];
        long m = earlier[c];
        for (long p = 0; p < n; p++) {
            long a = own(x, p, 0), b = own(x, p, 1), d = own(x, p, 2), r = 0;
            if (!constant[c]) {
                long acc = 0;
                for (long k = 0; k < K; k++) acc += w[k] * own(x, p, k);
                for (long j = 0; j < m; j++) {
                    const int8_t *y = latents + (c - m + j) * n;
                    acc += w[K + j] * y[p] + w[K + m + j] * own(y, p, 0) +
                           w[K + 2 * m + j] * own(y, p, 1);
                }
                r = ((x[p] - prediction(acc) + WALLOC_CLIP) % A_MAX + A_MAX) % A_MAX
                    - WALLOC_CLIP;
            }
            long activity = rows ? absolute(a - d) + absolute(b - d)
                                 : absolute(a - b) + absolute(b - d);
            long previous = c > 0 ? absolute(residual[(c - 1) * n + p]) : 0;
            residual[c * n + p] = (int16_t)r;
            if (absolute(r) > reach) reach = absolute(r);
            table_of[c * n + p] =
                (uint16_t)(c * CONTEXTS + activity_bucket(activity) * 2 + (previous >= 2));
        }
    }
    return reach;
}

static void rebuild(long t) {
    int64_t total = 0, sum = 0;
    long top = 0;
    for (long s = 0; s < A; s++) {
        total += counts[t][s];
        if (counts[t][s] > counts[t][top]) top = s;
    }
    for (long s = 0; s < A; s++) {
        freq[t][s] = (uint16_t)(1 + counts[t][s] * (SCALE - A) / total);
        sum += freq[t][s];
    }
    freq[t][top] = (uint16_t)(freq[t][top] + (SCALE - sum));
    long c = 0;
    for (long s = 0; s < A; s++) {
        cum[t][s] = (uint16_t)c;
        c += freq[t][s];
    }
}

static void init_model(long reach) {
    uint64_t w[WALLOC_CLIP + 1];
    w[0] = 1ULL << 40;
    for (long k = 1; k <= reach; k++) w[k] = (w[k - 1] * PRIOR_DECAY_Q16) >> 16;
    uint64_t total = w[0];
    for (long k = 1; k <= reach; k++) total += 2 * w[k];
    for (long t = 0; t < TABLES; t++) {
        for (long s = 0; s < A; s++) {
            long d = s > reach ? s - reach : reach - s;
            counts[t][s] = (int64_t)(1 + w[d] * PRIOR_WEIGHT * INCREMENT / total);
        }
        rebuild(t);
    }
}

static long next_refresh(long t) {
    return t < REFRESH ? 2 * t + (t == 0) : t + (t / 8 > REFRESH ? t / 8 : REFRESH);
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* Code the tile whose layout is set (rows, width, groups, strip): payload into out. */
static long code(const int8_t *latents, long n, long version, uint8_t *out, long capacity) {
    const long C = WALLOC_LATENT_DIM;
    long lanes = groups * C;
    long steps = rows ? (C - 1) + (groups - 1) * strip + rows * strip : strip + C - 1;
    if (steps > MAX_STEPS) return -1;
    long reach = residuals(latents, n);
    A = 2 * reach + 1;
    for (long i = 0; i < C * n; i++) symbol[i] = (uint8_t)(residual[i] + reach);

    /* Forward through the steps: each latent's frequency as the decoder will see it. */
    init_model(reach);
    for (long t0 = 0; t0 < steps;) {
        long t1 = t0 == 0 ? 1 : next_refresh(t0);
        if (t1 > steps) t1 = steps;
        memset(touched, 0, sizeof touched);
        for (long t = t0; t < t1; t++)
            for (long lane = 0; lane < lanes; lane++) {
                long i = latent_at(lane, t);
                if (i < 0) continue;
                freq_of[i] = freq[table_of[i]][symbol[i]];
                cum_of[i] = cum[table_of[i]][symbol[i]];
            }
        for (long t = t0; t < t1; t++)  /* then learn from them, as the decoder will */
            for (long lane = 0; lane < lanes; lane++) {
                long i = latent_at(lane, t);
                if (i < 0) continue;
                counts[table_of[i]][symbol[i]] += INCREMENT;
                touched[table_of[i]] = 1;
            }
        for (long t = 0; t < TABLES; t++) {
            if (!touched[t]) continue;
            int64_t total = 0;
            for (long s = 0; s < A; s++) total += counts[t][s];
            if (total > HALVE_AT)
                for (long s = 0; s < A; s++) counts[t][s] = (counts[t][s] + 1) / 2;
            rebuild(t);
        }
        t0 = t1;
    }

    /* rANS, last step first; each step's words in lane order. */
    for (long lane = 0; lane < lanes; lane++) state[lane] = LOWER;
    long used = 0;
    for (long t = steps - 1; t >= 0; t--) {
        chunk_start[t] = used;
        for (long lane = 0; lane < lanes; lane++) {
            long i = latent_at(lane, t);
            if (i < 0) continue;
            uint64_t x = state[lane], f = freq_of[i];
            if (x >= f << (32 - PREC)) {
                words[used++] = (uint16_t)(x & 0xFFFF);
                x >>= 16;
            }
            state[lane] = (uint32_t)(((x / f) << PREC) + x % f + cum_of[i]);
        }
        chunk_length[t] = used - chunk_start[t];
    }

    long v5 = version == 5, size = 5 + C + 2 * used + v5;
    for (long c = 0; c < C; c++) {
        if (constant[c]) {
            size += 1;
            continue;
        }
        size += 2 * (K + 3 * earlier[c]) + 4 * groups;
    }
    if (size > capacity) return -1;
    uint8_t *q = out;
    if (v5) *q++ = MODE_RANS;
    q = put32(q, (uint32_t)strip);
    *q++ = (uint8_t)reach;
    for (long c = 0; c < C; c++) *q++ = constant[c] ? CONSTANT : earlier[c];
    for (long c = 0; c < C; c++)
        if (constant[c]) *q++ = (uint8_t)latents[c * n];
    for (long c = 0; c < C; c++)
        for (long k = 0; k < K + 3 * earlier[c] && !constant[c]; k++) {
            *q++ = (uint8_t)((uint16_t)coef[c][k] & 0xFF);
            *q++ = (uint8_t)((uint16_t)coef[c][k] >> 8);
        }
    for (long lane = 0; lane < lanes; lane++)
        if (!constant[lane / groups]) q = put32(q, state[lane]);
    for (long t = 0; t < steps; t++)
        for (long k = 0; k < chunk_length[t]; k++) {
            uint16_t v = words[chunk_start[t] + k];
            *q++ = (uint8_t)(v & 0xFF);
            *q++ = (uint8_t)(v >> 8);
        }
    return size;
}

/* Parts of at least MIN_SPAN latents, at most TARGET_LANES lanes in all, at most `most`. */
static void choose_groups(long n, long most) {
    groups = most;
    if (TARGET_LANES / WALLOC_LATENT_DIM < groups) groups = TARGET_LANES / WALLOC_LATENT_DIM;
    if (n / MIN_SPAN < groups) groups = n / MIN_SPAN;
    if (groups < 1) groups = 1;
    strip = ceil_div(width, groups);
    groups = ceil_div(width, strip);
}

/* The channels' coefficients at `level` (rows, width, strip set): 0, -1 (no memory) or -2
 * (no such level in this build). */
static int predictors(const int8_t *latents, long n, int level) {
    static const int16_t planar[2][4] = {{256, 256, -256, 0}, {256, 0, 0, 0}};
    static const int16_t fixed[2][4] = {{112, 112, 0, 32}, {128, 0, 0, 0}};
    for (long c = 0; c < WALLOC_LATENT_DIM; c++) {
        const int8_t *x = latents + c * n;
        long p = 1;
        while (level != WALLOC_RANS_PLANAR && p < n && x[p] == x[0]) p++;
        constant[c] = level != WALLOC_RANS_PLANAR && p == n;
        earlier[c] = 0;
        for (long k = 0; k < K; k++)
            coef[c][k] = (level == WALLOC_RANS_PLANAR ? planar : fixed)[!rows][k];
    }
    if (level == WALLOC_RANS_PLANAR || level == WALLOC_RANS_FASTEST) return 0;
#ifdef WALLOC_FIXED_POINT
    return -2;
#else
    return walloc_rans_fit(latents, n, level, constant, own, coef, earlier);
#endif
}

static long encode_tile(const int8_t *latents, long n, int level, uint8_t *out,
                        long capacity) {
    if (level < WALLOC_RANS_PLANAR || level > WALLOC_RANS_FASTEST) return -2;
    int status = predictors(latents, n, level);
    if (status) return status;
    return code(latents, n, WALLOC_RANS_MODEL_VERSION(level), out, capacity);
}

long walloc_rans_encode(const int8_t *latents, long h, long w, int level, uint8_t *out,
                        long capacity) {
    long n = h * w;
    if (WALLOC_LATENT_DIM * n > WALLOC_RANS_MAX_LATENTS) return -1;
    if (n == 0) return 0;
    rows = h;
    width = w;
    choose_groups(n, w / 2 > 1 ? w / 2 : 1);  /* column strips at least 2 wide */
    return encode_tile(latents, n, level, out, capacity);
}

#ifdef WALLOC_LZMA
/* Mode LZMA (lzma_mode.py): the tile's latents as a raw LZMA2 stream (preset 6, a 64 KiB
 * window), after its mode byte, into out; its length, or -1 where it does not fit. */
static long lzma_tile(const int8_t *latents, long n, uint8_t *out, long capacity) {
    lzma_options_lzma options;
    if (capacity < 1 || lzma_lzma_preset(&options, 6)) return -1;
    options.dict_size = 1 << 16;
    lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &options},
                             {LZMA_VLI_UNKNOWN, NULL}};
    lzma_stream stream = LZMA_STREAM_INIT;
    if (lzma_raw_encoder(&stream, filters) != LZMA_OK) return -1;
    stream.next_in = (const uint8_t *)latents;
    stream.avail_in = (size_t)n;
    stream.next_out = out + 1;
    stream.avail_out = (size_t)capacity - 1;
    lzma_ret status = lzma_code(&stream, LZMA_FINISH);
    long size = status == LZMA_STREAM_END ? 1 + (long)stream.total_out : -1;
    lzma_end(&stream);
    out[0] = 1;  /* MODE_LZMA */
    return size;
}
#endif

/* Audio tiles at "best" also try mode LZMA where it is built in (-DWALLOC_LZMA, -llzma: the
 * Makefile finds it) and keep the shorter, as the Python coder does. */
long walloc_rans_encode_audio(const int8_t *latents, long l, int level, uint8_t *out,
                              long capacity) {
    if (WALLOC_LATENT_DIM * l > WALLOC_RANS_MAX_LATENTS) return -1;
    if (l == 0) return 0;
    rows = 0;
    width = l;
    choose_groups(l, l);
    long size = encode_tile(latents, l, level, out, capacity);
#ifdef WALLOC_LZMA
    static uint8_t copied[2 * WALLOC_RANS_MAX_LATENTS + 1024];
    if (size >= 0 && level == WALLOC_RANS_BEST) {
        long other = lzma_tile(latents, WALLOC_LATENT_DIM * l, copied, sizeof copied);
        if (other >= 0 && other < size) {
            memcpy(out, copied, (size_t)other);
            size = other;
        }
    }
#endif
    return size;
}
