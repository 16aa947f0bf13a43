"""The onnxruntime engine's graphs of a decoder network, kept in the user's cache (keyed by
the weights and the torch and walloc-edge versions): the network exported to ONNX (fp32) and that graph
quantised to int8. Each is checked against torch before it is kept.

int8: dynamic quantisation (weights int8, activations quantised per call) of the MatMuls
alone, the attention block and its projections: it holds the quality bar (61.6 dB agreement
with the fp32 torch decode, PSNR against the original moved by 0.005 dB, held-out photos at
512²); quantising the convolutions too (42.4 dB, 0.34 dB) or static quantisation with
calibrated activations (31–34 dB) does not (benchmarks/decoder_int8.py).
"""
import hashlib
import math
import os
import tempfile
from pathlib import Path

import torch

from .. import __version__
from ..runtime._quiet import quiet_output
from .errors import EngineError
from .network import export_network, in_channels, is_2d

__all__ = ["cached_graph", "MIN_SNR_DB"]

MIN_SNR_DB = {"fp32": 45.0, "int8": 35.0}  # coefficients against torch's (see check_graph)


def cached_graph(network, precision: str = "fp32") -> Path:
    """decoder-<hash of the weights>[-int8].onnx in $XDG_CACHE_HOME/walloc-edge, made (and
    checked) the first time."""
    # a graph of any batch, made by this torch and this walloc-edge
    digest = hashlib.sha256(f"{torch.__version__} {__version__} batch".encode())
    for name, value in network.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().float().numpy().tobytes())
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "walloc-edge")
    suffix = "" if precision == "fp32" else f"-{precision}"
    path = home / f"decoder-{digest.hexdigest()[:16]}{suffix}.onnx"
    if path.is_file():
        return path
    source = None if precision == "fp32" else cached_graph(network)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        made = Path(tmp, "decoder.onnx")
        try:
            if source is None:
                export_network(network, made)
            else:
                _quantise(source, made, Path(tmp))
        except Exception as e:  # the exporter fails in many ways, none of them the user's
            raise EngineError("engine", f"onnxruntime: the decoder network does not "
                              f"{'export to ONNX' if source is None else 'quantise to int8'} "
                              f"here ({type(e).__name__}: {e}); use the torch engine") from None
        check_graph(network, made, precision)
        os.replace(made, path)
    return path


def _quantise(source, out, tmp):
    """int8 weights and per-call activations for the MatMuls of the graph ``source``."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    with quiet_output():
        quant_pre_process(str(source), str(tmp / "pre.onnx"))
        quantize_dynamic(str(tmp / "pre.onnx"), str(out), op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QInt8)


def check_graph(network, path, precision="fp32"):
    """The graph's coefficients agree with torch's on a small random input, else it is not
    kept: SNR ≥ 45 dB in fp32 (onnxruntime reaches ~115), ≥ 35 dB in int8 (it reaches ~43,
    where decodes agree at ~61 dB PSNR: the synthesis averages the error down)."""
    from ..runtime.backends import onnx_session

    x = torch.randn(1, in_channels(network), *((12, 20) if is_2d(network) else (70,)),
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network(x).numpy()
    session = onnx_session(path)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    snr = 10 * math.log10(float(expected.var()) / max(float(((got - expected) ** 2).mean()),
                                                       1e-30))
    if snr < MIN_SNR_DB[precision]:
        kind = "exported" if precision == "fp32" else precision
        raise EngineError("engine", f"onnxruntime: the {kind} decoder graph agrees with torch "
                          f"to only {snr:.1f} dB; use the torch engine")
