/* The rans coder's loops in C: the residuals and contexts of a tile, the adaptive model with
 * the rANS state updates, decoding (prediction included) and encoding. The numpy code
 * beside this file (model.py, layout.py, __init__.py) is the readable reference; these
 * functions compute exactly what it computes, in the same integers, so the bytes and
 * latents are the same (tests/test_rans_native.py), on any number of threads.
 *
 * Built by pip as an optional extension (a compiler is needed; without one the numpy coder
 * runs) and called through ctypes from native.py, so the module has no Python API to speak
 * of: PyInit__native only makes it importable.
 */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../native_parallel.h"

/* Bumped whenever a signature below changes: native.py refuses a library of another
 * version (a stale build) instead of calling it with the wrong arguments. */
#define WALLOC_RANS_ABI 7

int walloc_rans_abi(void) { return WALLOC_RANS_ABI; }

#define PREC 15
#define SCALE (1u << PREC)
#define LOWER (1ull << 16)
#define INCREMENT 32
#define HALVE_AT (1ll << 22)
#define AHEAD 2 /* rows of latents the encoder fetches ahead of its lanes */

/* Frequencies of every (channel, context) table; table `tables` is "nothing". A table's
 * counts grow as latents are counted; its frequencies change only when it is rebuilt. */
typedef struct {
    int64_t tables, symbols, first, last; /* tables [first, last) are used */
    int64_t *counts, *totals;  /* (tables, symbols); (tables): the counts' sum when rebuilt */
    uint32_t *freq, *cum;      /* (tables + 1, symbols) */
    uint32_t *packed;          /* (tables + 1, symbols): freq << 16 | cum, one load for both */
} Model;

VECTOR_CLONES
static void rebuild(Model *m, int64_t t) {
    const int64_t A = m->symbols, *counts = m->counts + t * A;
    uint32_t *freq = m->freq + t * A, *cum = m->cum + t * A, *packed = m->packed + t * A;
    int64_t sum = 0, best = 0;
    const int64_t total = m->totals[t];
    const double inverse = 1.0 / (double)total;
    for (int64_t s = 0; s < A; s++) {
        /* counts[s] * (SCALE - A) / total, exactly: a division costs more than the rest of
         * this loop, so a multiply by the inverse, then corrected by one where it rounded
         * (without branches: the loop vectorises) */
        const int64_t a = counts[s] * (int64_t)(SCALE - A);
        int64_t q = (int64_t)((double)a * inverse);
        q -= q * total > a;
        q += (q + 1) * total <= a;
        freq[s] = (uint32_t)(1 + q);
        sum += 1 + q;
    }
    for (int64_t s = 1; s < A; s++)
        if (counts[s] > counts[best]) best = s;  /* the first of equal maxima, as argmax */
    freq[best] += (uint32_t)(SCALE - sum);
    uint32_t running = 0;
    for (int64_t s = 0; s < A; s++) {
        cum[s] = running;
        packed[s] = freq[s] << 16 | running;
        running += freq[s];
    }
}

/* The model of `tables` tables over `symbols` symbols, each starting from `prior`: tables
 * [first, last) ready (the others are never read), and the "nothing" table. */
static int model_init(Model *m, int64_t tables, int64_t symbols, const int64_t *prior,
                      int64_t first, int64_t last) {
    m->tables = tables; m->symbols = symbols; m->first = first; m->last = last;
    m->counts = calloc((size_t)(tables * symbols + 1), sizeof(int64_t));
    m->totals = calloc((size_t)tables + 1, sizeof(int64_t));
    m->freq = calloc((size_t)(tables + 1) * symbols, sizeof(uint32_t));
    m->cum = calloc((size_t)(tables + 1) * symbols, sizeof(uint32_t));
    m->packed = calloc((size_t)(tables + 1) * symbols, sizeof(uint32_t));
    if (!m->counts || !m->totals || !m->freq || !m->cum || !m->packed) return -1;
    int64_t total = 0;
    for (int64_t s = 0; s < symbols; s++) total += prior[s];
    for (int64_t t = first; t < last; t++) {
        memcpy(m->counts + t * symbols, prior, sizeof(int64_t) * symbols);
        m->totals[t] = total;
        rebuild(m, t);
    }
    m->freq[tables * symbols] = SCALE;  /* nothing: symbol 0 with every slot */
    m->packed[tables * symbols] = SCALE << 16;
    for (int64_t s = 1; s < symbols; s++)
        m->cum[tables * symbols + s] = SCALE, m->packed[tables * symbols + s] = SCALE;
    return 0;
}

static void model_free(Model *m) {
    free(m->counts); free(m->totals); free(m->freq); free(m->cum); free(m->packed);
}

/* One latent counted: only its count changes (a table's total is summed when it is
 * refreshed: one store a latent, not three). */
