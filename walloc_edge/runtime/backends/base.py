"""What every backend is: the contract the :class:`~walloc_edge.runtime.Encoder` relies on,
so that a new way to run the sensor encoder is one module with one class in ``BACKENDS``."""

__all__ = ["Backend", "BackendError", "graph_damaged", "graph_missing", "weights_missing"]


class BackendError(ValueError):
    """A backend that cannot run here (its runtime is not installed, or the bundle lacks it)."""


class Backend:
    """Runs one bundle's sensor encoder. ``run(raw)`` takes uint8 (1, H, W, C) or int16
    (1, L, C) with sizes that are multiples of 2^J (at least ``min_size``; exactly
    ``static_shape`` when the backend has one) and returns the integer latents
    (1, latent_dim, …); the Encoder handles any other size by tiling.

    Every backend is built as ``cls(bundle, threads=None, providers=None)``.
    """

    name: str  # its key in BACKENDS and the name Encoder(backend=...) takes
    graph = None  # the bundle graph it runs ("onnx", "litert"); None: it reads encoder.npz
    static_shape = None  # the one input shape of a static graph; None: any size
    takes_providers = False  # whether it runs on onnxruntime's execution providers
    threaded = True  # whether ``threads`` changes how it runs (the bench times each count)
    providers = ()  # the execution providers it runs on, in order of preference
    detail = ""  # what Encoder.describe() shows beside its name (default: the providers)
    run_interior = None  # {Modality: run size} where it prefers runs of its own size
    # run_at(sample, index): the latents of the run that ``index`` (row and column indices,
    # reflections included) reads of ``sample`` in place, without a copy; None: it takes
    # copies (run).
    run_at = None

    def __init__(self, bundle, threads=None, providers=None):
        """Checks what all backends share; a subclass then loads its graph or weights for
        ``threads`` threads (None: the runtime's default)."""
        if providers is not None and not self.takes_providers:
            raise BackendError(f"execution providers are onnxruntime's: the {self.name} "
                               "backend has none (the onnxruntime backend takes them)")
        self.min_size = bundle.meta["input"]["min_size"]
        self.threads = threads

    @staticmethod
    def usable(bundle) -> "str | None":
        """Why this backend cannot run ``bundle`` here, or None ("auto" takes the first
        usable one)."""
        raise NotImplementedError("only a backend knows what it needs installed and bundled")

    def run(self, raw):
        """The integer latents of one run ``raw`` (see the class)."""
        raise NotImplementedError("each backend computes the latents its own way")


def graph_damaged(path, runtime, error):
    """The BackendError for a graph file ``runtime`` cannot load (a copy cut short, a
    format it cannot read): one line naming the file and the fix."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return BackendError(f"{path} could not be loaded by {runtime} ({first}); export the "
                        "bundle or copy it again")


def graph_missing(bundle, fmt):
    """Why a backend that runs the bundle's ``fmt`` graph cannot: the bundle has none."""
    return None if fmt in bundle.meta.get("graphs", {}) else f"the bundle has no {fmt} graph"


def weights_missing(bundle):
    """Why a backend that computes from encoder.npz cannot: the bundle has none, or it is
    damaged (``Bundle.weights_problem``); the graph backends may still run."""
    path = bundle.path / bundle.meta.get("weights", "encoder.npz")
    return bundle.weights_problem if path.is_file() else "the bundle has no encoder.npz"
