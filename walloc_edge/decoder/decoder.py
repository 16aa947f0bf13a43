"""``Decoder``: .wlc bytes → the signal, shaped and typed like what was encoded (server side),
with the codec's torch modules: the de-companding and the wavelet synthesis in fp32 torch,
the network on the engine chosen (``engines``). Tiles, batches and the output's conversion
are every decoder's (``base``).
"""
from pathlib import Path

import numpy as np
import torch

from ..codec import load
from ..codec.device import resolve_device
from ..codec.sensor import model_id
from ..runtime import Bitstream, Header
from . import base
from .base import DecoderBase
from .engines import make_engine
from .errors import ModelMismatchError
from .network import split_decoder
from .tiles import DECODE_TILE, tile_spans

__all__ = ["Decoder", "ModelMismatchError", "to_signal", "DECODE_TILE", "tile_spans"]


def to_signal(x: torch.Tensor, header: Header) -> np.ndarray:
    """Decoder output (C, H, W) / (C, L) in [-0.5, 0.5] (or already raw samples) → numpy
    like the encoded input (float input back as floats in [-1, 1])."""
    x = x.detach().cpu()
    return base.to_signal((x.float() if x.is_floating_point() else x).numpy(), header)


class Decoder(DecoderBase):
    """The torch decoder of ``model`` (a checkpoint path or an embedded model name).

    ``tile``: images with more latents than this a side decode in tiles of this size (default
    64, i.e. 512 pixels at J = 3); ``overlap``: the latents a tile's edge is let change
    before its pixels count (default 8); neighbours share three times that.

    ``engine`` (torch, onnxruntime or auto) and ``precision`` (fp32, bf16, fp16 or auto;
    default fp32, or auto for engine auto) choose what runs the decoder network
    (``decoder.engines``; auto: the fastest here that holds the quality bar, measured on a
    probe on the CPU); ``providers``: onnxruntime's, as the sensor names them;
    ``compile``: torch.compile the torch engine's network; ``threads``: an onnxruntime
    engine's (default: all cores; torch's are set by ``torch.set_num_threads``).
    ``engine_name`` says which runs.
    """

    def __init__(self, model: "torch.nn.Module | str | Path", device: str = "auto",
                 tile: int = DECODE_TILE, overlap: int = 8, engine: str = "torch",
                 precision: "str | None" = None, providers: "str | list[str] | None" = None,
                 compile: bool = False, threads: "int | None" = None):
        self.device = resolve_device(device)
        self.codec = model if isinstance(model, torch.nn.Module) else load(model)
        self.codec = self.codec.to(self.device).eval()
        self.model_id = model_id(self.codec)
        config = self.codec.config
        self.modality, self.channels, self.latent_dim, self.latent_bits = \
            config.modality, config.channels, config.latent_dim, config.latent_bits
        self.J, self.taps = self.codec.J, next(self.codec.iwt.buffers()).numel()  # g0
        self._set_tiles(tile, overlap)
        self.batches = self.device != "cpu"
        self._decompand, network = split_decoder(self.codec.decoder)
        self.engine = make_engine(network, self.device, engine, precision, providers, compile,
                                  threads)
        self.engine_name = f"{self.engine.name} {self.engine.precision}"

    @torch.no_grad()
    def calibrate(self) -> None:
        super().calibrate()

    @torch.no_grad()
    def decode_many(self, blobs: "list[bytes | Bitstream]") -> "list[np.ndarray]":
        """Decode several bitstreams; on a GPU, those with equal latent shapes in a batch."""
        return super().decode_many(blobs)

    def zeros(self, shape: "tuple[int, ...]") -> torch.Tensor:
        """Latents of zeros (a calibration probe)."""
        return torch.zeros(1, self.latent_dim, *shape, device=self.device)

    def network(self, z: torch.Tensor) -> torch.Tensor:
        """Latents → wavelet coefficients: the de-companding in fp32 torch, the network on
        the engine."""
        return self.engine(self._decompand(z))

    def synthesis(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self.codec._synthesize(coefficients)

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.clamp(x)

    def _batch(self, latents):
        return torch.from_numpy(np.stack(latents)).float().to(self.device)

    def _to_numpy(self, x):
        return x if isinstance(x, np.ndarray) else x.detach().float().cpu().numpy()

    def _block_synthesis(self, coefficients):
        x = self.codec.wavelet_synthesis(torch.from_numpy(coefficients)[None].to(self.device))
        return x[0].cpu().numpy()