static inline void count(Model *m, int64_t table, int64_t symbol) {
    if (table < m->tables) m->counts[table * m->symbols + symbol] += INCREMENT;
}

/* After counting one refresh interval: the tables counted in since their last rebuild
 * (their sum changed: every count adds) halved past HALVE_AT and rebuilt. */
static void refresh(Model *m) {
    const int64_t A = m->symbols;
    for (int64_t t = m->first; t < m->last; t++) {
        int64_t total = 0;
        for (int64_t s = 0; s < A; s++) total += m->counts[t * A + s];
        if (total == m->totals[t]) continue;
        if (total > HALVE_AT) {
            total = 0;
            for (int64_t s = 0; s < A; s++) {
                m->counts[t * A + s] = (m->counts[t * A + s] + 1) / 2;
                total += m->counts[t * A + s];
            }
        }
        m->totals[t] = total;
        rebuild(m, t);
    }
}

static inline int64_t lookup(const Model *m, int64_t table, uint32_t slot) {
    const uint32_t *cum = m->cum + table * m->symbols;
    int64_t lo = 0, hi = m->symbols - 1;  /* the last symbol whose cumulative <= slot */
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (cum[mid] <= slot) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/* A Q8 sum of coefficient x feature as a latent: rounded ((acc + 128) >> 8, floor, as
 * numpy shifts) and clipped to ±clip. |acc| < 2^28: |coefficient| < 2^15, |feature| < 2^7,
 * at most 52 terms. */
static inline int32_t prediction(int32_t acc, int32_t clip) {
    const int32_t a = acc + 128, pred = a >= 0 ? a >> 8 : -((-a + 255) >> 8);
    return pred < -clip ? -clip : pred > clip ? clip : pred;
}

/* Where lane l codes at step t, as layout.py's Layout.schedule computes it: the slot within
 * its channel's part of the buffer, or -1 where it codes nothing at that step. */
static inline int64_t slot_at(int64_t t, int64_t l, int audio, int64_t groups,
                              int64_t region, int64_t rows, int64_t width) {
    const int64_t c = l / groups, g = l % groups, s = region;
    if (audio) {
        int64_t local = t - c;
        if (local < 0 || local >= s || g * s + local >= width) return -1;
        return g * (s + 3) + local + 3;
    }
    int64_t local = t - c - g * s;
    if (local < 0) return -1;
    int64_t row = local / s, col = g * s + local % s;
    if (row >= rows || col >= width) return -1;
    return (row + 1) * (width + 2) + col + 1;
}

/* Decode one tile. Arrays as _Decoding in __init__.py builds them: feature_base (F, lanes),
 * lane_coefs (F, lanes), the first `own` of the F features a lane's own neighbours (the
 * activity reads them), lane_tables and coded (lanes: 0 for a constant channel's lanes);
 * the layout (audio, groups, region, rows, width, stride) places each lane at each step.
 * buffer and residual have size + 1 slots. refresh: sorted steps.
 * Returns 0, 1 (truncated), 2 (did not end in the initial state), -1 (no memory). */
int walloc_rans_decode(int64_t steps, int64_t lanes, int64_t features, int64_t own,
                       int audio, int64_t groups, int64_t region, int64_t rows, int64_t width,
                       int64_t clip, int64_t reach, int64_t stride,
                       int64_t tables, const int64_t *prior,
                       const int64_t *feature_base, const int64_t *lane_coefs,
                       const uint8_t *coded, const int64_t *lane_tables,
                       const int64_t *activity_context,
                       const int64_t *previous_context, const int64_t *refresh_at,
                       int64_t refreshes, uint64_t *state, const uint16_t *words,
                       int64_t n_words, int64_t *buffer, int64_t *residual) {
    Model m;
    const int64_t A = 2 * reach + 1, range = 2 * clip + 1;
    if (model_init(&m, tables, A, prior, 0, tables)) { model_free(&m); return -1; }
    int64_t *f = malloc(sizeof(int64_t) * (size_t)features);
    int64_t *seen_table = malloc(sizeof(int64_t) * (size_t)lanes);
    int64_t *seen_symbol = malloc(sizeof(int64_t) * (size_t)lanes);
    /* Per lane, its features with a nonzero coefficient (the own ones always, first: the
     * activity reads them), as contiguous (place, coefficient) rows: a lane's channel reads
     * K + 3m of the K + 3E features, and the sums are exact in any order. */
    int64_t *place = malloc(sizeof(int64_t) * (size_t)(lanes * features + 1));
    int64_t *weight = malloc(sizeof(int64_t) * (size_t)(lanes * features + 1));
    int64_t *used = malloc(sizeof(int64_t) * (size_t)(lanes + 1));
    int64_t *pending_t = NULL, *pending_s = NULL, pending = 0, capacity = 0, next = 0, ptr = 0;
    int status = 0;
    if (!f || !seen_table || !seen_symbol || !place || !weight || !used) {
        status = -1;
        goto done;
    }
    for (int64_t l = 0; l < lanes; l++) {
        used[l] = 0;
        for (int64_t q = 0; q < features; q++) {
            int64_t w = lane_coefs[q * lanes + l];
            if (q >= own && !w) continue;
            place[l * features + used[l]] = feature_base[q * lanes + l];
            weight[l * features + used[l]++] = w;
        }
    }
    for (int64_t t = 0; t < steps; t++) {
        if (next < refreshes && refresh_at[next] == t) {
            for (int64_t i = 0; i < pending; i++) count(&m, pending_t[i], pending_s[i]);
            refresh(&m);
            pending = 0;
            next++;
        }
        int64_t seen = 0;
        for (int64_t l = 0; l < lanes; l++) {
            if (!coded[l]) continue;
            int64_t inner = slot_at(t, l, audio, groups, region, rows, width);
            if (inner < 0) continue;
            int64_t acc = 0;
            const int64_t *at = place + l * features, *w = weight + l * features;
            for (int64_t q = 0; q < used[l]; q++) {
                f[q] = buffer[at[q] + inner];
                acc += w[q] * f[q];
            }
            const int64_t pred = prediction((int32_t)acc, (int32_t)clip);
            int64_t activity = audio ? llabs(f[0] - f[1]) + llabs(f[1] - f[2])
                                     : llabs(f[0] - f[2]) + llabs(f[1] - f[2]);
            int64_t idx = (l / groups + 1) * stride + inner;
            int64_t table = lane_tables[l] + activity_context[activity]
                            + previous_context[llabs(residual[idx - stride])];
            uint64_t x = state[l];
            uint32_t slot = (uint32_t)(x & (SCALE - 1));
            int64_t symbol = lookup(&m, table, slot);
            int64_t k = table * A + symbol;
            x = (uint64_t)m.freq[k] * (x >> PREC) + slot - m.cum[k];
            if (x < LOWER) {
                if (ptr >= n_words) { status = 1; goto done; }
                x = (x << 16) | words[ptr++];
            }
            state[l] = x;
            residual[idx] = symbol - reach;
            int64_t value = pred + symbol - reach + clip;
            value %= range;
            if (value < 0) value += range;
            buffer[idx] = value - clip;
            seen_table[seen] = table;
            seen_symbol[seen++] = symbol;
        }
        if (pending + seen > capacity) {
            capacity = 2 * (pending + seen) + 1024;
            int64_t *a = realloc(pending_t, sizeof(int64_t) * (size_t)capacity);
            if (!a) { status = -1; goto done; }
            pending_t = a;
            int64_t *b = realloc(pending_s, sizeof(int64_t) * (size_t)capacity);
            if (!b) { status = -1; goto done; }
            pending_s = b;
        }
        memcpy(pending_t + pending, seen_table, sizeof(int64_t) * (size_t)seen);
        memcpy(pending_s + pending, seen_symbol, sizeof(int64_t) * (size_t)seen);
        pending += seen;
    }
    if (ptr != n_words) status = 2;
    for (int64_t l = 0; l < lanes && !status; l++)
        if (state[l] != LOWER) status = 2;
done:
    free(f); free(seen_table); free(seen_symbol); free(pending_t); free(pending_s);
    free(place); free(weight); free(used);
    model_free(&m);
    return status;
}

/* x · y of s latent features, exactly: |feature| <= 127 and s < 2^15, so the sum fits
 * int32. int16 inputs: a multiply-add of pairs. */
VECTOR_CLONES
static int32_t dot(const int16_t *x, const int16_t *y, int64_t s) {
    int32_t acc = 0;
    for (int64_t k = 0; k < s; k++) acc += (int32_t)x[k] * (int32_t)y[k];
    return acc;
}

/* out[j] = x · y[j] for four y at once, so x is read once for the four. */
VECTOR_CLONES
static void dot4(const int16_t *restrict x, const int16_t *restrict y0,
                 const int16_t *restrict y1, const int16_t *restrict y2,
                 const int16_t *restrict y3, int64_t s, int64_t *out) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int64_t k = 0; k < s; k++) {
        const int32_t v = x[k];
        a0 += v * y0[k], a1 += v * y1[k], a2 += v * y2[k], a3 += v * y3[k];
    }
    out[0] = a0, out[1] = a1, out[2] = a2, out[3] = a3;
}

