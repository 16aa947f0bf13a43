"""Inference backends: each runs one exported sensor encoder on a raw sample.

``run(raw)`` takes uint8 (1, H, W, C) or int16 (1, L, C) with sizes that are multiples of
2^J (at least ``min_size``; exactly ``static_shape`` when the backend has one) and returns
the integer latents (1, latent_dim, …). The :class:`~walloc_edge.runtime.Encoder` handles
any other size by tiling.
"""
import numpy as np

from .numpy_backend import NumpyBackend

__all__ = ["BACKENDS", "BackendError", "OnnxBackend", "LiteRTBackend", "NumpyBackend",
           "make_backend", "onnx_session", "litert_runner"]

BACKENDS = ("onnxruntime", "litert", "numpy")


class BackendError(ValueError):
    """A backend that cannot run here (its runtime is not installed, or the bundle lacks it)."""


def onnx_session(path, threads=None):
    """An onnxruntime CPU session with all graph optimisations (quiet)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("the onnxruntime backend needs onnxruntime: "
                           "pip install 'walloc-edge[runtime]'") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def litert_runner(path, threads=None):
    """A function raw → latents (1, latent_dim, …) over one LiteRT interpreter (XNNPACK);
    image graphs give NHWC latents, returned as NCHW like the other backends. It has
    ``input_shape``, the graph's static input shape."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BackendError("the litert backend needs ai-edge-litert: "
                           "pip install 'walloc-edge[litert]'") from None
    from ._quiet import quiet_output

    with quiet_output():  # the XNNPACK delegate announces itself on stderr
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


class OnnxBackend:
    """encoder.onnx on onnxruntime's CPU provider; dynamic sizes."""

    name = "onnxruntime"
    static_shape = None

    def __init__(self, bundle, threads=None):
        path, _ = bundle.graph("onnx")
        self.session = onnx_session(path, threads)
        self.input = self.session.get_inputs()[0].name
        self.min_size = bundle.meta["input"]["min_size"]

    def run(self, raw):
        return self.session.run(None, {self.input: raw})[0]


class LiteRTBackend:
    """encoder.tflite on ai-edge-litert (XNNPACK); one static size, set at export."""

    name = "litert"

    def __init__(self, bundle, threads=None):
        path, info = bundle.graph("tflite")
        self.run = litert_runner(path, threads)
        self.static_shape = tuple(info["static_shape"])
        self.min_size = min(self.static_shape)


def make_backend(name, bundle, threads=None):
    if name == "onnxruntime":
        return OnnxBackend(bundle, threads)
    if name == "litert":
        return LiteRTBackend(bundle, threads)
    if name == "numpy":
        return NumpyBackend(bundle)
    raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")

