"""Entropy coders for integer latents, chosen by name and recorded in the bitstream by id.

Each coder codes one tile of latents (latent_dim, h, w) or (latent_dim, l) into a payload
that stands alone: ``encode(latents, bits) → bytes``, ``decode(payload, shape, bits,
params) → latents``, raising BitstreamError on anything malformed.
"""
from .base import Coder
from .mosaic import MosaicCoder
from .rans import RansCoder
from .raw import RawCoder

__all__ = ["CODERS", "CODER_IDS", "coder"]


def registry(*entries):
    """name → coder from (name, wire id, coder) entries; each coder learns its ``name`` and
    ``wire_id`` (the byte the bitstream records). Two coders may share neither: an id, once
    written into files, means one coder for good, so a retired one is never reused."""
    coders = {}
    for name, wire_id, instance in entries:
        taken = {c.wire_id: n for n, c in coders.items()}
        if name in coders or wire_id in taken:
            raise RuntimeError(f"coder {name!r} (wire id {wire_id}) clashes with "
                               f"{taken.get(wire_id, name)!r}")
        instance.name, instance.wire_id = name, wire_id
        coders[name] = instance
    return coders


# In the order `--coder` lists them; a new coder takes the next unused wire id.
CODERS = registry(("rans", 1, RansCoder()), ("webp", 3, MosaicCoder("webp")),
                  ("png", 2, MosaicCoder("png")), ("raw", 0, RawCoder()))
CODER_IDS = {name: c.wire_id for name, c in CODERS.items()}


def coder(name: str) -> Coder:
    if name not in CODERS:
        raise ValueError(f"unknown coder {name!r}; choose from {', '.join(CODERS)}")
    return CODERS[name]
