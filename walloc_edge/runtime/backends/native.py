"""The ``native`` backend: the sensor encoder in C (``runtime/native_encoder.c``), on every core.

A cascade of one-level periodic DWTs by lifting, the 1×1 encoder and a threshold search,
built by pip as an optional extension and called through ctypes (which releases the GIL).
Here the bundle's weights are folded once: each subband's lifting scale, the normalisation
(x / divisor − offset) and the compander's 1 / (scale·√2) go into the 1×1 weights and bias,
so the C code lifts the raw integers. The model's filters must be the CDF 9/7 pair that
lifts so (bior4.4, every shipped model; checked against the bundle's filters at load).
WALLOC_EDGE_NATIVE=0 turns it off (with the rans C loops).
"""
import ctypes
import math
import os

import numpy as np

from .._extension import load_extension
from ..modality import AUDIO, IMAGE, modality
from .base import Backend, weights_missing
from .numpy import quantizer_thresholds

__all__ = ["NativeBackend", "fold"]

ABI = 8  # WALLOC_NATIVE_ABI in native_encoder.h: the signatures below
MAX_IMAGE_J = 6  # MAX_J in native_transform.h: the column cascade's levels
_F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_F64 = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
_I8 = np.ctypeslib.ndpointer(np.int8, flags="C_CONTIGUOUS")
_I64 = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_i64, _int = ctypes.c_int64, ctypes.c_int
_COMMON = [_i64, _F32, _F32, _F32, _i64, _F64, _i64, _i64, _I8]

# CDF 9/7 lifting (Daubechies & Sweldens): odd += a (even + next even), even += b (previous
# odd + odd), then g and d; low = K·even, high = −odd / K for pywt's bior4.4 normalisation.
LIFTING = np.array([-1.586134342059924, -0.052980118572961, 0.882911075530934,
                    0.443506852043971])


def _load():
    runtime = __package__.rpartition(".")[0]  # the extension sits beside its C sources
    lib, why = load_extension(f"{runtime}._native_encoder", "walloc_native_abi", ABI)
    if lib is None:
        return None, why
    u8, i16 = (np.ctypeslib.ndpointer(t, flags="C_CONTIGUOUS") for t in (np.uint8, np.int16))
    lib.walloc_native_encode_image.restype = _int
    lib.walloc_native_encode_image.argtypes = [u8, _i64, _I64, _I64, _i64, _i64, _i64] + \
        _COMMON + [_int]
    lib.walloc_native_encode_audio.restype = _int
    lib.walloc_native_encode_audio.argtypes = [i16, _I64, _i64, _i64] + _COMMON + [_int]
    lib.walloc_native_quantize.restype = _int
    lib.walloc_native_quantize.argtypes = [_F32, _i64, _F64, _i64, _i64, _I8]
    return lib, None


_LIB, _REASON = _load()


def _per_subband(low, high, J, axes):
    """The product over a subband's path of ``low`` or ``high`` per level and axis, in
    channel order (per level the width digit before the height digit; audio: one digit)."""
    per_level = np.array([low, high])
    if axes == 2:
        per_level = np.kron(per_level, per_level)
    out = np.ones(1)
    for _ in range(J):
        out = np.kron(out, per_level)
    return out


def _lift(x):
    """One periodic level by LIFTING, unscaled: (even, odd) halves of x (float64)."""
    s, d = x[0::2].copy(), x[1::2].copy()
    for odd, even in LIFTING.reshape(2, 2):
        d += odd * (s + np.roll(s, -1))
        s += even * (np.roll(d, 1) + d)
    return s, d


