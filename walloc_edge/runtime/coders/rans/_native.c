/* The rans coder's two loops in C: the adaptive model with the rANS state updates, decoding
 * (prediction included) and encoding. The numpy code beside this file (model.py, layout.py,
 * __init__.py) is the readable reference; these functions compute exactly what it computes,
 * in the same integers, so the bytes and latents are the same (tests/test_rans_native.py).
 *
 * Built by pip as an optional extension (a compiler is needed; without one the numpy coder
 * runs) and called through ctypes from native.py, so the module has no Python API to speak
 * of: PyInit__native only makes it importable.
 */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bumped whenever a signature below changes: native.py refuses a library of another
 * version (a stale build) instead of calling it with the wrong arguments. */
#define WALLOC_RANS_ABI 2

int walloc_rans_abi(void) { return WALLOC_RANS_ABI; }

#define PREC 15
#define SCALE (1u << PREC)
#define LOWER (1ull << 16)
#define INCREMENT 32
#define HALVE_AT (1ll << 22)

/* Frequencies of every (channel, context) table; table `tables` is "nothing". */
typedef struct {
    int64_t tables, symbols;
    int64_t *counts, *totals;  /* (tables, symbols), (tables) */
    uint32_t *freq, *cum;      /* (tables + 1, symbols) */
    int64_t *touched;          /* per table: symbols counted since the last refresh */
} Model;

static void rebuild(Model *m, int64_t t) {
    const int64_t A = m->symbols, *counts = m->counts + t * A;
    uint32_t *freq = m->freq + t * A, *cum = m->cum + t * A;
    int64_t sum = 0, best = 0;
    for (int64_t s = 0; s < A; s++) {
        freq[s] = (uint32_t)(1 + counts[s] * (int64_t)(SCALE - A) / m->totals[t]);
        sum += freq[s];
        if (counts[s] > counts[best]) best = s;  /* the first of equal maxima, as argmax */
    }
    freq[best] += (uint32_t)(SCALE - sum);
    uint32_t running = 0;
    for (int64_t s = 0; s < A; s++) { cum[s] = running; running += freq[s]; }
}

static int model_init(Model *m, int64_t tables, int64_t symbols, const int64_t *prior) {
    m->tables = tables; m->symbols = symbols;
    m->counts = malloc(sizeof(int64_t) * tables * symbols);
    m->totals = malloc(sizeof(int64_t) * tables);
    m->freq = calloc((size_t)(tables + 1) * symbols, sizeof(uint32_t));
    m->cum = calloc((size_t)(tables + 1) * symbols, sizeof(uint32_t));
    m->touched = calloc((size_t)tables, sizeof(int64_t));
    if (!m->counts || !m->totals || !m->freq || !m->cum || !m->touched) return -1;
    int64_t total = 0;
    for (int64_t s = 0; s < symbols; s++) total += prior[s];
    for (int64_t t = 0; t < tables; t++) {
        memcpy(m->counts + t * symbols, prior, sizeof(int64_t) * symbols);
        m->totals[t] = total;
        rebuild(m, t);
    }
    m->freq[tables * symbols] = SCALE;  /* nothing: symbol 0 with every slot */
    for (int64_t s = 1; s < symbols; s++) m->cum[tables * symbols + s] = SCALE;
    return 0;
}

static void model_free(Model *m) {
    free(m->counts); free(m->totals); free(m->freq); free(m->cum); free(m->touched);
}

static inline void count(Model *m, int64_t table, int64_t symbol) {
    if (table >= m->tables) return;
    m->counts[table * m->symbols + symbol] += INCREMENT;
    m->totals[table] += INCREMENT;
    m->touched[table] = 1;
}

