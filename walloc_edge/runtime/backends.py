"""Inference backends: each runs one exported sensor encoder on a raw sample.

``run(raw)`` takes uint8 (1, H, W, C) or int16 (1, L, C) with sizes that are multiples of
2^J (at least ``min_size``; exactly ``static_shape`` when the backend has one) and returns
the integer latents (1, latent_dim, …). The :class:`~walloc_edge.runtime.Encoder` handles
any other size by tiling.

Backends plug in through ``BACKENDS`` (name → class, in the order ``"auto"`` tries them):
a class has ``name``, ``static_shape``, ``min_size``, ``run`` and ``usable(bundle)``, which
says why it cannot run here (its runtime is not installed, the bundle lacks its graph) or
returns None.
"""
import importlib.util

import numpy as np

from .native_backend import NativeBackend
from .numpy_backend import NumpyBackend

__all__ = ["BACKENDS", "BackendError", "NativeBackend", "OnnxBackend", "LiteRTBackend",
           "NumpyBackend", "make_backend", "available_backends", "onnx_session", "litert_runner",
           "resolve_providers", "PROVIDER_NAMES"]

# Short names for onnxruntime's execution providers (full names are accepted too).
PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider", "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider", "dml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
    "acl": "ACLExecutionProvider", "armnn": "ArmNNExecutionProvider",
    "azure": "AzureExecutionProvider",
}


class BackendError(ValueError):
    """A backend that cannot run here (its runtime is not installed, or the bundle lacks it)."""


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("the onnxruntime backend needs onnxruntime: "
                           "pip install 'walloc-edge[runtime]'") from None
    return onnxruntime


def resolve_providers(providers: "str | list[str] | None", available: "list[str]") -> "list[str]":
    """``providers`` ("tensorrt,cuda,cpu", or a list; short or full names) as onnxruntime
    names, checked against ``available``; None → the CPU provider."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    if not providers:
        raise BackendError("--provider is empty; give e.g. cuda,cpu")
    short = {full: name for name, full in PROVIDER_NAMES.items()}
    have = ", ".join(short.get(p, p) for p in available)
    chosen = []
    for name in providers:
        full = PROVIDER_NAMES.get(name.lower(), name)
        if full not in PROVIDER_NAMES.values() and full not in available:
            raise BackendError(f"unknown onnxruntime provider {name!r}; this onnxruntime has: "
                               f"{have}")
        if full not in available:
            raise BackendError(f"onnxruntime provider {name!r} is not available in this "
                               f"installation (it has: {have}); install an onnxruntime build "
                               f"with it (e.g. onnxruntime-gpu for cuda/tensorrt)")
        chosen.append(full)
    return chosen


def onnx_session(path, threads=None, providers=None):
    """An onnxruntime session with all graph optimisations (quiet), on ``providers``
    (default: the CPU)."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    chosen = resolve_providers(providers, ort.get_available_providers())
    return ort.InferenceSession(str(path), options, providers=chosen)


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


def _graph_missing(bundle, fmt):
    return None if fmt in bundle.meta.get("graphs", {}) else f"the bundle has no {fmt} graph"


class OnnxBackend:
    """encoder.onnx on onnxruntime (CPU unless ``providers`` say otherwise); dynamic sizes."""

    name = "onnxruntime"
    static_shape = None

    def __init__(self, bundle, threads=None, providers=None):
        path, _ = bundle.graph("onnx")
        self.session = onnx_session(path, threads, providers)
        self.providers = self.session.get_providers()
        self.input = self.session.get_inputs()[0].name
        self.min_size = bundle.meta["input"]["min_size"]

    @staticmethod
    def usable(bundle):
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return _graph_missing(bundle, "onnx")

    def run(self, raw):
        return self.session.run(None, {self.input: raw})[0]


class LiteRTBackend:
    """encoder.tflite on ai-edge-litert (XNNPACK); one static size, set at export."""

    name = "litert"
    providers = ()

    def __init__(self, bundle, threads=None):
        path, info = bundle.graph("tflite")
        self.run = litert_runner(path, threads)
        self.static_shape = tuple(info["static_shape"])
        self.min_size = min(self.static_shape)

    @staticmethod
    def usable(bundle):
        if importlib.util.find_spec("ai_edge_litert") is None:
            return "ai-edge-litert is not installed"
        return _graph_missing(bundle, "tflite")


BACKENDS = {"native": NativeBackend, "onnxruntime": OnnxBackend, "litert": LiteRTBackend,
            "numpy": NumpyBackend}


def available_backends(bundle) -> "list[str]":
    """Names of the backends that can run ``bundle`` here, in the order "auto" tries them."""
    return [name for name, cls in BACKENDS.items() if cls.usable(bundle) is None]


def make_backend(name, bundle, threads=None, providers=None):
    """Backend ``name`` for ``bundle``; "auto" takes the first usable one of ``BACKENDS``
    (onnxruntime's where ``providers`` are asked for: only it has them)."""
    if name == "auto" and providers is not None and OnnxBackend.usable(bundle) is None:
        name = "onnxruntime"
    if name == "auto":
        usable = available_backends(bundle)
        if not usable:
            why = "; ".join(f"{n}: {cls.usable(bundle)}" for n, cls in BACKENDS.items())
            raise BackendError(f"no backend can run {bundle.path} here ({why})")
        name = usable[0]
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
    why = BACKENDS[name].usable(bundle)
    if why:
        others = ", ".join(available_backends(bundle)) or "none"
        raise BackendError(f"the {name} backend cannot run {bundle.path} here: {why} "
                           f"(usable here: {others}; --backend auto takes the first)")
    if name == "onnxruntime":
        return OnnxBackend(bundle, threads, providers)
    if providers is not None:
        why = OnnxBackend.usable(bundle) or f"the {name} backend has none"
        raise BackendError(f"--provider chooses onnxruntime execution providers ({why}; use "
                           "--backend onnxruntime)")
    return NumpyBackend(bundle) if name == "numpy" else BACKENDS[name](bundle, threads)
