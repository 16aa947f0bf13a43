"""Checkpoints written by the reference (walloc 1.2.1) give the reference's outputs.

Golden data: tests/reference/make_reference.py (real photos from scikit-image, music-like
stereo audio), produced with the reference package installed.
"""
import numpy as np
import pytest
import torch

from walloc_edge.codec import Codec1D, Codec2D, crop, load, pad
from walloc_edge.export.validate import MIN_IDENTICAL


def image_tensor(photo):
    return torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255 - 0.5


def assert_latents_match(ours, expected):
    """Integer latents: ≥ 99.9% identical, never more than ±1 (rounding ties)."""
    ours = ours.numpy()
    assert ours.shape == expected.shape
    assert np.array_equal(ours, np.round(ours)), "latents are not integers"
    assert (ours == expected).mean() >= MIN_IDENTICAL
    assert np.abs(ours - expected).max() <= 1


@pytest.fixture(scope="module")
def rgb_model(reference_dir):
    return load(reference_dir / "rgb_j3_l12.pth")


@pytest.fixture(scope="module")
def stereo_model(reference_dir):
    return load(reference_dir / "stereo_j4_l8.pth")


def test_loaded_models_are_reference_classes_in_eval_mode(rgb_model, stereo_model):
    assert isinstance(rgb_model, Codec2D) and not rgb_model.training
    assert isinstance(stereo_model, Codec1D) and not stereo_model.training
    assert stereo_model.post_filter


@pytest.mark.parametrize("photo", ["astronaut", "coffee"])
@torch.no_grad()
def test_image_parity(rgb_model, rgb_golden, photo):
    x = image_tensor(rgb_golden[f"{photo}/image"])
    np.testing.assert_allclose(rgb_model.wavelet_analysis(x).numpy(), rgb_golden[f"{photo}/X"],
                               atol=1e-5)
    z = rgb_model.encode(x)
    assert_latents_match(z, rgb_golden[f"{photo}/Y"])
    z = torch.from_numpy(rgb_golden[f"{photo}/Y"])  # decode the reference's own latents
    np.testing.assert_allclose(rgb_model.decoder(z).numpy(), rgb_golden[f"{photo}/X_hat"],
                               atol=1e-4)
    np.testing.assert_allclose(rgb_model.decode(z).numpy(), rgb_golden[f"{photo}/x_hat"],
                               atol=1e-4)


@torch.no_grad()
def test_forward_losses_match_reference(rgb_model, rgb_golden):
    x_hat, mse, tf_mse = rgb_model(image_tensor(rgb_golden["astronaut/image"]))
    np.testing.assert_allclose([mse.item(), tf_mse.item()], rgb_golden["astronaut/forward_losses"],
                               rtol=1e-4)
    np.testing.assert_allclose(x_hat.numpy(), rgb_golden["astronaut/x_hat"], atol=1e-4)


@torch.no_grad()
def test_any_size_image_pads_and_crops_as_reference(rgb_model, rgb_golden):
    photo = rgb_golden["chelsea_odd/image"]  # 100 x 75: not a multiple of 8
    x = image_tensor(photo)
    padded = pad(x, 2 ** rgb_model.J)
    np.testing.assert_array_equal(padded.numpy(), rgb_golden["chelsea_odd/padded"])
    z = rgb_model.encode(padded)
    assert_latents_match(z, rgb_golden["chelsea_odd/Y"])
    out = crop(rgb_model.decode(z), photo.shape[:2])
    assert out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), rgb_golden["chelsea_odd/x_hat"], atol=1e-4)


@torch.no_grad()
def test_audio_parity(stereo_model, stereo_golden):
    pcm = stereo_golden["stereo/pcm"]
    x = torch.from_numpy(pcm.T.copy())[None].float() / 65536
    np.testing.assert_allclose(stereo_model.wavelet_analysis(x).numpy(), stereo_golden["stereo/X"],
                               atol=1e-5)
    z = stereo_model.encode(x)
    # The reference's Conv1d(padding=1) quirk: two latent samples more than L / 2^J.
    assert z.shape == (1, 8, 4096 // 16 + 2)
    assert_latents_match(z, stereo_golden["stereo/Y"])
    x_hat = stereo_model.decode(torch.from_numpy(stereo_golden["stereo/Y"]))
    assert x_hat.shape == x.shape
    np.testing.assert_allclose(x_hat.numpy(), stereo_golden["stereo/x_hat"], atol=1e-4)


def test_encode_refuses_sizes_that_are_not_multiples(rgb_model):
    with pytest.raises(ValueError, match="multiple of 2\\^J = 8"):
        rgb_model.encode(torch.zeros(1, 3, 20, 16))
    with pytest.raises(ValueError, match="C=3"):
        rgb_model.encode(torch.zeros(1, 1, 16, 16))


def test_training_mode_adds_noise_and_trains(reference_dir):
    """forward in training mode: noisy (not integer) latents, gradients reach the encoder."""
    model = load(reference_dir / "rgb_j3_l12.pth").train()
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) - 0.5
    y = model.encoder(model.wavelet_analysis(x))
    assert not torch.equal(y, torch.round(y))
    _, mse, tf_mse = model(x)
    (mse + tf_mse).backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    z = model.encode(x)  # rounds whatever the mode
    assert torch.equal(z, torch.round(z)) and z.abs().max() <= 127
