"""Server side: .wlc bitstreams → torch decoder → signal; quality metrics.

Names load on first use, so that ``walloc_edge.decoder.psnr`` works without torch (the
numpy metrics live in ``runtime.metrics``; MS-SSIM needs torch).
"""
import importlib

__all__ = ["Decoder", "ModelMismatchError", "ms_ssim", "psnr", "si_sdr", "mel_distance",
           "to_signal"]
_HOME = {"Decoder": "decoder", "ModelMismatchError": "errors", "to_signal": "decoder",
         "ms_ssim": "metrics", "psnr": "metrics", "si_sdr": "metrics", "mel_distance": "metrics"}


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'walloc_edge.decoder' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