/* After counting one refresh interval: halve the tables past HALVE_AT, rebuild the touched. */
static void refresh(Model *m) {
    const int64_t A = m->symbols;
    for (int64_t t = 0; t < m->tables; t++) {
        if (!m->touched[t]) continue;
        if (m->totals[t] > HALVE_AT) {
            int64_t total = 0;
            for (int64_t s = 0; s < A; s++) {
                m->counts[t * A + s] = (m->counts[t * A + s] + 1) / 2;
                total += m->counts[t * A + s];
            }
            m->totals[t] = total;
        }
        rebuild(m, t);
        m->touched[t] = 0;
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

static inline int64_t floor_shift(int64_t x, int bits) {  /* numpy's >> on int64 */
    return x >= 0 ? x >> bits : -((-x + (1ll << bits) - 1) >> bits);
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
 * lane_coefs (F, lanes), lane_tables and coded (lanes: 0 for a constant channel's lanes);
 * the layout (audio, groups, region, rows, width, stride) places each lane at each step.
 * buffer and residual have size + 1 slots. refresh: sorted steps.
 * Returns 0, 1 (truncated), 2 (did not end in the initial state), -1 (no memory). */
int walloc_rans_decode(int64_t steps, int64_t lanes, int64_t features, int audio,
                       int64_t groups, int64_t region, int64_t rows, int64_t width,
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
    if (model_init(&m, tables, A, prior)) { model_free(&m); return -1; }
    int64_t *f = malloc(sizeof(int64_t) * (size_t)features);
    int64_t *seen_table = malloc(sizeof(int64_t) * (size_t)lanes);
    int64_t *seen_symbol = malloc(sizeof(int64_t) * (size_t)lanes);
    int64_t *pending_t = NULL, *pending_s = NULL, pending = 0, capacity = 0, next = 0, ptr = 0;
    int status = 0;
    if (!f || !seen_table || !seen_symbol) { status = -1; goto done; }
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
            for (int64_t q = 0; q < features; q++) {
                f[q] = buffer[feature_base[q * lanes + l] + inner];
                acc += lane_coefs[q * lanes + l] * f[q];
            }
            int64_t pred = floor_shift(acc + 128, 8);
            pred = pred < -clip ? -clip : pred > clip ? clip : pred;
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
    model_free(&m);
    return status;
}

/* Encode (steps, lanes) symbols of (steps, lanes) tables (the value `tables` for "nothing"):
 * the frequencies as the decoder will see them, then rANS backwards from state 2^16. Writes
 * the final states and the words in decoding order; returns the word count, or -1. */
int64_t walloc_rans_encode(int64_t steps, int64_t lanes, int64_t tables, int64_t reach,
                           const int64_t *prior, const int64_t *table_at,
                           const int64_t *symbol_at, const int64_t *refresh_at,
                           int64_t refreshes, uint32_t *freq_out, uint32_t *cum_out,
                           uint64_t *state, uint16_t *words, int64_t capacity) {
    Model m;
    const int64_t A = 2 * reach + 1;
    if (model_init(&m, tables, A, prior)) { model_free(&m); return -1; }
    int64_t next = 0, start = 0;
    for (int64_t t = 0; t <= steps; t++) {
        if (t == steps || (next < refreshes && refresh_at[next] == t)) {
            for (int64_t i = start; i < t * lanes; i++) count(&m, table_at[i], symbol_at[i]);
            refresh(&m);
            start = t * lanes;
            if (t < steps) next++;
        }
        if (t == steps) break;
        for (int64_t l = 0; l < lanes; l++) {
            int64_t i = t * lanes + l, k = table_at[i] * A + symbol_at[i];
            freq_out[i] = m.freq[k];
            cum_out[i] = m.cum[k];
        }
    }
    model_free(&m);
    /* Backwards, each step's emitted words appended; reversed by steps at the end. */
    int64_t written = 0;
    int64_t *step_start = malloc(sizeof(int64_t) * (size_t)(steps + 1));
    uint16_t *scratch = malloc(sizeof(uint16_t) * (size_t)(capacity > 0 ? capacity : 1));
    if (!step_start || !scratch) { free(step_start); free(scratch); return -1; }
    for (int64_t l = 0; l < lanes; l++) state[l] = LOWER;
    for (int64_t t = steps - 1; t >= 0; t--) {
        step_start[t] = written;
        for (int64_t l = 0; l < lanes; l++) {
            int64_t i = t * lanes + l;
            uint64_t f = freq_out[i], x = state[l];
            if (x >= (f << (32 - PREC))) {
                if (written >= capacity) { free(step_start); free(scratch); return -1; }
                scratch[written++] = (uint16_t)(x & 0xFFFF);
                x >>= 16;
            }
            state[l] = x + (x / f) * (SCALE - f) + cum_out[i];
        }
    }
    step_start[steps] = written;
    /* The decoder reads step 0's words first, in lane order. */
    int64_t out = 0;
    for (int64_t t = 0; t < steps; t++) {
        int64_t begin = step_start[t], end = t == 0 ? written : step_start[t - 1];
        for (int64_t i = begin; i < end; i++) words[out++] = scratch[i];
    }
    free(step_start); free(scratch);
    return out;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "The rans coder's loops in C (called through ctypes).",
                                    -1, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
