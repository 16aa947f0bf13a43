"""What the bench encodes: the bundled astronaut photo resized to a square (images), or
generated stereo music (audio), so that every machine measures the same input."""
import numpy as np

__all__ = ["bench_input"]


def bench_input(modality, channels, quick, size=None):
    """(sample, amount in megapixels or megasamples, unit "MP" or "MS") for a model of
    ``modality`` and ``channels``; ``size`` overrides the photo's side that ``quick`` picks."""
    from ..data import synthetic_music
    from ..runtime.modality import IMAGE

    if modality is IMAGE:
        from PIL import Image

        from ..data import sample_photo

        size = size or (1024 if quick else 2048)
        photo = Image.fromarray(sample_photo("astronaut")).resize((size, size), Image.BICUBIC)
        sample = np.asarray(photo.convert("RGB" if channels == 3 else "L"))
        if channels not in (1, 3):
            sample = np.repeat(sample[..., :1], channels, axis=2)
        return (sample if sample.ndim == 3 else sample[..., None]), size * size / 1e6, "MP"
    seconds = 5 if quick else 10
    return synthetic_music(44100 * seconds, channels), 44100 * seconds / 1e6, "MS"
