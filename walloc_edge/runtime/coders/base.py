"""What every coder shares: the interface, and empty latents (an empty payload)."""
import math

import numpy as np

from ..errors import BitstreamError

__all__ = ["Coder"]


class Coder:
    """``encode(latents, bits, threads) → bytes``; ``decode(payload, shape, bits, params) →
    latents`` (int8, or int16 above 8 bits), raising BitstreamError on a malformed payload.
    Subclasses implement ``_encode``/``_decode`` for non-empty latents and ``params``;
    ``threads`` is how many a coder may use (the bytes never depend on it)."""

    name = None
    max_bits = 8
    levels = ()  # the names ``at_level`` takes (rans: how hard its encoder works)

    def at_level(self, level):
        """This coder writing at ``level`` (None: its default)."""
        if level is not None:
            raise ValueError(f"the {self.name} coder has no levels")
        return self

    def params(self, bits):
        return b""

    def check_params(self, params):
        """Raise BitstreamError where a reader cannot use coder parameters ``params`` (the
        header's), before any tile is decoded."""

    def encode(self, latents, bits, threads=1):
        if latents.size == 0:
            return b""
        return self._encode(latents, bits, threads)

    def decode(self, payload, shape, bits, params):
        if math.prod(shape) == 0:
            if len(payload):
                raise BitstreamError(f"{self.name} payload for empty latents is not empty")
            return np.zeros(shape, np.int8 if bits <= 8 else np.int16)
        return self._decode(payload, shape, bits, params)
