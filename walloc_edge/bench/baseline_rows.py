"""The baselines a sensor would use instead, measured in the same run: JPEG and WebP at the
size closest to the codec's, and PNG (images); Opus at the closest size, and FLAC (audio)."""
import io

import numpy as np

from .timing import pillow_bytes, size_matched, speed, timed

__all__ = ["image_baselines", "audio_baselines"]


def image_baselines(sample, amount, repeat, target_bytes):
    """JPEG and WebP (lossy) at the quality whose size is closest to the codec's, and PNG."""
    from PIL import Image

    from ..runtime.metrics import psnr

    image = Image.fromarray(sample if sample.shape[2] == 3 else sample[..., 0])

    def encode(fmt, **options):
        return pillow_bytes(image, fmt, **options)

    rows = []
    for label, fmt, qualities in (("JPEG (Pillow, libjpeg-turbo)", "JPEG", range(1, 96)),
                                  ("WebP lossy (Pillow, libwebp)", "WEBP", range(0, 101))):
        quality = size_matched(lambda q: len(encode(fmt, quality=q)), qualities, target_bytes)
        data = encode(fmt, quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(data))).reshape(sample.shape)
        rows.append({"row": f"{label} q{quality}, size-matched", "kind": "baseline",
                     "status": "baseline",
                     "encode": speed(timed(lambda: encode(fmt, quality=quality), repeat), amount),
                     "decode": speed(timed(lambda: Image.open(io.BytesIO(data)).load(), repeat),
                                     amount),
                     "compression_ratio": sample.nbytes / len(data),
                     "psnr": psnr(sample, decoded)})
    data = encode("PNG")
    rows.append({"row": "PNG lossless (Pillow, zlib)", "kind": "baseline", "status": "baseline",
                 "encode": speed(timed(lambda: encode("PNG"), max(1, repeat // 2)), amount),
                 "decode": speed(timed(lambda: Image.open(io.BytesIO(data)).load(), repeat),
                                 amount),
                 "compression_ratio": sample.nbytes / len(data), "psnr": float("inf")})
    return rows


def audio_baselines(sample, amount, repeat, target_bytes):
    """Opus at the size closest to the codec's (libopus via soundfile, resampled to 48 kHz
    and back, both counted) and FLAC (lossless, what a recorder would store instead)."""
    try:
        import soundfile
    except ImportError:
        return [{"row": "Opus and FLAC", "kind": "baseline",
                 "status": "skipped: soundfile is not installed"}]
    from ..evaluation.baselines import OPUS_RATE, flac_encode, opus_at, opus_encode, resample
    from ..runtime.metrics import psnr

    x = sample / 32768.0
    data, decoded, level = opus_at(x, 44100, target_bytes)
    pcm = np.clip(np.round(decoded * 32768), -32768, 32767).astype(np.int16)
    flac = flac_encode(sample, 44100)
    return [{"row": f"Opus (soundfile, libopus) level {level:.2f}, size-matched", "kind": "baseline",
             "status": "baseline",
             "encode": speed(timed(lambda: opus_encode(x, 44100, level), repeat), amount),
             "decode": speed(timed(lambda: resample(soundfile.read(
                 io.BytesIO(data), always_2d=True)[0], OPUS_RATE, 44100), repeat), amount),
             "compression_ratio": sample.nbytes / len(data), "psnr": psnr(sample, pcm)},
            {"row": "FLAC lossless (soundfile, libsndfile)", "kind": "baseline",
             "status": "baseline",
             "encode": speed(timed(lambda: flac_encode(sample, 44100), repeat), amount),
             "decode": speed(timed(lambda: soundfile.read(io.BytesIO(flac), dtype="int16"),
                                   repeat), amount),
             "compression_ratio": sample.nbytes / len(flac), "psnr": float("inf")}]
