"""The codec's sensor form: raw sensor samples in, integer latents out, in one torch module,
and the content of a sensor bundle (encoder.npz's arrays, encoder.json's metadata).

The modules are what ``export`` turns into graphs (ONNX, LiteRT); they compute the same
function as ``Codec.encode`` on normalised input, rearranged for speed on a CPU. They live
with the codec (not with export) because the server side needs them too: ``eval`` encodes
through the sensor runtime over the arrays written here, and so does training on latents.

Images (``SensorEncoder2D``). The J-level packet transform is linear and shift-invariant by
B = 2^J pixels, so along one axis all J levels fuse into one strided filter bank: subband r of
block m is ``Σ_j K[r, j] · x[B·m + j − left]`` with a support of a few blocks (8 blocks for
bior4.4, J = 3). The graph is then
  wrap-pad (periodization) → one strided conv along rows (1 → B subbands, stride B)
  → one conv along columns that also applies the 1×1 encoder (C·B·B → latent_dim)
  → latent_max · erf(·) → round → clip → int8.
Normalisation (x/255 − 0.5) and the compander's 1/(scale·√2) fold into the weights and
bias. Two dense convolutions and no per-level ops make it ~10× faster than the reference
on onnxruntime (see benchmarks/).

Audio (``SensorEncoder1D``) keeps the level-by-level transform (J = 8 would make the fused
bank hundreds of taps long) and folds the 1/65536 scale (exact, a power of two).
"""
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.bundle import BUNDLE_FORMAT, BUNDLE_VERSION
from ..runtime.bundle import model_id as _model_id
from ..runtime.io import atomic_file, write_atomic
from ..runtime.modality import AUDIO
from .models import encoder_arrays
from .wavelets import DWT1D, packet_analysis, periodic_pad

__all__ = ["SensorEncoder2D", "SensorEncoder1D", "sensor_encoder", "fused_filter_bank",
           "model_id", "bundle_arrays", "bundle_metadata", "write_bundle"]


def fused_filter_bank(wavelet, J):
    """(K, left): K[r, j] weights of x[B·m + j − left] in subband r of block m, float64.

    Found by transforming impulses with the torch packet transform, so it follows the same
    definition (and subband order) as the codec.
    """
    B = 2 ** J
    n = 64 * B  # long enough that the support never wraps
    impulses = torch.zeros(B, 1, n, dtype=torch.float64)
    origin = n // 2
    impulses[torch.arange(B), 0, origin + torch.arange(B)] = 1
    bands = packet_analysis(DWT1D(wavelet), impulses, J)  # (i, r, block)
    # Impulse at B·m0 + i reaches output blocks m = m0 − s for the shifts s it touches.
    m0 = origin // B
    touched = bands.abs().amax(dim=(0, 1)).nonzero().flatten()
    s_min, s_max = int(m0 - touched.max()), int(m0 - touched.min())
    taps = s_max - s_min + 1
    K = torch.zeros(B, taps * B, dtype=torch.float64)
    for t in range(taps):
        K[:, t * B:(t + 1) * B] = bands[:, :, m0 - (s_min + t)].T  # [r, i]
    return K, -s_min * B


def _subband_channel(c, rw, rh, J):
    """Codec channel of colour c, row subband rw, column subband rh (bits interleave per level)."""
    k = 0
    for level in range(J):
        bit = J - 1 - level
        k = 4 * k + 2 * ((rw >> bit) & 1) + ((rh >> bit) & 1)
    return c * 4 ** J + k


class _SensorEncoder(nn.Module):
    """What both graphs share: the receptive field and the compander → round → clip tail."""

    def _init_bank(self, cfg):
        """Fused bank of the model's wavelet; sets the receptive field of one block of 2^J
        samples: ``left`` samples before it and ``right`` after (what a tile's border needs)."""
        K, left = fused_filter_bank(cfg.wavelet, cfg.J)
        self.J, self.block = cfg.J, 2 ** cfg.J
        self.left, self.right = left, K.shape[1] - left - self.block
        self.bank = K
        return K

    def _init_quantizer(self, codec):
        """Set the rounding constants; returns the gain 1/(scale·√2) to fold into weights."""
        self.latent_max = codec.latent_max
        self.clip = 2 ** (codec.config.latent_bits - 1) - 1
        self.out_dtype = torch.int8 if codec.config.latent_bits <= 8 else torch.int16
        return 1 / (codec.encoder[1].scale * math.sqrt(2))  # ToUniform: erf(y / (scale·√2))

    def _quantize(self, y):
        y = torch.round(self.latent_max * torch.erf(y))
        return torch.clamp(y, -self.clip, self.clip).to(self.out_dtype)