def _lifting_scales(lo, hi):
    """(low, high) scale that turns the lifted halves into the convolution by torch's kernels
    lo, hi (lo[o] = Σ_j lo[j] x[(2o + j − taps/2 + 1) mod n]), or None if these filters do not
    lift so. Within 10^-5: the reference checkpoints hold the filters rounded to float32
    (7·10^-7 off the exact ones)."""
    n = 32
    x = np.random.default_rng(0).standard_normal(n)
    off = len(lo) // 2 - 1
    idx = (2 * np.arange(n // 2)[:, None] + np.arange(len(lo)) - off) % n
    s, d = _lift(x)
    low, high = (x[idx] @ lo) / s, (x[idx] @ hi) / d
    if np.ptp(low) > 1e-5 * abs(low[0]) or np.ptp(high) > 1e-5 * abs(high[0]):
        return None
    return low.mean(), high.mean()


def fold(arrays, config, compander, dtype=np.float32):
    """The C encoder's model from a bundle's arrays (encoder.npz), its config and compander:
    lifting (4,) float32, weight (planes, latent_dim) and bias (latent_dim,) in ``dtype``
    (float64: what the fixed core rounds to integers), thresholds float64. ValueError for
    filters that do not lift as CDF 9/7. (The C export writes the same into walloc_model.h.)"""
    m = modality(config["modality"])
    J, L, axes = config["J"], config["latent_dim"], m.spatial_axes
    suffix = "_row" if axes == 2 else ""
    lo = arrays[f"wt.h0{suffix}"].astype(np.float64).ravel()  # torch's kernels
    hi = arrays[f"wt.h1{suffix}"].astype(np.float64).ravel()
    scales = _lifting_scales(lo, hi)
    if scales is None:
        raise ValueError("this model's wavelet filters are not the CDF 9/7 pair the native "
                         "encoder lifts (the onnxruntime and numpy backends run any)")
    W = arrays["encoder_weight"].astype(np.float64).reshape(L, -1)
    b = arrays["encoder_bias"].astype(np.float64)
    scale = compander["scale"] * math.sqrt(2)
    # W·wpt(x / d − o) + b = (W·S / d)·lifted(x) + b − o·W·wpt(1): S, each subband's lifting
    # scale; wpt(1), its DC gain (the same for every input channel).
    S = np.tile(_per_subband(*scales, J, axes), config["channels"])
    dc = np.tile(_per_subband(lo.sum(), hi.sum(), J, axes), config["channels"])
    return {"lifting": LIFTING.astype(np.float32),
            "weight": np.ascontiguousarray((W * S / (m.divisor * scale)).T, dtype),
            "bias": np.ascontiguousarray((b - m.offset * W @ dc) / scale, dtype),
            "thresholds": quantizer_thresholds(config["latent_bits"], compander["latent_max"])}


class NativeBackend(Backend):
    """``run(raw)``: uint8 (1, H, W, C) / int16 (1, L, C) → integer latents, like the graphs,
    on ``threads`` threads (default: every core)."""

    name = "native"
    # Larger runs than the other backends' (each run's border is computed twice); its memory
    # is a few rows per level and channel of a run's width (~1.5 MB a thread at 2048 RGB
    # pixels, within the caches), whatever the height.
    run_interior = {IMAGE: 2048, AUDIO: 1 << 16}

    @staticmethod
    def usable(bundle):
        if _LIB is None:
            return _REASON or "the C extension is not loaded"
        if bundle.latent_bits > 8:
            return "the native encoder writes 8-bit latents; this model has more bits"
        if bundle.config.get("wavelet", "bior4.4") != "bior4.4":
            return "the native encoder lifts the bior4.4 (CDF 9/7) wavelet only"
        if bundle.modality is IMAGE and not 1 <= bundle.config["J"] <= MAX_IMAGE_J:
            return f"the native encoder streams images of J = 1 .. {MAX_IMAGE_J} levels"
        return weights_missing(bundle)

    def __init__(self, bundle, threads=None, providers=None):
        super().__init__(bundle, threads, providers)
        cfg = bundle.config
        self.image = bundle.modality is IMAGE
        self.J, self.latent_dim = cfg["J"], cfg["latent_dim"]
        self.threads = threads or os.cpu_count() or 1
        self.detail = f"{self.threads} thread" + "s" * (self.threads > 1)
        self.clip = 2 ** (cfg["latent_bits"] - 1) - 1
        self._fold(bundle)

    def _fold(self, bundle):
        """Keep the model as the C core takes it (folded filters, 1x1 and thresholds)."""
        folded = fold(bundle.arrays(), bundle.config, bundle.meta["compander"])
        self.lifting, self.weight, self.bias = folded["lifting"], folded["weight"], folded["bias"]
        self.thresholds = folded["thresholds"]

    def _model_args(self):
        """The C core's arguments between J and the output: the folded model."""
        return (self.lifting, self.weight, self.bias, self.latent_dim, self.thresholds,
                len(self.thresholds), self.clip)

    def run(self, raw):
        return self.run_at(raw[0], [np.arange(n) for n in raw.shape[1:-1]])[None]

    def run_at(self, sample, index):
        """The latents of the run sample[np.ix_(*index)], read in place by the C code
        (``sample``: C-contiguous uint8 (H, W, C) or int16 (L, C); ``index``: the run's
        source row and column, or sample, per axis)."""
        index = [np.ascontiguousarray(i, np.int64) for i in index]
        status, out = self._run(sample, index)
        if status == -1:
            raise MemoryError("the native encoder ran out of memory")
        if status:
            raise ValueError(f"the native encoder refused this run (status {status})")
        return out

    core = "native"  # the C entry points walloc_<core>_encode_image and _audio

    def _run(self, sample, index):
        block = 1 << self.J
        common = (self.J, *self._model_args())
        shape = [len(i) for i in index]
        C = sample.shape[-1]
        if self.image:
            (H, W) = shape
            out = np.empty((self.latent_dim, H // block, W // block), np.int8)
            status = getattr(_LIB, f"walloc_{self.core}_encode_image")(
                sample, sample.shape[1], *index, H, W, C, *common, out, self.threads)
        else:
            (n,) = shape
            out = np.empty((self.latent_dim, n // block + 2), np.int8)
            status = getattr(_LIB, f"walloc_{self.core}_encode_audio")(
                sample, *index, n, C, *common, out, self.threads)
        return status, out
