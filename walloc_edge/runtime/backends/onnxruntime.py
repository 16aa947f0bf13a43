"""The ``onnxruntime`` backend: encoder.onnx on onnxruntime, on the CPU or on the execution
providers asked for (a GPU, TensorRT on a Jetson); any size."""
import importlib.util

from .base import Backend, BackendError, graph_damaged, graph_missing

__all__ = ["OnnxBackend", "PROVIDER_NAMES", "onnx_session", "resolve_providers"]

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
        raise BackendError("no execution provider named; give e.g. cuda,cpu")
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
    return open_graph(path, options, resolve_providers(providers, ort.get_available_providers()))


def open_graph(path, options, providers):
    """``onnxruntime.InferenceSession`` of the graph at ``path``; a file onnxruntime cannot
    load (cut short, or a graph this version cannot run) is a BackendError in one line."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except (state.InvalidProtobuf, state.InvalidGraph, state.NoSuchFile, state.InvalidArgument,
            state.Fail, state.NotImplemented) as e:
        raise graph_damaged(path, "onnxruntime", e) from None


class OnnxBackend(Backend):
    """encoder.onnx on onnxruntime (CPU unless ``providers`` say otherwise); dynamic sizes."""

    name = "onnxruntime"
    graph = "onnx"
    takes_providers = True

    def __init__(self, bundle, threads=None, providers=None):
        super().__init__(bundle, threads, providers)
        path, _ = bundle.graph(self.graph)
        self.session = onnx_session(path, threads, providers)
        self.providers = self.session.get_providers()
        self.input = self.session.get_inputs()[0].name

    @staticmethod
    def usable(bundle):
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return graph_missing(bundle, "onnx")

    def run(self, raw):
        return self.session.run(None, {self.input: raw})[0]
