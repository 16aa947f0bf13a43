"""What every decoder does whatever runs its network (no torch: the bundle decoder shares it):
check a bitstream against the model, group equal shapes into batches, cut a large image into
tiles of latents and its synthesis into blocks, and turn the output into the signal.

Large images are decoded in overlapping tiles of latents so memory and time stay bounded
(the decoder's attention block costs time quadratic in the latents it is given). The decoder
network runs tile by tile into the image's wavelet coefficients: each tile drops the
``overlap`` latents along its edge, which its edge disturbs, and cross-fades into its
neighbour over the next ``overlap``. The packet synthesis then runs over whole rows, wrapping
around the image as the encoder's transform did, so tiles change nothing but what the
network sees (benchmarks/decoder_tiles.py measures it). Memory is the image in uint8 plus
its coefficients in float (as many values as pixels), one tile's activations and one band
(benchmarks/decoder_memory.py).

A decoder built on ``DecoderBase`` supplies the stages, each on its own arrays (torch
tensors, numpy arrays): ``network``, ``synthesis``, ``clamp``, ``zeros``, and the
conversions ``_batch``, ``_to_numpy``, ``_block_synthesis``. ``decoder.cost`` times the
stages through the same public methods.
"""
from typing import Any

import numpy as np

from ..runtime import Bitstream, BitstreamError, Header, read_bitstream
from ..runtime.modality import IMAGE
from .cost import Cost, calibrate, estimate
from .errors import ModelMismatchError
from .tiles import SYNTHESIS_BLOCK, periodic_blocks, ramp, tile_spans

__all__ = ["DecoderBase", "to_signal", "to_raw"]


def to_raw(x: np.ndarray, modality) -> np.ndarray:
    """Signals in [-0.5, 0.5] → raw samples of ``modality`` (uint8 pixels, int16 PCM), in
    the same layout."""
    full = np.iinfo(modality.dtype)
    return np.clip(np.round(modality.denormalise(x)), full.min, full.max).astype(modality.dtype)


def to_signal(x: np.ndarray, header: Header) -> np.ndarray:
    """Decoder output (C, H, W) / (C, L) in [-0.5, 0.5] (or already raw samples) → numpy
    like the encoded input (float input back as floats in [-1, 1])."""
    raw = to_raw(x, header.modality) if x.dtype.kind == "f" else x
    out = np.moveaxis(raw, 0, -1)
    if header.dtype.kind == "f":
        out = (out / header.modality.peak).astype(header.dtype)
    return out.reshape(header.shape)


