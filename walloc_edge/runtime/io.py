"""Reading sensor files without torch: images (Pillow), .npy cubes, WAV (stdlib) and FLAC.

Each reader returns what :class:`~walloc_edge.runtime.Encoder` takes (uint8 H×W×C images,
int16 L×C audio) or raises ``ValueError`` naming the file and what to do about it.
"""
import wave
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "AUDIO_SUFFIXES", "read_input"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
AUDIO_SUFFIXES = {".wav", ".flac"}


def read_input(path, modality, channels):
    """(sample, sample rate) in ``path`` for a model of ``modality`` with ``channels``
    channels; the rate is 0 for images."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if modality == "image":
        if suffix == ".npy":
            return _read_npy(path), 0
        if suffix in IMAGE_SUFFIXES:
            return _read_image(path, channels), 0
        raise ValueError(f"{path}: not an image this model takes (use "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))} or .npy)")
    if suffix in AUDIO_SUFFIXES:
        return _read_wav(path) if suffix == ".wav" else _read_soundfile(path)
    raise ValueError(f"{path}: not audio this model takes (use .wav or .flac)")


def _read_image(path, channels):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I") or im.mode == "F":
                raise ValueError(f"{path}: {im.mode} (16-bit or float) images are not "
                                 "supported; save it as 8-bit")
            if channels in (1, 3):
                return np.asarray(im.convert("L" if channels == 1 else "RGB"))
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None


def _read_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None


def _read_wav(path):
    """PCM WAV through the standard library (8/16/24/32-bit); other encodings via soundfile."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except wave.Error:
        return _read_soundfile(path)  # e.g. float WAV, which the wave module refuses
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable WAV file ({e})") from None
    raw = np.frombuffer(frames, np.uint8)
    raw = raw[:len(raw) // (width * channels) * width * channels].reshape(-1, width)
    if width == 1:  # unsigned 8-bit
        pcm = (raw[:, 0].astype(np.int16) - 128) << 8
    else:  # little-endian signed: keep the top 16 bits
        pcm = raw[:, -2:].copy().view("<i2")[:, 0]
    return pcm.reshape(-1, channels), rate


def _read_soundfile(path):
    try:
        import soundfile
    except ImportError:
        raise ValueError(f"{path}: reading {path.suffix} needs soundfile: "
                         "pip install soundfile") from None
    try:
        pcm, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
        return pcm, rate
    except RuntimeError as e:  # libsndfile's errors
        raise ValueError(f"{path}: not readable audio ({e})") from None
