"""``rans``: the project's entropy coder, interleaved rANS vectorised in numpy.

Model (causal, adaptive, integers only):
- Prediction. Each latent is predicted by a per-channel linear predictor from its causal
  neighbours in its own channel (images: west, north, north-west, north-east; audio: the
  three previous samples) and from up to 16 earlier channels: their latents at the same
  position and those latents' west and north neighbours; WaLLoC's channels are linear
  mixtures of the same wavelet coefficients, so the earlier channels predict much of each
  later one. The encoder fits the coefficients by
  least squares on the tile and sends them in Q8 (int16).
- Probabilities. The residual, wrapped into the latent range, is coded with adaptive
  frequencies per channel and context: the local activity |W − NW| + |N − NW| (audio: the
  same on the previous samples) and the size of the previous channel's residual at the same
  position. The tables span only the residuals the tile has, −reach … reach (the reach is
  sent): trained models' latents are small, and every symbol a table holds costs it
  probability. Frequencies start from a Laplace prior and learn from the latents already
  coded, refreshed at fixed steps (1, 2, 4, 8, every 16 to 128, then every t/8), identically
  in encoder and decoder, so no table travels in the stream.

Coding: 32-bit rANS states, 16-bit renormalisation words, 15-bit probabilities. Each channel
is cut into parts (images: column strips, coded as a wavefront that keeps every latent's
whole causal context; audio: runs of samples) and every (channel, part) pair is one rANS
lane; all lanes advance together, one numpy operation per step for all of them, channel c
lagging one step behind channel c − 1 so that the earlier channels at a position are decoded
before a later one needs them (see ``_Layout``).

Payload of one tile (model version 3): u32 part length (strip width, or samples for audio) ·
u8 reach · one byte per channel: m, the number of earlier channels that predict it · int16
predictor coefficients, per channel its own-neighbour taps, then m value, m west and m north
taps of channels c − m … · u32 final state per lane · u16 words, the renormalisation output
in decoding order. Everything little-endian. The decoder checks that it consumed every word
and that every lane ends in the encoder's initial state.
"""
import numpy as np

from ..errors import BitstreamError
from .base import Coder

__all__ = ["RansCoder"]

PREC = 15                # probabilities in units of 2^-15
SCALE = 1 << PREC
LOWER = 1 << 16          # states live in [2^16, 2^32)
MODEL_VERSION = 3
COEF_BITS = 8            # predictor coefficients in Q8
ACTIVITY_EDGES = np.array([1, 3, 7, 15, 30])
PREVIOUS_EDGES = np.array([2])
CONTEXTS = (len(ACTIVITY_EDGES) + 1) * (len(PREVIOUS_EDGES) + 1)  # per channel
PRIOR_DECAY_Q16 = 34905  # exp(−1/1.6): the prior's Laplace width, in Q16
PRIOR_WEIGHT = 16        # the prior counts as this many increments…
INCREMENT = 32           # …of one coded latent
HALVE_AT = 1 << 22       # counts of a context are halved past this total (keeps adapting)
REFRESH = 16             # steps between frequency refreshes, at least (then t / 8)
TARGET_LANES = 512       # lanes advance together: more lanes, fewer numpy steps…
MIN_SPAN = 1024          # …but each lane costs a 4-byte final state, so ≥ 1024 latents each
MAX_EARLIER = 16         # a channel is predicted from at most this many earlier channels
FIT_SAMPLES = 16384      # the least-squares fit looks at about this many latents per channel


