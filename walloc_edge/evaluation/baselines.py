"""Standard audio codecs beside a model at the same size: Opus (lossy and perceptual: libopus
through soundfile's libsndfile) and FLAC (lossless, what a recorder would store), for
``walloc-edge eval --baselines`` and ``walloc-edge bench``. Signals are float (L, C) in
[-1, 1]."""
import io

import numpy as np

__all__ = ["opus_at", "opus_encode", "flac_encode", "flac_bytes", "resample", "OPUS_RATE"]

OPUS_RATE = 48000  # libopus codes 48 kHz (or 8 to 24 kHz); other rates are resampled


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise ValueError("the Opus and FLAC baselines need soundfile: pip install soundfile") \
            from None
    return soundfile


def resample(x, rate_in, rate_out):
    """``x`` (L, C) at ``rate_out``: band-limited resampling through the spectrum of the whole
    clip (exact for a band-limited periodic signal; no scipy needed)."""
    if rate_in == rate_out:
        return x
    n_out = round(len(x) * rate_out / rate_in)
    spectrum = np.fft.rfft(x, axis=0)
    kept = np.zeros((n_out // 2 + 1, x.shape[1]), complex)
    bins = min(len(kept), len(spectrum))
    kept[:bins] = spectrum[:bins]
    return np.fft.irfft(kept, n_out, axis=0) * (n_out / len(x))


def opus_encode(x, rate, level):
    """Ogg Opus bytes of ``x`` at compression ``level`` in [0, 1], resampled to 48 kHz."""
    return _opus(np.clip(resample(x, rate, OPUS_RATE), -1, 1), level)


def _opus(at48, level):
    buffer = io.BytesIO()
    _soundfile().write(buffer, at48, OPUS_RATE, format="OGG", subtype="OPUS",
                       compression_level=level)
    return buffer.getvalue()


def opus_at(x, rate, target_bytes):
    """(Ogg Opus bytes, decoded (L, C) at ``rate``, the compression level in [0, 1]) at the
    level whose size is closest to ``target_bytes`` (sizes fall as the level rises:
    bisection, 12 encodes)."""
    at48 = np.clip(resample(x, rate, OPUS_RATE), -1, 1)  # once for every level tried

    def encode(level):
        return _opus(at48, level)

    low, high = 0.0, 1.0
    best, level = encode(0.5), 0.5
    for _ in range(12):
        middle = (low + high) / 2
        data = encode(middle)
        if abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best, level = data, middle
        low, high = (middle, high) if len(data) > target_bytes else (low, middle)
    decoded, _ = _soundfile().read(io.BytesIO(best), always_2d=True)
    return best, resample(decoded, OPUS_RATE, rate)[:len(x)], level


def flac_encode(x, rate):
    """16-bit FLAC bytes of ``x`` (float in [-1, 1], or int16 PCM as it is)."""
    buffer = io.BytesIO()
    pcm = x if x.dtype == np.int16 else np.clip(np.round(x * 32768), -32768,
                                                 32767).astype(np.int16)
    _soundfile().write(buffer, pcm, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def flac_bytes(x, rate):
    """Size of ``x`` as 16-bit FLAC."""
    return len(flac_encode(x, rate))
