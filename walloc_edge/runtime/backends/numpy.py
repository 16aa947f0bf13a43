"""The ``numpy`` backend: the sensor encoder in plain numpy, from the bundle's weights (no
ML runtime at all).

It computes what the exported graphs compute (codec/sensor.py), with the same folded
weights: a periodic wrap, then along each axis one strided filter bank (all J wavelet levels
fused, 2^J subbands per block of 2^J samples) as a few large matrix products, the 1×1
encoder folded into the last one. The compander and rounding need no ``erf``: the latent is
``k`` exactly when the pre-activation lies between two thresholds, found once at load, so
quantisation is one ``searchsorted``.
"""
import math

import numpy as np

from ..modality import IMAGE
from .base import Backend, weights_missing

__all__ = ["NumpyBackend", "quantizer_thresholds"]


def _erfinv(v):
    """erf⁻¹ of values in [0, 1) to float64 precision (Newton from 0: erf is concave on
    [0, ∞), so the iterates rise monotonically to the root)."""
    erf = np.frompyfunc(math.erf, 1, 1)
    y = np.zeros_like(v)
    for _ in range(60):
        step = (erf(y).astype(np.float64) - v) * (math.sqrt(math.pi) / 2) * np.exp(y * y)
        y -= step
        if np.all(np.abs(step) <= 1e-15 * np.maximum(1, y)):
            break
    return y


def quantizer_thresholds(latent_bits, latent_max):
    """t such that latent = searchsorted(t, y, "right") − clip equals
    clip(round(latent_max · erf(y)), ±clip): t[k] is where the latent steps from k − clip to
    k − clip + 1."""
    clip = 2 ** (latent_bits - 1) - 1
    half = _erfinv((np.arange(clip) + 0.5) / latent_max)  # steps 0→1 … clip−1→clip
    return np.concatenate([-half[::-1], half])


def _wrap(x, left, right, axis):
    n = x.shape[axis]
    return np.take(x, np.arange(-left, n + right) % n, axis=axis)


class NumpyBackend(Backend):
    """``run(raw)``: uint8 (1, H, W, C) / int16 (1, L, C) → integer latents, like the graphs
    (numpy's BLAS chooses its own threads)."""

    name = "numpy"
    threaded = False  # numpy's own operations, whatever ``threads`` says

    @staticmethod
    def usable(bundle):
        """None: numpy is always here; only the bundle's weights could be missing."""
        return weights_missing(bundle)

    def __init__(self, bundle, threads=None, providers=None):
        super().__init__(bundle, threads, providers)
        arrays = bundle.arrays()
        cfg = bundle.config
        self.block = bundle.block
        self.left, self.right = bundle.receptive_field
        self.image = bundle.modality is IMAGE
        self.clip = 2 ** (cfg["latent_bits"] - 1) - 1
        self.out_dtype = bundle.latent_dtype
        self.thresholds = quantizer_thresholds(cfg["latent_bits"],
                                               bundle.meta["compander"]["latent_max"])
        B, C, L = self.block, cfg["channels"], cfg["latent_dim"]
        self.bias = arrays["graph.bias"].astype(np.float32)
        if self.image:
            rows = arrays["graph.row_filters"]  # (rw, 1, 1, taps·B): the bank / 255
            self.taps = rows.shape[-1] // B
            self.row_bank = [np.ascontiguousarray(rows[:, 0, 0, t * B:(t + 1) * B].T)
                             for t in range(self.taps)]  # (i, rw) per tap
            cols = arrays["graph.col_weights"].reshape(L, C, B, self.taps, B)  # l, c, rw, t, ih
            self.col_bank = [np.ascontiguousarray(
                cols[:, :, :, t, :].transpose(3, 1, 2, 0).reshape(B * C * B, L))
                for t in range(self.taps)]  # (ih·c·rw, l) per tap
        else:
            K = arrays["fused_bank"]  # (r, taps·B) float64
            self.taps = K.shape[1] // B
            W = arrays["graph.weight"].astype(np.float64).reshape(L, C, B)  # l, c, r
            fused = np.einsum("lcr,rti->tcil", W, K.reshape(B, self.taps, B))
            self.bank = [np.ascontiguousarray(f.reshape(C * B, L), dtype=np.float32)
                         for f in fused]  # (c·i, l) per tap

    def _quantize(self, y):
        q = np.searchsorted(self.thresholds, y, side="right") - self.clip
        return q.astype(self.out_dtype)

    def run(self, raw):
        return self._run_image(raw) if self.image else self._run_audio(raw)

    def _run_image(self, raw):
        _, H, W, C = raw.shape
        B, taps = self.block, self.taps
        hb, wb = H // B, W // B
        x = _wrap(_wrap(raw[0], self.left, self.right, 0), self.left, self.right, 1)
        # Row pass (along width) with blocks of B columns leading, so each tap is a slice.
        xt = np.ascontiguousarray(
            x.reshape(hb + taps - 1, B, wb + taps - 1, B, C).transpose(2, 0, 1, 4, 3),
            dtype=np.float32)                                       # (wblk, hblk, ih, c, i)
        rows = sum(xt[t:t + wb].reshape(-1, B) @ self.row_bank[t] for t in range(taps))
        rows = rows.reshape(wb, hb + taps - 1, B * C * B)           # (wb, hblk, ih·c·rw)
        rows = np.ascontiguousarray(rows.transpose(1, 0, 2))        # (hblk, wb, ih·c·rw)
        y = sum(rows[t:t + hb].reshape(hb * wb, -1) @ self.col_bank[t] for t in range(taps))
        y += self.bias
        return self._quantize(y.T.reshape(1, -1, hb, wb))

    def _run_audio(self, raw):
        _, n, C = raw.shape
        B, taps = self.block, self.taps
        lb = n // B
        x = _wrap(raw[0], self.left, self.right, 0)
        xt = np.ascontiguousarray(x.reshape(lb + taps - 1, B, C).transpose(0, 2, 1),
                                  dtype=np.float32).reshape(lb + taps - 1, C * B)
        y = sum(xt[t:t + lb] @ self.bank[t] for t in range(taps))
        y = np.concatenate([np.zeros((1, y.shape[1]), np.float32), y,
                            np.zeros((1, y.shape[1]), np.float32)])  # the reference's padding=1
        y += self.bias
        return self._quantize(y.T[None])
