"""The torch codec: wavelet packet transform, companding, Codec2D/Codec1D, checkpoints."""
from .bottleneck import Round, ToNormal, ToUniform
from .checkpoint import CheckpointError, load, save
from .config import CodecConfig
from .models import Codec1D, Codec2D, build, encoder_arrays
from .padding import crop, pad
from .wavelets import DWT1D, DWT2D, IDWT1D, IDWT2D, packet_analysis, packet_synthesis

__all__ = ["Codec1D", "Codec2D", "CodecConfig", "CheckpointError", "build", "encoder_arrays",
           "load", "save", "pad", "crop", "ToUniform", "ToNormal", "Round", "DWT1D", "DWT2D",
           "IDWT1D", "IDWT2D", "packet_analysis", "packet_synthesis"]
