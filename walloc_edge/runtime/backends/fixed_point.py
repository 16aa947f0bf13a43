"""The ``fixed-point`` backend: the native encoder in integers only (``runtime/native_fixed.c``).

The same lifting transform as the ``native`` backend, in int32 with Q30 constants; the 1×1
in int16×int16→int32 products; the compander as int32 thresholds. Here the float model
(``native.fold``, in float64) is rounded into those integers, each scale chosen from worst
cases (the L1 norms of the transform's impulse responses), so that no value overflows
whatever the input: ``native_fixed.c`` spells the scaling and rounding. Not the default
("auto" never takes it): it is for devices without an FPU, and for measuring them here.
"""
import ctypes
import math

import numpy as np

from ..modality import IMAGE, modality
from .native import _LIB, LIFTING, NativeBackend, fold

__all__ = ["FixedPointBackend", "fold_fixed"]

Q = 30  # the lifting constants' fractional bits
VALUE_BITS = 30  # every lifted value stays below 2^30 (so a + b fits int32)
LO_BITS = 8  # the second int16 of a subband: its next 8 bits
MARGIN = 1.01  # worst cases times this (rounding adds a few units to the exact bound)
_ACC_MAX = 2 ** 31 - 3  # |acc| below this (the thresholds' padding sorts above it)

if _LIB is not None:
    _P = {t: np.ctypeslib.ndpointer(t, flags="C_CONTIGUOUS")
          for t in (np.uint8, np.int8, np.int16, np.int32, np.int64)}
    _i64 = ctypes.c_int64
    _MODEL = [_i64, _P[np.int32], _P[np.int16], _P[np.int32], _P[np.int32], _i64,
              _P[np.int32], _i64, _i64, _P[np.int8], ctypes.c_int]
    _LIB.walloc_fixed_encode_image.argtypes = [_P[np.uint8], _i64, _P[np.int64], _P[np.int64],
                                               _i64, _i64, _i64] + _MODEL
    _LIB.walloc_fixed_encode_audio.argtypes = [_P[np.int16], _P[np.int64], _i64, _i64] + _MODEL
    _LIB.walloc_fixed_quantize.argtypes = [_P[np.int32], _i64, _P[np.int32], _i64, _i64,
                                           _P[np.int8]]


def _lift_rows(x):
    """One periodic lifting level down axis 0 of x (float64): (even, odd) halves and the
    largest row L1 norm of any step's output (rows: responses to the input's samples)."""
    s, d, worst = x[0::2].copy(), x[1::2].copy(), 0.0
    for odd, even in LIFTING.reshape(2, 2):
        d += odd * (s + np.roll(s, -1, 0))
        s += even * (np.roll(d, 1, 0) + d)
        worst = max(worst, np.abs(d).sum(1).max(), np.abs(s).sum(1).max())
    return s, d, worst


def responses(J):
    """One axis's J lifting levels (unscaled) on every impulse: (R, inner, dc): R (2^J, n)
    each final band's response at position 0 (bands in channel order: the first level's
    choice most significant), inner the largest L1 norm of any value the levels compute,
    dc each band's gain on a constant."""
    n = 10 << J  # wider than any response (at most 8 (2^J - 1) + 1 samples)
    bands, inner = [np.eye(n)], 1.0
    for _ in range(J):
        split = [_lift_rows(b) for b in bands]
        inner = max([inner] + [w for _, _, w in split])
        bands = [half for s, d, _ in split for half in (s, d)]
    R = np.stack([b[0] for b in bands])
    return R, inner, R.sum(1)


def _plane_bands(J):
    """(width band, height band) of each of an image channel's 4^J planes (per level the
    width digit before the height digit, the first level most significant)."""
    out = []
    for k in range(4 ** J):
        w = h = 0
        for level in range(J):
            digit = (k >> 2 * (J - 1 - level)) & 3
            w, h = 2 * w + (digit >> 1), 2 * h + (digit & 1)
        out.append((w, h))
    return out


