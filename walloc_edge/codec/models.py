"""Codec2D and Codec1D: the reference's WaLLoC modules, same submodules and state_dict keys.

Submodule layout (what reference checkpoints are keyed by):
  wt / iwt   one wavelet level (filter buffers only)
  encoder    Sequential(1×1 conv | diffusers Encoder, ToUniform, Round)
  decoder    Sequential(ToNormal, diffusers Decoder | OobleckDecoder)
  post       (Codec1D with post_filter) Conv1d, 129 taps
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._diffusers import autoencoder_module, legacy_weight_norm
from .bottleneck import Round, ToNormal, ToUniform, compander_constants
from ..runtime.modality import AUDIO, IMAGE
from .config import CodecConfig
from .wavelets import DWT1D, DWT2D, IDWT1D, IDWT2D, packet_analysis, packet_synthesis

__all__ = ["Codec2D", "Codec1D", "build", "encoder_arrays", "scale_latents"]


class _Codec(nn.Module):
    """What both codecs share: packet transform around an encoder/decoder pair."""

    def _init_common(self, config, dwt, idwt):
        self.config = config
        self.channels = config.channels
        self.J = config.J
        self.freq_bands = config.modality.subbands_per_level ** config.J
        self.Ne, self.Nd = config.Ne, config.Nd
        self.latent_dim = config.latent_dim
        self.latent_bits = config.latent_bits
        scale, self.latent_max = compander_constants(config.latent_bits)
        self.wt = dwt(config.wavelet)
        self.iwt = idwt(config.wavelet)
        self.clamp = nn.Hardtanh(min_val=-0.5, max_val=0.5)
        return scale

    def wavelet_analysis(self, x, J=None):
        return packet_analysis(self.wt, x, self.J if J is None else J)

    def wavelet_synthesis(self, X, J=None):
        return packet_synthesis(self.iwt, X, self.J if J is None else J)

    def _check_input(self, x):
        axes = self.config.modality.axis_names  # (B, C, H, W) or (B, C, L)
        if x.ndim != 2 + len(axes) or x.shape[1] != self.channels:
            raise ValueError(f"expected a ({', '.join(('B', 'C', *axes))}) tensor "
                             f"with C={self.channels}, got shape {tuple(x.shape)}")
        step = 2 ** self.J
        if any(n % step for n in x.shape[2:]):
            raise ValueError(f"size {tuple(x.shape[2:])} is not a multiple of 2^J = {step}; "
                             "pad it first with walloc_edge.codec.pad(x, 2**J)")

    def encode(self, x):
        """Integer-valued latents (always rounded, whatever the training mode)."""
        self._check_input(x)
        y = self.encoder[:-1](self.wavelet_analysis(x))
        return torch.round(y)

    def _synthesize(self, X_hat):
        return self.wavelet_synthesis(X_hat)

    def decode(self, z):
        """Reconstruction in [−0.5, 0.5] from (integer) latents."""
        return self.clamp(self._synthesize(self.decoder(z)))

    def forward(self, x):
        """As the reference: (clamped reconstruction, signal MSE, transform-domain MSE)."""
        X = self.wavelet_analysis(x)
        X_hat = self.decoder(self.encoder(X))
        x_hat = self._synthesize(X_hat)
        return self.clamp(x_hat), F.mse_loss(x, x_hat), F.mse_loss(X, X_hat)


class Codec2D(_Codec):
    """Images: (B, C, H, W) in [−0.5, 0.5] ↔ latents (B, latent_dim, H/2^J, W/2^J)."""

    def __init__(self, channels: int, J: int, Ne: int, Nd: int, latent_dim: int,
                 latent_bits: int, lightweight_encode: bool, wavelet: str = "bior4.4"):
        super().__init__()
        autoencoder_kl = autoencoder_module("autoencoder_kl")

        config = CodecConfig(IMAGE, channels, J, latent_dim, Nd, latent_bits, Ne,
                             lightweight_encode, wavelet=wavelet)
        scale = self._init_common(config, DWT2D, IDWT2D)
        subbands = channels * self.freq_bands
        if lightweight_encode:
            analysis = nn.Conv2d(subbands, latent_dim, kernel_size=(1, 1))
        else:
            analysis = autoencoder_kl.Encoder(
                in_channels=subbands, out_channels=latent_dim,
                down_block_types=("DownEncoderBlock2D",), block_out_channels=(Ne,),
                layers_per_block=2, norm_num_groups=32, act_fn="silu", double_z=False,
                mid_block_add_attention=True)
        self.encoder = nn.Sequential(analysis, ToUniform(scale, self.latent_max), Round())
        self.decoder = nn.Sequential(
            ToNormal(scale, self.latent_max),
            autoencoder_kl.Decoder(
                in_channels=latent_dim, out_channels=subbands,
                up_block_types=("UpDecoderBlock2D",), block_out_channels=(Nd,),
                layers_per_block=2, norm_num_groups=32, act_fn="silu",
                mid_block_add_attention=True))


class Codec1D(_Codec):
    """Audio: (B, C, L) in [−0.5, 0.5] ↔ latents (B, latent_dim, L/2^J + 2).

    The reference's encoder is Conv1d(kernel 1, padding=1), hence two extra latent samples;
    the Oobleck decoder's two stride-1 transposed convs each drop one, giving back L/2^J.
    """

    def __init__(self, channels: int, J: int, Ne: int, Nd: int, latent_dim: int,
                 latent_bits: int, lightweight_encode: bool, post_filter: bool,
                 wavelet: str = "bior4.4"):
        super().__init__()
        autoencoder_oobleck = autoencoder_module("autoencoder_oobleck")

        config = CodecConfig(AUDIO, channels, J, latent_dim, Nd, latent_bits, Ne,
                             lightweight_encode, post_filter, wavelet)
        scale = self._init_common(config, DWT1D, IDWT1D)
        self.lightweight_encode = lightweight_encode
        self.post_filter = post_filter
        subbands = channels * self.freq_bands
        with legacy_weight_norm():
            if lightweight_encode:
                analysis = nn.Conv1d(subbands, latent_dim, kernel_size=1, stride=1, padding=1)
            else:
                analysis = autoencoder_oobleck.OobleckEncoder(
                    encoder_hidden_size=latent_dim, audio_channels=subbands,
                    downsampling_ratios=[1, 1], channel_multiples=[Ne // latent_dim] * 2)
            self.encoder = nn.Sequential(analysis, ToUniform(scale, self.latent_max), Round())
            self.decoder = nn.Sequential(
                ToNormal(scale, self.latent_max),
                autoencoder_oobleck.OobleckDecoder(
                    channels=latent_dim, input_channels=latent_dim, audio_channels=subbands,
                    upsampling_ratios=[1, 1], channel_multiples=[Nd // latent_dim] * 2))
        if post_filter:
            self.post = nn.Conv1d(channels, channels, kernel_size=129, stride=1, padding=64)

    def _synthesize(self, X_hat):
        x_hat = self.wavelet_synthesis(X_hat)
        return self.post(x_hat) if self.post_filter else x_hat


CODECS = {IMAGE: Codec2D, AUDIO: Codec1D}


def build(config: CodecConfig) -> "Codec2D | Codec1D":
    """A freshly initialised codec for a :class:`CodecConfig`."""
    kw = config.reference_kwargs()
    return CODECS[config.modality](**kw, wavelet=config.wavelet)


def encoder_arrays(codec: nn.Module) -> "dict[str, np.ndarray]":
    """Everything the sensor encoder computes from, as numpy arrays (name → array): the 1×1
    encoder's weight and bias and the wavelet filters. Its hash is the model id."""
    conv = codec.encoder[0]
    arrays = {"encoder_weight": conv.weight.detach().cpu().float().numpy(),
              "encoder_bias": conv.bias.detach().cpu().float().numpy()}
    arrays.update({f"wt.{k}": v.detach().cpu().double().numpy()
                   for k, v in codec.wt.state_dict().items()})
    return arrays


@torch.no_grad()
def scale_latents(codec: nn.Module, gain: float) -> nn.Module:
    """Spread the latents ``gain`` times wider: the encoder's output × gain and the decoder's
    first layer ÷ gain, so the decoder computes the same from latents whose rounding step is
    ``gain`` times finer (exactly so where the compander is linear, |latent| ≲ 30). Costs
    about log2(gain) more bits a latent; the decoder then fine-tunes to the finer latents."""
    if gain <= 0:
        raise ValueError(f"the latent gain must be positive, got {gain}")
    encoder, decoder = codec.encoder[0], codec.decoder[1]
    if not isinstance(encoder, (nn.Conv1d, nn.Conv2d)):
        raise ValueError("scaling the latents needs a lightweight (one linear layer) encoder")
    encoder.weight *= gain
    encoder.bias *= gain
    first = decoder.conv_in if codec.config.modality is IMAGE else decoder.conv1
    if hasattr(first, "weight_g"):  # weight-normed (the Oobleck decoder): weight = g · v/|v|
        first.weight_g /= gain
    else:
        first.weight /= gain
    return codec
