"""The codec's configuration: the reference's JSON keys plus the modality and wavelet."""
from dataclasses import dataclass, fields

from ..runtime.modality import AUDIO, IMAGE, Modality, modality as modality_of

__all__ = ["CodecConfig"]


@dataclass(frozen=True)
class CodecConfig:
    modality: Modality              # IMAGE (Codec2D) or AUDIO (Codec1D); given or saved by name
    channels: int                   # 3 for RGB, 1 gray, 31 hyperspectral; 2 for stereo
    J: int                          # wavelet packet levels: C·4^J (C·2^J) subband channels
    latent_dim: int                 # latent channels after the linear encoder
    Nd: int                         # decoder width (a multiple of 32 in 2D, of latent_dim in 1D)
    latent_bits: int = 8            # latents are integers in ±(2^(bits−1) − 1)
    Ne: int | None = None           # encoder width; used only when lightweight_encode is False
    lightweight_encode: bool = True  # one 1×1 conv: the sensor-friendly encoder
    post_filter: bool = False       # audio only: a 129-tap Conv1d after synthesis
    wavelet: str = "bior4.4"        # the reference uses CDF 9/7 (bior4.4)

    def __post_init__(self):
        if not isinstance(self.modality, Modality):
            object.__setattr__(self, "modality", modality_of(self.modality))
        if self.post_filter and self.modality is IMAGE:
            raise ValueError("post_filter exists only for audio (Codec1D)")
        for name in ("channels", "J", "latent_dim", "Nd", "latent_bits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if not 2 <= self.latent_bits <= 16:
            raise ValueError(f"latent_bits must be in 2..16, not {self.latent_bits}")
        if not self.lightweight_encode and not self.Ne:
            raise ValueError("Ne (encoder width) is required when lightweight_encode is False")
        if self.modality is IMAGE and self.Nd % 32:
            raise ValueError(f"Nd must be a multiple of 32 (the decoder's group norm), not {self.Nd}")
        if self.modality is AUDIO and self.Nd % self.latent_dim:
            raise ValueError(f"Nd must be a multiple of latent_dim={self.latent_dim}, not {self.Nd}")

    @property
    def subbands(self):
        """Channels after the wavelet packet transform."""
        return self.channels * self.modality.subbands_per_level ** self.J

    @property
    def dimensionality_reduction(self):
        return self.subbands / self.latent_dim

    def to_dict(self) -> dict:
        """The fields as JSON values (the modality by name), as checkpoints and bundles keep
        them."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | \
            {"modality": self.modality.name}

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_reference(cls, data):
        """From a reference JSON (walloc 1.2.1): only 1D configurations have ``post_filter``."""
        return cls.from_dict({**data, "modality": AUDIO if "post_filter" in data else IMAGE})

    def reference_kwargs(self) -> dict:
        """Constructor arguments of the reference's Codec2D / Codec1D."""
        kw = dict(channels=self.channels, J=self.J, Ne=self.Ne, Nd=self.Nd,
                  latent_dim=self.latent_dim, latent_bits=self.latent_bits,
                  lightweight_encode=self.lightweight_encode)
        if self.modality is AUDIO:
            kw["post_filter"] = self.post_filter
        return kw
