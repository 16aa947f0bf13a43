"""The .wlc bitstream: one encoded image or audio clip (spec: docs/bitstream.md).

A reader trusts nothing: the CRC is checked before any field is used, every length is
checked against the bytes that are really there, the latent count is capped before anything
is allocated, and every problem raises :class:`BitstreamError` naming what is wrong.
"""
import itertools
import math
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from .coders import CODER_IDS, coder as get_coder
from .errors import BitstreamError
from .modality import AUDIO, IMAGE, Modality
from .padding import padding_for

if TYPE_CHECKING:
    from .bundle import Bundle

__all__ = ["MAGIC", "VERSION", "MAX_LATENTS", "MAX_SAMPLE_RATE", "BitstreamError", "Header",
           "Bitstream", "write_bitstream", "read_bitstream", "read_latents"]

MAGIC = b"\x89WLC"
VERSION = 1
MAX_LATENTS = 1 << 28           # a reader refuses more (256 MB of int8) unless told otherwise
MAX_TILES = 1 << 18             # and more tiles (each costs a decode call: a few µs to ms)
MAX_SAMPLE_RATE = 2 ** 20 - 1   # the most FLAC records; WAV's 32-bit byte rate holds it too
MODALITY_CODES = (IMAGE, AUDIO)  # the header's modality byte indexes this
DTYPES = {1: np.dtype(np.uint8), 2: np.dtype(np.int16), 3: np.dtype(np.float32),
          4: np.dtype(np.float64)}
