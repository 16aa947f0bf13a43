"""The ``native`` backend: the sensor encoder in C (``_native_encoder.c``), on every core.

A cascade of one-level periodic DWTs, the 1×1 encoder and a threshold search, built by pip
as an optional extension and called through ctypes (which releases the GIL). Here the
bundle's weights are folded once: the normalisation (x / divisor − offset) and the
compander's 1 / (scale·√2) go into the 1×1 weights and bias, so the C code transforms the raw
integers. WALLOC_EDGE_NATIVE=0 turns it off (with the rans C loops).
"""
import ctypes
import importlib.util
import math
import os
import threading

import numpy as np

from .modality import modality
from .numpy_backend import quantizer_thresholds

__all__ = ["NativeBackend"]

ABI = 1  # WALLOC_ENCODER_ABI in _native_encoder.c: the signatures below
_F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_F64 = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
_I8 = np.ctypeslib.ndpointer(np.int8, flags="C_CONTIGUOUS")
_i64, _int = ctypes.c_int64, ctypes.c_int
_COMMON = [_i64, _F32, _F32, _i64, _F32, _F32, _i64, _F64, _i64, _i64, _I8, _F32, _F32, _int]


def _load():
    if os.environ.get("WALLOC_EDGE_NATIVE", "1") == "0":
        return None, "turned off by WALLOC_EDGE_NATIVE=0"
    spec = importlib.util.find_spec(f"{__package__}._native_encoder")
    if spec is None or not spec.origin:
        return None, "the C extension was not built (no C compiler when it was installed)"
    lib = ctypes.CDLL(spec.origin)
    if not hasattr(lib, "walloc_encoder_abi") or lib.walloc_encoder_abi() != ABI:
        return None, ("the C extension is from another version of walloc-edge (reinstall it "
                      "to rebuild it)")
    lib.walloc_encode_image.restype = _int
    lib.walloc_encode_image.argtypes = [np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS"),
                                        _i64, _i64, _i64] + _COMMON
    lib.walloc_encode_audio.restype = _int
    lib.walloc_encode_audio.argtypes = [np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS"),
                                        _i64, _i64] + _COMMON
    return lib, None


_LIB, _REASON = _load()


def _dc_gains(lo, hi, J, axes):
    """Each subband's response to a constant signal of 1, in channel order (per level the
    width digit before the height digit; audio: one digit)."""
    per_level = np.array([lo.sum(), hi.sum()])
    if axes == 2:
        per_level = np.kron(per_level, per_level)
    gains = np.ones(1)
    for _ in range(J):
        gains = np.kron(gains, per_level)
    return gains


class NativeBackend:
    """``run(raw)``: uint8 (1, H, W, C) / int16 (1, L, C) → integer latents, like the graphs,
    on ``threads`` threads (default: every core)."""

    name = "native"
    static_shape = None
    providers = ()

    @staticmethod
    def usable(bundle):
        if _LIB is None:
            return _REASON or "the C extension is not loaded"
        if bundle.latent_bits > 8:
            return "the native encoder writes 8-bit latents; this model has more bits"
        path = bundle.path / bundle.meta.get("weights", "encoder.npz")
        return None if path.is_file() else "the bundle has no encoder.npz"

    def __init__(self, bundle, threads=None):
        arrays = bundle.arrays()
        cfg = bundle.config
        m = modality(bundle.modality)
        self.image = m.name == "image"
        self.J, self.channels, self.latent_dim = cfg["J"], cfg["channels"], cfg["latent_dim"]
        self.min_size = bundle.meta["input"]["min_size"]
        self.threads = threads or os.cpu_count() or 1
        self.detail = f"{self.threads} thread" + "s" * (self.threads > 1)
        self.clip = 2 ** (cfg["latent_bits"] - 1) - 1
        suffix = "_row" if self.image else ""
        lo = arrays[f"wt.h0{suffix}"].astype(np.float64).ravel()  # torch's kernels
        hi = arrays[f"wt.h1{suffix}"].astype(np.float64).ravel()
        self.lo, self.hi = lo.astype(np.float32), hi.astype(np.float32)
        W = arrays["encoder_weight"].astype(np.float64).reshape(self.latent_dim, -1)
        b = arrays["encoder_bias"].astype(np.float64)
        scale = bundle.meta["compander"]["scale"] * math.sqrt(2)
        # W·wpt(x / d − o) + b = (W / d)·wpt(x) + b − o·W·wpt(1): wpt(1) is each subband's DC
        # gain, the same for every input channel.
        dc = np.tile(_dc_gains(lo, hi, self.J, 2 if self.image else 1), self.channels)
        self.weight = np.ascontiguousarray((W / (m.divisor * scale)).T, np.float32)  # (planes, L)
        self.bias = np.ascontiguousarray((b - m.offset * W @ dc) / scale, np.float32)
        self._work, self._lock = None, threading.Lock()  # one run at a time per workspace
        self.thresholds = quantizer_thresholds(cfg["latent_bits"],
                                               bundle.meta["compander"]["latent_max"])

    def _workspace(self, floats):
        """The two float buffers the transform alternates between, kept from run to run (a
        tiled encode's runs are all one size, and fresh pages cost more than the transform)."""
        if self._work is None or self._work[0].size < floats:
            self._work = (np.empty(floats, np.float32), np.empty(floats, np.float32))
        return self._work

    def run(self, raw):
        with self._lock:
            status, out = self._run(raw)
        if status == -1:
            raise MemoryError("the native encoder ran out of memory")
        if status:
            raise ValueError(f"the native encoder refused this model's filters ({status})")
        return out

    def _run(self, raw):
        block = 1 << self.J
        common = (self.J, self.lo, self.hi, len(self.lo), self.weight, self.bias,
                  self.latent_dim, self.thresholds, len(self.thresholds), self.clip)
        work = self._workspace(raw.size)
        if self.image:
            _, H, W, C = raw.shape
            out = np.empty((1, self.latent_dim, H // block, W // block), np.int8)
            status = _LIB.walloc_encode_image(np.ascontiguousarray(raw[0], np.uint8), H, W, C,
                                              *common, out, *work, self.threads)
        else:
            _, n, C = raw.shape
            out = np.empty((1, self.latent_dim, n // block + 2), np.int8)
            status = _LIB.walloc_encode_audio(np.ascontiguousarray(raw[0], np.int16), n, C,
                                              *common, out, *work, self.threads)
        return status, out
