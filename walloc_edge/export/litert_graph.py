"""LiteRT export of the sensor encoder with litert-torch (encoder.tflite), run with
ai-edge-litert.

LiteRT graphs have static shapes: the bundle's graph takes exactly the size given at export
(``--height/--width`` or ``--length``); the runtime tiles or pads other sizes to it.
"""
import torch

from ..runtime._quiet import quiet_output
from ..runtime.backends import litert_runner  # graphs run as the sensor runs them

__all__ = ["export_litert", "litert_runner"]


def export_litert(encoder, example, path):
    try:
        with quiet_output():  # its import logs (absl, oneDNN) to stderr
            import litert_torch
    except ImportError:
        raise ValueError("LiteRT export needs litert-torch: pip install 'walloc-edge[export]'") \
            from None
    with torch.no_grad(), quiet_output():
        litert_torch.convert(encoder, (example,)).export(str(path))
    return path