/* out[j] = x · ys[j] (rows of s) for j < count, four at a time. */
static void dots(const int16_t *x, const int16_t *ys, int64_t count, int64_t s, int64_t *out) {
    int64_t j = 0;
    for (; j + 4 <= count; j += 4)
        dot4(x, ys + j * s, ys + (j + 1) * s, ys + (j + 2) * s, ys + (j + 3) * s, s, out + j);
    for (; j < count; j++) out[j] = dot(x, ys + j * s, s);
}

/* The fit's features at the sampled slots: V, the values, west and north neighbours of
 * every channel (3C, s), and O, channel c's K own neighbours (C, K, s). */
typedef struct {
    const int32_t *buffer;
    int64_t C, stride, K, s;
    const int64_t *own_offset, *slots;
    int16_t *V, *O;
    int64_t *shared, *cross, *own;
} Grams;

static int feature_channels(void *ctx, int64_t c0, int64_t c1, float *unused) {
    (void)unused;
    const Grams *g = ctx;
    const int64_t C = g->C, K = g->K, s = g->s, *off = g->own_offset;
    for (int64_t c = c0; c < c1; c++) {
        const int32_t *base = g->buffer + (c + 1) * g->stride;
        for (int64_t i = 0; i < s; i++) {
            const int32_t *x = base + g->slots[i];
            g->V[c * s + i] = (int16_t)x[0];
            g->V[(C + c) * s + i] = (int16_t)x[off[0]];
            g->V[(2 * C + c) * s + i] = (int16_t)x[off[1]];
            for (int64_t k = 0; k < K; k++) g->O[(c * K + k) * s + i] = (int16_t)x[off[k]];
        }
    }
    return 0;
}

