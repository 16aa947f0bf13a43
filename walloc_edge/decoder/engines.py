"""Decoder engines: what runs the decoder network, between the de-companding (``ToNormal``,
whose ``erfinv`` neither low precision nor ONNX takes) and the wavelet synthesis, which both
stay fp32 torch. Precision is placed there and nowhere else: bf16 over the whole decode
agrees with fp32 to only ~23 dB, over the network alone to ~55 dB (rgb-16x).

Every engine offered holds the quality bar (tests/test_decoder_engines.py,
benchmarks/decoder_engines.py): its decode agrees with the fp32 torch decode at ≥ 45 dB
PSNR and moves PSNR against the original by ≤ 0.05 dB.
"""
import copy
import hashlib
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import EngineError
from .network import export_network, in_channels, is_2d

__all__ = ["ENGINES", "PRECISIONS", "EngineError", "TorchEngine", "OnnxEngine", "make_engine",
           "precisions_here", "engines_here"]

ENGINES = ("auto", "torch", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags whose instructions make a low precision faster than fp32 (Linux /proc/cpuinfo).
_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.split(":")[0].strip() == "flags"
            for f in line.split(":", 1)[1].split()}


def precisions_here(device: str) -> "list[str]":
    """The torch precisions this device computes in hardware (fp32 always)."""
    if device.startswith("cuda"):
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    flags = _cpu_flags()
    return ["fp32"] + [p for p, needs in _CPU_FLAGS.items() if flags & set(needs)]


def engines_here() -> "list[str]":
    """The engines installed here (onnxruntime and onnx are optional)."""
    import importlib.util

    have = ["torch"]
    if all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx", "onnxscript")):
        have.append("onnxruntime")
    return have


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
    """The network exported to ONNX (``network.export_network``), on onnxruntime's
    ``providers`` (default: the CPU). The network is exported once and kept in the user's
    cache, keyed by its weights and the torch version."""

    name = "onnxruntime"
    precision = "fp32"
    probe_seconds = None

    def __init__(self, network, device, providers=None, threads=None):
        import onnxruntime as ort

        from ..runtime.backends import BackendError, resolve_providers

        if providers is None and device.startswith("cuda"):
            providers = "cuda,cpu"
        try:  # before exporting: a provider that is not here is the user's to fix
            chosen = resolve_providers(providers, ort.get_available_providers())
        except BackendError as e:
            raise EngineError("provider", f"{providers}: {e}") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Threads that spin on after a run take the cores from the torch synthesis that
        # follows it (and on a shared machine from everyone else).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(_cached_graph(network)), options,
                                            providers=chosen)
        self.input = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A batch one item at a time (the graph's batch size is 1)."""
        x = x.detach().float().cpu().numpy()
        y = [self.session.run(None, {self.input: item[None]})[0] for item in x]
        return torch.from_numpy(np.concatenate(y)).to(self.device)


def _cached_graph(network):
    """decoder-<hash of the weights>.onnx in $XDG_CACHE_HOME/walloc-edge, exported (and
    validated) the first time."""
    digest = hashlib.sha256(torch.__version__.encode())
    for name, value in network.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().float().numpy().tobytes())
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "walloc-edge")
    path = home / f"decoder-{digest.hexdigest()[:16]}.onnx"
    if not path.is_file():
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            try:
                export_network(network, Path(tmp, "decoder.onnx"))
            except Exception as e:  # the exporter fails in many ways, none of them the user's
                raise EngineError("engine", f"onnxruntime: the decoder network does not export "
                                  f"to ONNX here ({type(e).__name__}: {e}); use the torch "
                                  "engine") from None
            _check_graph(network, Path(tmp, "decoder.onnx"))
            os.replace(Path(tmp, "decoder.onnx"), path)
    return path


def _check_graph(network, path):
    """The graph's coefficients agree with torch's (≥ 45 dB SNR on a small random input; fp32
    onnxruntime reaches ~110), else it is not kept."""
    from ..runtime.backends import onnx_session

    x = torch.randn(1, in_channels(network), *((12, 20) if is_2d(network) else (70,)),
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network(x).numpy()
    session = onnx_session(path)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    snr = 10 * math.log10(float(expected.var()) / max(float(((got - expected) ** 2).mean()),
                                                       1e-30))
    if snr < 45:
        raise EngineError("engine", f"onnxruntime: the exported decoder graph agrees with "
                          f"torch to only {snr:.1f} dB; use the torch engine")


def make_engine(network, device, engine="torch", precision=None, providers=None,
                compile=False):
    """The engine ``engine`` at ``precision`` (default: fp32, or auto for engine auto) for
    ``network`` on ``device``; low precisions for image decoders only (audio's PSNR moves by
    more than 0.05 dB in bf16: 0.07 on synthetic music with stereo-5x). "auto" picks the
    fastest here of those that hold the quality bar: on a GPU, torch in bf16 (else fp16); on the CPU, measured once on a small probe
    among torch in each low precision the CPU computes, onnxruntime fp32 (where installed)
    and torch fp32."""
    if engine not in ENGINES:
        raise EngineError("engine", f"{engine!r} is unknown; choose from {', '.join(ENGINES)}")
    precision = precision or ("auto" if engine == "auto" else "fp32")
    if precision not in PRECISIONS:
        raise EngineError("precision", f"{precision!r} is unknown; choose from "
                          f"{', '.join(PRECISIONS)}")
    if engine == "torch" and providers:
        raise EngineError("provider", f"{providers}: the torch engine takes no onnxruntime "
                          "providers; use engine onnxruntime or auto")
    here = precisions_here(device) if is_2d(network) else ["fp32"]
    if engine == "onnxruntime" or (engine == "auto" and providers):
        if precision not in ("auto", "fp32"):
            raise EngineError("precision", f"{precision}: the onnxruntime engine runs fp32 "
                              "only; available: auto, fp32")
        if "onnxruntime" not in engines_here():
            raise EngineError("engine", f"onnxruntime: not installed here (it needs "
                              f"onnxruntime, onnx and onnxscript); available: "
                              f"{', '.join(['auto', *engines_here()])}")
        return OnnxEngine(network, device, providers)
    if precision not in ("auto", "fp32") and not is_2d(network):
        raise EngineError("precision", f"{precision}: audio decoders run fp32 only (in "
                          f"{precision} the PSNR against the original moves by more than "
                          "0.05 dB); available: auto, fp32")
    if precision not in ("auto", "fp32") and precision not in here:
        kind = "GPU" if device.startswith("cuda") else "CPU"
        raise EngineError("precision", f"{precision} does not run on this {kind} (it has no "
                          f"{precision} instructions); available here: "
                          f"{', '.join(['auto', *here])}")
    low = [p for p in ("bf16", "fp16") if p in here]
    if engine == "torch" or device != "cpu":
        if precision == "auto":
            precision = low[0] if low else "fp32"
        return TorchEngine(network, device, precision, compile)
    options = [TorchEngine(network, device, p, compile)
               for p in ([*low, "fp32"] if precision == "auto" else [precision])]
    if precision in ("auto", "fp32") and not compile and "onnxruntime" in engines_here():
        try:
            options.append(OnnxEngine(network, device))
        except EngineError as e:  # auto goes on with the torch engine
            warnings.warn(f"auto leaves out {e}", stacklevel=2)
    return fastest(options, network)


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
