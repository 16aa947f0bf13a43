"""Quality measures: MS-SSIM (Wang, Simoncelli & Bovik 2003) for images, on torch; PSNR,
SI-SDR and the log-mel distance come from the torch-free ``runtime.metrics``."""
import math

import numpy as np

from ..runtime.metrics import mel_distance, psnr, si_sdr

__all__ = ["psnr", "ms_ssim", "MS_SSIM_WEIGHTS", "si_sdr", "mel_distance"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


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


def ms_ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
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
