"""``Decoder``: .wlc bytes → the signal, shaped and typed like what was encoded (server side).

Large images are decoded in overlapping tiles of latents so memory and time stay bounded
(the decoder's attention block costs time quadratic in the latents it is given). Each tile
drops the pixels of the ``overlap`` latents along its edge, which its edge changes, and
cross-fades into its neighbour over the next ``overlap``. The codec's wavelet transform wraps
around the image, so a tile on the image's edge is decoded with ``overlap`` latents from the
opposite edge beyond it, as the whole image would be. The result agrees with a whole-image
decode to about 50 dB PSNR (benchmarks/decoder_tiles.py). Only one row of tiles is held in
float at a time; finished rows go straight to uint8, so memory is the 8-bit image plus one
band (benchmarks/decoder_memory.py measures it).
"""
import math

import numpy as np
import torch

from ..codec import crop, load
from ..codec.device import resolve_device
from ..export.bundle import model_id
from ..runtime import Bitstream, BitstreamError, read_bitstream

__all__ = ["Decoder", "ModelMismatchError", "to_signal", "DEFAULT_TILE"]

DEFAULT_TILE = 96


class ModelMismatchError(ValueError):
    """A bitstream made by another model than the decoder's."""


def _to_pixels(x):
    """Images in [-0.5, 0.5] → uint8, in the same layout."""
    return torch.round((x + 0.5) * 255).clamp(0, 255).to(torch.uint8)


def to_signal(x, header):
    """Decoder output (C, H, W) / (C, L) in [-0.5, 0.5] (or an image already in uint8) →
    numpy like the encoded input."""
    x = x.detach().cpu()
    if header.modality == "image":
        out = (x if x.dtype == torch.uint8 else _to_pixels(x.float())).permute(1, 2, 0)
    else:
        pcm = torch.round(x * 65536).clamp(-32768, 32767).permute(1, 0)
        out = pcm.to(torch.int16) if header.dtype == np.int16 else pcm / 32768
    out = out.numpy()
    if header.dtype.kind == "f":
        out = out.astype(header.dtype)
    return out.reshape(header.shape)