def _bounds(W, J, channels, image):
    """Per plane the worst |lifted value| per unit of input, the worst |value| of any step,
    the DC gain per plane, and per latent the L1 norm of W·transform (its worst |y| per
    unit of input)."""
    R, inner, dc1 = responses(J)
    fin = np.abs(R).sum(1)
    if not image:
        h = np.einsum("cbl,bn->cln", W.reshape(channels, 1 << J, -1), R)
        return (np.tile(fin, channels), inner, np.tile(dc1, channels),
                np.abs(h).sum((0, 2)))
    bands = _plane_bands(J)
    w_idx, h_idx = (np.array(i) for i in zip(*bands))
    plane = np.tile(fin[w_idx] * fin[h_idx], channels)
    dc = np.tile(dc1[w_idx] * dc1[h_idx], channels)
    L, B = W.shape[1], 1 << J
    composite = np.zeros(L)
    for c in range(channels):
        grid = np.zeros((B, B, L))  # [height band, width band, latent]
        grid[h_idx, w_idx] = W[c * B * B:(c + 1) * B * B]
        for l in range(L):
            composite[l] += np.abs(R.T @ grid[..., l] @ R).sum()
    return plane, max(inner, fin.max() * inner), dc, composite


def fold_fixed(arrays, config, compander):
    """The fixed core's integers from a bundle (see native_fixed.c for what each means):
    scaling int32 (7,), weight int16 (planes, 3, latent_dim), shifts int32 (planes, 2),
    bias int32 (latent_dim,), thresholds int32; ``F`` and ``G`` (the input's and the
    accumulator's fractional bits) for the record. ValueError where a model's range leaves
    no room (its worst case past int32)."""
    m = modality(config["modality"])
    image, J, C = m is IMAGE, config["J"], config["channels"]
    folded = fold(arrays, config, compander, np.float64)
    W, b = folded["weight"], folded["bias"]  # W (planes, latent_dim), on lifted raw input
    offset, peak = (128, 128) if image else (0, 32768)  # |input - offset| <= peak
    plane, inner, dc, composite = _bounds(W, J, C, image)
    F = math.floor(math.log2(2 ** VALUE_BITS / (MARGIN * peak * inner)))
    if F < 0:
        raise ValueError(f"this model's transform (J = {J}) grows past the fixed core's "
                         "int32 range")
    bound = MARGIN * peak * plane * 2.0 ** F + 2.0 ** F  # per plane, in lifted units
    sh = np.maximum(0, np.ceil(np.log2(bound / 32767))).astype(np.int64)
    top = np.ceil(bound / 2.0 ** sh)  # worst |hi| per plane, <= 32767
    lob = np.minimum(sh, LO_BITS)
    weff = W * 2.0 ** (sh - F)[:, None]  # weight per unit of hi
    bias = b + offset * (W.T @ dc)  # the centring of pixels, folded
    y_max = MARGIN * (peak * composite + np.abs(bias)).max()
    slack = len(plane) * (32768 + 2 ** LO_BITS) + 2 ** 20  # the integers' rounding, generous
    G = math.floor(min(math.log2((_ACC_MAX - slack) / y_max),
                       math.log2(32767.5 / np.abs(weff).max())))
    exact = weff * 2.0 ** G
    hi = np.round(exact)
    for lo_shift in range(15, -1, -1):  # the most bits the second sum allows
        lo = np.round((exact - hi) * 2.0 ** lo_shift)
        rest = np.round(exact * 2.0 ** (lo_shift - lob)[:, None])
        worst = (np.abs(lo) * top[:, None] + np.abs(rest) * (2.0 ** lob - 1)[:, None]).sum(0)
        if np.abs(rest).max() <= 32767 and worst.max() < 2 ** 31 - 1:
            break
    thresholds = np.clip(np.ceil(folded["thresholds"] * 2.0 ** G), -_ACC_MAX, _ACC_MAX)
    scaling = [*np.round(LIFTING * 2 ** Q), offset, F, lo_shift]
    return {"scaling": np.array(scaling, np.int32),
            "weight": np.ascontiguousarray(np.stack([hi, lo, rest], 1), np.int16),
            "shifts": np.ascontiguousarray(np.stack([sh, sh - lob], 1), np.int32),
            "bias": np.round(bias * 2.0 ** G).astype(np.int32),
            "thresholds": thresholds.astype(np.int32), "F": F, "G": G}


class FixedPointBackend(NativeBackend):
    """``run(raw)`` as the native backend's, computed in integers only (native_fixed.c)."""

    name = "fixed-point"
    core = "fixed"

    def _fold(self, bundle):
        self.model = fold_fixed(bundle.arrays(), bundle.config, bundle.meta["compander"])
        self.detail = f"int32/int16, {self.detail}"

    def _model_args(self):
        mo = self.model
        return (mo["scaling"], mo["weight"], mo["shifts"], mo["bias"], self.latent_dim,
                mo["thresholds"], len(mo["thresholds"]), self.clip)
