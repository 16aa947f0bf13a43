"""Any-size inputs: reflect padding to a multiple of 2^J and the crop back."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from walloc_edge.codec import crop, pad
from walloc_edge.runtime import padding


@given(size=st.integers(2, 40), multiple=st.sampled_from([2, 4, 8, 16, 256]))
def test_reflect_matches_numpy_and_torch(size, multiple):
    x = np.arange(size, dtype=np.float32)
    before, after = padding.padding_for(size, multiple)
    assert (size + before + after) % multiple == 0 and 0 <= after - before <= 1
    ours = x[padding.reflect_indices(size, before, after)]
    # numpy reflects repeatedly for pads longer than the signal, the same periodic extension.
    np.testing.assert_array_equal(ours, np.pad(x, (before, after), mode="reflect"))
    if max(before, after) < size:
        t = torch.nn.functional.pad(torch.from_numpy(x)[None], (before, after), mode="reflect")
        np.testing.assert_array_equal(ours, t[0].numpy())


def test_single_sample_repeats():
    assert padding.reflect_indices(1, 3, 4).tolist() == [0] * 8


@pytest.mark.parametrize("shape", [(1, 3, 37, 50), (2, 1, 8, 9), (1, 2, 1001)])
def test_torch_pad_crop_round_trip(shape):
    x = torch.rand(shape)
    padded = pad(x, 8)
    assert all(n % 8 == 0 for n in padded.shape[2:])
    assert torch.equal(crop(padded, shape[2:]), x)


def test_numpy_and_torch_padding_agree():
    x = np.random.default_rng(0).random((3, 21, 13)).astype(np.float32)
    padded, pads = padding.pad_reflect(x, 8, axes=(1, 2))
    assert padded.shape == (3, 24, 16) and pads == [(1, 2), (1, 2)]
    np.testing.assert_array_equal(pad(torch.from_numpy(x)[None], 8)[0].numpy(), padded)
    np.testing.assert_array_equal(padding.crop(padded, pads, axes=(1, 2)), x)


def test_crop_checks_size():
    with pytest.raises(ValueError, match="does not match"):
        crop(torch.zeros(1, 1, 8, 8), (8,))
    with pytest.raises(ValueError, match="cannot crop"):
        crop(torch.zeros(1, 1, 8, 8), (9, 8))