/* Item i < 3C: row i of shared (from the diagonal on, mirrored); then the C K rows of
 * cross; then channel c's own block (from the diagonal on, mirrored). */
static int gram_items(void *ctx, int64_t begin, int64_t end, float *unused) {
    (void)unused;
    const Grams *g = ctx;
    const int64_t R = 3 * g->C, K = g->K, s = g->s;
    for (int64_t item = begin; item < end; item++) {
        if (item < R) {
            dots(g->V + item * s, g->V + item * s, R - item, s, g->shared + item * R + item);
            for (int64_t j = item + 1; j < R; j++)
                g->shared[j * R + item] = g->shared[item * R + j];
        } else if (item < R + g->C * K) {
            const int64_t row = item - R;
            dots(g->O + row * s, g->V, R, s, g->cross + row * R);
        } else {
            const int64_t c = item - R - g->C * K;
            const int16_t *o = g->O + c * K * s;
            int64_t *out = g->own + c * K * K;
            for (int64_t i = 0; i < K; i++) {
                dots(o + i * s, o + i * s, K - i, s, out + i * K + i);
                for (int64_t j = i + 1; j < K; j++) out[j * K + i] = out[i * K + j];
            }
        }
    }
    return 0;
}

/* The least-squares fit's Gram matrices over the latents at `slots` (s of them, the same
 * slot in every channel's part of the zero-guarded buffer): shared = V·Vᵀ (3C, 3C),
 * cross = O·Vᵀ (C, K, 3C), own = O·Oᵀ per channel (C, K, K), with V and O as Grams says.
 * Exact (BLAS's float64 ones for the numpy coder are exact too), on `threads` threads.
 * Returns 0, -1 (no memory) or -2 (too many slots for exact int32 sums). */
int walloc_rans_grams(const int32_t *buffer, int64_t C, int64_t stride, int64_t K,
                      const int64_t *own_offset, const int64_t *slots, int64_t s,
                      int64_t *shared, int64_t *cross, int64_t *own, int threads) {
    if (s >= 1 << 15) return -2;
    Grams g = {buffer, C, stride, K, s, own_offset, slots,
               calloc((size_t)(3 * C * s + 1), sizeof(int16_t)),
               calloc((size_t)(C * K * s + 1), sizeof(int16_t)), shared, cross, own};
    int status = !g.V || !g.O ||
                 walloc_parallel(feature_channels, &g, C, 1, threads, 0) ||
                 walloc_parallel(gram_items, &g, 3 * C + C * K + C, 1, threads, 0) ? -1 : 0;
    free(g.V);
    free(g.O);
    return status;
}

/* Residuals and contexts of a tile's latents X (C, n), in int32 (exact: |coefficient| <
 * 2^15, |latent| < 2^7, at most 52 terms). buffer: the layout's zero-guarded buffer of X
 * ((C + 1) * stride, channel c at (c + 1) * stride; images: rows + 1 lines of width + 2,
 * audio: groups runs of region + 3). coefs (C, K + 3C): each channel's row (own taps at
 * own_offset, then value, west and north taps of every channel, zero where unsent); constant
 * channels (constant[c]) are skipped. Each residual is wrapped into ±clip; writes coded
 * (C, n): table << 8 | symbol, the table c * contexts + activity_context[activity] +
 * previous_context[|residual of channel c - 1|] and the symbol residual + reach; returns
 * the reach, the largest |residual| (so symbols < 2 reach + 1 <= 255), or -1. Channels
 * over `threads` threads: first every residual, then the tables (which read the previous
 * channel's). */
