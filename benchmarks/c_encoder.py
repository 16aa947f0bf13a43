"""The C export's two encoders: the fixed-memory encoder's flash and RAM footprint, the
speed of both, their agreement with ONNX.

    python benchmarks/c_encoder.py MODEL [--widths 320,640,2048] [--out benchmarks/results]

Exports MODEL's C sources and ONNX graph, compiles walloc_encoder.c (the fixed-memory
encoder) and reads the object's sections with `size` (text + data: flash; bss: static RAM).
Images: one object per maximum row width (the ring buffer is static; the encoder allocates
nothing else); speed on the bundled astronaut photo tiled to 2048x2048. Audio: RAM is the
caller's workspace, (padded frames) x (channels + 1) floats, given per second of 48 kHz
audio; speed on 30 s of generated stereo music at 44.1 kHz. Speed is the host program as
the export's Makefile builds it (-O3, one thread), median of 5 runs after a warm-up,
including reading the raw file: `walloc_encode` (the core, native_encoder.c) and
`walloc_encode --fixed`.
"""
import argparse
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np


from walloc_edge.codec import load
from walloc_edge.data import sample_photo, synthetic_music
from walloc_edge.export import export_bundle
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.modality import AUDIO
from walloc_edge.bench import timed
from report import publish

ENCODERS = [("core", [], "the core (`walloc_encode`)"),
            ("fixed", ["--fixed"], "the fixed-memory encoder (`walloc_encode --fixed`)")]


def footprint(folder, width=None):
    obj = Path(folder) / f"encoder_{width}.o"
    limit = [f"-DWALLOC_MAX_WIDTH={width}"] if width else []
    subprocess.run(["cc", "-O2", "-std=c99", "-c", *limit, "-o", str(obj),
                    str(Path(folder) / "walloc_encoder.c")], check=True)
    text, data, bss = map(int, subprocess.run(["size", str(obj)], capture_output=True,
                                               text=True, check=True).stdout.split("\n")[1].split()[:3])
    return {"max_width": width, "flash_bytes": text + data, "ram_bytes": bss}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("--widths", default="320,640,2048", help="image models: maximum row "
                   "widths (pixels) to size the row buffer for")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    codec = load(args.model)
    audio = codec.config.modality is AUDIO
    with tempfile.TemporaryDirectory() as bundle:
        export_bundle(codec, bundle, ("onnx", "c"), log=lambda s: None)
        folder = Path(bundle) / "c"
        raw, out = Path(bundle) / "in.raw", Path(bundle) / "out.raw"
        if audio:
            sizes = [footprint(folder)]
            sample = synthetic_music(30 * 44100, codec.config.channels)
            shape, unit = [str(len(sample)), str(codec.config.channels), "44100"], len(sample)
        else:
            sizes = [footprint(folder, int(w)) for w in args.widths.split(",")]
            sample = np.tile(sample_photo("astronaut"), (4, 4, 1))
            shape, unit = ["2048", "2048", "3"], 2048 * 2048
        raw.write_bytes(np.ascontiguousarray(sample).tobytes())
        onnx = Encoder(bundle, "onnxruntime").latents(sample)
        speed, agreement = {}, {}
        for name, options, _ in ENCODERS:
            command = [str(folder / "walloc_encode"), *options, "--latents", str(raw), *shape,
                       str(out)]
            speed[name] = unit / 1e6 / float(np.median(timed(
                lambda: subprocess.run(command, check=True), 5)))
            c = np.frombuffer(out.read_bytes(), np.int8).reshape(onnx.shape)
            diff = np.abs(c.astype(int) - onnx)
            agreement[name] = {"identical_to_onnx": float((diff == 0).mean()),
                               "max_diff": int(diff.max())}
    B = 2 ** codec.J
    result = {"machine": f"{platform.machine()}, {platform.processor() or 'CPU'}",
              "footprint": sizes, "agreement": agreement}
    lines = [f"The C export's encoders, model `{args.model}` ({result['machine']}, one thread)",
             "", "The fixed-memory encoder (walloc_encoder.c, `cc -O2`):", ""]

    def agrees(name):
        a = agreement[name]
        return (f"; latents identical to the ONNX graph: {a['identical_to_onnx']:.4%} "
                f"(max |diff| {a['max_diff']})")

    if audio:
        workspace = (-(-48000 // B) * B) * (codec.config.channels + 1) * 4
        result.update(MSps=speed, workspace_bytes_per_second_48k=workspace)
        lines += ["| flash (text + data) | static RAM (bss) | workspace per second at 48 kHz |",
                  "|---|---|---|",
                  f"| {sizes[0]['flash_bytes'] / 1024:.0f} KiB | {sizes[0]['ram_bytes']} B | "
                  f"{workspace / 1024:.0f} KiB |", ""]
        lines += [f"Speed on 30 s of 44.1 kHz audio, {label}: {speed[name]:.1f} M frames/s "
                  f"({speed[name] * 1e6 / 44100:.0f}x real time){agrees(name)}"
                  for name, _, label in ENCODERS]
    else:
        result["MPps"] = speed
        lines += ["| max width (px) | flash (text + data) | RAM (bss) |", "|---|---|---|"]
        lines += [f"| {s['max_width']} | {s['flash_bytes'] / 1024:.0f} KiB | "
                  f"{s['ram_bytes'] / 1024:.0f} KiB |" for s in sizes]
        lines += [""] + [f"Speed on 2048x2048 RGB, {label}: {speed[name]:.1f} MP/s{agrees(name)}"
                         for name, _, label in ENCODERS]
    publish(lines, result, args.out, "c_encoder_audio" if audio else "c_encoder")


if __name__ == "__main__":
    main()
