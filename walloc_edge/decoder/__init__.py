"""Server side: .wlc bitstreams → torch decoder → signal; quality metrics; evaluation."""
from .decoder import Decoder, ModelMismatchError, to_signal
from .metrics import ms_ssim, psnr

__all__ = ["Decoder", "ModelMismatchError", "ms_ssim", "psnr", "to_signal"]
