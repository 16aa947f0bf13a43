"""Decoder engines: what runs the decoder network, between the de-companding (``ToNormal``,
whose ``erfinv`` neither low precision nor ONNX takes) and the wavelet synthesis, which both
stay fp32 torch. Precision is placed there and nowhere else: bf16 over the whole decode
agrees with fp32 to only ~23 dB, over the network alone to ~55 dB (rgb-16x).

Every engine offered holds the quality bar (tests/test_decoder_engines.py,
benchmarks/decoder_engines.py, benchmarks/decoder_int8.py): its decode agrees with the fp32
torch decode at ≥ 45 dB PSNR and moves PSNR against the original by ≤ 0.05 dB. The engines
are a table (``REGISTRY``): a new one is a row, which ``make_engine``, ``auto`` and
``walloc-edge info`` take up.
"""
import copy
import importlib.util
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from ..runtime.cpu import cpu_flags
from .errors import EngineError
from .graphs import cached_graph
from .network import in_channels, is_2d
from .session import open_session, resolve_providers

__all__ = ["ENGINES", "PRECISIONS", "REGISTRY", "EngineKind", "EngineError", "TorchEngine",
           "OnnxEngine", "make_engine", "precisions_here", "engines_here", "why_not",
           "devices_here", "choices_here"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags whose instructions make a low precision faster than fp32 (Linux /proc/cpuinfo).
_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def precisions_here(device: str) -> "list[str]":
    """The torch precisions this device computes in hardware (fp32 always)."""
    if device.startswith("cuda"):
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    flags = cpu_flags()
    return ["fp32"] + [p for p, needs in _CPU_FLAGS.items() if flags & set(needs)]


class TorchEngine:
    """The network in torch at ``precision`` (autocast on the network alone).
    ``channels_last`` runs a copy in that memory format: not the default, as on the shared
    development CPU it measured as often slower as faster (benchmarks/decoder_engines.py,
    its "(variant)" rows); ``compile``: torch.compile."""

    name = "torch"
    probe_seconds = None  # set on the engine "auto" chose: what each candidate took

    def __init__(self, network, device, precision="fp32", compile=False, channels_last=False):
        self.precision, self.device = precision, device
        self.dtype = _DTYPES[precision]
        self.channels_last = channels_last and is_2d(network)
        if self.channels_last:
            network = copy.deepcopy(network).to(memory_format=torch.channels_last)
        self.eager = network
        self.network = torch.compile(network) if compile else network
        self.compiled = compile

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            y = self._run(x)
        except Exception as e:  # torch.compile fails at the first call, in many ways
            if self.network is self.eager:
                raise
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); decoding without "
                          "compiling", stacklevel=2)
            self.network, self.compiled = self.eager, False
            y = self._run(x)
        return y.float().contiguous()

    def _run(self, x):
        if self.precision == "fp32":
            return self.network(x)
        with torch.autocast(torch.device(self.device).type, self.dtype):
            return self.network(x)


