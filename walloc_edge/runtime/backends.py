"""Inference backends: each runs one exported sensor encoder on a raw sample.

``run(raw)`` takes uint8 (1, H, W, C) or int16 (1, L, C) with sizes that are multiples of
2^J (at least ``min_size``; exactly ``static_shape`` when the backend has one) and returns
the integer latents (1, latent_dim, …). The :class:`~walloc_edge.runtime.Encoder` handles
any other size by tiling.
"""
import numpy as np

from .numpy_backend import NumpyBackend

__all__ = ["BACKENDS", "BackendError", "OnnxBackend", "LiteRTBackend", "NumpyBackend",
           "make_backend"]

BACKENDS = ("onnxruntime", "litert", "numpy")


class BackendError(ValueError):
    """A backend that cannot run here (its runtime is not installed, or the bundle lacks it)."""


class OnnxBackend:
    """encoder.onnx on onnxruntime's CPU provider; dynamic sizes."""

    name = "onnxruntime"
    static_shape = None

    def __init__(self, bundle, threads=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("the onnxruntime backend needs onnxruntime: "
                               "pip install 'walloc-edge[runtime]'") from None
        path, _ = bundle.graph("onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.min_size = bundle.meta["input"]["min_size"]

    def run(self, raw):
        return self.session.run(None, {self.input: raw})[0]


class LiteRTBackend:
    """encoder.tflite on ai-edge-litert (XNNPACK); one static size, set at export."""

    name = "litert"

    def __init__(self, bundle, threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BackendError("the litert backend needs ai-edge-litert: "
                               "pip install 'walloc-edge[litert]'") from None
        from ._quiet import quiet_output

        path, info = bundle.graph("tflite")
        with quiet_output():  # the XNNPACK delegate announces itself on stderr
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.static_shape = tuple(info["static_shape"])
        self.min_size = min(self.static_shape)

    def run(self, raw):
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(raw))
        self.interpreter.invoke()
        latents = self.interpreter.get_tensor(self.output["index"])
        # Image graphs are NHWC end to end: (1, h, w, latent_dim) → (1, latent_dim, h, w).
        return latents.transpose(0, 3, 1, 2) if latents.ndim == 4 else latents


def make_backend(name, bundle, threads=None):
    if name == "onnxruntime":
        return OnnxBackend(bundle, threads)
    if name == "litert":
        return LiteRTBackend(bundle, threads)
    if name == "numpy":
        return NumpyBackend(bundle)
    raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")