def _crop(x, sizes):
    """The centre ``sizes`` of (C, …) ``x`` (the encoder padded around it)."""
    return x[(slice(None), *(slice((n - s) // 2, (n - s) // 2 + s)
                             for n, s in zip(x.shape[1:], sizes)))]


class DecoderBase:
    """Set by a subclass: ``model_id``, ``modality``, ``channels``, ``latent_dim``, ``J``,
    ``latent_bits``, ``taps`` (the synthesis filter's), ``tile``, ``overlap``, ``engine_name`` and
    ``batches`` (whether equal-shape latents go through the network as one batch)."""

    speed = None  # measured on first need (``calibrate``)
    batches = False

    def _set_tiles(self, tile, overlap):
        if tile <= 3 * overlap:
            raise ValueError(f"a tile of {tile} latents is too small for an overlap of {overlap}: "
                             f"use at least {3 * overlap + 1}")
        self.tile, self.overlap = tile, overlap

    @property
    def model_fields(self):
        """What a bitstream of this model says of it beside its id (``Header.model_fields``)."""
        return self.modality, self.channels, self.latent_dim, self.J, self.latent_bits

    def check(self, header: Header) -> None:
        if header.model_id != self.model_id:
            raise ModelMismatchError(
                f"this bitstream was made by model {header.model_id}, this decoder is model "
                f"{self.model_id}: decode it with the model that encoded it")
        if header.model_fields != self.model_fields:
            raise BitstreamError("the bitstream's shape fields do not match its model id")

    def calibrate(self) -> None:
        """Measure this machine's decode speed (a second or two), which ``cost`` scales."""
        self.speed = calibrate(self)

    def cost(self, header: Header) -> Cost:
        """Peak memory and seconds that decoding a bitstream with ``header`` would take here,
        from the header alone (refuses one this decoder cannot decode, as ``check``)."""
        self.check(header)
        if self.speed is None:
            self.calibrate()
        return estimate(self, header, self.speed, tile_spans, SYNTHESIS_BLOCK)

    def decode(self, blob: "bytes | Bitstream") -> np.ndarray:
        """The signal in ``blob`` (.wlc bytes, or a Bitstream already read), as the encoder
        was given it."""
        return self.decode_many([blob])[0]

    def decode_many(self, blobs: "list[bytes | Bitstream]") -> "list[np.ndarray]":
        """Decode several bitstreams (bytes or Bitstream); where the decoder ``batches``,
        those with equal latent shapes (and small enough not to need tiles) go in one batch."""
        streams = [b if isinstance(b, Bitstream) else read_bitstream(b) for b in blobs]
        for s in streams:
            self.check(s.header)
        latents = [s.latents() for s in streams]
        out = [None] * len(streams)
        groups = {}
        for i, z in enumerate(latents):
            key = z.shape if self.batches and not self.needs_tiles(z) else i
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            x = self._to_numpy(self.decode_latents(self._batch([latents[i] for i in members])))
            for row, i in zip(x, members):
                header = streams[i].header
                out[i] = to_signal(_crop(row, header.sizes), header)  # undo the padding
        return out

    def needs_tiles(self, z: np.ndarray) -> bool:
        """Whether latents ``z`` (latent_dim, …) decode in tiles."""
        return z.ndim == 3 and max(z.shape[1:]) > self.tile

    def decode_latents(self, z: Any) -> Any:
        """(B, latent_dim, …) latents → (B, C, padded size…) in [-0.5, 0.5], or for a large
        image (B = 1) numpy uint8."""
        if not self.needs_tiles(z[0]):
            return self.clamp(self.synthesis(self.network(z)))
        return self._decode_tiles(z)

    def _decode_tiles(self, z):
        """(1, latent_dim, h, w) → (1, C, h·2^J, w·2^J) uint8. The decoder network runs tile
        by tile into the wavelet coefficients of the whole image; the packet synthesis then
        turns those into pixels a band of rows at a time, wrapping around the image."""
        _, _, h, w = z.shape
        rows, cols = tile_spans(h, self.tile, self.overlap), tile_spans(w, self.tile, self.overlap)
        row_ramps = [ramp(rows, i, self.overlap) for i in range(len(rows))]
        col_ramps = [ramp(cols, j, self.overlap) for j in range(len(cols))]
        coefficients, weight = None, np.zeros((h, w), np.float32)
        for (ys, ye), row_ramp in zip(rows, row_ramps):
            for (xs, xe), col_ramp in zip(cols, col_ramps):
                x = self._to_numpy(self.network(z[:, :, ys:ye, xs:xe]))[0]
                if coefficients is None:
                    coefficients = np.zeros((len(x), h, w), np.float32)
                fade = row_ramp[:, None] * col_ramp[None, :]
                coefficients[:, ys:ye, xs:xe] += x * fade
                weight[ys:ye, xs:xe] += fade
        coefficients /= weight
        return self._synthesize_bands(coefficients)

    def _synthesize_bands(self, coefficients):
        """(subbands, h, w) wavelet coefficients → (1, C, h·2^J, w·2^J) uint8, in blocks of
        at most ``SYNTHESIS_BLOCK`` latents: bands of ``tile`` rows, cut into columns where a
        band is wider than that (a thin image, however wide, takes bounded memory). A block
        that does not span its axis is given latents beyond it (periodically, as the
        transform wraps), so that its pixels are those of a whole-image synthesis; the
        synthesis reaches fewer latents than its filter has taps, so that many are enough.
        (A band is counted with that many rows more: the synthesis pads a short one.)"""
        B, (_, h, w), pad = 2 ** self.J, coefficients.shape, self.taps
        out = np.empty((1, self.channels, h * B, w * B), np.uint8)
        for top, bottom, rows, row_cut in periodic_blocks(h, self.tile, pad):
            band = coefficients[:, rows]
            width = max(self.tile, SYNTHESIS_BLOCK // (len(band[0]) + 2 * pad) - 2 * pad)
            for left, right, cols, col_cut in periodic_blocks(w, width, pad):
                x = self._block_synthesis(band[:, :, cols])
                x = x[:, row_cut * B:(row_cut + bottom - top) * B,
                      col_cut * B:(col_cut + right - left) * B]
                out[0, :, top * B:bottom * B, left * B:right * B] = \
                    to_raw(np.clip(x, -0.5, 0.5), IMAGE)
        return out