def _refresh_steps(steps):
    """Steps before which the frequencies are rebuilt: 1, 2, 4, 8, then every 16 steps
    until step 128, then every t / 8 steps (the counts change less as they grow)."""
    out, t = [], 1
    while t < steps:
        out.append(t)
        t += t if t < REFRESH else max(REFRESH, t // 8)
    return out


class _Model:
    """Adaptive frequencies of every (channel, context) table, in integers only.

    Table ``tables`` (after the real ones) is "nothing": symbol 0 with frequency 2^15 and
    cumulative 0, for lanes that code no latent at a step; it leaves their state unchanged.
    ``decoding``: also keep the sorted keys that ``lookup`` searches (the encoder needs none)."""

    def __init__(self, tables, reach, decoding=False):
        self.A = A = 2 * reach + 1  # residuals −reach … reach
        self.tables = tables
        self.nothing = tables
        w = [1 << 40]
        for _ in range(reach):
            w.append(w[-1] * PRIOR_DECAY_Q16 >> 16)
        total = w[0] + 2 * sum(w[1:])
        prior = np.array([1 + w[abs(s - reach)] * PRIOR_WEIGHT * INCREMENT // total
                          for s in range(A)], np.int64)
        self.counts = np.tile(prior, (tables, 1))
        self.totals = self.counts.sum(axis=1)
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
        freq = 1 + counts * (SCALE - self.A) // self.totals[rows, None]
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
            table * self.A + symbol, minlength=self.counts.size).reshape(self.counts.shape)
        per_table = np.bincount(table, minlength=self.tables)
        self.totals += INCREMENT * per_table
        big = np.flatnonzero(self.totals > HALVE_AT)
        if len(big):
            self.counts[big] = (self.counts[big] + 1) // 2
            self.totals[big] = self.counts[big].sum(axis=1)
        touched = np.flatnonzero(per_table)
        self.rebuild(slice(0, self.tables) if len(touched) == self.tables else touched)


