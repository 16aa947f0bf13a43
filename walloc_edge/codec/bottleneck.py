"""Entropy bottleneck: Gaussian-CDF compander and rounding, as the reference defines them.

``ToUniform`` maps roughly Gaussian encoder outputs to a near-uniform spread over
[−latent_max, latent_max] so that rounding gives integers in ±(2^(b−1)−1) that use the whole
range; ``ToNormal`` inverts it before the decoder. The arithmetic follows the reference
operation by operation (torch.distributions.Normal's cdf/icdf written out) so that integer
latents agree bit for bit.
"""
import math

import torch
import torch.nn as nn

__all__ = ["ToUniform", "ToNormal", "Round", "compander_constants"]


def compander_constants(latent_bits):
    """(scale, latent_max) for ``latent_bits``-bit latents."""
    scale = (2 ** (latent_bits - 1) - 1) / 1.85
    latent_max = 2 ** (latent_bits - 1) - 1 + 0.5 - 1e-3
    return scale, latent_max


class ToUniform(nn.Module):
    def __init__(self, scale: float, latent_max: float):
        super().__init__()
        self.scale = scale
        self.latent_max = latent_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.scale
        x = 0.5 * (1 + torch.erf(x / math.sqrt(2)))  # standard normal CDF
        return 2 * self.latent_max * (x - 0.5)


class Round(nn.Module):
    """Rounding at inference; additive uniform noise in training (a differentiable proxy)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x + (torch.rand_like(x) - 0.5)
        return torch.round(x)


class ToNormal(nn.Module):
    def __init__(self, scale: float, latent_max: float):
        super().__init__()
        self.scale = scale
        self.latent_max = latent_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (2 * self.latent_max) + 0.5
        x = torch.clamp(x, 0.0001, 0.9999)
        x = torch.erfinv(2 * x - 1) * math.sqrt(2)  # standard normal inverse CDF
        return self.scale * x
