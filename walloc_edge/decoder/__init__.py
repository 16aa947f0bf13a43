"""Server side: .wlc bitstreams → torch decoder (``Decoder``) or a bundle's decoder graph
without torch (``BundleDecoder``) → signal; quality metrics.

Names load on first use, so that ``walloc_edge.decoder.psnr`` and ``BundleDecoder`` work
without torch (the numpy metrics live in ``runtime.metrics``; MS-SSIM needs torch).
"""
import importlib

__all__ = ["Decoder", "BundleDecoder", "ModelMismatchError", "ms_ssim", "psnr", "si_sdr",
           "mel_distance", "to_signal"]
_HOME = {"Decoder": "decoder", "BundleDecoder": "bundle", "ModelMismatchError": "errors",
         "to_signal": "decoder", "ms_ssim": "metrics", "psnr": "metrics", "si_sdr": "metrics",
         "mel_distance": "metrics"}


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'walloc_edge.decoder' has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{_HOME[name]}", __name__)
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        raise ModuleNotFoundError(
            f"walloc_edge.decoder.{name} needs torch (pip install 'walloc-edge[server]'); "
            "without torch, decode with a bundle exported with --decoder: "
            "BundleDecoder('bundle/')", name="torch") from None
    return getattr(module, name)
