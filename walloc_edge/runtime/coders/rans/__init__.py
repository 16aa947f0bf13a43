"""``rans``: the project's entropy coder, interleaved rANS (numpy, and C where built).

Model (causal, adaptive, integers only; the parts live beside this file):
- Prediction (``predictor``). Each latent is predicted by a per-channel linear predictor
  from its causal neighbours in its own channel (images: west, north, north-west,
  north-east; audio: the three previous samples) and from up to 16 earlier channels: their
  latents at the same position and those latents' west and north neighbours; WaLLoC's
  channels are linear mixtures of the same wavelet coefficients, so the earlier channels
  predict much of each later one. The encoder fits the coefficients by least squares on the
  tile and sends them in Q8 (int16). A channel whose
  latents are all one value (silence, a flat sky) sends that value and nothing else.
- Probabilities (``model``). The residual, wrapped into the latent range, is coded with
  adaptive frequencies per channel and context: the local activity |W − NW| + |N − NW|
  (audio: the same on the previous samples) and the size of the previous channel's residual
  at the same position. The tables span only the residuals the tile has, −reach … reach (the
  reach is sent). Frequencies start from a Laplace prior and learn from the latents already
  coded, refreshed at fixed steps, identically in encoder and decoder, so no table travels.

Coding: 32-bit rANS states, 16-bit renormalisation words, 15-bit probabilities. Each channel
is cut into parts (``layout``: images column strips coded as a wavefront, audio runs of
samples) and every (channel, part) pair is one rANS lane; all lanes advance together, one
numpy operation per step for all of them (this module: the readable reference), or in C
(``native``: the same bytes, where the extension is built). The payload's fields:
``payload.Payload``.

Levels (``levels``, like zstd's): ``best`` (the default), ``fast`` and ``fastest`` spend less
on choosing the predictors; they write the same payload, and the coder parameters record
the level.

Model versions: 5 (the fitted predictor, with constant channels, and a mode byte per tile:
rANS, or for latents that repeat, such as a pure tone's, LZMA — ``lzma_mode``), 4 (the same
without the mode byte) and 3 (what the "planar" predictor and the C firmware encoder write)
are read; older ones are refused.
"""
import numpy as np

from ...errors import BitstreamError
from ..base import Coder
from . import levels as rans_levels, lzma_mode, native
from .layout import Layout
from .model import PREC, SCALE, Model, laplace_prior, refresh_steps
from .payload import CONSTANT, LOWER, MODE_LZMA, MODE_RANS, Payload
from .predictor import (CONTEXTS, FIXED, MAX_EARLIER, PLANAR, Contexts, coefficient_row,
                        fit_all_taps, fit_step, fit_taps, numpy_grams, prediction)

__all__ = ["RansCoder"]

STEP_BLOCK = 256  # steps of the schedule the numpy decoder makes at once (bounded memory)