class OnnxEngine:
    """The network exported to ONNX (``network.export_network``; in int8, that graph
    quantised: ``graphs``), on onnxruntime's ``providers`` (default: the CPU). The graphs are
    made once and kept in the user's cache."""

    name = "onnxruntime"
    probe_seconds = None

    def __init__(self, network, device, providers=None, threads=None, precision="fp32"):
        if providers is None and device.startswith("cuda"):
            providers = "cuda,cpu"
        chosen = resolve_providers(providers)  # first: a provider not here is the user's
        self.session = open_session(cached_graph(network, precision), chosen, threads)
        self.input = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()
        self.device, self.precision = device, precision

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in one run (the graph takes any batch)."""
        x = x.detach().float().cpu().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: x})[0]).to(self.device)


@dataclass(frozen=True)
class EngineKind:
    """A row of the engine table: the ``precisions`` it can run (the hardware may compute
    fewer, ``precisions_here``), whether it takes onnxruntime ``providers`` and torch's
    ``compile``, ``missing()``: why it is not installed here (None where it is), and
    ``build(network, device, precision, providers, compile, threads)`` (``threads``: an
    onnxruntime session's; torch's are the calling thread's, ``torch.set_num_threads``)."""

    name: str
    precisions: "tuple[str, ...]"
    providers: bool
    compiles: bool
    missing: "Callable[[], str | None]"
    build: Callable


def _onnx_missing():
    if all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx", "onnxscript")):
        return None
    return "not installed here (it needs onnxruntime, onnx and onnxscript)"


REGISTRY = {kind.name: kind for kind in (
    EngineKind("torch", ("fp32", "bf16", "fp16"), False, True, lambda: None,
               lambda network, device, precision, providers, compile, threads:
               TorchEngine(network, device, precision, compile)),
    EngineKind("onnxruntime", ("fp32", "int8"), True, False, _onnx_missing,
               lambda network, device, precision, providers, compile, threads:
               OnnxEngine(network, device, providers, threads, precision)),
)}
ENGINES = ("auto", *REGISTRY)
PRECISIONS = ("auto", *dict.fromkeys(p for kind in REGISTRY.values() for p in kind.precisions))
# Without a measurement: a low float precision first, int8 only when asked for.
_PREFERRED = ("bf16", "fp16", "fp32", "int8")


def engines_here() -> "list[str]":
    """The engines installed here (onnxruntime and onnx are optional)."""
    return [name for name, kind in REGISTRY.items() if kind.missing() is None]


def why_not(engine: str, precision: str, device: str = "cpu") -> "str | None":
    """Why ``engine`` at ``precision`` does not run on ``device`` here, or None if it does
    (for image decoders: audio ones run fp32 only)."""
    kind = REGISTRY[engine]
    if precision not in kind.precisions:
        return f"the {engine} engine runs {', '.join(kind.precisions)} only"
    if kind.missing():
        return kind.missing()
    if not _computes(precision, device):
        kind_of = "GPU" if device.startswith("cuda") else "CPU"
        flags = "" if device.startswith("cuda") else f" ({', '.join(_CPU_FLAGS[precision])})"
        return f"this {kind_of} has no {precision} instructions{flags}"
    return None


def devices_here() -> "list[str]":
    """The CPU, and a CUDA GPU where torch sees one."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def choices_here(device: str = "cpu") -> "list[tuple[str, str, str | None]]":
    """(engine, precision, why it does not run here or None) for every row of the table."""
    return [(name, p, why_not(name, p, device)) for name, kind in REGISTRY.items()
            for p in kind.precisions]


def make_engine(network, device, engine="torch", precision=None, providers=None,
                compile=False, threads=None):
    """The engine ``engine`` at ``precision`` (default: fp32, or auto for engine auto) for
    ``network`` on ``device``; low precisions for image decoders only (audio's PSNR moves by
    more than 0.05 dB in bf16: 0.07 on synthetic music with stereo-5x; int8 is measured on
    photos alone). "auto" picks among the table's engines (those taking onnxruntime
    ``providers`` where given) the fastest here of those that hold the quality bar: on a
    GPU, the first engine in its preferred precision (bf16, else fp16); on the CPU, measured
    once on a small probe among every engine and precision that runs here, on ``threads``
    (onnxruntime's; default all cores) as it will decode."""
    if engine not in ENGINES:
        raise EngineError("engine", f"{engine!r} is unknown; choose from {', '.join(ENGINES)}")
    precision = precision or ("auto" if engine == "auto" else "fp32")
    if precision not in PRECISIONS:
        raise EngineError("precision", f"{precision!r} is unknown; choose from "
                          f"{', '.join(PRECISIONS)}")
    if engine != "auto" and providers and not REGISTRY[engine].providers:
        takers = [name for name, kind in REGISTRY.items() if kind.providers]
        raise EngineError("provider", f"{providers}: the {engine} engine takes no onnxruntime "
                          f"providers; use engine {' or '.join([*takers, 'auto'])}")
    kinds = [REGISTRY[engine]] if engine != "auto" else \
        [kind for kind in REGISTRY.values() if kind.providers or not providers]
    if len(kinds) == 1:
        _check_kind(kinds[0], precision)
    image = is_2d(network)
    if precision not in ("auto", "fp32") and not image:
        raise EngineError("precision", f"{precision}: audio decoders run fp32 only (in "
                          f"{precision} the PSNR against the original moves by more than "
                          "0.05 dB); available: auto, fp32")
    if precision != "auto" and not _computes(precision, device):
        kind = "GPU" if device.startswith("cuda") else "CPU"
        raise EngineError("precision", f"{precision} does not run on this {kind} (it has no "
                          f"{precision} instructions); available here: "
                          f"{', '.join(['auto', *precisions_here(device)])}"
                          f"{'' if device.startswith('cuda') else ', int8 (onnxruntime)'}")
    if len(kinds) > 1:  # auto: those installed here (and that compile, if asked to)
        kinds = [kind for kind in kinds if not kind.missing() and (kind.compiles or not compile)]
    pairs = [(kind, p) for kind in kinds for p in _PREFERRED if p in kind.precisions
             and precision in ("auto", p) and (p == "fp32" or image and _computes(p, device))]
    if not pairs:
        raise EngineError("precision", f"{precision}: no engine installed here runs it; "
                          f"available: {', '.join(_runs_here(device))}")
    if engine != "auto" or device != "cpu":  # nothing to measure
        kind, p = pairs[0]
        return kind.build(network, device, p, providers, compile, threads)
    options, refused = [], []
    for kind, p in pairs:
        try:
            options.append(kind.build(network, device, p, providers, compile, threads))
        except EngineError as e:  # auto goes on with the others
            refused.append(e)
            warnings.warn(f"auto leaves out {e}", stacklevel=2)
    if not options:
        raise refused[0]
    return fastest(options, network)


def _computes(precision, device):
    """Whether ``device`` computes ``precision``: the low float precisions need instructions
    for them; fp32 and int8 run anywhere."""
    return precision not in _CPU_FLAGS or precision in precisions_here(device)


def _runs_here(device):
    return ["auto", *dict.fromkeys(p for name, p, why in choices_here(device) if why is None)]


def _check_kind(kind, precision):
    """Refuse a precision the engine cannot run, or an engine not installed here."""
    if precision not in ("auto", *kind.precisions):
        raise EngineError("precision", f"{precision}: the {kind.name} engine runs "
                          f"{', '.join(kind.precisions)} only; available: "
                          f"{', '.join(['auto', *kind.precisions])}")
    if kind.missing():
        raise EngineError("engine", f"{kind.name}: {kind.missing()}; available: "
                          f"{', '.join(['auto', *engines_here()])}")


def fastest(engines, network, repeat=2):
    """The engine of ``engines`` that runs ``network``'s probe input fastest (after a
    warm-up run each; the best of ``repeat`` runs); all of them when timed are kept in
    ``probe_seconds`` of the one returned."""
    if len(engines) == 1:
        return engines[0]
    x = torch.randn(1, in_channels(network), *((32, 32) if is_2d(network) else (256,)),
                    generator=torch.Generator().manual_seed(0))
    seconds = {}
    with torch.no_grad():
        for engine in engines:
            engine(x)
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                engine(x)
                runs.append(time.perf_counter() - start)
            seconds[engine] = min(runs)
    best = min(engines, key=seconds.get)
    best.probe_seconds = {f"{e.name} {e.precision}": round(t, 4) for e, t in seconds.items()}
    return best
