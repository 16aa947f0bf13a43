"""Validation, part of every export: exported graph vs torch model, on fresh inputs.

Inputs: random samples at shapes other than the traced one, and real photos (the bundled
samples; as luminance for gray models, as smooth band mixtures for hyperspectral ones) or
music-like audio. A graph passes when ≥ 99.9% of its integer latents equal the torch model's
and none differs by more than 1 (rounding ties after folding constants into the weights).
"""
import numpy as np
import torch

from ..data import synthetic_music
from ..data import SAMPLE_PHOTOS, sample_photo
from ..runtime.modality import AUDIO, IMAGE

__all__ = ["MIN_IDENTICAL", "MAX_DIFF", "as_channels", "random_sample", "image_inputs", "audio_inputs",
           "torch_latents", "compare", "validate"]

MIN_IDENTICAL = 0.999
MAX_DIFF = 1


def as_channels(photo: np.ndarray, channels: int, seed: int = 0) -> np.ndarray:
    """A real photo with ``channels`` bands, for gray and hyperspectral models: itself, its
    luminance, or fixed random mixtures of its bands (what validation feeds them)."""
    if channels == 3:
        return photo
    rgb = photo.astype(np.float64)
    if channels == 1:
        return np.round(rgb @ [0.299, 0.587, 0.114])[..., None].astype(np.uint8)
    mix = np.random.default_rng(seed).dirichlet(np.ones(3), size=channels).T  # (3, C)
    return np.clip(np.round(rgb @ mix), 0, 255).astype(np.uint8)


def _fit(photo, height, width):
    """Centre crop to (height, width), tiling by reflection if the photo is smaller."""
    reps = (max(1, -(-height // photo.shape[0])), max(1, -(-width // photo.shape[1])), 1)
    photo = np.pad(photo, [(0, (reps[0] - 1) * photo.shape[0]),
                           (0, (reps[1] - 1) * photo.shape[1]), (0, 0)], mode="reflect")
    top, left = (photo.shape[0] - height) // 2, (photo.shape[1] - width) // 2
    return photo[top:top + height, left:left + width]


def random_sample(modality, shape, channels, rng):
    """A random raw sensor sample of ``modality`` (over the full range of its dtype): uint8
    (1, H, W, C) or int16 (1, L, C)."""
    full = np.iinfo(modality.dtype)
    return rng.integers(full.min, full.max + 1, (1, *shape, channels), dtype=modality.dtype)


def image_inputs(channels, sizes, photo_size=None, multiple=1, seed=0):
    """[(label, uint8 (1, H, W, C))]: random at each size, then each bundled photo, fitted
    to ``photo_size`` (static graphs) or cropped to multiples of ``multiple``."""
    rng = np.random.default_rng(seed)
    out = [(f"random {h}x{w}", random_sample(IMAGE, (h, w), channels, rng)) for h, w in sizes]
    for name in SAMPLE_PHOTOS:
        photo = as_channels(sample_photo(name), channels)
        h, w = photo_size or (photo.shape[0] // multiple * multiple,
                              photo.shape[1] // multiple * multiple)
        photo = _fit(photo, h, w)
        out.append((f"photo {name} {photo.shape[0]}x{photo.shape[1]}", photo[None]))
    return out


def audio_inputs(channels, lengths, seed=0):
    rng = np.random.default_rng(seed)
    out = [(f"random L={n}", random_sample(AUDIO, (n,), channels, rng)) for n in lengths]
    out += [(f"music L={n}", synthetic_music(n, channels, seed=seed)[None]) for n in lengths]
    return out


@torch.no_grad()
def torch_latents(codec, raw):
    """The torch model's integer latents for a raw sensor sample (batch of one)."""
    x = torch.from_numpy(np.array(raw))  # a writable copy (photos from PIL are read-only)
    return codec.encode(codec.config.modality.to_model(x)).numpy()


def compare(latents, expected):
    if latents.shape != expected.shape:
        return {"identical": 0.0, "max_diff": None,
                "error": f"shape {latents.shape} != {expected.shape}"}
    diff = np.abs(latents.astype(np.int32) - expected.astype(np.int32))
    return {"identical": float((diff == 0).mean()), "max_diff": int(diff.max())}


def validate(run, codec, inputs):
    """Run ``run(raw) → latents`` on every input; returns (passed, report)."""
    checks = []
    for label, raw in inputs:
        checks.append({"input": label, **compare(np.asarray(run(raw)), torch_latents(codec, raw))})
    identical = min(c["identical"] for c in checks)
    worst = [c["max_diff"] for c in checks]
    max_diff = None if None in worst else max(worst)
    passed = identical >= MIN_IDENTICAL and max_diff is not None and max_diff <= MAX_DIFF
    return passed, {"status": "validated" if passed else "validation failed",
                    "identical": identical, "max_diff": max_diff, "checks": checks}
