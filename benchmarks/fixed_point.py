"""The fixed-point core (the ``fixed-point`` backend) against torch and against the float core
(``native``) on real photos and real music: the share of identical latents and the largest
difference, then speed, both cores on the same thread counts, timed alternately.

    python benchmarks/fixed_point.py --photos PHOTO... --music FILE... [--threads 1 2]
                                     [--repeat 7] [--out benchmarks/results]

Parity: each whole photo and a 10 s excerpt of each music file, reflect-padded as the
runtime pads, through torch (Codec.encode) and through both backends (Encoder.latents).
Speed: the first photo (megapixels) and the first excerpt (megasamples) per second of
Encoder.latents, the median of --repeat runs of each core in turn.
"""
import argparse
import tempfile

import numpy as np

from walloc_edge.bench import machine, timed
from walloc_edge.codec import load
from walloc_edge.export import export_bundle
from walloc_edge.export.validate import compare, torch_latents
from walloc_edge.runtime import Encoder, pad_reflect
from walloc_edge.runtime.encoder import as_sensor_sample
from walloc_edge.runtime.io import match_channels
from walloc_edge.runtime.modality import IMAGE
import real_data
from report import publish

MODELS = ("rgb-16x", "rgb-4x", "stereo-5x", "mono-4x")
CORES = ("fixed-point", "native")


def measure(model, photos, music, threads, repeat):
    codec = load(model)
    image = codec.config.modality is IMAGE
    inputs = photos if image else [match_channels(x, codec.config.channels) for x in music]
    with tempfile.TemporaryDirectory() as bundle:
        export_bundle(codec, bundle, (), log=lambda s: None)
        parity = {core: [0, 0, 0] for core in CORES}  # identical, count, max diff
        encoders = {core: Encoder(bundle, core, threads=max(threads)) for core in CORES}
        for x in inputs:
            sample, _ = as_sensor_sample(x, codec.config.modality, codec.config.channels)
            padded, _ = pad_reflect(sample, 2 ** codec.J, axes=(0, 1) if image else (0,))
            reference = torch_latents(codec, padded[None])[0]
            for core, encoder in encoders.items():
                c, t = compare(encoder.latents(x), reference), parity[core]
                t[0] += c["identical"] * reference.size
                t[1] += reference.size
                t[2] = max(t[2], c["max_diff"])
        scale = fixed_scales(encoders["fixed-point"].backend.model)
        amount = (inputs[0].shape[0] * (inputs[0].shape[1] if image else 1)) / 1e6
        speed = {}
        for n in threads:
            run = {core: Encoder(bundle, core, threads=n) for core in CORES}
            times = {core: [] for core in CORES}
            for _ in range(repeat):  # alternately, so that a busy moment costs both
                for core, encoder in run.items():
                    times[core].append(timed(lambda: encoder.latents(inputs[0]), 1)[0])
            speed[n] = {core: float(amount / np.median(t)) for core, t in times.items()}
    return {"parity": {core: {"identical": t[0] / t[1], "max_diff": t[2], "latents": t[1]}
                       for core, t in parity.items()},
            "speed": speed, "unit": "MP/s" if image else "MS/s", "scaling": scale}


def fixed_scales(model):
    """What the fold chose: the input's and the accumulator's fractional bits, the
    subbands' shifts and the second sum's."""
    shifts = model["shifts"][:, 0]
    return {"F": model["F"], "G": model["G"], "subband_shift": [int(shifts.min()),
                                                                int(shifts.max())],
            "lo_shift": int(model["scaling"][6])}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    real_data.add_options(p)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--out")
    args = p.parse_args()
    photos, music = real_data.photos(args.photos), real_data.music(args.music, 10)
    results = {m: measure(m, photos, music, args.threads, args.repeat) for m in MODELS}
    m = machine()
    where = f"{m['cpu']}, {m['cores']} cores, {' '.join(m['isa'])}"
    lines = [f"# The fixed-point core against torch and the float core ({len(photos)} photos, "
             f"{len(music)} music excerpts of 10 s)", "", f"Machine: {where}. Both cores "
             "built as pip builds them (gcc -O3 -std=c99, AVX-512/AVX2/baseline clones of "
             "the hot loops, chosen at load; the fixed-point 1x1 by pmaddwd where the CPU has "
             "AVX-512BW or AVX2). Speed: Encoder.latents of the first photo / excerpt, median "
             f"of {args.repeat} runs, the two cores alternating.", "",
             "| model | latents | fixed-point identical | max diff | native identical | "
             "max diff | F | G | " + " | ".join(
                 f"fixed-point / native, {n} thread{'s' * (n > 1)}" for n in args.threads) + " |",
             "|---" * (8 + len(args.threads)) + "|"]
    for model, r in results.items():
        fx, nt, s = r["parity"]["fixed-point"], r["parity"]["native"], r["scaling"]
        speeds = [f"{sp['fixed-point']:.1f} / {sp['native']:.1f} {r['unit']} "
                  f"({sp['fixed-point'] / sp['native']:.2f}x)" for sp in r["speed"].values()]
        lines.append(f"| {model} | {fx['latents']:,} | {fx['identical']:.5%} | "
                     f"{fx['max_diff']} | {nt['identical']:.5%} | {nt['max_diff']} | "
                     f"{s['F']} | {s['G']} | " + " | ".join(speeds) + " |")
    publish(lines, {"machine": m, "results": results}, args.out, "fixed_point")


if __name__ == "__main__":
    main()