typedef struct {
    int64_t C, n, rows, width, groups, region, stride, K, clip, contexts;
    int audio;
    const int64_t *own_offset, *activity_context, *previous_context;
    const int32_t *buffer, *coefs;
    const uint8_t *constant;
    int32_t *residual;  /* (C, n) */
    uint32_t *coded;    /* (C, n) */
    int64_t *reach;     /* per channel; then reach[C], the tile's */
    int32_t *activity32, *previous32; /* the context tables in int32 */
    int32_t *zeros;     /* a line of zeros: channel 0's "previous residuals" */
} Residuals;

/* The layout's lines of channel c: (lines, latents a line, buffer stride of a line, the
 * first latent's slot in the channel's part of the buffer). */
#define LINES(r) (r->audio ? r->groups : r->rows)
#define SPAN(r) (r->audio ? r->region : r->width)
#define LINE_STRIDE(r) (r->audio ? r->region + 3 : r->width + 2)
#define FIRST(r) (r->audio ? 3 : r->width + 3)

VECTOR_CLONES
static int residual_channels(void *ctx, int64_t c0, int64_t c1, float *acc) {
    Residuals *r = ctx;
    const int64_t K = r->K, C = r->C, n = r->n, F = K + 3 * C, span = SPAN(r);
    const int32_t range = 2 * (int32_t)r->clip + 1;
    const int32_t clip = (int32_t)r->clip;
    int32_t *weight = malloc(sizeof(int32_t) * (size_t)F);
    int64_t *offset = malloc(sizeof(int64_t) * (size_t)F);
    if (!weight || !offset) {
        free(weight); free(offset);
        return -1;
    }
    for (int64_t c = c0; c < c1; c++) {
        const int32_t *row = r->coefs + c * F;
        int32_t reach = 0;
        int64_t taps = 0; /* the channel's features with a coefficient: where, and how much */
        for (int64_t f = 0; f < F; f++) {
            if (!row[f]) continue;
            int64_t e = f < K ? c : (f - K) % C, kind = f < K ? -1 : (f - K) / C;
            weight[taps] = row[f];
            offset[taps++] = (e - c) * r->stride +
                (f < K ? r->own_offset[f] : kind == 0 ? 0 : r->own_offset[kind - 1]);
        }
        for (int64_t line = 0; line < LINES(r); line++) {
            int64_t p0 = line * span, m = p0 + span < n ? span : n - p0;
            if (m <= 0) break;
            const int32_t *here = r->buffer + (c + 1) * r->stride + FIRST(r) +
                                  line * LINE_STRIDE(r);
            int32_t *res = r->residual + c * n + p0, *sum = (int32_t *)acc;
            if (r->constant[c]) {
                memset(res, 0, sizeof(int32_t) * (size_t)m);
                continue;
            }
            /* The sums four features a pass (exact integers: any order is the same sum) */
            for (int64_t i = 0; i < m; i++) sum[i] = 0;
            int64_t q = 0;
            for (; q + 4 <= taps; q += 4) {
                const int32_t *x0 = here + offset[q], *x1 = here + offset[q + 1],
                              *x2 = here + offset[q + 2], *x3 = here + offset[q + 3];
                const int32_t w0 = weight[q], w1 = weight[q + 1], w2 = weight[q + 2],
                              w3 = weight[q + 3];
                for (int64_t i = 0; i < m; i++)
                    sum[i] += w0 * x0[i] + w1 * x1[i] + w2 * x2[i] + w3 * x3[i];
            }
            for (; q < taps; q++) {
                const int32_t *x = here + offset[q], w = weight[q];
                for (int64_t i = 0; i < m; i++) sum[i] += w * x[i];
            }
            /* The residual wrapped into the range: one step up or down where the latent is
             * in range (always, but for hand-made latents: then with a division), so the
             * loop vectorises. */
            int32_t wild = 0;
            for (int64_t i = 0; i < m; i++) {
                int32_t v = here[i] - prediction(sum[i], clip) + clip;
                wild |= (v < -range) | (v >= 2 * range);
                v = v < 0 ? v + range : v >= range ? v - range : v;
                res[i] = v - clip;
            }
            for (int64_t i = 0; i < m && wild; i++) {
                int64_t v = (here[i] - prediction(sum[i], clip) + clip) % range;
                res[i] = (int32_t)((v < 0 ? v + range : v) - clip);
            }
            for (int64_t i = 0; i < m; i++) {
                int32_t e = res[i] < 0 ? -res[i] : res[i];
                reach = e > reach ? e : reach;
            }
        }
        r->reach[c] = reach;
    }
    free(weight); free(offset);
    return 0;
}

