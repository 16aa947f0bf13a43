"""The C loops of the rans coder (``_native.c``), through ctypes, where the optional extension
was built; ``available()`` says whether, and why not. WALLOC_EDGE_NATIVE=0 turns them off
(the numpy code then runs: the same bytes and latents, slower)."""
import contextlib
import ctypes

import numpy as np

from ..._extension import load_extension

__all__ = ["available", "reason", "turned_off", "decode", "buffer", "grams", "residuals",
           "encode"]

_I64 = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_U64 = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_U16 = np.ctypeslib.ndpointer(np.uint16, flags="C_CONTIGUOUS")
_U32 = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")
_U8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_I32 = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_i64, _int = ctypes.c_int64, ctypes.c_int
ABI = 7  # WALLOC_RANS_ABI in _native.c: the signatures below


def _load():
    lib, why = load_extension(f"{__package__}._native", "walloc_rans_abi", ABI)
    if lib is None:
        return None, why
    lib.walloc_rans_decode.restype = _int
    lib.walloc_rans_decode.argtypes = [_i64, _i64, _i64, _i64, _int, _i64, _i64, _i64, _i64, _i64,
                                       _i64, _i64, _i64, _I64, _I64, _I64, _U8, _I64, _I64,
                                       _I64, _I64, _i64, _U64, _U16, _i64, _I64, _I64]
    lib.walloc_rans_grams.restype = _int
    lib.walloc_rans_grams.argtypes = [_I32, _i64, _i64, _i64, _I64, _I64, _i64, _I64, _I64,
                                      _I64, _int]
    lib.walloc_rans_residuals.restype = _i64
    lib.walloc_rans_residuals.argtypes = [_i64, _i64, _int, _i64, _i64, _i64, _i64, _i64, _i64,
                                          _I64, _I32, _I32, _U8, _i64, _i64, _I64, _I64, _U32,
                                          _int]
    lib.walloc_rans_encode.restype = _i64
    lib.walloc_rans_encode.argtypes = [_i64, _i64, _int, _i64, _i64, _i64, _i64, _i64, _U8,
                                       _i64, _i64, _I64, _U32, _I64, _i64, _U64, _U16, _i64,
                                       _int]
    return lib, None


_LIB, _REASON = _load()


def available():
    return _LIB is not None


def reason():
    """Why the C loops are not used here (None where they are)."""
    return _REASON


@contextlib.contextmanager
def turned_off():
    """Run the numpy loops within (to measure or check them beside the C ones)."""
    global _LIB
    saved, _LIB = _LIB, None
    try:
        yield
    finally:
        _LIB = saved


def _c(array, dtype):
    return np.ascontiguousarray(array, dtype)


def decode(d, prior, refresh):
    """Run a ``_Decoding`` ``d``'s step loop in C; returns the status (0 ok, 1 truncated,
    2 corrupted) and leaves the latents in ``d.buffer``."""
    layout = d.layout
    status = _LIB.walloc_rans_decode(
        layout.steps, layout.lanes, d.feature_base.shape[0], d.K, int(layout.audio),
        layout.groups, layout.region, layout.rows, layout.width, d.clip, d.reach, layout.stride,
        d.tables, _c(prior, np.int64), _c(d.feature_base, np.int64),
        _c(d.lane_coefs, np.int64), _c(d.coded_lane, np.uint8), _c(d.lane_tables, np.int64),
        _c(d.contexts.activity, np.int64),
        _c(d.contexts.previous, np.int64), _c(refresh, np.int64), len(refresh), d.state,
        _c(d.words, np.uint16), len(d.words), d.buffer, d.residual)
    if status < 0:
        raise MemoryError("rans: the C decoder ran out of memory")
    return status


def buffer(layout, X):
    """The layout's zero-guarded buffer of latents X (C, n), int32: what the fit and the
    residuals read."""
    out = np.zeros(layout.size, np.int32)
    layout.store(out, X)
    return out


def grams(layout, buffer, positions, threads=1):
    """The fit's Gram matrices (as ``predictor.numpy_grams`` computes them from the
    features) over the latents at ``positions`` (fewer than 2^15: fit_step keeps them
    under 2 · FIT_SAMPLES), float64; on ``threads`` threads."""
    C, K = layout.channels, len(layout.own_offsets)
    shared = np.empty((3 * C, 3 * C), np.int64)
    cross = np.empty((C, K, 3 * C), np.int64)
    own = np.empty((C, K, K), np.int64)
    status = _LIB.walloc_rans_grams(buffer, C, layout.stride, K,
                                    _c(layout.own_offsets, np.int64),
                                    _c(layout.slots(positions), np.int64), len(positions),
                                    shared, cross, own, threads)
    if status == -1:
        raise MemoryError("rans: the C encoder ran out of memory")
    if status:
        raise ValueError(f"rans: {len(positions)} fit positions are too many for int32 sums")
    return tuple(g.astype(np.float64) for g in (shared, cross, own))


def residuals(layout, buffer, coefs, constant, clip, contexts, threads=1):
    """(coded (C, n) uint32, reach) of the latents in ``buffer`` under the coefficient rows
    ``coefs`` (C, K + 3C): each latent's table << 8 | symbol (its residual + reach), as
    ``_residuals`` and ``_coding_order`` compute them; ``contexts`` a predictor.Contexts.
    Channels over ``threads`` threads."""
    C, n = layout.channels, layout.n
    coded = np.empty((C, n), np.uint32)
    reach = _LIB.walloc_rans_residuals(
        C, n, int(layout.audio), layout.rows, layout.width, layout.groups, layout.region,
        layout.stride, len(layout.own_offsets), _c(layout.own_offsets, np.int64), buffer,
        _c(coefs, np.int32), _c(constant, np.uint8), clip, contexts.per_channel,
        _c(contexts.activity, np.int64), _c(contexts.previous, np.int64), coded, threads)
    if reach < 0:
        raise MemoryError("rans: the C encoder ran out of memory")
    return coded, int(reach)


def encode(layout, coded, n_tables, constant, reach, prior, refresh, threads=1):
    """(final state per lane, words in decoding order) of a tile whose ``coded`` (C, n)
    comes from ``residuals`` (n_tables tables; table n_tables is "nothing"), as
    ``_frequencies`` and ``_push`` compute them; channels over ``threads`` threads (the same
    bytes)."""
    lanes = layout.lanes
    state = np.empty(lanes, np.uint64)
    capacity = 2 * layout.steps * lanes + 2 * lanes  # at most one word per latent, a margin
    words = np.empty(capacity, np.uint16)
    n = _LIB.walloc_rans_encode(
        layout.steps, lanes, int(layout.audio), layout.groups, layout.region, layout.rows,
        layout.width, layout.n, _c(constant, np.uint8), n_tables, reach,
        _c(prior, np.int64), coded, _c(refresh, np.int64), len(refresh), state,
        words, capacity, threads)
    if n < 0:
        raise MemoryError("rans: the C encoder ran out of memory")
    return state, words[:n]
