"""``Decoder``: .wlc bytes → the signal, shaped and typed like what was encoded (server side).

Large images are decoded in overlapping tiles of latents so memory and time stay bounded
(the decoder's attention block costs time quadratic in the latents it is given). The decoder
network runs tile by tile into the image's wavelet coefficients: each tile drops the
``overlap`` latents along its edge, which its edge disturbs, and cross-fades into its
neighbour over the next ``overlap``. The packet synthesis then runs over whole rows, wrapping
around the image as the encoder's transform did, so tiles change nothing but what the
network sees (benchmarks/decoder_tiles.py measures it). Memory is the image in uint8 plus
its coefficients in float (as many values as pixels), one tile's activations and one band
(benchmarks/decoder_memory.py).
"""
from pathlib import Path

import numpy as np
import torch

from ..codec import crop, load
from ..codec.device import resolve_device
from ..codec.sensor import model_id
from ..runtime.modality import IMAGE
from ..runtime import Bitstream, BitstreamError, Header, read_bitstream
from .cost import Cost, calibrate, estimate
from .engines import make_engine
from .errors import ModelMismatchError
from .network import split_decoder
from .tiles import DECODE_TILE, SYNTHESIS_BLOCK, periodic_blocks, ramp, tile_spans

__all__ = ["Decoder", "ModelMismatchError", "to_signal", "DECODE_TILE", "tile_spans"]


def _to_raw(x, modality):
    """Signals in [-0.5, 0.5] → raw samples of ``modality`` (uint8 pixels, int16 PCM), in
    the same layout."""
    full = np.iinfo(modality.dtype)
    return torch.round(modality.denormalise(x)).clamp(full.min, full.max) \
        .to(getattr(torch, modality.dtype))


def to_signal(x: torch.Tensor, header: Header) -> np.ndarray:
    """Decoder output (C, H, W) / (C, L) in [-0.5, 0.5] (or already raw samples) → numpy
    like the encoded input (float input back as floats in [-1, 1])."""
    x = x.detach().cpu()
    raw = x if not x.is_floating_point() else _to_raw(x.float(), header.modality)
    out = raw.movedim(0, -1).numpy()
    if header.dtype.kind == "f":
        out = (out / header.modality.peak).astype(header.dtype)
    return out.reshape(header.shape)


