"""What the numbers were measured on: CPU model, cores, ISA flags, GPU and library versions
(the bench's machine line, and the benchmark scripts' headers)."""
import os
import platform

from ..runtime.cpu import cpu_flags, cpu_model

__all__ = ["machine"]


def machine():
    """What the numbers were measured on."""
    flags = cpu_flags()
    info = {"system": platform.system(), "architecture": platform.machine(),
            "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "isa": sorted(flags & {"avx2", "avx512f", "fma", "sse4_2", "neon", "asimd", "sve",
                                   "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"})}
    versions = {}
    for module in ("numpy", "onnxruntime", "ai_edge_litert", "torch", "PIL"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = None
    info["versions"] = versions
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info