class _Layout:
    """Where each lane's latents lie, when it codes them, and a zero-guarded buffer.

    Lane ``c · groups + g`` codes part g of channel c, and channel c runs one step behind
    channel c − 1, so the earlier channels at a position are decoded before a later one
    needs them. The part length s is ``region``.
    - Images: part g is the column strip [g·s, (g + 1)·s), coded row by row, s steps a row;
      strip g starts g·s steps after strip g − 1, a wavefront: the west neighbour (in strip
      g − 1) and the north-east one (in strip g + 1) are decoded before a latent needs them,
      so every latent has its full causal context (this needs s ≥ 2).
    - Audio: part g is the run of samples [g·s, (g + 1)·s); a run starts without history.
    The decoder keeps latents in a buffer: per channel the picture with a zero row above and
    zero columns beside it (audio: every run after three zeros), and channel c after an
    all-zero channel −1, so every neighbour is a fixed offset away and reads zero outside the
    picture or the channels.
    """

    def __init__(self, shape, region):
        self.channels = C = shape[0]
        self.audio = len(shape) == 2
        self.width = w = shape[-1]
        self.rows = 1 if self.audio else shape[1]
        self.n = self.rows * w
        self.groups = G = -(-w // region) if 1 <= region <= w else 0
        if not G or (G > 1 and region < 2 and not self.audio):
            raise BitstreamError(f"rans region length {region} does not fit a width of {w}")
        self.region = s = region
        self.lanes = G * C
        lane = np.arange(self.lanes)
        self.lane_channel = lane // G
        self.lane_group = lane % G
        if self.audio:
            self.steps = s + C - 1
            self.stride = G * (s + 3)  # one channel
            self.own_offsets = np.array([-1, -2, -3])
        else:
            self.steps = (C - 1) + (G - 1) * s + self.rows * s
            row = w + 2
            self.stride = (self.rows + 1) * row
            self.own_offsets = np.array([-1, -row, -row - 1, -row + 1])  # W, N, NW, NE
        self.size = (C + 1) * self.stride
        self.channel_base = (np.arange(C) + 1) * self.stride

    @classmethod
    def choose(cls, shape):
        """Parts of at least MIN_SPAN latents, at most TARGET_LANES lanes in all."""
        w, n = shape[-1], int(np.prod(shape[1:]))
        most = w if len(shape) == 2 else max(1, w // 2)  # strips at least 2 wide
        groups = max(1, min(most, TARGET_LANES // shape[0], n // MIN_SPAN))
        return cls(shape, -(-w // groups))

    def _grid(self, buffer, offset=0):
        """A view of ``buffer`` over the latents' slots, moved by ``offset``: each latent's
        neighbour at that offset."""
        start = self.stride + offset
        block = buffer[start:start + self.channels * self.stride]
        if self.audio:
            return block.reshape(self.channels, self.groups, -1)[:, :, 3:]
        return block.reshape(self.channels, self.rows + 1, self.width + 2)[:, 1:, 1:-1]

    def gather(self, buffer, offset=0):
        """(channels, n): the latents held in ``buffer``, or their neighbours at ``offset``."""
        return self._grid(buffer, offset).reshape(self.channels, -1)[:, :self.n]

    def store(self, buffer, latents):
        """Write (channels, n) ``latents`` into their slots of ``buffer``."""
        grid = self._grid(buffer)
        padded = np.zeros((self.channels, grid[0].size), buffer.dtype)
        padded[:, :self.n] = latents
        grid[...] = padded.reshape(grid.shape)

    def schedule(self):
        """(steps, lanes) arrays: the position within its channel each lane codes at each
        step, that position's slot in the channel's part of the buffer, and whether the lane
        codes one at all (0 where it does not)."""
        s, w = self.region, self.width
        local = np.arange(self.steps)[:, None] - self.lane_channel
        if self.audio:
            position = self.lane_group * s + local
            valid = (local >= 0) & (local < s) & (position < w)
            slot = self.lane_group * (s + 3) + local + 3
        else:
            local = local - self.lane_group * s
            row, col = local // s, self.lane_group * s + local % s
            valid = (local >= 0) & (row < self.rows) & (col < w)
            position = row * w + col
            slot = (row + 1) * (w + 2) + col + 1
        return np.where(valid, position, 0), np.where(valid, slot, 0), valid

    def activity(self, own):
        a, b, c = own[0], own[1], own[2]
        return np.abs(a - b) + np.abs(b - c) if self.audio else np.abs(a - c) + np.abs(b - c)


def _fit_taps(own, values, K, C):
    """Per channel c: its Q8 coefficients over its K own taps and the 3·m earlier-channel taps
    (values, west, north of channels c − m … c − 1) it sends, with m = 0 where the earlier
    channels do not pay for their 16-bit coefficients.

    ``own`` (K, C, n) and ``values`` (C, n) are the features in float64. Least squares on
    evenly spaced latents. All channels share one Gram matrix of the earlier-channel
    features; what the earlier channels save is judged from the mean squared residuals v
    with and without them, at ½·log2(1 + 2πe·v) bits a latent: a Gaussian's entropy for a
    large v, and 0 for none (near-constant latents gain nothing worth a coefficient)."""
    n = values.shape[1]
    step = max(1, n // FIT_SAMPLES)
    O = own[:, :, ::step].transpose(1, 0, 2)                             # (C, K, s)
    V = np.concatenate([values[:, ::step], own[0, :, ::step], own[1, :, ::step]])
    s = V.shape[1]
    shared, cross, own_gram = V @ V.T, O @ V.T, O @ O.transpose(0, 2, 1)  # exact in float64
    for c in range(C):
        m = min(c, MAX_EARLIER)
        pick = np.concatenate([np.arange(c - m, c) + j * C for j in range(3)]).astype(int)
        gram = np.block([[own_gram[c], cross[c][:, pick]],
                         [cross[c][:, pick].T, shared[np.ix_(pick, pick)]]])
        target = np.concatenate([cross[c][:, c], shared[pick, c]])
        options = []
        for k in sorted({K, K + 3 * m}):
            beta = np.linalg.solve(gram[:k, :k] + 1e-6 * np.eye(k), target[:k])
            q = np.clip(np.round(beta * (1 << COEF_BITS)), -32767, 32767)
            b = q / (1 << COEF_BITS)
            rss = shared[c, c] - 2 * b @ target[:k] + b @ gram[:k, :k] @ b
            options.append((_bits_per_latent(max(rss, 0) / s), q.astype(np.int64)))
        (bits_own, own_only), (bits_all, row) = options[0], options[-1]
        if n * (bits_own - bits_all) <= 16 * (len(row) - K):
            row = own_only
        yield row


def _bits_per_latent(mean_square):
    return 0.5 * np.log2(1 + 2 * np.pi * np.e * mean_square)


def _coefficient_row(values, c, m, K, C):
    """Channel c's coefficients as a row over all features, from the K own taps and the 3·m
    earlier-channel taps (values, west, north of channels c − m … c − 1) it sends."""
    row = np.zeros(K + 3 * C, np.int64)
    row[:K] = values[:K]
    for j in range(3):
        row[K + j * C + c - m:K + j * C + c] = values[K + j * m:K + (j + 1) * m]
    return row


def _prediction(acc, clip):
    """A Q8 sum of coefficient × feature, rounded and clipped to the latent range."""
    rounded = (acc + (1 << (COEF_BITS - 1))) >> COEF_BITS
    return np.minimum(np.maximum(rounded, -clip), clip)  # np.clip costs more per call


class _Contexts:
    """Context number of a latent from its activity and the previous channel's residual."""

    def __init__(self, clip):
        self.activity = np.searchsorted(ACTIVITY_EDGES, np.arange(4 * clip + 1), "right") \
            * (len(PREVIOUS_EDGES) + 1)
        self.previous = np.searchsorted(PREVIOUS_EDGES, np.arange(clip + 1), "right")

    def __call__(self, activity, previous_residual):
        return self.activity[activity] + self.previous[np.abs(previous_residual)]


# Fixed own-neighbour coefficients (Q8) of the "planar" predictor: W + N − NW for images,
# the previous sample for audio. What firmware uses: no least-squares fit on the device.
PLANAR = {"image": (256, 256, -256, 0), "audio": (256, 0, 0)}


class RansCoder(Coder):
    """``predictor``: "fitted" (least squares per tile, the default) or "planar" (fixed
    coefficients; what the C encoder writes). Both decode with the same decoder."""

    name = "rans"
    max_bits = 8

    def __init__(self, predictor="fitted"):
        if predictor not in ("fitted", "planar"):
            raise ValueError(f"unknown rans predictor {predictor!r}")
        self.predictor = predictor

    def params(self, bits):
        return bytes([PREC, MODEL_VERSION])

    def _encode(self, latents, bits):
        clip = (1 << (bits - 1)) - 1
        layout = _Layout.choose(latents.shape)
        C, n, K = layout.channels, layout.n, len(layout.own_offsets)
        X = latents.reshape(C, n).astype(np.int64)
        # Features in float64: sums of integer products are exact there (< 2^53), so BLAS
        # computes the fits and predictions; channel c uses slices (views) of these.
        values_f = X.astype(np.float64)
        buffer = np.zeros(layout.size, np.float64)
        layout.store(buffer, values_f)
        own_f = np.stack([layout.gather(buffer, o) for o in layout.own_offsets])  # (K, C, n)
        west_f, north_f = own_f[0], own_f[1]
        # Columns: K own neighbours, then for each earlier channel c' its value, its west and
        # its north neighbour at the same position (K + c', K + C + c', K + 2C + c').
        coefs = np.zeros((C, K + 3 * C), np.int64)
        residual = np.zeros((C + 1, n), np.int64)  # row 0: the zero channel before the first
        rows = [np.array(PLANAR["audio" if layout.audio else "image"])] * C \
            if self.predictor == "planar" else _fit_taps(own_f, values_f, K, C)
        taps = []
        for c, row in enumerate(rows):
            m = (len(row) - K) // 3
            parts = np.split(row.astype(np.float64), [K, K + m, K + 2 * m])
            blocks = [own_f[:, c], values_f[c - m:c], west_f[c - m:c], north_f[c - m:c]]
            acc = sum(p @ b for p, b in zip(parts, blocks) if len(p))
            pred = _prediction(acc.astype(np.int64), clip)
            residual[c + 1] = (X[c] - pred + clip) % (2 * clip + 1) - clip
            taps.append(m)
            coefs[c] = _coefficient_row(row, c, m, K, C)
        reach = int(np.abs(residual).max())  # the tables span only the residuals in the tile
        contexts = _Contexts(clip)
        tables = contexts(layout.activity(own_f).astype(np.int64), residual[:-1]) \
            + CONTEXTS * np.arange(C)[:, None]

        # Forward, in coding order: each latent's frequency under the adaptive model as the
        # decoder will see it. Lanes without a latent at a step code "nothing" (frequency
        # 2^15, cumulative 0), which leaves their state unchanged.
        model = _Model(C * CONTEXTS, reach)
        position, _, valid = layout.schedule()
        at = layout.lane_channel * n + position
        tables = np.where(valid, tables.ravel()[at], model.nothing).ravel()
        symbols = np.where(valid, residual[1:].ravel()[at] + reach, 0).ravel()
        flat = tables * model.A + symbols
        freq = np.empty(at.size, np.uint64)
        cum = np.empty(at.size, np.uint64)
        bounds = np.array([0] + _refresh_steps(layout.steps) + [layout.steps]) * layout.lanes
        for t0, t1 in zip(bounds[:-1], bounds[1:]):
            freq[t0:t1] = model.freq.ravel()[flat[t0:t1]]
            cum[t0:t1] = model.cum.ravel()[flat[t0:t1]]
            model.learn(tables[t0:t1], symbols[t0:t1])
        freq, cum = freq.reshape(at.shape), cum.reshape(at.shape)

        state = np.full(layout.lanes, LOWER, np.uint64)
        limit = freq << np.uint64(32 - PREC)  # a state this large must shed 16 bits first
        # x → (x // f)·2^15 + x mod f + c, written as x + (x // f)·(2^15 − f) + c.
        spare = np.uint64(SCALE) - freq
        shift = np.uint64(16)
        chunks = []
        for t in range(layout.steps - 1, -1, -1):
            emit = state >= limit[t]
            chunks.append(state[emit])
            x = np.where(emit, state >> shift, state)
            state = x // freq[t]
            state *= spare[t]
            state += x
            state += cum[t]
        words = (np.concatenate(chunks[::-1]) & np.uint64(0xFFFF)).astype("<u2")
        sent = [np.concatenate([coefs[c, :K]] + [coefs[c, K + j * C + c - m:K + j * C + c]
                                                 for j in range(3)])
                for c, m in enumerate(taps)]
        return b"".join([np.uint32(layout.region).astype("<u4").tobytes(), bytes([reach]),
                         np.array(taps, np.uint8).tobytes(),
                         np.concatenate(sent).astype("<i2").tobytes(),
                         state.astype("<u4").tobytes(), words.tobytes()])

    def _decode(self, payload, shape, bits, params):
        if bytes(params) != self.params(bits):
            raise BitstreamError(f"rans parameters {bytes(params).hex()} are not the ones this "
                                 f"reader knows ({self.params(bits).hex()})")
        clip = (1 << (bits - 1)) - 1
        payload = memoryview(payload)
        if len(payload) < 5 + shape[0]:
            raise BitstreamError("rans payload shorter than its header")
        layout = _Layout(shape, int(np.frombuffer(payload[:4], "<u4")[0]))
        reach = payload[4]
        if reach > clip:
            raise BitstreamError(f"rans residual reach {reach} exceeds the latent range ±{clip}")
        if layout.region != _Layout.choose(shape).region:  # bounds the steps of the loop
            raise BitstreamError(f"rans region length {layout.region} is not the one the "
                                 f"format fixes for latents of shape {tuple(shape)}")
        C, n, K = layout.channels, layout.n, len(layout.own_offsets)
        min_bits = -np.log2(1 - (2 * reach) / SCALE)  # the most probable symbol's cost
        if C * n * min_bits > 8 * len(payload):
            raise BitstreamError(f"a rans payload of {len(payload)} bytes cannot hold "
                                 f"{C * n} latents")
        taps = np.frombuffer(payload[5:5 + C], np.uint8).astype(np.int64)
        if (taps > np.minimum(np.arange(C), MAX_EARLIER)).any():
            raise BitstreamError("rans payload names predictor taps that do not exist")
        at = 5 + C
        head = at + 2 * int((K + 3 * taps).sum()) + 4 * layout.lanes
        if len(payload) < head or (len(payload) - head) % 2:
            raise BitstreamError(f"rans payload of {len(payload)} bytes does not fit its "
                                 f"{layout.lanes} lanes and predictors")
        coefs = np.zeros((C, K + 3 * C), np.int64)
        for c, m in enumerate(taps):
            coefs[c] = _coefficient_row(np.frombuffer(payload[at:at + 2 * (K + 3 * m)], "<i2"),
                                        c, m, K, C)
            at += 2 * (K + 3 * m)
        state = np.frombuffer(payload[at:head], "<u4").astype(np.uint64)
        if (state < LOWER).any():
            raise BitstreamError("rans payload has an invalid initial state")
        words = np.frombuffer(payload[head:], "<u2").astype(np.uint64)

        model = _Model(C * CONTEXTS, reach, decoding=True)
        contexts = _Contexts(clip)
        A = model.A
        buffer = np.zeros(layout.size + 1, np.int64)  # the last element: a scratch slot
        residual = np.zeros(layout.size + 1, np.int64)
        _, inner, valid = layout.schedule()  # inner: the slot within a channel
        lane_c = layout.lane_channel
        index = np.where(valid, layout.channel_base[lane_c] + inner, layout.size)
        # Each lane's features lie at fixed offsets from its position within a channel: its own
        # neighbours, then the value, west and north of channels c − 1 … c − J (the zero
        # channel before the first where c − j < 0), with the coefficients in the same order.
        J = min(C - 1, MAX_EARLIER)
        earlier = lane_c - np.arange(1, J + 1)[:, None]                      # (J, lanes)
        earlier_base = (np.maximum(earlier, -1) + 1) * layout.stride
        feature_base = np.concatenate([layout.channel_base[lane_c] + layout.own_offsets[:, None],
                                       earlier_base, earlier_base + layout.own_offsets[0],
                                       earlier_base + layout.own_offsets[1]])
        lane_coefs = np.concatenate([coefs[lane_c, :K].T] + [
            np.where(earlier >= 0, coefs[lane_c, K + q * C + np.maximum(earlier, 0)], 0)
            for q in range(3)])                                               # (K + 3J, lanes)
        lane_tables = lane_c * CONTEXTS
        freq, cum = model.freq.ravel(), model.cum.ravel()  # views: learn() updates them
        refresh = set(_refresh_steps(layout.steps))
        seen_tables, seen_symbols = [], []
        ptr = 0
        for t in range(layout.steps):
            if t in refresh:
                model.learn(np.concatenate(seen_tables), np.concatenate(seen_symbols))
                seen_tables, seen_symbols = [], []
            idx = index[t]
            features = buffer[feature_base + inner[t]]
            own = features[:K]
            pred = _prediction((lane_coefs * features).sum(axis=0), clip)
            table = np.where(valid[t], lane_tables + contexts(layout.activity(own),
                                                              residual[idx - layout.stride]),
                             model.nothing)
            slot = state & np.uint64(SCALE - 1)
            key = model.lookup(table, slot.astype(np.int64))
            symbol = key - table * A
            x = freq[key] * (state >> np.uint64(PREC)) + slot - cum[key]
            need = x < LOWER
            m = int(np.count_nonzero(need))
            if ptr + m > len(words):
                raise BitstreamError("rans payload is truncated")
            x[need] = (x[need] << np.uint64(16)) | words[ptr:ptr + m]
            ptr += m
            state = x
            residual[idx] = symbol - reach
            buffer[idx] = (pred + symbol - reach + clip) % (2 * clip + 1) - clip
            seen_tables.append(table)
            seen_symbols.append(symbol)
        if ptr != len(words) or (state != LOWER).any():
            raise BitstreamError("rans payload is corrupted (the decoder did not end where "
                                 "the encoder began)")
        return layout.gather(buffer).reshape(shape).astype(np.int8)