class Decoder:
    """The torch decoder of ``model`` (a checkpoint path or an embedded model name).

    ``tile``: images with more latents than this a side decode in tiles of this size (default
    64, i.e. 512 pixels at J = 3); ``overlap``: the latents a tile's edge is let change
    before its pixels count (default 8); neighbours share three times that.

    ``engine`` (torch, onnxruntime or auto) and ``precision`` (fp32, bf16, fp16 or auto;
    default fp32, or auto for engine auto) choose what runs the decoder network
    (``decoder.engines``; auto: the fastest here that holds the quality bar, measured on a
    probe on the CPU); ``providers``: onnxruntime's, as the sensor names them;
    ``compile``: torch.compile the torch engine's network. ``engine_name`` says which runs.
    """

    def __init__(self, model: "torch.nn.Module | str | Path", device: str = "auto",
                 tile: int = DECODE_TILE, overlap: int = 8, engine: str = "torch",
                 precision: "str | None" = None, providers: "str | list[str] | None" = None,
                 compile: bool = False):
        self.device = resolve_device(device)
        self.codec = model if isinstance(model, torch.nn.Module) else load(model)
        self.codec = self.codec.to(self.device).eval()
        self.model_id = model_id(self.codec)
        config = self.codec.config  # what the cost estimate reads, as of every decoder
        self.modality, self.channels, self.latent_dim = \
            config.modality, config.channels, config.latent_dim
        self.J, self.taps = self.codec.J, next(self.codec.iwt.buffers()).numel()  # g0
        if tile <= 3 * overlap:
            raise ValueError(f"a tile of {tile} latents is too small for an overlap of {overlap}: "
                             f"use at least {3 * overlap + 1}")
        self.tile, self.overlap = tile, overlap
        self.speed = None  # measured on first need (``calibrate``)
        self._decompand, network = split_decoder(self.codec.decoder)
        self.engine = make_engine(network, self.device, engine, precision, providers, compile)
        self.engine_name = f"{self.engine.name} {self.engine.precision}"

    def check(self, header: Header) -> None:
        if header.model_id != self.model_id:
            raise ModelMismatchError(
                f"this bitstream was made by model {header.model_id}, this decoder is model "
                f"{self.model_id}: decode it with the model that encoded it")
        c = self.codec.config
        if (header.modality, header.latent_dim, header.J, header.channels) != \
                (c.modality, c.latent_dim, c.J, c.channels):
            raise BitstreamError("the bitstream's shape fields do not match its model id")

    def calibrate(self) -> None:
        """Measure this machine's decode speed (a second or two), which ``cost`` scales."""
        with torch.no_grad():
            self.speed = calibrate(self)

    def cost(self, header: Header) -> "Cost":
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

    @torch.no_grad()
    def decode_many(self, blobs: "list[bytes | Bitstream]") -> "list[np.ndarray]":
        """Decode several bitstreams (bytes or Bitstream); on a GPU, those with equal latent
        shapes go in one batch."""
        streams = [b if isinstance(b, Bitstream) else read_bitstream(b) for b in blobs]
        for s in streams:
            self.check(s.header)
        latents = [s.latents() for s in streams]
        out = [None] * len(streams)
        groups = {}
        for i, z in enumerate(latents):
            key = z.shape if self.device != "cpu" and not self._needs_tiles(z) else i
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            z = torch.from_numpy(np.stack([latents[i] for i in members])).float()
            x = self._decode_latents(z.to(self.device))
            for row, i in zip(x, members):
                header = streams[i].header
                row = crop(row[None], header.sizes)[0]  # undo the encoder's padding
                out[i] = to_signal(row, header)
        return out

    def _needs_tiles(self, z):
        return z.ndim == 3 and max(z.shape[1:]) > self.tile

    def _decode_latents(self, z):
        """(B, latent_dim, …) latents → (B, C, padded size…) in [-0.5, 0.5], or for a large
        image (B = 1) in uint8."""
        if not self._needs_tiles(z[0]):
            return self.codec.clamp(self.codec._synthesize(self._network(z)))
        return self._decode_tiles(z)

    def _zeros(self, shape):
        """Latents of zeros (a calibration probe)."""
        return torch.zeros(1, self.latent_dim, *shape, device=self.device)

    def _synthesis(self, coefficients):
        return self.codec.wavelet_synthesis(coefficients)

    def _network(self, z):
        """Latents → wavelet coefficients: the de-companding in fp32 torch, the network on
        the engine."""
        return self.engine(self._decompand(z))

    def _decode_tiles(self, z):
        """(1, latent_dim, h, w) → (1, C, h·2^J, w·2^J) uint8. The decoder network runs tile
        by tile into the wavelet coefficients of the whole image; the packet synthesis then
        turns those into pixels a band of rows at a time, wrapping around the image."""
        _, _, h, w = z.shape
        rows, cols = tile_spans(h, self.tile, self.overlap), tile_spans(w, self.tile, self.overlap)
        row_ramps = [torch.from_numpy(ramp(rows, i, self.overlap)) for i in range(len(rows))]
        col_ramps = [torch.from_numpy(ramp(cols, j, self.overlap)) for j in range(len(cols))]
        coefficients, weight = None, torch.zeros(h, w)
        for (ys, ye), row_ramp in zip(rows, row_ramps):
            for (xs, xe), col_ramp in zip(cols, col_ramps):
                x = self._network(z[:, :, ys:ye, xs:xe])[0].float().cpu()
                if coefficients is None:
                    coefficients = x.new_zeros(len(x), h, w)
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
        B, (_, h, w) = 2 ** self.codec.J, coefficients.shape
        pad = self.codec.iwt.g0_col.numel()
        out = torch.empty(1, self.codec.config.channels, h * B, w * B, dtype=torch.uint8)
        for top, bottom, rows, row_cut in periodic_blocks(h, self.tile, pad):
            band = coefficients[:, rows]
            width = max(self.tile, SYNTHESIS_BLOCK // (len(band[0]) + 2 * pad) - 2 * pad)
            for left, right, cols, col_cut in periodic_blocks(w, width, pad):
                x = self.codec.wavelet_synthesis(band[None, :, :, cols].to(self.device))
                x = x[0, :, row_cut * B:(row_cut + bottom - top) * B,
                      col_cut * B:(col_cut + right - left) * B]
                out[0, :, top * B:bottom * B, left * B:right * B] = \
                    _to_raw(self.codec.clamp(x).cpu(), IMAGE)
        return out
