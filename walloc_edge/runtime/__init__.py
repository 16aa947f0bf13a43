"""Sensor side: numpy + pillow + one inference runtime; never imports torch.

``Encoder(bundle_dir, backend)`` turns images and audio of any size into integer latents
and .wlc bytes; ``read_bitstream`` / ``read_latents`` parse and entropy-decode .wlc bytes
(what a server needs to validate a stream without torch).
"""
from .backends import BACKENDS, BackendError
from .bitstream import Bitstream, Header, read_bitstream, read_latents, write_bitstream
from .bundle import Bundle, BundleError, load_bundle
from .coders import CODERS
from .encoder import Encoder
from .errors import BitstreamError
from .padding import crop, pad_reflect, padding_for, reflect_indices

__all__ = ["BACKENDS", "BackendError", "Bitstream", "BitstreamError", "Bundle", "BundleError",
           "CODERS", "Encoder", "Header", "crop", "load_bundle", "pad_reflect", "padding_for",
           "read_bitstream", "read_latents", "reflect_indices", "write_bitstream"]