class Decoder:
    """The torch decoder of ``model`` (a checkpoint path or an embedded model name).

    ``tile``: images with more latents than this a side decode in tiles of this size (default
    96, i.e. 768 pixels at J = 3); ``overlap``: the latents a tile's edge is let change
    before its pixels count (default 8); neighbours share three times that.
    """

    def __init__(self, model, device="auto", tile=DEFAULT_TILE, overlap=8):
        self.device = resolve_device(device)
        self.codec = model if isinstance(model, torch.nn.Module) else load(model)
        self.codec = self.codec.to(self.device).eval()
        self.model_id = model_id(self.codec)
        if tile <= 3 * overlap:
            raise ValueError(f"a tile of {tile} latents is too small for an overlap of {overlap}: "
                             f"use at least {3 * overlap + 1}")
        self.tile, self.overlap = tile, overlap

    def check(self, header):
        if header.model_id != self.model_id:
            raise ModelMismatchError(
                f"this bitstream was made by model {header.model_id}, this decoder is model "
                f"{self.model_id}: decode it with the model that encoded it")
        c = self.codec.config
        if (header.modality, header.latent_dim, header.J, header.channels) != \
                (c.modality, c.latent_dim, c.J, c.channels):
            raise BitstreamError("the bitstream's shape fields do not match its model id")

    def decode(self, blob):
        """The signal in ``blob`` (.wlc bytes, or a Bitstream already read), as the encoder
        was given it."""
        return self.decode_many([blob])[0]

    @torch.no_grad()
    def decode_many(self, blobs):
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
            return self.codec.decode(z)
        return self._decode_tiles(z)

    def _decode_tiles(self, z):
        """(1, latent_dim, h, w) → (1, C, h·2^J, w·2^J) uint8, a row of tiles at a time."""
        B = 2 ** self.codec.J
        _, _, h, w = z.shape
        out = torch.empty(1, self.codec.config.channels, h * B, w * B, dtype=torch.uint8)
        rows, cols = _spans(h, self.tile, self.overlap), _spans(w, self.tile, self.overlap)
        done = 0  # pixel rows written to out; the band holds those from here down
        band = torch.zeros(self.codec.config.channels, 0, w * B)
        weight = torch.zeros(0, w * B)
        for i, (ys, ye) in enumerate(rows):
            grow = ye * B - done - band.shape[1]
            band = torch.cat([band, band.new_zeros(band.shape[0], grow, w * B)], 1)
            weight = torch.cat([weight, weight.new_zeros(grow, w * B)])
            top, bottom = ys * B - done, ye * B - done
            for j, (xs, xe) in enumerate(cols):
                x = self._decode_tile(z, rows, i, cols, j)
                ramp = (_ramp(rows, i, B, self.overlap)[:, None]
                        * _ramp(cols, j, B, self.overlap)[None, :])
                band[:, top:bottom, xs * B:xe * B] += x * ramp
                weight[top:bottom, xs * B:xe * B] += ramp
            final = rows[i + 1][0] * B - done if i + 1 < len(rows) else band.shape[1]
            out[0, :, done:done + final] = _to_pixels(band[:, :final] / weight[:final])
            band, weight, done = band[:, final:].clone(), weight[final:].clone(), done + final
        return out

    def _decode_tile(self, z, rows, i, cols, j):
        """(C, pixels…) of tile (i, j). A tile on the image's edge takes ``overlap`` latents
        from the opposite edge beyond it, as the wavelet transform wraps around the image,
        and those pixels are cut off again."""
        B = 2 ** self.codec.J
        index, keep = [], []
        for spans, k, n in ((rows, i, z.shape[2]), (cols, j, z.shape[3])):
            start, end = spans[k]
            before = self.overlap if k == 0 else 0
            after = self.overlap if k == len(spans) - 1 else 0
            index.append(torch.arange(start - before, end + after, device=z.device) % n)
            keep.append(slice(before * B, (before + end - start) * B))
        x = self.codec.decode(z[:, :, index[0]][:, :, :, index[1]])
        return x[0, :, keep[0], keep[1]].float().cpu()


def _spans(n, tile, overlap):
    """(start, end) latent ranges covering [0, n): as few tiles as ``tile`` allows, each cut
    down to the smallest equal size that lets neighbours share 3·overlap latents (an
    ``overlap`` each tile drops at its edge, and one to cross-fade over), evenly spaced."""
    if n <= tile:
        return [(0, n)]
    count = math.ceil((n - 3 * overlap) / (tile - 3 * overlap))
    size = math.ceil((n - 3 * overlap) / count) + 3 * overlap
    return [(s, s + size) for s in (round(i * (n - size) / (count - 1)) for i in range(count))]


def _ramp(spans, i, block, margin):
    """Pixel weights along one axis of tile i. Where it shares latents with a neighbour, the
    ``margin`` latents nearest its own edge (which the edge changes) get no weight, and the
    rest fades linearly into the neighbour's; the two weights sum to one."""
    start, end = spans[i]
    r = torch.ones((end - start) * block)
    m = margin * block
    if i > 0:
        shared = (spans[i - 1][1] - start) * block
        r[:shared] = _fade_in(shared, m)
    if i < len(spans) - 1:
        shared = (end - spans[i + 1][0]) * block
        r[len(r) - shared:] = torch.minimum(r[len(r) - shared:], _fade_in(shared, m).flip(0))
    return r


def _fade_in(n, margin):
    """0 over the first ``margin`` of ``n`` pixels, 1 over the last ``margin``, linear between
    (a step in the middle when nothing is between)."""
    return ((torch.arange(n) + 0.5 - margin) / max(n - 2 * margin, 1)).clamp(0, 1)
