"""Quality measures in numpy alone: PSNR, and for audio SI-SDR (Le Roux et al. 2019) and a
log-mel spectral distance; torch-free, so a sensor or a benchmark can score without the
server side (MS-SSIM, which needs torch, is in ``decoder.metrics``).

PSNR on audio is dominated by the loud low frequencies; SI-SDR ignores a change of gain,
and the mel distance weighs frequency bands roughly as hearing does (the distance neural
audio codecs are trained and compared with), so a codec that smears the highs shows there
even when its PSNR looks fine."""
import math

import numpy as np

__all__ = ["psnr", "si_sdr", "mel_distance"]


def psnr(reference: np.ndarray, test: np.ndarray, peak: "float | None" = None) -> float:
    """Peak signal-to-noise ratio in dB of two arrays of one dtype (peak: 255 for uint8,
    32768 for int16 audio, else 1)."""
    if peak is None:
        peak = {np.uint8: 255.0, np.int16: 32768.0}.get(np.asarray(test).dtype.type, 1.0)
    reference = np.asarray(reference, np.float64)
    test = np.asarray(test, np.float64)
    mse = np.mean((reference - test) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def _as_float_audio(x):
    x = np.asarray(x)
    x = x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)
    return x.reshape(len(x), -1)


def si_sdr(reference: np.ndarray, test: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB, the mean over channels: the test
    signal's part along the (zero-mean) reference, against the rest."""
    ref, est = _as_float_audio(reference), _as_float_audio(test)
    ref, est = ref - ref.mean(axis=0), est - est.mean(axis=0)
    values = []
    for r, e in zip(ref.T, est.T):
        energy = float(r @ r)
        if energy == 0:
            continue
        target = (float(e @ r) / energy) * r
        noise = float(np.sum((e - target) ** 2))
        values.append(math.inf if noise == 0 else 10 * math.log10(float(target @ target) / noise))
    return float(np.mean(values)) if values else math.nan


def _mel_filters(rate, n_fft, bands):
    """Triangular filters on the mel scale (HTK formula), 0 Hz to the Nyquist frequency."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(0, mel(rate / 2), bands + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs - lower) / np.maximum(centre - lower, 1e-9)
    fall = (upper - freqs) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0, np.minimum(rise, fall))


def mel_distance(reference: np.ndarray, test: np.ndarray, rate: int = 44100, n_fft: int = 2048,
                 hop: int = 512, bands: int = 80, top_db: float = 80) -> float:
    """Mean absolute difference in dB between the two signals' log-mel power spectrograms
    (Hann window ``n_fft``, hop ``hop``, ``bands`` mel bands, both floored ``top_db`` below
    the reference's loudest band), over channels, frames and bands; 0 for identical signals,
    a few dB for audible coding noise."""
    ref, est = _as_float_audio(reference), _as_float_audio(test)
    filters = _mel_filters(rate, n_fft, bands)
    window = np.hanning(n_fft)
    if len(ref) < n_fft:
        pad = ((0, n_fft - len(ref)), (0, 0))
        ref, est = np.pad(ref, pad), np.pad(est, pad)
    starts = np.arange(0, len(ref) - n_fft + 1, hop)
    total = []
    for r, e in zip(ref.T, est.T):
        frames = np.stack([r[s:s + n_fft] for s in starts]) * window, \
            np.stack([e[s:s + n_fft] for s in starts]) * window
        mels = [10 * np.log10(filters @ (np.abs(np.fft.rfft(f, axis=1)) ** 2).T + 1e-20)
                for f in frames]
        floor = mels[0].max() - top_db  # below this, silence: differences there are inaudible
        total.append(np.mean(np.abs(np.maximum(mels[0], floor) - np.maximum(mels[1], floor))))
    return float(np.mean(total))