/* Each latent's table << 8 | symbol. In int32 (the context tables' copies in Residuals):
 * the loop vectorises, its lookups as gathers. */
VECTOR_CLONES
static int table_channels(void *ctx, int64_t c0, int64_t c1, float *unused) {
    (void)unused;
    Residuals *r = ctx;
    const int64_t n = r->n, span = SPAN(r), *own = r->own_offset;
    const int32_t *activity_context = r->activity32, *previous_context = r->previous32;
    const int32_t reach = (int32_t)r->reach[r->C], audio = r->audio;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t line = 0; line < LINES(r); line++) {
            int64_t p0 = line * span, m = p0 + span < n ? span : n - p0;
            if (m <= 0) break;
            const int32_t *here = r->buffer + (c + 1) * r->stride + FIRST(r) +
                                  line * LINE_STRIDE(r);
            const int32_t *before = c ? r->residual + (c - 1) * n + p0 : r->zeros;
            const int32_t *res = r->residual + c * n + p0;
            const int32_t *x0 = here + own[0], *x1 = here + own[1], *x2 = here + own[2];
            const int32_t first = (int32_t)(c * r->contexts);
            uint32_t *out = r->coded + c * n + p0;
            for (int64_t i = 0; i < m; i++) {
                const int32_t a0 = x0[i], a1 = x1[i], a2 = x2[i];
                const int32_t activity = audio ? abs(a0 - a1) + abs(a1 - a2)
                                               : abs(a0 - a2) + abs(a1 - a2);
                const int32_t table = first + activity_context[activity] +
                                      previous_context[abs(before[i])];
                out[i] = (uint32_t)table << 8 | (uint32_t)(res[i] + reach);
            }
        }
    return 0;
}

int64_t walloc_rans_residuals(int64_t C, int64_t n, int audio, int64_t rows, int64_t width,
                              int64_t groups, int64_t region, int64_t stride, int64_t K,
                              const int64_t *own_offset, const int32_t *buffer,
                              const int32_t *coefs, const uint8_t *constant, int64_t clip,
                              int64_t contexts, const int64_t *activity_context,
                              const int64_t *previous_context, uint32_t *coded, int threads) {
    int64_t *reach = calloc((size_t)C + 1, sizeof(int64_t)), out = -1;
    int32_t *residual = malloc(sizeof(int32_t) * (size_t)(C * n + 1));
    int64_t span = audio ? region : width;
    int32_t *activity32 = malloc(sizeof(int32_t) * (size_t)(4 * clip + 1));
    int32_t *previous32 = malloc(sizeof(int32_t) * (size_t)(clip + 1));
    int32_t *zeros = calloc((size_t)(span > 0 ? span : 1), sizeof(int32_t));
    Residuals r = {C, n, rows, width, groups, region, stride, K, clip, contexts, audio,
                   own_offset, activity_context, previous_context, buffer, coefs, constant,
                   residual, coded, reach, activity32, previous32, zeros};
    if (reach && residual && activity32 && previous32 && zeros &&
        !walloc_parallel(residual_channels, &r, C, 1, threads, span > 0 ? span : 1)) {
        for (int64_t c = 0; c < C; c++) reach[C] = reach[c] > reach[C] ? reach[c] : reach[C];
        for (int64_t a = 0; a <= 4 * clip; a++) activity32[a] = (int32_t)activity_context[a];
        for (int64_t a = 0; a <= clip; a++) previous32[a] = (int32_t)previous_context[a];
        if (!walloc_parallel(table_channels, &r, C, 1, threads, 0)) out = reach[C];
    }
    free(reach);
    free(residual);
    free(activity32);
    free(previous32);
    free(zeros);
    return out;
}

/* Encode a tile: lane l codes the latents of channel l / groups in the layout's order, each
 * with its symbol in its table (coded (C, n) from walloc_rans_residuals);
 * lanes of constant channels and lanes without a latent at a step code "nothing" (table
 * `tables`). The frequencies as the decoder will see them, then rANS backwards from state
 * 2^16. Writes the final states and the words in decoding order; returns the word count,
 * or -1.
 *
 * A channel's tables learn from its own latents only, so the threads take channels one at
 * a time, each with a model of that channel's tables alone, and each channel's words are
 * kept apart per step; the words are then merged as one thread would have written them. */
typedef struct {
    int64_t steps, lanes, groups, region, rows, width, n, tables, reach, refreshes;
    int audio;
    const uint8_t *constant;
    const int64_t *prior, *refresh_at;
    const uint32_t *coded; /* (C, n): table << 8 | symbol */
    uint64_t *state;
    uint16_t *words;     /* channel c's words at c * (steps * groups + 1): a spare slot each */
    int64_t *step_start; /* (C, steps + 1): where each step's words begin, backwards */
} Encoding;

