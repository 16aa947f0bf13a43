"""Quality measures: PSNR, MS-SSIM (Wang, Simoncelli & Bovik 2003) for images; for audio
SI-SDR (Le Roux et al. 2019) and a log-mel spectral distance, numpy only.

PSNR on audio is dominated by the loud low frequencies; SI-SDR ignores a change of gain,
and the mel distance weighs frequency bands roughly as hearing does (the distance neural
audio codecs are trained and compared with), so a codec that smears the highs shows there
even when its PSNR looks fine."""
import math

import numpy as np

__all__ = ["psnr", "ms_ssim", "MS_SSIM_WEIGHTS", "si_sdr", "mel_distance"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(reference, test, peak=None):
    """Peak signal-to-noise ratio in dB of two arrays of one dtype (peak: 255 for uint8,
    32768 for int16 audio, else 1)."""
    if peak is None:
        peak = {np.uint8: 255.0, np.int16: 32768.0}.get(np.asarray(test).dtype.type, 1.0)
    reference = np.asarray(reference, np.float64)
    test = np.asarray(test, np.float64)
    mse = np.mean((reference - test) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def _gaussian(size=11, sigma=1.5):
    import torch

    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_terms(x, y, window, c1, c2):
    """Mean SSIM and mean contrast-structure term of (N, 1, H, W) float64 images."""
    import torch.nn.functional as F

    blur = lambda t: F.conv2d(F.conv2d(t, window[None, None, :, None]), window[None, None, None])
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs
    return ssim.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ms_ssim(reference, test, data_range=255.0):
    """MS-SSIM of two H×W×C images (mean over channels). Five scales as in the paper; an
    image too small for all five uses as many as fit, with the weights renormalised."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(reference, np.float64)).permute(2, 0, 1)[:, None]
    y = torch.from_numpy(np.asarray(test, np.float64)).permute(2, 0, 1)[:, None]
    window = _gaussian()
    scales = max(1, min(5, 1 + int(math.log2(min(x.shape[2:]) / window.numel()))))
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights / weights.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for level in range(scales):
        ssim, cs = _ssim_terms(x, y, window, c1, c2)
        values.append(ssim if level == scales - 1 else cs)
        if level < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values).clamp(min=0)  # (scales, channels)
    return float(torch.prod(stacked ** weights[:, None], dim=0).mean())


def _as_float_audio(x):
    x = np.asarray(x)
    x = x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)
    return x.reshape(len(x), -1)


def si_sdr(reference, test):
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


def mel_distance(reference, test, rate=44100, n_fft=2048, hop=512, bands=80, top_db=80):
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
