"""The C export built with -DWALLOC_FIXED_POINT (no float at all): its two integer encoders
against torch on real photos and music, and the fixed-memory encoder's footprint compiled
for a core without an FPU.

    python benchmarks/c_fixed_point.py --photos PHOTO... --music FILE...
                                       [--widths 64 640] [--out benchmarks/results]

Parity: each whole photo and a 10 s excerpt of each music file through the host program
built with -DWALLOC_FIXED_POINT: `walloc_encode` (the fixed-memory encoder in integers) and
`walloc_encode --fixed-point` (the runtime's fixed-point core), against torch (Codec.encode)
on the input reflect-padded as the runtime pads it. Footprint: walloc_encoder.c compiled by
arm-linux-gnueabihf-gcc -Os -mcpu=cortex-m0 -mthumb -mfloat-abi=soft -DWALLOC_FIXED_POINT
(compiled only, not linked: an empty gnu/stubs-soft.h lets glibc's headers through), its
sections by `size` (text: code and the model's integer arrays, flash; bss: the ring buffer,
RAM; audio: RAM is the caller's workspace instead, 4 bytes a sample), and the float
emulation it calls (__aeabi_f*, __aeabi_d*: none).
"""
import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from walloc_edge.codec import load
from walloc_edge.export import export_bundle
from walloc_edge.export.c_export import c_runner
from walloc_edge.export.validate import compare, torch_latents
from walloc_edge.runtime import pad_reflect
from walloc_edge.runtime.encoder import as_sensor_sample
from walloc_edge.runtime.io import match_channels
from walloc_edge.runtime.modality import IMAGE
import real_data
from report import publish

MODELS = ("rgb-16x", "rgb-4x", "stereo-5x", "mono-4x")
M0 = ["arm-linux-gnueabihf-gcc", "-Os", "-std=c99", "-mcpu=cortex-m0", "-mthumb",
      "-mfloat-abi=soft", "-DWALLOC_FIXED_POINT"]


def footprint(source, width, tmp):
    """{text, data, bss, float_calls} of walloc_encoder.c for a Cortex-M0."""
    (tmp / "gnu").mkdir(exist_ok=True)
    (tmp / "gnu" / "stubs-soft.h").write_text("")
    obj = tmp / "encoder.o"
    limit = [f"-DWALLOC_MAX_WIDTH={width}"] if width else []
    subprocess.run([*M0, *limit, "-isystem", str(tmp), "-c", str(source), "-o", str(obj)],
                   check=True, capture_output=True)
    size = subprocess.run(["arm-linux-gnueabihf-size", str(obj)], check=True,
                          capture_output=True, text=True).stdout.split("\n")[1].split()
    undefined = subprocess.run(["arm-linux-gnueabihf-nm", "-u", str(obj)], check=True,
                               capture_output=True, text=True).stdout.split()
    floats = [u for u in undefined if u.startswith(("__aeabi_f", "__aeabi_d"))]
    return {"text": int(size[0]), "data": int(size[1]), "bss": int(size[2]),
            "float_calls": floats}


def measure(model, photos, music, widths, tmp):
    codec = load(model)
    image = codec.config.modality is IMAGE
    inputs = photos if image else [match_channels(x, codec.config.channels) for x in music]
    bundle = tmp / model
    export_bundle(codec, bundle, ("c",), log=lambda s: None)
    subprocess.run(["make", "-s", "-B", "-C", str(bundle / "c"),
                    "CFLAGS=-O3 -std=c99 -DWALLOC_FIXED_POINT"], check=True, capture_output=True)
    program, block = bundle / "c" / "walloc_encode", 2 ** codec.J
    runs = {"fixed-memory": c_runner(program, block, not image),
            "fixed-point core": c_runner(program, block, not image, fixed_point=True)}
    totals = {name: [0, 0, 0] for name in runs}
    for x in inputs:
        sample, _ = as_sensor_sample(x, codec.config.modality, codec.config.channels)
        padded, _ = pad_reflect(sample, block, axes=(0, 1) if image else (0,))
        reference = torch_latents(codec, padded[None])
        for name, run in runs.items():
            c, t = compare(run(sample[None]), reference), totals[name]
            t[0] += c["identical"] * reference.size
            t[1] += reference.size
            t[2] = max(t[2], c["max_diff"])
    parity = {name: {"identical": t[0] / t[1], "max_diff": t[2], "latents": t[1]}
              for name, t in totals.items()}
    source = bundle / "c" / "walloc_encoder.c"
    sizes = {w: footprint(source, w, tmp) for w in (widths if image else [None])}
    return {"parity": parity, "footprint": sizes}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    real_data.add_options(p)
    p.add_argument("--widths", type=int, nargs="+", default=[64, 640])
    p.add_argument("--out")
    args = p.parse_args()
    if shutil.which(M0[0]) is None:
        p.error(f"{M0[0]} is not installed (make cross installs it)")
    photos, music = real_data.photos(args.photos), real_data.music(args.music, 10)
    with tempfile.TemporaryDirectory() as tmp:
        results = {m: measure(m, photos, music, args.widths, Path(tmp)) for m in MODELS}
    lines = [f"# The C export with -DWALLOC_FIXED_POINT: no float at all ({len(photos)} photos, "
             f"{len(music)} music excerpts of 10 s)", "",
             "| model | latents | fixed-memory identical | max diff | fixed-point core "
             "identical | max diff |", "|---|---|---|---|---|---|"]
    for model, r in results.items():
        fm, fc = r["parity"]["fixed-memory"], r["parity"]["fixed-point core"]
        lines.append(f"| {model} | {fm['latents']:,} | {fm['identical']:.5%} | "
                     f"{fm['max_diff']} | {fc['identical']:.5%} | {fc['max_diff']} |")
    lines += ["", "Fixed-memory encoder (walloc_encoder.c) for a Cortex-M0, soft float, -Os:",
              "", "| model | max row width | text (flash) | data | bss (RAM) | float calls |",
              "|---|---|---|---|---|---|"]
    for model, r in results.items():
        for width, f in r["footprint"].items():
            lines.append(f"| {model} | {width or 'audio: RAM is the workspace'} | "
                         f"{f['text']:,} | {f['data']:,} | {f['bss']:,} | "
                         f"{', '.join(f['float_calls']) or 'none'} |")
    publish(lines, results, args.out, "c_fixed_point")


if __name__ == "__main__":
    main()
