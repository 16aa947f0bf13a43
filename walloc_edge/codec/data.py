"""Training and test signals: folders of photos or audio, and generators (no downloads).

Every source has ``sample(rng)`` returning one raw training example (uint8 H×W×C crop, or
int16 L×C segment); :class:`Mixture` draws from several. Generators give training something
with natural statistics when there is no data at all: dead-leaves images (occluding disks
with power-law sizes, the classic model of natural-image statistics) and music-, noise- and
speech-like audio.
"""
from pathlib import Path

import numpy as np

from ..data import synthetic_music

__all__ = ["synthetic_music", "synthetic_audio", "dead_leaves", "data_files", "split_files",
           "ImageFolder", "AudioFolder", "DeadLeaves", "SyntheticAudio", "Mixture"]


def _shaped_noise(length, rng, rate):
    """Noise with a random spectral tilt and band (wind, hiss, rumble, breath)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    f = np.fft.rfftfreq(length, 1 / rate) + 1.0
    tilt = rng.uniform(-1.5, 0.5)
    centre = np.exp(rng.uniform(np.log(100), np.log(8000)))
    spectrum *= f ** (tilt / 2) * np.exp(-0.5 * (np.log(f / centre) / rng.uniform(0.5, 2.5)) ** 2)
    return np.fft.irfft(spectrum, length)


def _speech_like(length, rng, rate):
    """Voiced syllables: a jittered glottal pulse train through moving formant resonances."""
    out = np.zeros(length)
    pos = 0
    while pos < length:
        n = int(rate * rng.uniform(0.08, 0.3))
        f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(np.linspace(0, rng.uniform(1, 4), n)))
        phase = np.cumsum(f0 / rate)
        pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per period
        spectrum = np.fft.rfft(pulses)
        f = np.fft.rfftfreq(n, 1 / rate)
        shape = sum(np.exp(-0.5 * ((f - rng.uniform(lo, hi)) / rng.uniform(60, 150)) ** 2)
                    for lo, hi in ((300, 900), (900, 2400), (2200, 3200)))
        syllable = np.fft.irfft(spectrum * shape, n) * np.hanning(n)
        out[pos:pos + n] = syllable[:length - pos]
        pos += n + int(rate * rng.uniform(0.02, 0.15))  # a pause
    return out


def synthetic_audio(length, channels, rng, rate=44100):
    """int16 (length, channels): music, shaped noise or speech-like sound, mixed into the
    channels with random gains and small delays (a stereo image)."""
    kind = rng.integers(3)
    if kind == 0:
        mono = synthetic_music(length, 1, seed=int(rng.integers(1 << 31)), rate=rate)[:, 0] / 32767
    elif kind == 1:
        mono = _shaped_noise(length, rng, rate)
    else:
        mono = _speech_like(length, rng, rate)
    out = np.stack([np.roll(mono, int(rng.integers(0, 24))) * rng.uniform(0.3, 1.0)
                    for _ in range(channels)], axis=1)
    out += 0.003 * rng.standard_normal(out.shape)
    out *= rng.uniform(0.05, 0.9) / max(np.abs(out).max(), 1e-9)
    return np.round(out * 32767).astype(np.int16)


def dead_leaves(size, channels, rng, r_min=3.0, max_leaves=20000):
    """uint8 (size, size, channels): opaque disks of power-law radii (density ∝ r^-3) laid
    front to back until they cover the picture, drawn at twice the size and averaged down so
    that edges are anti-aliased."""
    big = 2 * size
    r_max = big / 2
    img = np.zeros((big, big, channels))
    free = np.ones((big, big), bool)  # not yet covered by a nearer leaf
    u = rng.uniform(size=max_leaves)
    radii = r_min / np.sqrt(1 - u * (1 - (r_min / r_max) ** 2))
    for count, r in enumerate(radii):
        cy, cx = rng.uniform(-r, big + r, 2)
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, big)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, big)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        paint = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & free[y0:y1, x0:x1]
        img[y0:y1, x0:x1][paint] = _leaf_colour(channels, rng)
        free[y0:y1, x0:x1][paint] = False
        if count % 64 == 0 and not free.any():
            break
    img[free] = _leaf_colour(channels, rng)
    img = img.reshape(size, 2, size, 2, channels).mean(axis=(1, 3))
    img += rng.normal(0, rng.uniform(0, 4), img.shape)  # sensor noise
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _leaf_colour(channels, rng):
    """A brightness with correlated per-channel variation, as in natural colours."""
    return np.clip(rng.uniform(0, 255) + rng.normal(0, 25, channels), 0, 255)


def data_files(folder, suffixes):
    """The files with the given suffixes under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"{folder}: no {' / '.join(sorted(suffixes))} files")
    return files


