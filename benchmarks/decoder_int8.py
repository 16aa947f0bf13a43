"""int8 decoder network (onnxruntime quantisation) against the quality bar, on real photos.

    python benchmarks/decoder_int8.py [MODEL] --photos DIR [--held-out 045,046,047,048,049]
                                      [--calibration 001,...,008] [--crop 512] [--out DIR]

The fp32 decoder graph (the onnxruntime engine's) is quantised four ways: dynamic (weights
int8, activations quantised per call) and static QDQ (per-channel int8 weights, activation
ranges calibrated on the latents of other photos), each over MatMul only (the attention and
its projections) and over Conv and MatMul.
Each decodes the centre crops of the held-out photos; agreement: PSNR against the fp32 torch
decode of the same run; ΔPSNR: PSNR against the original minus fp32 torch's. The bar for
offering int8: agreement ≥ 45 dB on every photo and |ΔPSNR| ≤ 0.05 dB.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quant_pre_process, quantize_dynamic, quantize_static)
from PIL import Image

from walloc_edge.bench import machine
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.decoder.graphs import cached_graph
from walloc_edge.decoder.network import split_decoder
from walloc_edge.decoder.session import open_session
from walloc_edge.evaluation.evaluate import runtime_encoder
from walloc_edge.runtime import read_bitstream
from report import publish

MIN_AGREEMENT_DB, MAX_PSNR_CHANGE_DB = 45.0, 0.05


def centre(path, size):
    image = np.asarray(Image.open(path).convert("RGB"))
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


class Latents(CalibrationDataReader):
    """The de-companded latents of the calibration photos, one at a time."""

    def __init__(self, name, normals):
        self.items = iter({name: n} for n in normals)

    def get_next(self):
        return next(self.items, None)


def quantised(fp32, normals, folder):
    """{label: path of the int8 graph}, from the fp32 graph after onnxruntime's
    pre-processing (shape inference, graph optimisation) where it takes it."""
    pre = folder / "pre.onnx"
    try:
        quant_pre_process(str(fp32), str(pre))
    except Exception as e:  # noqa: BLE001 (the quantiser's own step; quantise without it)
        print(f"pre-processing failed ({type(e).__name__}: {e}); quantising the graph as is")
        pre = fp32
    name = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"]) \
        .get_inputs()[0].name
    out = {}
    for label, ops in [("int8 dynamic (MatMul)", ["MatMul"]),
                       ("int8 dynamic (Conv, MatMul)", ["Conv", "MatMul"])]:
        path = folder / f"dynamic-{len(ops)}.onnx"
        quantize_dynamic(str(pre), str(path), op_types_to_quantize=ops,
                         weight_type=QuantType.QInt8)
        out[label] = path
    for label, ops in [("int8 static (QDQ, MatMul)", ["MatMul"]),
                       ("int8 static (QDQ, Conv, MatMul)", ["Conv", "MatMul"])]:
        path = folder / f"static-{len(ops)}.onnx"
        quantize_static(str(pre), str(path), Latents(name, normals), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8)
        out[label] = path
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", nargs="?", default="rgb-16x")
    p.add_argument("--photos", required=True, help="a folder of PNG photos")
    p.add_argument("--held-out", default="045,046,047,048,049")
    p.add_argument("--calibration", default="001,002,003,004,005,006,007,008")
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--out")
    args = p.parse_args()
    import torch

    torch.set_grad_enabled(False)
    info = machine()
    fp32 = Decoder(args.model, "cpu")
    decompand, network = split_decoder(fp32.codec.decoder)
    onnx = Decoder(fp32.codec, "cpu", engine="onnxruntime")
    encoder = runtime_encoder(fp32.codec)
    folder = Path(args.photos)
    held = [(n, centre(folder / f"{n}.png", args.crop)) for n in args.held_out.split(",")]
    calibration = [centre(folder / f"{n}.png", args.crop) for n in args.calibration.split(",")]
    normals = [decompand(torch.from_numpy(read_bitstream(encoder.encode(c)).latents()[None])
                         .float()).numpy() for c in calibration]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = quantised(cached_graph(network), normals, Path(tmp))
        engines = {"onnxruntime fp32": onnx.engine.session}
        failed = {}
        for label, path in graphs.items():
            try:
                engines[label] = open_session(path, ["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 (a graph the quantiser broke)
                failed[label] = f"{type(e).__name__}: {str(e)[:160]}"
                print(f"{label}: does not load: {failed[label]}", flush=True)
        for name, photo in held:
            blob = encoder.encode(photo)
            reference = fp32.decode(blob)
            base = psnr(reference, photo)
            for label, session in engines.items():
                onnx.engine.session = session
                start = time.perf_counter()
                out = onnx.decode(blob)
                seconds = time.perf_counter() - start
                rows.append({"photo": name, "engine": label, "seconds": seconds,
                             "agreement_db": psnr(out, reference),
                             "delta_psnr_db": psnr(out, photo) - base})
                print(rows[-1], flush=True)
    lines = [f"int8 decoder network, model `{args.model}`, {len(held)} held-out photos "
             f"({args.held_out}, centre {args.crop}²), {info['cpu']}; "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| engine | agreement dB (min / median) | ΔPSNR dB (worst) | s per decode | bar |",
             "|---|---|---|---|---|"]
    for label in engines:
        mine = [r for r in rows if r["engine"] == label]
        agree = [r["agreement_db"] for r in mine]
        worst = max((r["delta_psnr_db"] for r in mine), key=abs)
        holds = min(agree) >= MIN_AGREEMENT_DB and abs(worst) <= MAX_PSNR_CHANGE_DB
        lines.append(f"| {label} | {min(agree):.1f} / {np.median(agree):.1f} | {worst:+.3f} | "
                     f"{np.median([r['seconds'] for r in mine]):.2f} | "
                     f"{'holds' if holds else 'FAILS'} |")
    lines += [f"| {label} | – | – | – | does not load: {why} |" for label, why in failed.items()]
    publish(lines, rows, args.out, "decoder_int8")


if __name__ == "__main__":
    main()