class SensorEncoder2D(_SensorEncoder):
    """uint8 (1, H, W, C) → int (1, latent_dim, H/2^J, W/2^J); H, W multiples of 2^J.

    ``planar=True`` (for LiteRT) takes (1, C, H, W) instead and runs the row pass as one
    grouped convolution and the column pass as a strided Conv2d, with no reshape between
    them, so that litert-torch's channel-last conversion (``to_channel_last_io``) leaves no
    transpose in the graph: NHWC in, NHWC out. The default runs the column pass as a Conv3d,
    fastest on onnxruntime.
    """

    def __init__(self, codec, planar=False):
        super().__init__()
        cfg = codec.config
        J, C, B = cfg.J, cfg.channels, 2 ** cfg.J
        self.planar = planar
        K = self._init_bank(cfg)
        taps = K.shape[1] // B
        self.min_size = B * math.ceil(max(self.left, self.right, 1) / B)
        gain = self._init_quantizer(codec)

        conv = codec.encoder[0]
        W = conv.weight.detach().double().reshape(cfg.latent_dim, -1)
        b = conv.bias.detach().double()
        # Normalisation x/255 − 0.5: the −0.5 offset reaches only the all-lowpass subband of
        # each colour, with gain 2^J (√2 per level and axis); 1/255 goes into the row filters.
        dc = torch.zeros(W.shape[1], dtype=torch.float64)
        dc[[_subband_channel(c, 0, 0, J) for c in range(C)]] = 2.0 ** J
        order = torch.tensor([[[_subband_channel(c, rw, rh, J) for rh in range(B)]
                               for rw in range(B)] for c in range(C)])
        W_grid = W[:, order]                                   # (latent, c, rw, rh)
        K_taps = K.reshape(B, taps, B)                         # (rh, t, i)
        col = torch.einsum("lcwh,hti->lcwti", W_grid, K_taps)  # (latent, c, rw, t, i)
        self.register_buffer("row_filters", (K / 255).reshape(B, 1, 1, -1).float())
        self.register_buffer("col_weights", (col * gain).reshape(
            cfg.latent_dim, C * B, taps, B, 1).float())
        self.register_buffer("bias", ((b - 0.5 * W @ dc) * gain).float())
        if planar:  # the row filters once per colour, for one grouped convolution
            self.register_buffer("grouped_row_filters", self.row_filters.repeat(C, 1, 1, 1))

    def forward(self, x):
        """Any batch size (the exported graphs take one image; training encodes batches)."""
        if self.planar:
            return self._forward_planar(x)
        _, H, W, C = x.shape
        B = self.block
        x = periodic_pad(periodic_pad(x, self.left, self.right, 1), self.left, self.right, 2)
        x = x.float().permute(0, 3, 1, 2).reshape(-1, 1, x.shape[1], x.shape[2])
        rows = F.conv2d(x, self.row_filters, stride=(1, B))  # (N·C, rw, H + pad, W/B)
        rows = rows.reshape(-1, C * B, rows.shape[2] // B, B, W // B)  # (N, c·rw, hb, ih, wb)
        y = F.conv3d(rows, self.col_weights, self.bias, stride=(1, B, 1))
        return self._quantize(y.reshape(-1, y.shape[1], H // B, W // B))

    def _forward_planar(self, x):
        C, B = x.shape[1], self.block
        x = periodic_pad(periodic_pad(x, self.left, self.right, 2), self.left, self.right, 3)
        rows = F.conv2d(x.float(), self.grouped_row_filters, stride=(1, B),
                        groups=C)                                  # (1, c·rw, H + pad, W/B)
        y = F.conv2d(rows, self.col_weights.flatten(2, 3), self.bias, stride=(B, 1))
        return self._quantize(y)


class SensorEncoder1D(_SensorEncoder):
    """int16 (1, L, C) → int (1, latent_dim, L/2^J + 2); L a multiple of 2^J."""

    def __init__(self, codec):
        super().__init__()
        cfg = codec.config
        self._init_bank(cfg)
        self.dwt = DWT1D(cfg.wavelet)
        self.dwt.load_state_dict(codec.wt.state_dict())
        self.min_size = 2 ** cfg.J * 5  # the wrap at the deepest level needs F/2 − 1 samples
        gain = self._init_quantizer(codec)
        conv = codec.encoder[0]
        # PCM / 65536 is exact in float (a power of two), so it folds without rounding change.
        self.register_buffer("weight", (conv.weight.detach().double() * gain / 65536).float())
        self.register_buffer("bias", (conv.bias.detach().double() * gain).float())

    def forward(self, x):
        x = x.float().permute(0, 2, 1)  # (1, C, L)
        X = packet_analysis(self.dwt, x, self.J)
        return self._quantize(F.conv1d(X, self.weight, self.bias, padding=1))  # reference's padding=1


def sensor_encoder(codec, target="onnx"):
    """The exportable sensor encoder for a codec (lightweight encoders only), arranged for
    the fastest run on ``target`` ("onnx" or "litert"; LiteRT image latents are NHWC)."""
    if not codec.config.lightweight_encode:
        raise ValueError("only lightweight_encode models (one linear layer) have a sensor "
                         "encoder; this model's encoder is a deep network")
    if codec.config.modality is AUDIO:
        return SensorEncoder1D(codec).eval()
    if target != "litert":
        return SensorEncoder2D(codec).eval()
    from ..runtime._quiet import quiet_output

    with quiet_output():  # its import logs (absl, oneDNN) to stderr
        import litert_torch

    # NHWC in and NHWC latents (1, H/2^J, W/2^J, latent_dim) out, without transposes.
    return litert_torch.to_channel_last_io(SensorEncoder2D(codec, planar=True).eval(),
                                           args=[0], outputs=[0])


# --- the bundle: encoder.npz and encoder.json ---------------------------------------------

def bundle_arrays(codec, encoder):
    """The content of encoder.npz: the model's encoder arrays, the fused filter bank along one
    axis (``fused_bank``, float64) and the sensor graph's folded weights (``graph.*``)."""
    arrays = encoder_arrays(codec)
    arrays["fused_bank"] = encoder.bank.numpy()
    arrays.update({f"graph.{k}": v.numpy() for k, v in encoder.state_dict().items()})
    return arrays


def model_id(codec):
    """The codec's model id (see :func:`walloc_edge.runtime.bundle.model_id`)."""
    return _model_id(codec.config.to_dict(), encoder_arrays(codec))


def bundle_metadata(codec, encoder, graphs):
    """The content of encoder.json for a codec, its sensor encoder module and graph reports."""
    cfg = codec.config
    step = 2 ** cfg.J
    latent_range = 2 ** (cfg.latent_bits - 1) - 1
    latent_dtype = "int8" if cfg.latent_bits <= 8 else "int16"
    kind, axes = cfg.modality, cfg.modality.axis_names
    inputs = {"dtype": kind.dtype, "layout": "".join(("N", *axes, "C")),
              "shape": [1, *axes, cfg.channels], "normalisation": kind.normalisation}
    latents = {"dtype": latent_dtype, "layout": "".join(("N", "C", *axes)),
               "shape": [1, cfg.latent_dim, *kind.latent_axes(step)]}
    inputs.update({"multiple": step, "min_size": encoder.min_size,
                   "padding": "reflect; before = (padded - size) // 2, the rest after",
                   "receptive_field": {"left": encoder.left, "right": encoder.right}})
    latents["range"] = [-latent_range, latent_range]
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "model_id": model_id(codec),
        "config": cfg.to_dict(),
        "input": inputs,
        "latents": latents,
        "compander": {"scale": codec.encoder[1].scale, "latent_max": codec.latent_max,
                      "formula": "clip(round(latent_max * erf(y / (scale * sqrt(2)))))"},
        "weights": "encoder.npz",
        "graphs": graphs,
    }


def write_bundle(codec, out_dir, encoder=None, graphs=None):
    """Write encoder.npz and encoder.json for ``codec`` into ``out_dir`` (each file
    atomically: a bundle is never half written); returns the metadata. Without graphs this
    is a complete bundle for the runtime's numpy and native backends."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = sensor_encoder(codec) if encoder is None else encoder
    metadata = bundle_metadata(codec, encoder, graphs or {})
    with atomic_file(out_dir / "encoder.npz") as f:
        np.savez(f, **bundle_arrays(codec, encoder))
    write_atomic(out_dir / "encoder.json", (json.dumps(metadata, indent=2) + "\n").encode())
    return metadata
