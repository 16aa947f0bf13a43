"""Mode LZMA (model version 5): a tile's latents as a raw LZMA2 stream, for latents that repeat.

A pure tone's latents repeat with its period (2,205 latents for 440 Hz at six wavelet
levels), and a match coder copies whole periods where a short linear predictor can only
shrink each residual a little: on a sine the WebP mosaic's LZ77 was 4x smaller than rANS.
The encoder tries this mode on audio tiles (small; where tones occur) and sends whichever
is smaller. The settings are part of the format (raw streams carry none)."""
import math

import numpy as np

from ...errors import BitstreamError

try:
    import lzma
except ImportError:  # a Python built without liblzma: this mode is neither tried nor read
    lzma = None

#: Preset 6 with a 64 KiB window: under 1 MiB of encoder memory, sizes within 1% of a 1 MiB
#: window on tones, music and speech.
FILTERS = [{"id": 0x21, "preset": 6, "dict_size": 1 << 16}]  # 0x21: lzma.FILTER_LZMA2


def available():
    return lzma is not None


def compress(latents):
    """The int8 latents (C order) as a raw LZMA2 stream."""
    return lzma.compress(np.ascontiguousarray(latents, np.int8).tobytes(),
                         format=lzma.FORMAT_RAW, filters=FILTERS)


def decompress(data, shape, clip):
    """int8 latents of ``shape`` from a raw LZMA2 stream, refusing one that is corrupted,
    holds more or fewer bytes than the shape, or latents outside ±clip."""
    if lzma is None:
        raise BitstreamError("this rans tile is LZMA-coded and this Python has no lzma "
                             "module (install a Python built with liblzma)")
    n = math.prod(shape)
    reader = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=FILTERS)
    try:
        out = reader.decompress(bytes(data), max_length=n)
    except lzma.LZMAError as e:
        raise BitstreamError(f"rans LZMA payload is corrupted ({e})") from None
    if len(out) != n or not reader.eof or reader.unused_data:
        raise BitstreamError(f"rans LZMA payload does not hold exactly {n} latents")
    latents = np.frombuffer(out, np.int8).reshape(shape).copy()
    if np.abs(latents.astype(np.int16)).max() > clip:
        raise BitstreamError(f"a rans LZMA payload's latent is outside ±{clip}")
    return latents
