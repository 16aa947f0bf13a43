"""The reference's lossless latent mosaic: latents as an 8-bit picture, coded by Pillow.

Latents are offset to unsigned bytes (+2^(b−1)) and tiled into one picture, as the reference
does: ``latent_dim = 3·n²`` channels become an RGB image of n×n tiles (channel
``c·n² + row·n + col`` → colour c, tile (row, col)), ``latent_dim = n²`` a grayscale one;
other counts fill a near-square grayscale grid, with unused tiles at zero. Audio latents
(latent_dim, l) are a grayscale picture with one row per channel.
"""
import io
import math

import numpy as np
from PIL import Image

from ..errors import BitstreamError
from .base import Coder

__all__ = ["MosaicCoder"]


def _grid(channels):
    """(colours, rows, cols) of the mosaic for ``channels`` 2D latent channels."""
    for colours in (3, 1):
        n = math.isqrt(channels // colours)
        if colours * n * n == channels:
            return colours, n, n
    cols = math.ceil(math.sqrt(channels))
    return 1, math.ceil(channels / cols), cols


def to_mosaic(u):
    """uint8 latents (N, h, w) or (N, l) → (mode, picture array)."""
    if u.ndim == 2:
        return "L", u
    N, h, w = u.shape
    colours, rows, cols = _grid(N)
    full = np.zeros((colours * rows * cols, h, w), np.uint8)
    full[:N] = u
    picture = full.reshape(colours, rows, cols, h, w).transpose(1, 3, 2, 4, 0)
    picture = picture.reshape(rows * h, cols * w, colours)
    return ("RGB", picture) if colours == 3 else ("L", picture[..., 0])


def from_mosaic(picture, shape):
    """Inverse of :func:`to_mosaic` for latents of ``shape``."""
    if len(shape) == 2:
        return picture
    N, h, w = shape
    colours, rows, cols = _grid(N)
    picture = picture.reshape(rows, h, cols, w, colours).transpose(4, 0, 2, 1, 3)
    return picture.reshape(-1, h, w)[:N]


def mosaic_size(shape):
    """(width, height, mode) of the mosaic picture for latents of ``shape``."""
    if len(shape) == 2:
        return shape[1], shape[0], "L"
    N, h, w = shape
    colours, rows, cols = _grid(N)
    return cols * w, rows * h, "RGB" if colours == 3 else "L"


class MosaicCoder(Coder):
    """``png`` or ``webp`` (lossless) coding of the latent mosaic (8-bit latents only)."""

    max_bits = 8

    def __init__(self, name):
        self.name = name
        self.format = {"png": "PNG", "webp": "WEBP"}[name]
        # The reference's README saves the mosaic with Pillow's lossless WebP defaults.
        self.options = {"lossless": True} if name == "webp" else {}

    def _encode(self, latents, bits, threads):
        u = (latents.astype(np.int16) + (1 << (bits - 1))).astype(np.uint8)
        _, picture = to_mosaic(u)
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(picture)).save(buffer, self.format, **self.options)
        return buffer.getvalue()

    def _decode(self, payload, shape, bits, params):
        width, height, mode = mosaic_size(shape)
        try:
            with Image.open(io.BytesIO(payload), formats=[self.format]) as im:
                # WebP has no grayscale mode: a gray mosaic comes back as RGB with R = G = B.
                modes = {mode, "RGB"} if self.name == "webp" else {mode}
                if im.size != (width, height) or im.mode not in modes:  # before any pixel
                    raise BitstreamError(f"{self.name} payload is a {im.size[0]}x{im.size[1]} "
                                         f"{im.mode} picture, expected {width}x{height} {mode}")
                picture = np.asarray(im)
        except BitstreamError:
            raise
        except Exception as e:  # Pillow raises many types on bad data
            raise BitstreamError(f"{self.name} payload does not decode ({e})") from None
        if mode == "L" and picture.ndim == 3:
            picture = picture[..., 0]
        u = from_mosaic(picture, shape)
        # the latents' range: a lossy WebP's values (or a forged picture's) may fall past it
        top = (1 << (bits - 1)) - 1
        return np.clip(u.astype(np.int16) - (1 << (bits - 1)), -top, top).astype(np.int8)