PADDING_REFLECT = 1
FLAG_NO_CHANNEL_AXIS = 1
_FIXED = struct.Struct("<4sBBBB16sBBBHHBB")  # through the coder-parameter length
_AXIS = struct.Struct("<II")                 # size, tile
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class Header:
    """Everything before the payload. ``shape`` and ``dtype`` are those of the input."""

    modality: Modality
    model_id: str
    shape: tuple
    dtype: np.dtype
    J: int
    latent_bits: int
    latent_dim: int
    coder: str
    coder_params: bytes
    tile: tuple
    sample_rate: int = 0  # audio: samples per second (0: not known)

    @property
    def block(self):
        return 2 ** self.J

    @property
    def model_fields(self):
        """What the header says of its model beside its id (modality, input channels,
        latent_dim, J, latent_bits): a model's bitstreams carry its own, so a reader that
        knows the model refuses others (which a forged header could claim, to make a small
        file cost gigabytes)."""
        return self.modality, self.channels, self.latent_dim, self.J, self.latent_bits

    @property
    def sizes(self):
        """Spatial sizes of the input: (H, W) or (L,)."""
        return self.shape[:self.modality.spatial_axes]

    @property
    def channels(self):
        n = self.modality.spatial_axes
        return self.shape[n] if len(self.shape) > n else 1

    @property
    def padding(self) -> "list[tuple[int, int]]":
        """(before, after) reflect padding per spatial axis."""
        return [padding_for(n, self.block) for n in self.sizes]

    @property
    def latent_shape(self):
        edge = 2 * self.modality.edge_latents
        return (self.latent_dim, *[-(-n // self.block) + edge for n in self.sizes])

    def tiles(self) -> "Iterator[tuple[slice, ...]]":
        """Slices of each tile of the latent array, in raster order (made as they are
        asked for: a header may claim many)."""
        spans = [[slice(s, min(s + t, n)) for s in range(0, n, t)]
                 for n, t in zip(self.latent_shape[1:], self.tile)]
        return ((slice(None), *pick) for pick in itertools.product(*spans))

    def tile_count(self) -> int:
        return math.prod(-(-n // t) for n, t in zip(self.latent_shape[1:], self.tile))


@dataclass(frozen=True)
class Bitstream:
    header: Header
    payloads: list

    def latents(self) -> np.ndarray:
        """Entropy-decode every tile: the integer latents (latent_dim, h, w) / (latent_dim, l)."""
        h = self.header
        coder = get_coder(h.coder)
        out = np.empty(h.latent_shape, np.int8 if h.latent_bits <= 8 else np.int16)
        for index, payload in zip(h.tiles(), self.payloads):
            shape = out[index].shape
            try:
                out[index] = coder.decode(payload, shape, h.latent_bits, h.coder_params)
            except BitstreamError as e:
                at = " x ".join(f"{i.start}:{i.stop}" for i in index[1:])
                raise BitstreamError(f"the tile of latents {at}: {e}") from None
        return out


def write_bitstream(bundle: "Bundle", latents: np.ndarray, spec: dict, coder: str = "rans",
                    tile: "int | tuple[int, ...] | None" = None, sample_rate: int = 0,
                    threads: int = 1, level: "str | None" = None) -> bytes:
    """.wlc bytes for ``latents`` of an input with ``spec`` ({"shape", "dtype"}) encoded by
    ``bundle``'s model, coded tile by tile (``tile`` latents a side, or one per axis) with
    ``coder`` at its ``level`` (rans: "best", the default, "fast", "fastest") on up to
    ``threads`` threads."""
    cfg = bundle.config
    chosen = get_coder(coder).at_level(level)
    if cfg["latent_bits"] > chosen.max_bits:
        raise ValueError(f"the {coder} coder takes latents of at most {chosen.max_bits} bits; "
                         f"this model's are {cfg['latent_bits']}: use the raw coder")
    kind = bundle.modality
    tile = tile or kind.bitstream_tile
    tile = (tile,) * kind.spatial_axes if isinstance(tile, (int, np.integer)) else tuple(tile)
    header = Header(kind, bundle.model_id, tuple(spec["shape"]), np.dtype(spec["dtype"]),
                    cfg["J"], cfg["latent_bits"], cfg["latent_dim"], coder,
                    chosen.params(cfg["latent_bits"]), tile,
                    int(sample_rate or 0) if kind.has_rate else 0)
    if not 0 <= header.sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample rate {sample_rate} is out of range (at most "
                         f"{MAX_SAMPLE_RATE:,} Hz)")
    if header.latent_shape != latents.shape:
        raise ValueError(f"latents of shape {latents.shape} do not belong to an input of "
                         f"shape {header.shape} (expected {header.latent_shape})")
    parts = [_pack_header(header)]
    for index in header.tiles():
        payload = chosen.encode(np.ascontiguousarray(latents[index]), header.latent_bits,
                                threads)
        parts += [_U32.pack(len(payload)), payload]
    data = b"".join(parts)
    return data + _U32.pack(zlib.crc32(data))


def _pack_header(h):
    dtype_code = {v: k for k, v in DTYPES.items()}[h.dtype]
    flags = FLAG_NO_CHANNEL_AXIS if len(h.shape) == len(h.sizes) else 0
    fixed = _FIXED.pack(MAGIC, VERSION, MODALITY_CODES.index(h.modality), flags, dtype_code,
                        bytes.fromhex(h.model_id), h.J, h.latent_bits, PADDING_REFLECT,
                        h.latent_dim, h.channels, CODER_IDS[h.coder], len(h.coder_params))
    axes = b"".join(_AXIS.pack(n, t) for n, t in zip(h.sizes, h.tile))
    rate = _U32.pack(h.sample_rate) if h.modality.has_rate else b""
    return fixed + h.coder_params + axes + rate


def read_bitstream(data: bytes, max_latents: int = MAX_LATENTS,
                   accept: "Callable[[Header], None] | None" = None) -> "Bitstream":
    """Parse and verify .wlc bytes (CRC, structure, sizes); entropy decoding is left to
    :meth:`Bitstream.latents`. Raises BitstreamError on anything malformed. ``accept(header)``
    runs once the header is read, before the tile table: a reader with limits of its own
    (a server's size and memory budgets) raises there, having spent nothing on the tiles."""
    try:
        return _read_bitstream(data, max_latents, accept)
    except struct.error as e:  # a field that points past the end: malformed all the same
        raise BitstreamError(f"a field of the bitstream points past its end ({e})") from None


def _read_bitstream(data, max_latents, accept):
    data = memoryview(bytes(data))
    if len(data) < _FIXED.size + _U32.size:
        raise BitstreamError(f"{len(data)} bytes is too short for a .wlc bitstream")
    if bytes(data[:4]) != MAGIC:
        raise BitstreamError("not a .wlc bitstream (wrong magic bytes)")
    if data[4] != VERSION:
        raise BitstreamError(f".wlc format version {data[4]}; this reader reads version "
                             f"{VERSION}")
    stored = _U32.unpack_from(data, len(data) - 4)[0]
    if zlib.crc32(data[:-4]) != stored:
        raise BitstreamError("CRC mismatch: the bitstream is corrupted or truncated")
    body = data[:-4]
    (_, _, modality, flags, dtype_code, model_id, J, bits, padding, latent_dim, channels,
     coder_id, n_params) = _FIXED.unpack_from(body, 0)
    if modality >= len(MODALITY_CODES):
        raise BitstreamError(f"unknown modality code {modality}")
    kind = MODALITY_CODES[modality]
    if flags & ~FLAG_NO_CHANNEL_AXIS:
        raise BitstreamError(f"unknown flags {flags:#x}")
    if dtype_code not in DTYPES or not kind.takes(DTYPES[dtype_code]):
        raise BitstreamError(f"input dtype code {dtype_code} is not valid for {kind}")
    if not 1 <= J <= 15 or not 2 <= bits <= 16 or padding != PADDING_REFLECT:
        raise BitstreamError(f"invalid J {J}, latent bits {bits} or padding mode {padding}")
    if latent_dim < 1 or channels < 1:
        raise BitstreamError("latent_dim and channels must be at least 1")
    names = {v: k for k, v in CODER_IDS.items()}
    if coder_id not in names:
        raise BitstreamError(f"unknown coder id {coder_id}")
    ndim = kind.spatial_axes
    axes_end = _FIXED.size + n_params + ndim * _AXIS.size
    offset = axes_end + (_U32.size if kind.has_rate else 0)
    if offset > len(body):
        raise BitstreamError("header is truncated")
    sample_rate = _U32.unpack_from(body, axes_end)[0] if kind.has_rate else 0
    if sample_rate > MAX_SAMPLE_RATE:
        raise BitstreamError(f"sample rate {sample_rate:,} Hz is out of range (at most "
                             f"{MAX_SAMPLE_RATE:,})")
    params = bytes(body[_FIXED.size:_FIXED.size + n_params])
    axes = [_AXIS.unpack_from(body, _FIXED.size + n_params + i * _AXIS.size)
            for i in range(ndim)]
    if any(n < 1 or t < 1 for n, t in axes):
        raise BitstreamError(f"invalid sizes or tile sizes {axes}")
    sizes = tuple(n for n, _ in axes)
    if flags & FLAG_NO_CHANNEL_AXIS and channels != 1:
        raise BitstreamError("an input without a channel axis must have one channel")
    shape = sizes if flags & FLAG_NO_CHANNEL_AXIS else (*sizes, channels)
    header = Header(kind, bytes(model_id).hex(), shape, DTYPES[dtype_code], J, bits,
                    latent_dim, names[coder_id], params, tuple(t for _, t in axes), sample_rate)
    if bits > get_coder(header.coder).max_bits:
        raise BitstreamError(f"the {header.coder} coder does not take {bits}-bit latents")
    get_coder(header.coder).check_params(params)
    count = math.prod(header.latent_shape)
    if count > max_latents:
        raise BitstreamError(f"the bitstream claims {count} latents, more than the limit of "
                             f"{max_latents}")
    tiles = header.tile_count()
    if tiles > MAX_TILES:
        raise BitstreamError(f"the bitstream claims {tiles:,} tiles, more than the limit of "
                             f"{MAX_TILES:,} (its tile size is {header.tile})")
    if accept is not None:
        accept(header)
    if tiles * _U32.size > len(body) - offset:
        raise BitstreamError("payload is shorter than its tile table")
    payloads = []
    for _ in range(tiles):
        if offset + _U32.size > len(body):
            raise BitstreamError("payload is truncated")
        n = _U32.unpack_from(body, offset)[0]
        offset += _U32.size
        if n > len(body) - offset:
            raise BitstreamError(f"a tile claims {n} bytes, only {len(body) - offset} remain")
        payloads.append(body[offset:offset + n])
        offset += n
    if offset != len(body):
        raise BitstreamError(f"{len(body) - offset} unexpected bytes after the last tile")
    return Bitstream(header, payloads)


def read_latents(data: bytes, max_latents: int = MAX_LATENTS) -> "tuple[Header, np.ndarray]":
    """(header, latents) of .wlc bytes."""
    stream = read_bitstream(data, max_latents)
    return stream.header, stream.latents()
