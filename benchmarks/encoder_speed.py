"""Sensor encoder speed: exported graphs vs the torch encoder and the reference package.

    python benchmarks/encoder_speed.py MODEL [--size 2048] [--threads 2]
        [--reference-python /path/to/venv-with-walloc/bin/python] [--out benchmarks/results]

Input: the bundled astronaut photo resized to SIZE x SIZE (RGB models). Each row: one warm-up
run, then the median (and min-max) of --repeat timed runs, in megapixels per second. The
reference row runs walloc 1.2.1's ``wavelet_analysis`` + ``encoder`` in the given Python
(a separate environment: the reference needs pytorch_wavelets). The JPEG row (Pillow,
libjpeg-turbo, quality 90) is the speed a sensor gets from the codec it would use instead.
"""
import argparse
import io
import json
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from walloc_edge.bench import machine, timed
from report import publish

REFERENCE_SNIPPET = """
import sys, time, json, torch, numpy as np, walloc.walloc as W
torch.set_num_threads({threads})
cfg = json.load(open({config!r}))
m = W.Codec2D(**cfg).eval()
m.load_state_dict(torch.load({pth!r}, map_location="cpu", weights_only=True)["model_state_dict"])
x = torch.from_numpy(np.load({npy!r})).permute(0, 3, 1, 2).float() / 255 - 0.5
times = []
with torch.no_grad():
    for i in range({repeat} + 1):
        t = time.perf_counter(); m.encoder(m.wavelet_analysis(x, J=m.J)); times.append(time.perf_counter() - t)
print(json.dumps(times[1:]))
"""


def row(name, times, pixels, note=""):
    mps = pixels / 1e6 / np.array(times)
    return {"encoder": name, "mp_per_s": float(np.median(mps)), "min": float(mps.min()),
            "max": float(mps.max()), "ms": float(np.median(times) * 1e3), "note": note}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--reference-python", help="a Python with walloc 1.2.1 installed")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)

    import torch
    from PIL import Image

    from walloc_edge.codec import load
    from walloc_edge.data import sample_photo
    from walloc_edge.codec.sensor import sensor_encoder
    from walloc_edge.export import export_bundle
    from walloc_edge.export.onnx_graph import onnx_session
    from walloc_edge.export.litert_graph import litert_runner
    from walloc_edge.export.validate import compare, torch_latents

    torch.set_num_threads(args.threads)
    codec = load(args.model)
    n = args.size
    photo = np.asarray(Image.fromarray(sample_photo("astronaut")).resize((n, n), Image.LANCZOS))
    raw = np.ascontiguousarray(photo[None])
    pixels = n * n
    expected = torch_latents(codec, raw)
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        export_bundle(codec, tmp, ("onnx", "litert"), static_shape=(n, n), log=lambda *_: None)
        if args.reference_python:
            npy = Path(tmp) / "photo.npy"
            np.save(npy, raw)
            model = Path(args.model)
            code = REFERENCE_SNIPPET.format(threads=args.threads, config=str(model.with_suffix(".json")),
                                            pth=str(model), npy=str(npy), repeat=args.repeat)
            out = subprocess.run([args.reference_python, "-c", code], capture_output=True,
                                 text=True, check=True, env={"PYTHONPATH": str(
                                     Path(__file__).parents[1] / "tests/reference/stub")})
            rows.append(row("reference walloc 1.2.1 (torch, pytorch_wavelets)",
                            json.loads(out.stdout.strip().splitlines()[-1]), pixels))
        x = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255 - 0.5
        with torch.no_grad():
            rows.append(row("walloc-edge Codec2D.encode (torch)",
                            timed(lambda: codec.encode(x), args.repeat), pixels))
            module = sensor_encoder(codec)  # the ONNX arrangement
            xt = torch.from_numpy(raw)
            rows.append(row("walloc-edge sensor graph in torch eager",
                            timed(lambda: module(xt), args.repeat), pixels))
        for threads in sorted({1, args.threads}):
            session = onnx_session(Path(tmp) / "encoder.onnx", threads=threads)
            latents = session.run(None, {"image": raw})[0]
            rows.append(row(f"onnxruntime, {threads} thread{'s' * (threads > 1)}",
                            timed(lambda: session.run(None, {"image": raw}), args.repeat), pixels,
                            note=f"{compare(latents, expected)['identical']:.4%} identical"))
        run = litert_runner(Path(tmp) / "encoder.tflite", threads=args.threads)
        latents = run(raw)
        rows.append(row(f"LiteRT (XNNPACK), {args.threads} threads",
                        timed(lambda: run(raw), args.repeat), pixels,
                        note=f"{compare(latents, expected)['identical']:.4%} identical"))
    image = Image.fromarray(photo)
    rows.append(row("baseline: JPEG q90 encode (Pillow, libjpeg-turbo)",
                    timed(lambda: image.save(io.BytesIO(), "JPEG", quality=90), args.repeat),
                    pixels))

    m = machine()
    machine_line = f"{platform.processor() or platform.machine()}, {m['cpu']}, " \
                   f"{m['cores']} cores, threads={args.threads}"
    ref = next((r for r in rows if r["encoder"].startswith("reference")), None)
    lines = [f"Encoder speed, {n}x{n} RGB photo, model {Path(args.model).name}; {machine_line}",
             "", "| encoder | MP/s (median) | min-max | ms | vs reference | note |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        speedup = f"{r['mp_per_s'] / ref['mp_per_s']:.1f}x" if ref else ""
        lines.append(f"| {r['encoder']} | {r['mp_per_s']:.1f} | {r['min']:.1f}-{r['max']:.1f} "
                     f"| {r['ms']:.0f} | {speedup} | {r['note']} |")
    publish(lines, {"machine": machine_line, "rows": rows}, args.out, "encoder_speed", argv)


if __name__ == "__main__":
    main()
