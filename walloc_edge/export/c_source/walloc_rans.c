/* The `rans` entropy coder in C99 (encoder side), with the fixed "planar" predictor.
 *
 * Writes the payload the Python decoder reads (walloc_edge/runtime/coders/rans/payload.py;
 * docs/bitstream.md): prediction within each channel (no least-squares fit on the device):
 * W + N - NW for images, the previous sample for audio; residuals wrapped into the latent
 * range, adaptive integer frequencies per (channel, activity, previous-channel residual)
 * context refreshed at the same steps as the Python coder, tables spanning the tile's
 * residual range, and interleaved rANS. Images: one lane per (channel, column strip), the
 * strips a wavefront (strip g starts g x width steps after strip g - 1) so that every latent
 * keeps its whole causal context. Audio: one lane per (channel, run of samples), each run
 * starting without history. Given the same latents it writes the same bytes as
 * RansCoder("planar"). Static memory only, sized by WALLOC_RANS_MAX_LATENTS (one tile).
 */
#include "walloc_rans.h"

#include <string.h>

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

static long ceil_div(long a, long b) { return (a + b - 1) / b; }

/* The tile's lane layout: lane = channel * groups + part g, parts `strip` latents wide.
 * Images: channel c codes row r, column g * strip + j of its strip at step c + g * strip +
 * r * strip + j. Audio (rows = 0): channel c codes sample g * strip + j at step c + j.
 * A is the tables' symbol count: 2 * reach + 1 for residuals -reach ... reach. */
static long rows, width, groups, strip, A;

/* Index (channel * n + position) of the latent that `lane` codes at step t, or -1. */
static long latent_at(long lane, long t) {
    long c = lane / groups, g = lane % groups, local = t - c;
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

/* Residual and table of every latent; returns the residuals' reach. Images: prediction
 * W + N - NW, activity |W - NW| + |N - NW|. Audio: prediction a, the previous sample in the
 * run, activity |a - b| + |b - c| over the three previous samples (zero before the run). */
static long residuals(const int8_t *latents, long n) {
    long reach = 0;
    for (long c = 0; c < WALLOC_LATENT_DIM; c++) {
        const int8_t *x = latents + c * n;
        for (long p = 0; p < n; p++) {
            long pred, activity;
            if (rows) {
                long col = p % width;
                long west = col > 0 ? x[p - 1] : 0, north = p >= width ? x[p - width] : 0;
                long nw = col > 0 && p >= width ? x[p - width - 1] : 0;
                pred = west + north - nw;
                activity = absolute(west - nw) + absolute(north - nw);
            } else {
                long run = p % strip;
                long a = run > 0 ? x[p - 1] : 0, b = run > 1 ? x[p - 2] : 0;
                long d = run > 2 ? x[p - 3] : 0;
                pred = a;
                activity = absolute(a - b) + absolute(b - d);
            }
            if (pred > WALLOC_CLIP) pred = WALLOC_CLIP;
            if (pred < -WALLOC_CLIP) pred = -WALLOC_CLIP;
            long r = ((x[p] - pred + WALLOC_CLIP) % A_MAX + A_MAX) % A_MAX - WALLOC_CLIP;
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
static long code(const int8_t *latents, long n, uint8_t *out, long capacity) {
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

    /* Own-neighbour taps in Q8: W, N, NW, NE for images; the three previous for audio. */
    static const int16_t image_taps[4] = {256, 256, -256, 0}, audio_taps[3] = {256, 0, 0};
    const int16_t *taps = rows ? image_taps : audio_taps;
    long K = rows ? 4 : 3;
    long size = 5 + C + 2 * K * C + 4 * lanes + 2 * used;
    if (size > capacity) return -1;
    uint8_t *q = put32(out, (uint32_t)strip);
    *q++ = (uint8_t)reach;
    for (long c = 0; c < C; c++) *q++ = 0;  /* no earlier-channel taps */
    for (long c = 0; c < C; c++)
        for (long k = 0; k < K; k++) {
            *q++ = (uint8_t)((uint16_t)taps[k] & 0xFF);
            *q++ = (uint8_t)((uint16_t)taps[k] >> 8);
        }
    for (long lane = 0; lane < lanes; lane++) q = put32(q, state[lane]);
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

long walloc_rans_encode(const int8_t *latents, long h, long w, uint8_t *out, long capacity) {
    long n = h * w;
    if (WALLOC_LATENT_DIM * n > WALLOC_RANS_MAX_LATENTS) return -1;
    if (n == 0) return 0;
    rows = h;
    width = w;
    choose_groups(n, w / 2 > 1 ? w / 2 : 1);  /* column strips at least 2 wide */
    return code(latents, n, out, capacity);
}

long walloc_rans_encode_audio(const int8_t *latents, long l, uint8_t *out, long capacity) {
    if (WALLOC_LATENT_DIM * l > WALLOC_RANS_MAX_LATENTS) return -1;
    if (l == 0) return 0;
    rows = 0;
    width = l;
    choose_groups(l, l);
    return code(latents, l, out, capacity);
}