class RansCoder(Coder):
    """``predictor``: "fitted" (chosen per tile as ``level`` says, the default; model
    version 5) or "planar" (fixed coefficients, what the C encoder writes; version 3). All
    decode with the same decoder."""

    name = "rans"
    max_bits = 8
    levels = rans_levels.LEVELS

    def __init__(self, predictor="fitted", level=None):
        if predictor not in ("fitted", "planar"):
            raise ValueError(f"unknown rans predictor {predictor!r}")
        self.predictor = predictor
        self.level = rans_levels.check_level(level)
        if predictor == "planar" and self.level != rans_levels.DEFAULT:
            raise ValueError("the planar rans predictor has no levels")
        self.version = 5 if predictor == "fitted" else 3

    def at_level(self, level):
        level = rans_levels.check_level(level)
        if level == self.level:
            return self
        other = RansCoder(self.predictor, level)
        other.name, other.wire_id = self.name, self.wire_id
        return other

    def params(self, bits):
        return rans_levels.params(self.version, self.level)

    def check_params(self, params):
        rans_levels.level_of(params)

    def _encode(self, latents, bits, threads):
        payload = self._encode_rans(latents, bits, threads)
        if self.version < 5:
            return payload
        if latents.ndim == 2 and self.level == "best" and lzma_mode.available():
            # audio: try copying repeats
            copied = lzma_mode.compress(latents)
            if len(copied) < len(payload):
                return bytes([MODE_LZMA]) + copied
        return bytes([MODE_RANS]) + payload

    def _encode_rans(self, latents, bits, threads):
        clip = (1 << (bits - 1)) - 1
        C = latents.shape[0]
        X = latents.reshape(C, -1)                                     # (C, n)
        layout = Layout(latents.shape, Layout.region_for(latents.shape))
        K = len(layout.own_offsets)
        fast = native.available()
        if fast:
            buffer = native.buffer(layout, X)
        else:
            X = X.astype(np.int64)
            values, own = _features(layout, X)
        if self.predictor == "planar":
            constant = np.zeros(C, bool)
            rows = [np.array(PLANAR[len(layout.shape) - 1])] * C
        elif self.level == "fastest":
            constant = X.min(axis=1) == X.max(axis=1)
            rows = [np.array(FIXED[len(layout.shape) - 1])] * C
        else:
            constant = X.min(axis=1) == X.max(axis=1)
            step = fit_step(layout.n, rans_levels.fit_samples(self.level, C))
            positions = np.arange(0, layout.n, step)
            grams = (native.grams(layout, buffer, positions, threads) if fast else
                     numpy_grams(*_fit_features(values, own, step)))
            rows = (list(fit_taps(grams, -(-layout.n // step), layout.n))
                    if self.level == "best" else fit_all_taps(grams))
        contexts = Contexts(clip)
        refresh = refresh_steps(layout.steps)
        if fast:
            coefs = np.stack([coefficient_row(r, c, (len(r) - K) // 3, K, C)
                              for c, r in enumerate(rows)])                # (C, K + 3C)
            coded, reach = native.residuals(layout, buffer, coefs, constant, clip, contexts,
                                            threads)
            states, words = native.encode(layout, coded, C * CONTEXTS, constant, reach,
                                          laplace_prior(reach), np.array(refresh, np.int64),
                                          threads)
        else:
            residual = _residuals(X, own, values, rows, constant, clip)  # (C + 1, n)
            reach = int(np.abs(residual).max())  # the tables span only the tile's residuals
            tables, symbols = _coding_order(layout, contexts, layout.activity(own), residual,
                                            reach, constant)
            model = Model(C * CONTEXTS, reach)
            states, words = _push(*_frequencies(model, tables, symbols, refresh))
        coded = ~constant[layout.lane_channel]
        return Payload(
            self.version, layout.region, reach,
            taps=np.array([CONSTANT if k else (len(r) - K) // 3
                           for k, r in zip(constant, rows)], np.uint8),
            constants=X[constant, 0].astype(np.int8),
            coefficients=np.concatenate([r for k, r in zip(constant, rows) if not k]
                                        or [np.zeros(0, np.int64)]),
            states=states[coded], words=words).pack()

    def _decode(self, payload, shape, bits, params):
        version, _ = rans_levels.level_of(params)
        clip = (1 << (bits - 1)) - 1
        if version >= 5:
            if not len(payload) or payload[0] not in (MODE_RANS, MODE_LZMA):
                raise BitstreamError("rans payload names no mode this reader knows")
            if payload[0] == MODE_LZMA:
                return lzma_mode.decompress(memoryview(payload)[1:], shape, clip)
            payload = memoryview(payload)[1:]
        region = Layout.region_for(shape)  # fixed by the shape: it bounds the decoder's steps
        layout = Layout(shape, region)
        p = Payload.unpack(payload, version, shape[0], len(layout.own_offsets), layout.groups)
        if p.region != region:
            raise BitstreamError(f"rans region length {p.region} is not the one the format "
                                 f"fixes for latents of shape {tuple(shape)}")
        if p.reach > clip:
            raise BitstreamError(f"rans residual reach {p.reach} exceeds the latent range "
                                 f"±{clip}")
        if len(p.constants) and np.abs(p.constants.astype(np.int64)).max() > clip:
            raise BitstreamError(f"a rans constant channel's value is outside ±{clip}")
        min_bits = -np.log2(1 - (2 * p.reach) / SCALE)  # the most probable symbol's cost
        if len(p.coded) * layout.n * min_bits > 8 * len(payload):
            raise BitstreamError(f"a rans payload of {len(payload)} bytes cannot hold "
                                 f"{len(p.coded) * layout.n} latents")
        return _Decoding(layout, p, clip).run().reshape(shape).astype(np.int8)


def _features(layout, X):
    """Float64 features of latents X (C, n): the values, and the own neighbours (K, C, n)
    read through the zero-guarded buffer. Sums of integer products are exact in float64
    (< 2^53), so BLAS computes the fits and predictions."""
    values = X.astype(np.float64)
    buffer = np.zeros(layout.size, np.float64)
    layout.store(buffer, values)
    return values, np.stack([layout.gather(buffer, o) for o in layout.own_offsets])


def _fit_features(values, own, step):
    """(O (C, K, s), V (3C, s)): the least-squares fit's features at every ``step``-th
    position, from ``_features``: own neighbours; values, west and north neighbours."""
    sample = own[:, :, ::step]                                                  # (K, C, s)
    return sample.transpose(1, 0, 2), np.concatenate([values[:, ::step], sample[0], sample[1]])


def _residuals(X, own, values, rows, constant, clip):
    """(C + 1, n) residuals of each channel under its sent row, wrapped into the latent range;
    row 0 is the zero channel before the first, constant channels are predicted exactly."""
    K, (C, n) = own.shape[0], X.shape
    west, north = own[0], own[1]
    residual = np.zeros((C + 1, n), np.int64)
    for c, row in enumerate(rows):
        if constant[c]:
            continue
        m = (len(row) - K) // 3
        parts = np.split(row.astype(np.float64), [K, K + m, K + 2 * m])
        blocks = [own[:, c], values[c - m:c], west[c - m:c], north[c - m:c]]
        acc = sum(part @ block for part, block in zip(parts, blocks) if len(part))  # (n,)
        pred = prediction(acc.astype(np.int64), clip)
        residual[c + 1] = (X[c] - pred + clip) % (2 * clip + 1) - clip
    return residual


def _coding_order(layout, contexts, activity, residual, reach, constant):
    """(tables, symbols): the (steps, lanes) table and symbol of each latent in coding order.
    Lanes without a latent at a step (or of a constant channel) code "nothing" (table
    C · CONTEXTS, after the real ones: frequency 2^15, cumulative 0), which leaves their
    state unchanged."""
    C, n = layout.channels, layout.n
    nothing = C * CONTEXTS
    tables = contexts(activity.astype(np.int64), residual[:-1]) \
        + CONTEXTS * np.arange(C)[:, None]                                  # (C, n)
    position, _, valid = layout.schedule()
    valid = valid & ~constant[layout.lane_channel]
    at = layout.lane_channel * n + position                                 # (steps, lanes)
    tables = np.where(valid, tables.ravel()[at], nothing)
    symbols = np.where(valid, residual[1:].ravel()[at] + reach, 0)
    return tables, symbols


def _frequencies(model, tables, symbols, refresh):
    """(steps, lanes) frequency and cumulative frequency of each latent under the adaptive
    model as the decoder will see it, learning at the ``refresh`` steps."""
    steps, lanes = tables.shape
    tables, symbols = tables.ravel(), symbols.ravel()
    flat = tables * model.symbols + symbols
    freq = np.empty(flat.size, np.uint64)
    cum = np.empty(flat.size, np.uint64)
    bounds = np.array([0, *refresh, steps]) * lanes
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        freq[t0:t1] = model.freq.ravel()[flat[t0:t1]]
        cum[t0:t1] = model.cum.ravel()[flat[t0:t1]]
        model.learn(tables[t0:t1], symbols[t0:t1])
    return freq.reshape(steps, lanes), cum.reshape(steps, lanes)


def _push(freq, cum):
    """rANS-encode (steps, lanes) symbols backwards from state 2^16: (final state per lane,
    the 16-bit words in decoding order)."""
    state = np.full(freq.shape[1], LOWER, np.uint64)
    limit = freq << np.uint64(32 - PREC)  # a state this large must shed 16 bits first
    # x → (x // f)·2^15 + x mod f + c, written as x + (x // f)·(2^15 − f) + c.
    spare = np.uint64(SCALE) - freq
    shift = np.uint64(16)
    chunks = []
    for t in range(freq.shape[0] - 1, -1, -1):
        emit = state >= limit[t]
        chunks.append(state[emit])
        x = np.where(emit, state >> shift, state)
        state = x // freq[t]
        state *= spare[t]
        state += x
        state += cum[t]
    return state, np.concatenate(chunks[::-1]) & np.uint64(0xFFFF)


class _Decoding:
    """One tile's decoder state: the latents buffer, the residuals (for contexts), the lanes'
    rANS states and where each lane's features lie."""

    def __init__(self, layout, payload, clip):
        self.layout, self.clip = layout, clip
        C, K = layout.channels, len(layout.own_offsets)
        constant = payload.taps == CONSTANT
        coefs = np.zeros((C, K + 3 * C), np.int64)
        at = 0
        for c in payload.coded:
            m = int(payload.taps[c])
            coefs[c] = coefficient_row(payload.coefficients[at:at + K + 3 * m], c, m, K, C)
            at += K + 3 * m
        self.reach = payload.reach
        self.tables = C * CONTEXTS
        self.contexts = Contexts(clip)
        self.buffer = np.zeros(layout.size + 1, np.int64)  # the last element: a scratch slot
        fill = np.zeros((C, layout.n), np.int64)
        fill[constant] = payload.constants[:, None]
        layout.store(self.buffer, fill)  # constant channels are known before any step
        self.residual = np.zeros(layout.size + 1, np.int64)
        self.coded_lane = ~constant[layout.lane_channel]
        self.state = np.full(layout.lanes, LOWER, np.uint64)
        self.state[self.coded_lane] = payload.states
        self.words = payload.words
        lane_c = layout.lane_channel
        # Each lane's features lie at fixed offsets from its position within a channel: its
        # own neighbours, then the value, west and north of channels c − 1 … c − E (the zero
        # channel before the first where c − e < 0), with the coefficients in the same order.
        E = min(C - 1, MAX_EARLIER)
        earlier = lane_c - np.arange(1, E + 1)[:, None]                     # (E, lanes)
        earlier_base = (np.maximum(earlier, -1) + 1) * layout.stride
        self.feature_base = np.concatenate([
            layout.channel_base[lane_c] + layout.own_offsets[:, None], earlier_base,
            earlier_base + layout.own_offsets[0], earlier_base + layout.own_offsets[1]])
        self.lane_coefs = np.concatenate([coefs[lane_c, :K].T] + [
            np.where(earlier >= 0, coefs[lane_c, K + q * C + np.maximum(earlier, 0)], 0)
            for q in range(3)])                                            # (K + 3E, lanes)
        self.lane_tables = lane_c * CONTEXTS
        self.K = K

    def run(self):
        """Decode every step (in C where it is built); returns the latents (C, n)."""
        if native.available():
            status = native.decode(self, laplace_prior(self.reach),
                                   np.array(refresh_steps(self.layout.steps), np.int64))
            if status == 1:
                raise BitstreamError("rans payload is truncated")
            if status:
                raise BitstreamError("rans payload is corrupted (the decoder did not end "
                                     "where the encoder began)")
            return self.layout.gather(self.buffer)
        return self._run_numpy()

    def _run_numpy(self):
        layout, reach, clip = self.layout, self.reach, self.clip
        model = Model(self.tables, reach, decoding=True)
        A, K = model.symbols, self.K
        base = layout.channel_base[layout.lane_channel]
        freq, cum = model.freq.ravel(), model.cum.ravel()  # views: learn() updates them
        refresh = set(refresh_steps(layout.steps))
        seen_tables, seen_symbols = [], []
        state, words, ptr = self.state, self.words.astype(np.uint64), 0
        for t in range(layout.steps):
            if t in refresh:
                model.learn(np.concatenate(seen_tables), np.concatenate(seen_symbols))
                seen_tables, seen_symbols = [], []
            if t % STEP_BLOCK == 0:  # each lane's slot within its channel, a block of steps
                slots, valids = layout.steps_between(t, t + STEP_BLOCK)
            inner, valid = slots[t % STEP_BLOCK], valids[t % STEP_BLOCK] & self.coded_lane
            idx = np.where(valid, base + inner, layout.size)
            features = self.buffer[self.feature_base + inner]               # (K + 3E, lanes)
            pred = prediction((self.lane_coefs * features).sum(axis=0), clip)
            table = np.where(valid, self.lane_tables + self.contexts(
                layout.activity(features[:K]), self.residual[idx - layout.stride]),
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
            self.residual[idx] = symbol - reach
            self.buffer[idx] = (pred + symbol - reach + clip) % (2 * clip + 1) - clip
            seen_tables.append(table)
            seen_symbols.append(symbol)
        if ptr != len(words) or (state != LOWER).any():
            raise BitstreamError("rans payload is corrupted (the decoder did not end where "
                                 "the encoder began)")
        return layout.gather(self.buffer)
