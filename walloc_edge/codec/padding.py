"""Any-size inputs for the torch codec: reflect-pad to a multiple of 2^J, crop back.

Same split and reflection as the reference's ``walloc.pad``/``crop`` (and as the sensor
runtime, which shares :mod:`walloc_edge.runtime.padding`), for (B, C, H, W) and (B, C, L).
"""
import torch

from ..runtime.padding import padding_for, reflect_indices

__all__ = ["pad", "crop"]


def pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad the spatial (or time) axes of ``x`` up to multiples of ``multiple``."""
    for dim in range(2, x.ndim):
        before, after = padding_for(x.shape[dim], multiple)
        if before or after:
            idx = torch.from_numpy(reflect_indices(x.shape[dim], before, after)).to(x.device)
            x = x.index_select(dim, idx)
    return x


def crop(x: torch.Tensor, size: "tuple[int, ...]") -> torch.Tensor:
    """Crop the centre ``size`` (H, W) or (L,) that :func:`pad` padded around."""
    size = tuple(size)
    if len(size) != x.ndim - 2:
        raise ValueError(f"crop size {size} does not match a tensor of shape {tuple(x.shape)}")
    for dim, target in zip(range(2, x.ndim), size):
        if not 0 < target <= x.shape[dim]:
            raise ValueError(f"cannot crop {x.shape[dim]} samples to {target}")
        x = x.narrow(dim, (x.shape[dim] - target) // 2, target)
    return x