def split_files(files, holdout=()):
    """(training files, held-out files) of ``files``: those whose stem is in ``holdout``
    held out (default: the last 5%, at least one)."""
    held = set(holdout)
    unknown = held - {p.stem for p in files}
    if unknown:
        raise ValueError(f"{','.join(sorted(unknown))}: not in the data (no file of that name "
                         "to hold out)")
    if not held:
        held = {p.stem for p in files[-max(1, len(files) // 20):]}
    train = [p for p in files if p.stem not in held]
    if not train:
        raise ValueError(f"{','.join(sorted(held))}: holding these out leaves no file to "
                         "train on")
    return train, [p for p in files if p.stem in held]


class ImageFolder:
    """Random crops (with flips) of the images in a folder, decoded once and kept in memory."""

    def __init__(self, files, crop, channels):
        from PIL import Image

        self.crop, self.images = crop, []
        for path in files:
            if path.suffix.lower() == ".npy":
                image = np.load(path, allow_pickle=False)
            else:
                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB" if channels == 3 else "L"))
            image = image[..., None] if image.ndim == 2 else image
            if image.shape[-1] != channels:
                raise ValueError(f"{path} has {image.shape[-1]} channels, the model {channels}")
            if min(image.shape[:2]) < crop:
                raise ValueError(f"{path} ({image.shape[1]}x{image.shape[0]}) is smaller than "
                                 f"the {crop}-pixel crop; use a smaller crop")
            self.images.append(image)

    def sample(self, rng):
        image = self.images[rng.integers(len(self.images))]
        y = rng.integers(image.shape[0] - self.crop + 1)
        x = rng.integers(image.shape[1] - self.crop + 1)
        crop = image[y:y + self.crop, x:x + self.crop]
        if rng.integers(2):
            crop = crop[:, ::-1]
        if rng.integers(2):
            crop = crop[::-1]
        return np.ascontiguousarray(crop)


class AudioFolder:
    """Random segments of the audio files in a folder; stereo mixing when channels differ."""

    def __init__(self, files, length, channels):
        import soundfile

        self.length, self.channels, self.clips = length, channels, []
        for path in files:
            pcm = soundfile.read(str(path), dtype="int16", always_2d=True)[0]
            if len(pcm) >= length:
                self.clips.append(pcm)
        if not self.clips:
            raise ValueError(f"no audio file is at least {length} samples long")

    def sample(self, rng):
        clip = self.clips[rng.integers(len(self.clips))]
        start = rng.integers(len(clip) - self.length + 1)
        segment = clip[start:start + self.length].astype(np.float64)
        # Random mixing matrix: swaps, narrows or widens the stereo image, makes mono wide.
        mix = rng.dirichlet(np.ones(segment.shape[1]), size=self.channels).T
        return np.clip(np.round(segment @ mix), -32768, 32767).astype(np.int16)


class DeadLeaves:
    """Random crops (with flips) from a pool of dead-leaves pictures twice the crop size; one
    picture of the pool is replaced every ``renew`` samples (drawing one takes a while)."""

    def __init__(self, size, channels, pool=16, renew=64):
        self.size, self.channels, self.pool, self.renew = size, channels, pool, renew
        self.pictures, self.drawn = [], 0

    def sample(self, rng):
        if len(self.pictures) < self.pool:
            self.pictures.append(dead_leaves(2 * self.size, self.channels, rng))
        elif self.drawn % self.renew == 0:
            self.pictures[rng.integers(self.pool)] = dead_leaves(2 * self.size, self.channels,
                                                                 rng)
        self.drawn += 1
        picture = self.pictures[rng.integers(len(self.pictures))]
        y, x = rng.integers(self.size + 1, size=2)
        crop = picture[y:y + self.size, x:x + self.size]
        return np.ascontiguousarray(crop[:, ::-1] if rng.integers(2) else crop)


class SyntheticAudio:
    def __init__(self, length, channels):
        self.length, self.channels = length, channels

    def sample(self, rng):
        return synthetic_audio(self.length, self.channels, rng)


class Mixture:
    """Draws from ``sources`` with probabilities ``weights``."""

    def __init__(self, sources, weights):
        self.sources = sources
        self.weights = np.asarray(weights, float) / np.sum(weights)

    def sample(self, rng):
        return self.sources[rng.choice(len(self.sources), p=self.weights)].sample(rng)
