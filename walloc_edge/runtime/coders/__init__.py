"""Entropy coders for integer latents, chosen by name and recorded in the bitstream by id.

Each coder codes one tile of latents (latent_dim, h, w) or (latent_dim, l) into a payload
that stands alone: ``encode(latents, bits) → bytes``, ``decode(payload, shape, bits,
params) → latents``, raising BitstreamError on anything malformed.
"""
from .mosaic import MosaicCoder
from .rans import RansCoder
from .raw import RawCoder

__all__ = ["CODERS", "CODER_IDS", "coder"]

CODERS = {"rans": RansCoder(), "webp": MosaicCoder("webp"), "png": MosaicCoder("png"),
          "raw": RawCoder()}
CODER_IDS = {"raw": 0, "rans": 1, "png": 2, "webp": 3}  # in the bitstream; never reuse one


def coder(name):
    if name not in CODERS:
        raise ValueError(f"unknown coder {name!r}; choose from {', '.join(CODERS)}")
    return CODERS[name]