#ifdef WALLOC_X86_CLONES
#include <immintrin.h>

/* encode_channels' backward step on `count` lanes of one channel (a multiple of 8), 8 at a
 * time in AVX-512: the same states and words. The words of the lanes that emit are packed
 * in lane order (a compress) and stored as many as there are. The quotient needs no
 * correction here: x < 2^32 and f <= 2^15 are exact in double, and x / f is an integer or
 * at least 1 / f >= 2^-15 from one, far more than the division's error (2^-53 x / f <
 * 2^-21), so its truncation is floor(x / f). Returns where the channel's words go on. */
__attribute__((target("arch=x86-64-v4")))
static int64_t push_lanes_avx512(const uint32_t *entry, uint64_t *state, uint16_t *words,
                                 int64_t w, int64_t count) {
    const __m256i scale = _mm256_set1_epi32((int)SCALE), low = _mm256_set1_epi32(0xFFFF);
    for (int64_t j = 0; j < count; j += 8) {
        const __m256i fc = _mm256_loadu_si256((const __m256i *)(entry + j));
        const __m256i f = _mm256_srli_epi32(fc, 16);
        const __mmask8 active = _mm256_cmpneq_epi32_mask(f, scale);
        __m256i x = _mm512_cvtepi64_epi32(_mm512_loadu_si512(state + j)); /* x < 2^32 */
        const __mmask8 emit = _mm256_mask_cmpge_epu32_mask(active, x,
                                                            _mm256_slli_epi32(f, 32 - PREC));
        const __m128i out = _mm256_cvtepi32_epi16(_mm256_maskz_compress_epi32(emit, x));
        const int n = __builtin_popcount(emit);
        _mm_mask_storeu_epi16(words + w, (__mmask8)((1u << n) - 1), out);
        w += n;
        x = _mm256_mask_srli_epi32(x, emit, x, 16);
        const __m256i q = _mm512_cvttpd_epu32(
            _mm512_div_pd(_mm512_cvtepu32_pd(x), _mm512_cvtepu32_pd(f)));
        x = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_mullo_epi32(q, _mm256_sub_epi32(scale, f))),
                             _mm256_and_si256(fc, low));
        _mm512_mask_storeu_epi64(state + j, active, _mm512_cvtepu32_epi64(x));
    }
    return w;
}
#endif

