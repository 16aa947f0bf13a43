"""TFLite export of the sensor encoder with litert-torch, run with ai-edge-litert.

TFLite graphs have static shapes: the bundle's graph takes exactly the size given at export
(``--height/--width`` or ``--length``); the runtime tiles or pads other sizes to it.
"""
import numpy as np
import torch

from ..runtime._quiet import quiet_output

__all__ = ["export_tflite", "tflite_runner"]


def export_tflite(encoder, example, path):
    try:
        import litert_torch
    except ImportError:
        raise ValueError("TFLite export needs litert-torch: pip install 'walloc-edge[export]'") \
            from None
    with torch.no_grad(), quiet_output():
        litert_torch.convert(encoder, (example,)).export(str(path))
    return path


def tflite_runner(path, threads=None):
    """A function raw → latents (1, latent_dim, …) over one LiteRT interpreter (XNNPACK on
    CPU); image graphs give NHWC latents, returned here as NCHW like the other graphs."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_output():  # "Created TensorFlow Lite XNNPACK delegate" on every load
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]

    def run(raw):
        if tuple(raw.shape) != tuple(inp["shape"]):
            raise ValueError(f"this TFLite graph takes shape {tuple(inp['shape'])}, "
                             f"got {tuple(raw.shape)}")
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(raw, dtype=inp["dtype"]))
        interpreter.invoke()
        latents = interpreter.get_tensor(out["index"])
        return latents.transpose(0, 3, 1, 2) if latents.ndim == 4 else latents

    run.input_shape = tuple(int(n) for n in inp["shape"])
    return run
