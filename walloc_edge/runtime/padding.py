"""Reflect padding to a multiple of 2^J and the crop back (numpy only; shared with torch).

Padding is split as the reference does: ``before = (padded − size) // 2`` and the rest after.
Reflection is periodic (period 2·(size − 1)), so pads larger than the signal still work;
for pads smaller than the signal it equals ``numpy.pad(mode="reflect")`` and torch's reflect.
"""
import numpy as np

__all__ = ["padding_for", "reflect_indices", "pad_reflect", "crop"]


def padding_for(size: int, multiple: int) -> "tuple[int, int]":
    """(before, after) samples that bring ``size`` up to a multiple of ``multiple``."""
    total = -size % multiple
    return total // 2, total - total // 2


def reflect_indices(size: int, before: int, after: int) -> np.ndarray:
    """Source index of every output sample of a reflect-padded axis."""
    idx = np.arange(-before, size + after)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def pad_reflect(x: np.ndarray, multiple: int,
                axes: "tuple[int, ...]") -> "tuple[np.ndarray, list[tuple[int, int]]]":
    """Reflect-pad ``axes`` of ``x`` to multiples of ``multiple``; returns (padded, pads)."""
    pads = []
    for axis in axes:
        before, after = padding_for(x.shape[axis], multiple)
        if before or after:
            x = np.take(x, reflect_indices(x.shape[axis], before, after), axis=axis)
        pads.append((before, after))
    return x, pads


def crop(x: np.ndarray, pads: "list[tuple[int, int]]", axes: "tuple[int, ...]") -> np.ndarray:
    """Undo :func:`pad_reflect` given the pads it returned."""
    index = [slice(None)] * x.ndim
    for axis, (before, after) in zip(axes, pads):
        index[axis] = slice(before, x.shape[axis] - after)
    return x[tuple(index)]
