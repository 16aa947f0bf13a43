"""The adaptive probability model: frequencies per (channel, context) table, in integers only,
learned identically by encoder and decoder from the latents already coded."""
import functools

import numpy as np

PREC = 15                # probabilities in units of 2^-15
SCALE = 1 << PREC
PRIOR_DECAY_Q16 = 34905  # exp(−1/1.6): the prior's Laplace width, in Q16
PRIOR_WEIGHT = 16        # the prior counts as this many increments…
INCREMENT = 32           # …of one coded latent
HALVE_AT = 1 << 22       # counts of a context are halved past this total (keeps adapting)
REFRESH = 16             # steps between frequency refreshes, at least (then t / 8)


@functools.lru_cache(maxsize=8)
def refresh_steps(steps):
    """Steps before which the frequencies are rebuilt: 1, 2, 4, 8, then every 16 steps
    until step 128, then every t / 8 steps (the counts change less as they grow). Kept for
    the last tile sizes seen (a sensor's are all one): building it is a python loop."""
    out, t = [], 1
    while t < steps:
        out.append(t)
        t += t if t < REFRESH else max(REFRESH, t // 8)
    return tuple(out)


def laplace_prior(reach):
    """(2·reach + 1,) int64: the counts every table starts from, a discrete Laplace over the
    residuals −reach … reach."""
    w = [1 << 40]
    for _ in range(reach):
        w.append(w[-1] * PRIOR_DECAY_Q16 >> 16)
    total = w[0] + 2 * sum(w[1:])
    return np.array([1 + w[abs(s - reach)] * PRIOR_WEIGHT * INCREMENT // total
                     for s in range(2 * reach + 1)], np.int64)


class Model:
    """Adaptive frequencies of ``tables`` tables over the residuals −reach … reach.

    Table ``tables`` (after the real ones) is "nothing": symbol 0 with frequency 2^15 and
    cumulative 0, for lanes that code no latent at a step; it leaves their state unchanged.
    ``decoding``: also keep the sorted keys that ``lookup`` searches (the encoder needs none)."""

    def __init__(self, tables, reach, decoding=False):
        self.symbols = A = 2 * reach + 1
        self.tables = tables
        self.nothing = tables
        self.counts = np.tile(laplace_prior(reach), (tables, 1))  # (tables, A)
        self.totals = self.counts.sum(axis=1)                      # (tables,)
        self.freq = np.zeros((tables + 1, A), np.uint64)
        self.cum = np.zeros((tables + 1, A), np.uint64)
        self.freq[tables, 0], self.cum[tables, 1:] = SCALE, SCALE
        self.keys = self.cum.astype(np.int64) + SCALE * np.arange(tables + 1)[:, None] \
            if decoding else None
        self.rebuild(slice(0, tables))

    def rebuild(self, rows):
        """Frequencies summing to 2^15 (each ≥ 1) from the counts of tables ``rows`` (indices
        or a slice), into flat arrays for lookup."""
        counts = self.counts[rows]
        freq = 1 + counts * (SCALE - self.symbols) // self.totals[rows, None]
        freq[np.arange(len(freq)), np.argmax(counts, axis=1)] += SCALE - freq.sum(axis=1)
        cum = np.cumsum(freq, axis=1) - freq
        self.freq[rows] = freq
        self.cum[rows] = cum
        if self.keys is not None:
            # Strictly increasing over all tables: table t's slots live in [t·2^15, (t+1)·2^15).
            self.keys[rows] = cum + SCALE * np.arange(self.tables)[rows, None]

    def lookup(self, table, slot):
        """Flat index (table · A + symbol) of the symbol whose slots hold ``slot``."""
        return np.searchsorted(self.keys.ravel(), table * SCALE + slot, "right") - 1

    def learn(self, table, symbol):
        """Count coded latents, then rebuild the frequencies of the tables they touched
        ("nothing" lanes are not counted)."""
        real = table < self.tables
        table, symbol = table[real], symbol[real]
        self.counts += INCREMENT * np.bincount(
            table * self.symbols + symbol, minlength=self.counts.size).reshape(self.counts.shape)
        per_table = np.bincount(table, minlength=self.tables)
        self.totals += INCREMENT * per_table
        big = np.flatnonzero(self.totals > HALVE_AT)
        if len(big):
            self.counts[big] = (self.counts[big] + 1) // 2
            self.totals[big] = self.counts[big].sum(axis=1)
        touched = np.flatnonzero(per_table)
        self.rebuild(slice(0, self.tables) if len(touched) == self.tables else touched)
