"""Which torch device a command runs on."""
import torch

__all__ = ["resolve_device"]


def resolve_device(name):
    """"auto" → CUDA when there is a GPU, else the CPU; a CUDA request without a GPU is a
    user error (ValueError) rather than a torch traceback."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{name}: no CUDA device here; use cpu")
    return name
