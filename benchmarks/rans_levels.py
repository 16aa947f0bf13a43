"""The rans levels on real photos and real music: size and speed of each, and what each step
of speed costs in size.

    python benchmarks/rans_levels.py IMAGE_BUNDLE AUDIO_BUNDLE [--photos DIR] [--music DIR]
        [--count 12] [--seconds 20] [--rounds 5] [--threads 1,2] [--out benchmarks/results]

Inputs: every photo of --photos (PNG; --count of them, evenly spread), and the first
--seconds of --count excerpts of --music (Ogg), each encoded to latents once by the
bundle's native backend. Per level, the total .wlc size over the inputs, and speeds timed
alternately, level after level in a rotating order round by round (a shared machine's
drifting load falls on every level alike), medians over --rounds (and the fastest round,
what a quiet machine approaches): the coder alone (latents → payload) and end to end (uint8
frame or int16 audio → .wlc bytes, the backend's transform included), both on each
--threads count.
"""
import argparse
import platform
import time
from pathlib import Path

import numpy as np

from walloc_edge.bench import machine
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.coders import CODERS
from walloc_edge.runtime.io import read_input
from report import publish

LEVELS = CODERS["rans"].levels


def inputs(bundle, folder, suffix, count, seconds):
    files = sorted(Path(folder).rglob(f"*{suffix}"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    out = []
    for path in files:
        sample, rate = read_input(path, bundle.modality, bundle.channels)
        out.append((sample[:seconds * rate] if rate else sample, rate))
    return files, out


def measure(encoder, samples, rounds):
    """{level: {"bytes", "coder_s", "end_to_end_s"}}: sizes, and the median seconds over
    rounds of coding every sample (the coder alone, then end to end)."""
    coder = CODERS["rans"]
    bits = encoder.bundle.config["latent_bits"]
    latents = [encoder.latents(s) for s, _ in samples]
    result = {level: {"bytes": sum(len(encoder.encode(s, level=level, sample_rate=r))
                                   for s, r in samples), "coder": [], "end_to_end": []}
              for level in LEVELS}
    for r in range(rounds):
        for level in LEVELS[r % len(LEVELS):] + LEVELS[:r % len(LEVELS)]:
            chosen = coder.at_level(level)
            start = time.perf_counter()
            for z in latents:
                chosen.encode(z, bits, encoder.threads)
            middle = time.perf_counter()
            for s, rate in samples:
                encoder.encode(s, level=level, sample_rate=rate)
            result[level]["coder"].append(middle - start)
            result[level]["end_to_end"].append(time.perf_counter() - middle)
    for level in LEVELS:
        for key in ("coder", "end_to_end"):
            seconds = result[level].pop(key)
            result[level][f"{key}_s"] = float(np.median(seconds))
            result[level][f"{key}_fastest_s"] = float(np.min(seconds))
    return result


def table(kind, unit, amount, latent_count, by_threads):
    lines = [f"### {kind}", "",
             "| level | bytes | size ÷ best | threads | coder M latents/s (fastest round) | "
             f"coder ×best | end to end {unit}/s (fastest round) | end to end ×best |",
             "|---|---|---|---|---|---|---|---|"]
    for threads, result in by_threads.items():
        best = result["best"]
        for level in LEVELS:
            r = result[level]
            lines.append(
                f"| {level} | {r['bytes']:,} | {r['bytes'] / best['bytes']:.3f} | {threads} | "
                f"{latent_count / 1e6 / r['coder_s']:.1f} "
                f"({latent_count / 1e6 / r['coder_fastest_s']:.1f}) | "
                f"{best['coder_s'] / r['coder_s']:.2f} | {amount / r['end_to_end_s']:.1f} "
                f"({amount / r['end_to_end_fastest_s']:.1f}) | "
                f"{best['end_to_end_s'] / r['end_to_end_s']:.2f} |")
    return lines + [""]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_bundle")
    p.add_argument("audio_bundle")
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--music", default="../shared/data/music")
    p.add_argument("--count", type=int, default=12)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--out")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    m = machine()
    lines = [f"rans levels: size and speed ({m['cpu']}, {m['cores']} cores, ISA "
             f"{' '.join(m['isa'])}; {platform.python_implementation()} "
             f"{m['python']}); medians of {args.rounds} rounds, levels alternating", ""]
    data = {"machine": m, "args": vars(args)}
    for kind, bundle, folder, suffix, unit in (
            ("photos", args.image_bundle, args.photos, ".png", "MP"),
            ("music", args.audio_bundle, args.music, ".ogg", "MS")):
        first = Encoder(bundle, "native", threads=1)
        files, samples = inputs(first.bundle, folder, suffix, args.count, args.seconds)
        amount = sum(np.prod(s.shape[:first.modality.spatial_axes]) for s, _ in samples) / 1e6
        latent_count = sum(first.latents(s).size for s, _ in samples)
        by_threads = {t: measure(Encoder(bundle, "native", threads=t), samples, args.rounds)
                      for t in threads}
        data[kind] = {"files": [f.name for f in files], "amount": amount,
                      "latents": latent_count, "by_threads": by_threads}
        lines += [f"{kind}: {len(files)} files ({amount:.1f} {unit}, {latent_count:,} "
                  f"latents; {', '.join(f.name for f in files)})", ""]
        lines += table(kind, unit, amount, latent_count, by_threads)
    publish(lines, data, args.out, "rans_levels")


if __name__ == "__main__":
    main()
