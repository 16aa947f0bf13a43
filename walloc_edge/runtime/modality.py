"""What differs between images and audio, in one place: one ``Modality`` each, looked up by
the name models and bitstreams record (``MODALITIES[config.modality]``), so that the code
elsewhere asks it instead of branching on the name."""
from dataclasses import dataclass

__all__ = ["Modality", "IMAGE", "AUDIO", "MODALITIES", "modality"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})


@dataclass(frozen=True)
class Modality:
    """``name``: "image" or "audio". Raw samples are ``dtype`` (uint8 pixels, int16 PCM) with
    ``spatial_axes`` axes before the channel axis (H, W or L); the model sees them as
    ``x / divisor − offset``. Speeds count ``unit`` (megapixels, megasamples); rates count
    bits per ``per`` (pixel, sample); PSNR is against ``peak``; a .wlc is cut into tiles of
    ``bitstream_tile`` latents a side; ``suffixes`` are the files that hold such signals
    (the commands also read ``.npy`` images: ``inputs``);
    decoded signals are written as ``output_format`` by default. ``edge_latents``: latents
    the encoder adds at each end of each axis (audio: 1, the reference's Conv1d(padding=1));
    ``has_rate``: signals have a sample rate (recorded in the bitstream)."""

    name: str
    dtype: str
    spatial_axes: int
    divisor: float
    offset: float
    unit: str
    per: str
    peak: float
    bitstream_tile: int
    suffixes: frozenset
    output_format: str
    plural: str
    edge_latents: int
    has_rate: bool

    @property
    def bits_per_value(self):
        """Bits of one raw value (8 for a pixel channel, 16 for a PCM sample)."""
        return 8 if self.dtype == "uint8" else 16

    @property
    def inputs(self):
        """File suffixes the commands take for this modality."""
        return self.suffixes | ({".npy"} if self.dtype == "uint8" else set())

    @property
    def normalisation(self):
        """The normalisation as a formula (bundles record it)."""
        return f"x / {self.divisor:g}" + (f" - {self.offset:g}" if self.offset else "")

    def normalise(self, x):
        """Raw samples (numpy or torch, as floats) on the model's scale."""
        return x / self.divisor - self.offset if self.offset else x / self.divisor

    def to_model(self, batch):
        """A torch batch of raw samples (N, H, W, C) or (N, L, C) as the codec takes it:
        channels first, normalised."""
        return self.normalise(batch.movedim(-1, 1).float())


IMAGE = Modality("image", "uint8", 2, 255.0, 0.5, "MP", "pixel", 255.0, 256,
                 IMAGE_SUFFIXES, "png", "images", edge_latents=0, has_rate=False)
AUDIO = Modality("audio", "int16", 1, 65536.0, 0.0, "MS", "sample", 32768.0, 8192,
                 AUDIO_SUFFIXES, "wav", "audio", edge_latents=1, has_rate=True)
MODALITIES = {m.name: m for m in (IMAGE, AUDIO)}


def modality(name):
    """The Modality called ``name`` (a model's or a bitstream's ``modality`` field)."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}") from None
