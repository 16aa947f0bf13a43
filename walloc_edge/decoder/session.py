"""The onnxruntime session a decoder graph runs in (no torch: the bundle decoder and the
torch decoder's onnxruntime engine share it)."""
__all__ = ["resolve_providers", "open_session", "takes_one"]


def resolve_providers(providers: "str | list[str] | None") -> "list[str]":
    """onnxruntime's providers for ``providers`` as the sensor names them (default: the CPU);
    raises ImportError without onnxruntime, EngineError for a provider it lacks."""
    import onnxruntime as ort

    from ..runtime.backends import BackendError, resolve_providers as resolve
    from .errors import EngineError

    try:
        return resolve(providers, ort.get_available_providers())
    except BackendError as e:
        raise EngineError("provider", f"{providers}: {e}") from None


def open_session(path, providers: "list[str]", threads: "int | None" = None):
    """A session of the graph at ``path`` on ``providers`` (from ``resolve_providers``),
    fully optimised, quiet, on ``threads`` (default: all cores), whose threads do not spin
    after a run: they would take the cores from the synthesis that follows it (and on a
    shared machine from everyone else)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    from ..runtime.backends.onnxruntime import open_graph

    return open_graph(path, options, providers)


def takes_one(session) -> bool:
    """Whether the session's graph takes a batch of one only (a graph exported with its
    batch fixed), so that a batch runs an item at a time."""
    return session.get_inputs()[0].shape[0] == 1
