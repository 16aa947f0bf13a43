"""The C encoder: flash and RAM footprint per row-buffer width, speed, agreement with ONNX.

    python benchmarks/c_encoder.py MODEL [--widths 320,640,2048] [--out benchmarks/results]

Exports MODEL's C sources and ONNX graph, compiles walloc_encoder.c for each maximum width
and reads the object's sections with `size` (text + data: flash; bss: RAM; the encoder
allocates nothing else). Speed: the host program (-O2, one thread) on the bundled astronaut
photo tiled to 2048x2048, median of 5 runs, including reading the raw file.
"""
import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from walloc_edge.codec import load  # noqa: E402
from walloc_edge.data import sample_photo  # noqa: E402
from walloc_edge.export import export_bundle  # noqa: E402
from walloc_edge.runtime import Encoder  # noqa: E402
from report import publish  # noqa: E402


def footprint(folder, width):
    obj = Path(folder) / f"encoder_{width}.o"
    subprocess.run(["cc", "-O2", "-std=c99", "-c", f"-DWALLOC_MAX_WIDTH={width}", "-o", str(obj),
                    str(Path(folder) / "walloc_encoder.c")], check=True)
    text, data, bss = map(int, subprocess.run(["size", str(obj)], capture_output=True,
                                               text=True, check=True).stdout.split("\n")[1].split()[:3])
    return {"max_width": width, "flash_bytes": text + data, "ram_bytes": bss}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("--widths", default="320,640,2048")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as bundle:
        export_bundle(load(args.model), bundle, ("onnx", "c"), log=lambda s: None)
        folder = Path(bundle) / "c"
        sizes = [footprint(folder, int(w)) for w in args.widths.split(",")]
        photo = np.tile(sample_photo("astronaut"), (4, 4, 1))
        raw, out = Path(bundle) / "in.raw", Path(bundle) / "out.raw"
        raw.write_bytes(photo.tobytes())
        command = [str(folder / "walloc_encode"), "--latents", str(raw), "2048", "2048", "3",
                   str(out)]
        times = []
        for _ in range(6):
            start = time.perf_counter()
            subprocess.run(command, check=True)
            times.append(time.perf_counter() - start)
        onnx = Encoder(bundle, "onnxruntime").latents(photo)
        c = np.frombuffer(out.read_bytes(), np.int8).reshape(onnx.shape)
        diff = np.abs(c.astype(int) - onnx)
    result = {"machine": f"{platform.machine()}, {platform.processor() or 'CPU'}",
              "footprint": sizes, "MPps": 2048 * 2048 / 1e6 / float(np.median(times[1:])),
              "identical_to_onnx": float((diff == 0).mean()), "max_diff": int(diff.max())}
    lines = [f"C encoder, model `{args.model}` ({result['machine']}, cc -O2, one thread)", "",
             "| max width (px) | flash (text + data) | RAM (bss) |", "|---|---|---|"]
    lines += [f"| {s['max_width']} | {s['flash_bytes'] / 1024:.0f} KiB | "
              f"{s['ram_bytes'] / 1024:.0f} KiB |" for s in sizes]
    lines += ["", f"Speed on 2048x2048 RGB: {result['MPps']:.1f} MP/s; latents identical to "
              f"the ONNX graph: {result['identical_to_onnx']:.4%} (max |diff| {result['max_diff']})"]
    publish(lines, result, args.out, "c_encoder")


if __name__ == "__main__":
    main()
