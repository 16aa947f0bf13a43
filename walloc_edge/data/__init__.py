"""Sample data that needs no torch: the photos shipped with the package (see README.md here
for sources and licences) and generated music-like audio."""
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_PHOTOS", "sample_photo", "synthetic_music"]

SAMPLE_PHOTOS = {p.stem: p for p in sorted(Path(__file__).parent.glob("*.jpg"))}


def sample_photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) array of a bundled photo."""
    from PIL import Image

    with Image.open(SAMPLE_PHOTOS[name]) as im:
        return np.array(im.convert("RGB"))


def synthetic_music(length: int, channels: int = 2, seed: int = 0,
                    rate: int = 44100) -> np.ndarray:
    """int16 (length, channels): decaying harmonic notes panned across channels, light noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    out = np.zeros((length, channels))
    for start in range(0, length, max(length // 4, 1)):
        f0 = rng.uniform(110, 880)
        envelope = np.exp(-(t - t[start]) * 8) * (np.arange(length) >= start)
        note = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
        out += (note * envelope)[:, None] * rng.dirichlet(np.ones(channels))[None, :]
    out += 0.01 * rng.standard_normal(out.shape)
    out *= 0.8 / max(np.abs(out).max(), 1e-9)
    return np.round(out * 32767).astype(np.int16)