static int encode_channels(void *ctx, int64_t c0, int64_t c1, float *unused) {
    (void)unused;
    Encoding *e = ctx;
    const int64_t A = 2 * e->reach + 1, G = e->groups, l0 = c0 * G, lanes = (c1 - c0) * G;
    const int64_t steps = e->steps, n = e->n, region = e->region, width = e->width;
    Model m;
    /* (steps, lanes): each latent's Model.packed (its frequencies), in coding order */
    uint32_t *entry = malloc(sizeof(uint32_t) * (size_t)(steps * lanes + 1));
    int64_t *row = calloc((size_t)lanes + 1, sizeof(int64_t));
    int64_t *col = calloc((size_t)lanes + 1, sizeof(int64_t));
    int64_t *written = calloc((size_t)(c1 - c0) + 1, sizeof(int64_t));
    const int64_t per_channel = e->tables / (e->lanes / G);
    int ok = entry && row && col && written;
    if (ok && model_init(&m, e->tables, A, e->prior, c0 * per_channel, c1 * per_channel)) {
        model_free(&m);
        ok = 0;
    }
    if (!ok) goto release;
    /* One pass in coding order: each lane's next latent, its frequencies under the model as
     * the decoder will see them, and its count (counts change the frequencies only at the
     * refresh steps, so counting at once is counting at the end of the interval). Lane l
     * (channel c, part g) starts at step c (audio) or c + g * region (images, a wavefront)
     * and then codes its part's latents in order, one a step (images: its strip row by
     * row), as layout.py's Layout.schedule. */
    const uint32_t nothing = SCALE << 16;  /* "nothing": frequency 2^15, cumulative 0 */
    for (int64_t t = 0, next = 0; t < steps; t++) {
        if (next < e->refreshes && e->refresh_at[next] == t) {
            refresh(&m);
            next++;
        }
        uint32_t *out = entry + t * lanes;
        for (int64_t c = c0, j = 0; c < c1; c++) {
            const uint32_t *coded = e->coded + c * n;
            if (e->constant[c] || t < c) {
                for (int64_t g = 0; g < G; g++) out[j++] = nothing;
                continue;
            }
            for (int64_t g = 0; g < G; g++, j++) {
                int64_t local = e->audio ? t - c : t - c - g * region, p = -1;
                if (local < 0) {
                } else if (e->audio) {
                    if (local < region && g * region + local < width) p = g * region + local;
                } else if (row[j] < e->rows) {  /* the next latent of the strip */
                    if (g * region + col[j] < width) p = row[j] * width + g * region + col[j];
                    if (!col[j] && row[j] + AHEAD < e->rows) {  /* a row each region */
                        const int64_t q = (row[j] + AHEAD) * width + g * region;
                        __builtin_prefetch(coded + q);
                        __builtin_prefetch(coded + q + region - 1);
                    }
                    if (++col[j] == region) col[j] = 0, row[j]++;
                }
                if (p < 0) {
                    out[j] = nothing;
                    continue;
                }
                const uint32_t packed = coded[p];
                const int64_t tab = packed >> 8, symbol = packed & 0xFF, k = tab * A + symbol;
                out[j] = m.packed[k];
                count(&m, tab, symbol);
            }
        }
    }
    /* Backwards, each step's words appended per channel, in lane order. x / f in double
     * (x < 2^32 and f <= 2^15 are exact there), corrected by one where the quotient
     * rounded up: a 64-bit integer division costs more than the rest of the step, and
     * independent lanes keep the floating divider busy. */
    for (int64_t j = 0; j < lanes; j++) e->state[l0 + j] = LOWER;
#ifdef WALLOC_X86_CLONES
    const int wide = __builtin_cpu_supports("x86-64-v4");
#endif
    for (int64_t t = steps - 1; t >= 0; t--) {
        for (int64_t c = c0; c < c1; c++) e->step_start[c * (steps + 1) + t] = written[c - c0];
        for (int64_t c = c0, j = 0; c < c1; c++) {
            uint16_t *words = e->words + c * (steps * G + 1);
            int64_t w = written[c - c0], g = 0;
#ifdef WALLOC_X86_CLONES
            if (wide) {
                g = G / 8 * 8;
                w = push_lanes_avx512(entry + t * lanes + j, e->state + l0 + j, words, w, g);
                j += g;
            }
#endif
            for (; g < G; g++, j++) {
                const uint32_t fc = entry[t * lanes + j];
                const uint64_t f = fc >> 16;
                if (f == SCALE) continue;  /* a symbol with every slot leaves the state */
                uint64_t x = e->state[l0 + j];
                /* at most one word a latent (room for all), written without a branch: */
                const int emit = x >= (f << (32 - PREC));  /* which is hard to predict */
                words[w] = (uint16_t)(x & 0xFFFF);
                w += emit;
                x >>= 16 * emit;
                uint64_t q = (uint64_t)((double)x / (double)f);
                if (q * f > x) q--;
                else if ((q + 1) * f <= x) q++;
                e->state[l0 + j] = x + q * (SCALE - f) + (fc & 0xFFFF);
            }
            written[c - c0] = w;
        }
    }
    for (int64_t c = c0; c < c1; c++) e->step_start[c * (steps + 1) + steps] = written[c - c0];
    model_free(&m);
release:
    free(entry); free(row); free(col); free(written);
    return ok ? 0 : -1;
}

int64_t walloc_rans_encode(int64_t steps, int64_t lanes, int audio, int64_t groups,
                           int64_t region, int64_t rows, int64_t width, int64_t n,
                           const uint8_t *constant, int64_t tables, int64_t reach,
                           const int64_t *prior, const uint32_t *coded,
                           const int64_t *refresh_at, int64_t refreshes, uint64_t *state,
                           uint16_t *words, int64_t capacity, int threads) {
    const int64_t C = groups ? lanes / groups : 0;
    Encoding e = {steps, lanes, groups, region, rows, width, n, tables, reach, refreshes, audio,
                  constant, prior, refresh_at, coded, state,
                  malloc(sizeof(uint16_t) * (size_t)(C * (steps * groups + 1) + 1)),
                  malloc(sizeof(int64_t) * (size_t)(C * (steps + 1) + 1))};
    int64_t out = -1;
    if (e.words && e.step_start && !walloc_parallel(encode_channels, &e, C, 1, threads, 0)) {
        /* The decoder reads step 0's words first, in lane order: channel by channel. */
        out = 0;
        for (int64_t t = 0; t < steps && out >= 0; t++)
            for (int64_t c = 0; c < C; c++) {
                const int64_t *start = e.step_start + c * (steps + 1);
                int64_t begin = start[t], end = t == 0 ? start[steps] : start[t - 1];
                if (out + end - begin > capacity) {
                    out = -1;
                    break;
                }
                memcpy(words + out, e.words + c * (steps * groups + 1) + begin,
                       sizeof(uint16_t) * (size_t)(end - begin));
                out += end - begin;
            }
    }
    free(e.words); free(e.step_start);
    return out;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "The rans coder's loops in C (called through ctypes).",
                                    -1, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
