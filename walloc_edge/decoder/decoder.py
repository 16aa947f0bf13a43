"""``Decoder``: .wlc bytes → the signal, shaped and typed like what was encoded (server side).

Images decode whole up to ``tile`` latents a side (default 256: 2048 pixels at J = 3). The
decoder's attention block pools over every latent of what it is given, and the models
learn to lean on that: a tile decodes several dB worse than the same pixels decoded within
the whole image (benchmarks/decoder_tiles.py). Memory grows only linearly with the image
(PyTorch's attention does not hold the score matrix), but the attention's time grows with
the square of the latent count, so larger images are decoded in overlapping tiles,
cross-faded over their overlap with linear ramps. Only one row of tiles is held in float at
a time; finished rows go straight to uint8, so memory is the 8-bit image plus one band
(benchmarks/decoder_memory.py measures it).
"""
import math

import numpy as np
import torch

from ..codec import crop, load
from ..codec.device import resolve_device
from ..export.bundle import model_id
from ..runtime import Bitstream, BitstreamError, read_bitstream

__all__ = ["Decoder", "ModelMismatchError", "to_signal", "DEFAULT_TILE"]

DEFAULT_TILE = 256


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
    256, i.e. 2048 pixels at J = 3); ``overlap``: latents shared by neighbouring tiles on each
    side (default 8).
    """

    def __init__(self, model, device="auto", tile=DEFAULT_TILE, overlap=8):
        self.device = resolve_device(device)
        self.codec = model if isinstance(model, torch.nn.Module) else load(model)
        self.codec = self.codec.to(self.device).eval()
        self.model_id = model_id(self.codec)
        if tile <= 2 * overlap:
            raise ValueError(f"a tile of {tile} latents is too small for an overlap of {overlap} "
                             f"on each side: use at least {2 * overlap + 1}")
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
                x = self.codec.decode(z[:, :, ys:ye, xs:xe])[0].float().cpu()
                ramp = _ramp(rows, i, B)[:, None] * _ramp(cols, j, B)[None, :]
                band[:, top:bottom, xs * B:xe * B] += x * ramp
                weight[top:bottom, xs * B:xe * B] += ramp
            final = rows[i + 1][0] * B - done if i + 1 < len(rows) else band.shape[1]
            out[0, :, done:done + final] = _to_pixels(band[:, :final] / weight[:final])
            band, weight, done = band[:, final:].clone(), weight[final:].clone(), done + final
        return out


def _spans(n, tile, overlap):
    """(start, end) latent ranges of ``tile`` covering [0, n), evenly spaced, neighbours
    sharing at least 2·overlap latents."""
    if n <= tile:
        return [(0, n)]
    count = math.ceil((n - 2 * overlap) / (tile - 2 * overlap))
    return [(s, s + tile) for s in (round(i * (n - tile) / (count - 1)) for i in range(count))]


def _ramp(spans, i, block):
    """Pixel weights along one axis of tile i: a linear cross-fade over what it shares with
    the tile before and the tile after (the two weights sum to one there)."""
    start, end = spans[i]
    r = torch.ones((end - start) * block)
    if i > 0:
        shared = (spans[i - 1][1] - start) * block
        r[:shared] = (torch.arange(shared) + 0.5) / shared
    if i < len(spans) - 1:
        shared = (end - spans[i + 1][0]) * block
        r[len(r) - shared:] = torch.minimum(r[len(r) - shared:],
                                            ((torch.arange(shared) + 0.5) / shared).flip(0))
    return r
