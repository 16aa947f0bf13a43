"""The decode's arithmetic around the decoder network in numpy (no torch, no scipy), for the
torch-free bundle decoder: the compander's inverse (``erfinv``) and the wavelet packet
synthesis (pywt's periodization, as ``codec/wavelets.py``; float32 as torch runs it)."""
import math

import numpy as np

__all__ = ["erfinv", "to_normal", "packet_synthesis", "post_filter"]

_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def erfinv(y):
    """The inverse error function in float64 (≤ 1e-12 from scipy's): Giles' approximation
    ("Approximating the erfinv function", 2010), then Newton steps on ``math.erf``
    (``math.erfc`` in the tails) until they stop moving it; ±inf at ±1, nan beyond."""
    given = np.asarray(y, np.float64)
    inside = np.abs(given) < 1
    y = np.where(inside, given, 0)
    w = -np.log1p(-y * y)
    central = w < 5
    u = np.where(central, w - 2.5, np.sqrt(np.maximum(w, 5)) - 3)
    p_central = np.polyval([2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                            0.00021858087, -0.00125372503, -0.00417768164, 0.246640727,
                            1.50140941], u)
    p_tail = np.polyval([-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                         0.00573950773, -0.0076224613, 0.00943887047, 1.00167406,
                         2.83297682], u)
    x = np.where(central, p_central, p_tail) * y
    near = np.abs(y) > 0.5  # the residual through erfc there: erf(x) − y loses its digits
    for _ in range(8):  # two where Giles' float32 range holds (|y| < 1 − 6e-8), more beyond
        residual = np.where(near, np.sign(y) * ((1 - np.abs(y)) - _erfc(np.abs(x))),
                            _erf(x) - y)
        step = residual / (2 / math.sqrt(math.pi) * np.exp(-x * x))
        x = x - step
        if not np.any(np.abs(step) > 1e-15 * np.maximum(np.abs(x), 1)):
            break
    edge = np.abs(given) == 1
    return np.where(inside, x, np.where(edge, np.copysign(np.inf, given), np.nan))


def to_normal(z, scale, latent_max):
    """The compander's inverse (``codec.bottleneck.ToNormal``): latents → normal-valued
    float32. erfinv runs once per distinct value (integer latents take few)."""
    values, where = np.unique(np.asarray(z, np.float64), return_inverse=True)
    u = np.clip(values / (2 * latent_max) + 0.5, 0.0001, 0.9999)
    normal = scale * math.sqrt(2) * erfinv(2 * u - 1)
    return normal[where].reshape(np.shape(z)).astype(np.float32)


def _merge(lo, hi, g0, g1, axis):
    """One synthesis level along ``axis``: low and high halves of n → 2n samples, periodic:
    x[(2o + k − (F/2 − 1)) mod 2n] += lo[o]·g0[k] + hi[o]·g1[k]."""
    n, half = lo.shape[axis], len(g0) // 2
    index = np.arange(-(half - 1), n) % n  # c[p − j] for j < F/2 at p + F/2 − 1 − j
    lo, hi = np.take(lo, index, axis=axis), np.take(hi, index, axis=axis)
    phases = []
    for r in (0, 1):  # output 2p + r − (F/2 − 1) takes taps k = r + 2j from c[p − j]
        y = 0
        for j in range(half):
            cut = [slice(None)] * lo.ndim
            cut[axis] = slice(half - 1 - j, half - 1 - j + n)
            y = y + lo[tuple(cut)] * g0[r + 2 * j] + hi[tuple(cut)] * g1[r + 2 * j]
        phases.append(y)
    out = np.stack(phases, axis=axis + 1 if axis >= 0 else axis)
    shape = list(lo.shape)
    shape[axis] = 2 * n
    return np.roll(out.reshape(shape), -(half - 1), axis=axis)


def packet_synthesis(X, filters, J):
    """The inverse of J packet analysis levels: (C·4^J, h, w) → (C, 2^J·h, 2^J·w) for
    images, (C·2^J, l) → (C, 2^J·l) for audio; ``filters``: decoder.npz's ``iwt.*``
    synthesis filters. Channel 4c + k holds subband k of channel c, k over (cA, cH, cV, cD)
    (2c + k, k over (cA, cD) in 1-D); the deepest level is the last digit."""
    X = np.asarray(X, np.float32)
    if X.ndim == 3:
        g0c, g1c = (filters[f"iwt.{g}_col"].ravel().astype(np.float32) for g in ("g0", "g1"))
        g0r, g1r = (filters[f"iwt.{g}_row"].ravel().astype(np.float32) for g in ("g0", "g1"))
        for _ in range(J):
            c, h, w = X.shape
            X = X.reshape(c // 4, 2, 2, h, w)  # (channel, width bit, height bit, h, w)
            X = _merge(X[:, :, 0], X[:, :, 1], g0c, g1c, -2)
            X = _merge(X[:, 0], X[:, 1], g0r, g1r, -1)
        return X
    g0, g1 = (filters[f"iwt.{g}"].ravel().astype(np.float32) for g in ("g0", "g1"))
    for _ in range(J):
        c, n = X.shape
        X = X.reshape(c // 2, 2, n)
        X = _merge(X[:, 0], X[:, 1], g0, g1, -1)
    return X


def post_filter(x, weight, bias):
    """An audio codec's post-filter after the synthesis: Conv1d (C → C, odd kernel K,
    zero padding K // 2) on (C, L)."""
    x = np.asarray(x, np.float64)
    weight, k = np.asarray(weight, np.float64), weight.shape[-1]
    out = np.empty(x.shape, np.float64)
    for o in range(weight.shape[0]):
        full = sum(np.convolve(x[i], weight[o, i, ::-1]) for i in range(x.shape[0]))
        out[o] = full[k // 2:k // 2 + x.shape[1]] + bias[o]
    return out.astype(np.float32)
