"""The ``litert`` backend: the bundle's LiteRT graph (encoder.tflite) on ai-edge-litert with
XNNPACK; one static size, set at export (the Encoder tiles or pads other sizes to it)."""
import importlib.util

import numpy as np

from .base import Backend, BackendError, graph_damaged, graph_missing

__all__ = ["LiteRTBackend", "litert_runner"]


def litert_runner(path, threads=None):
    """A function raw → latents (1, latent_dim, …) over one LiteRT interpreter (XNNPACK);
    image graphs give NHWC latents, returned as NCHW like the other backends. It has
    ``input_shape``, the graph's static input shape."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BackendError("the litert backend needs ai-edge-litert: "
                           "pip install 'walloc-edge[litert]'") from None
    from .._quiet import quiet_output

    try:
        with quiet_output():  # the XNNPACK delegate announces itself on stderr
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise graph_damaged(path, "LiteRT", e) from None
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]

    def run(raw):
        if tuple(raw.shape) != tuple(inp["shape"]):
            raise ValueError(f"this LiteRT graph takes shape {tuple(inp['shape'])}, "
                             f"got {tuple(raw.shape)}")
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(raw, dtype=inp["dtype"]))
        interpreter.invoke()
        latents = interpreter.get_tensor(out["index"])
        return latents.transpose(0, 3, 1, 2) if latents.ndim == 4 else latents

    run.input_shape = tuple(int(n) for n in inp["shape"])
    return run


class LiteRTBackend(Backend):
    """encoder.tflite on ai-edge-litert (XNNPACK); one static size, set at export."""

    name = "litert"
    graph = "litert"

    def __init__(self, bundle, threads=None, providers=None):
        super().__init__(bundle, threads, providers)
        path, info = bundle.graph(self.graph)
        self.runner = litert_runner(path, threads)
        self.static_shape = tuple(info["static_shape"])
        self.min_size = min(self.static_shape)

    @staticmethod
    def usable(bundle):
        if importlib.util.find_spec("ai_edge_litert") is None:
            return "ai-edge-litert is not installed"
        return graph_missing(bundle, "litert")

    def run(self, raw):
        return self.runner(raw)
