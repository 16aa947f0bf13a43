"""What differs between images and audio, in one place: one ``Modality`` each, looked up by
the name models and bitstreams record (``modality(config["modality"])``), so that the code
elsewhere asks it instead of branching on the name."""
from dataclasses import dataclass

import numpy as np

__all__ = ["Modality", "IMAGE", "AUDIO", "MODALITIES", "modality"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})


@dataclass(frozen=True)
class Modality:
    """``name``: "image" or "audio", what files and bitstreams record. Raw samples are
    ``dtype`` (uint8 pixels, int16 PCM; ``takes_float``: floats in [-1, 1] are taken too,
    scaled by ``peak``) along ``axis_names`` ("H", "W" or "L") before the channel axis;
    ``noun`` and ``samples`` name them in messages, ``channel_words`` their channels. The
    model sees them as ``x / divisor − offset``. Speeds count ``unit`` (megapixels,
    megasamples); rates count bits per ``per`` (pixel, sample); PSNR is against ``peak``; a
    .wlc is cut into tiles of ``bitstream_tile`` latents a side; the encoder runs
    ``run_interior`` samples per axis at once; ``inputs`` are the file suffixes the
    commands read such signals from; decoded signals are written in one of
    ``output_formats``, the first by default. ``edge_latents``: latents
    the encoder adds at each end of each axis (audio: 1, the reference's Conv1d(padding=1));
    ``has_rate``: signals have a sample rate (recorded in the bitstream)."""

    name: str
    dtype: str
    axis_names: tuple
    noun: str
    plural: str
    samples: str
    channel_words: str
    takes_float: bool
    divisor: float
    offset: float
    unit: str
    per: str
    peak: float
    bitstream_tile: int
    run_interior: int
    inputs: frozenset
    output_formats: tuple
    edge_latents: int
    has_rate: bool

    def __str__(self):
        """The name: messages say "an image model", "no audio files"."""
        return self.name

    @property
    def spatial_axes(self):
        """Axes before the channel axis: 2 (H, W) or 1 (L)."""
        return len(self.axis_names)

    @property
    def subbands_per_level(self):
        """Subbands one wavelet level splits a channel into: 4 in 2D, 2 in 1D."""
        return 2 ** self.spatial_axes

    @property
    def bits_per_value(self):
        """Bits of one raw value (8 for a pixel channel, 16 for a PCM sample)."""
        return np.dtype(self.dtype).itemsize * 8

    @property
    def output_format(self):
        """What a decoded signal is written as by default."""
        return self.output_formats[0]

    @property
    def normalisation(self):
        """The normalisation as a formula (bundles record it)."""
        return f"x / {self.divisor:g}" + (f" - {self.offset:g}" if self.offset else "")

    def normalise(self, x):
        """Raw samples (numpy or torch, as floats) on the model's scale."""
        return x / self.divisor - self.offset if self.offset else x / self.divisor

    def denormalise(self, x):
        """Values on the model's scale (numpy or torch) as raw samples, unrounded."""
        return (x + self.offset) * self.divisor if self.offset else x * self.divisor

    def to_model(self, batch):
        """A torch batch of raw samples (N, H, W, C) or (N, L, C) as the codec takes it:
        channels first, normalised."""
        return self.normalise(batch.movedim(-1, 1).float())

    def latent_axes(self, step):
        """The latent array's spatial sizes in words, for inputs padded to ``step``:
        ["H/8", "W/8"] or ["L/8 + 2"]."""
        edge = f" + {2 * self.edge_latents}" if self.edge_latents else ""
        return [f"{axis}/{step}{edge}" for axis in self.axis_names]

    def takes(self, dtype):
        """Whether inputs of ``dtype`` are taken (and recorded as such in bitstreams)."""
        dtype = np.dtype(dtype)
        return dtype == self.dtype or self.takes_float and dtype.kind == "f"

    def as_raw(self, x):
        """``x`` (array-like) as raw samples with a channel axis, in ``dtype``; ValueError
        for another dtype or number of axes."""
        x = np.asarray(x)
        if x.ndim == self.spatial_axes:
            x = x[..., None]
        if x.ndim != self.spatial_axes + 1:
            axes = " x ".join(self.axis_names)
            raise ValueError(f"{self.noun} must be {axes} or {axes} x C, got shape {x.shape}")
        if self.takes_float and x.dtype.kind == "f":
            if not np.isfinite(x).all():
                raise ValueError(f"{self.noun} contains NaN or infinite samples")
            full = np.iinfo(self.dtype)
            return np.clip(np.round(x * self.peak), full.min, full.max).astype(self.dtype)
        if x.dtype != self.dtype:
            hint = "" if self.takes_float else (
                f"; convert with np.clip(x, 0, {self.peak:g}).astype(np.{self.dtype})"
                + (f" (floats in [0, 1]: scale by {self.peak:g} first, "
                   f"np.round(x * {self.peak:g}))" if x.dtype.kind == "f" else ""))
            raise ValueError(f"{self.plural} must be {self.samples}, got {x.dtype}{hint}")
        return x


IMAGE = Modality(
    "image", "uint8", ("H", "W"), "an image", "images", "uint8 (0..255)", "channels",
    takes_float=False, divisor=255.0, offset=0.5, unit="MP", per="pixel", peak=255.0,
    bitstream_tile=256, run_interior=1024, inputs=IMAGE_SUFFIXES | {".npy"},
    output_formats=("png", "tiff", "npy"), edge_latents=0, has_rate=False)
AUDIO = Modality(
    "audio", "int16", ("L",), "audio", "audio", "int16 PCM or float in [-1, 1]",
    "audio channels", takes_float=True, divisor=65536.0, offset=0.0, unit="MS", per="sample",
    peak=32768.0, bitstream_tile=8192, run_interior=1 << 16, inputs=AUDIO_SUFFIXES,
    output_formats=("wav", "flac", "npy"), edge_latents=1, has_rate=True)
MODALITIES = {m.name: m for m in (IMAGE, AUDIO)}


def modality(name):
    """The Modality called ``name`` (a model's or a bitstream's ``modality`` field)."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}") from None
