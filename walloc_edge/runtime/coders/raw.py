"""``raw``: latents stored as little-endian integers, uncoded (for debugging, and for
latents wider than 8 bits, which the other coders do not take)."""
import numpy as np

from ..errors import BitstreamError
from .base import Coder

__all__ = ["RawCoder"]


class RawCoder(Coder):
    name = "raw"
    max_bits = 16

    def _encode(self, latents, bits, threads):
        return np.ascontiguousarray(latents, _dtype(bits)).tobytes()

    def _decode(self, payload, shape, bits, params):
        dtype = _dtype(bits)
        if len(payload) != int(np.prod(shape)) * dtype.itemsize:
            raise BitstreamError(f"raw payload of {len(payload)} bytes does not hold latents "
                                 f"of shape {tuple(shape)}")
        latents = np.frombuffer(payload, dtype).reshape(shape)
        limit = (1 << (bits - 1)) - 1
        if latents.size and np.abs(latents.astype(np.int32)).max() > limit:
            raise BitstreamError(f"raw payload has latents outside ±{limit}")
        return latents.astype(dtype.newbyteorder("="))


def _dtype(bits):
    return np.dtype("<i1" if bits <= 8 else "<i2")
