"""The sensor path end to end (uint8 frame → .wlc bytes, rans) against size-matched JPEG and
WebP at equal cores, measured interleaved: one of ours, then the baselines, round after
round, so that a shared machine's drifting load falls on all alike; the ratios of the
medians, and per round.

    python benchmarks/jpeg_ratio.py BUNDLE [--size 2048] [--rounds 31] [--threads 1,2]
        [--backend native] [--levels best,fast,fastest] [--photo PATH] [--out DIR]

Equal cores: our encoder on N threads (each of --threads) codes one frame while N JPEG
(WebP) encodes of the same frame run at once, one a thread, as a device with N cores would
run them; a ratio is our frames a second over theirs (of the medians; and of the fastest
rounds, what a quiet machine approaches). Each rans level of --levels is
measured so, one after another. The input is the bench's (the bundled
astronaut photo resized, bicubic, to SIZE x SIZE) or --photo (a file, used as it is). JPEG
and WebP are Pillow's (libjpeg-turbo, libwebp) at the quality whose file is closest in size
to ours (``walloc_edge.bench.alternating_at_equal_cores``, what the bench's ratio columns
run).
"""
import argparse

import numpy as np
from PIL import Image

from walloc_edge.data import sample_photo
from walloc_edge.runtime import Encoder
from walloc_edge.bench import alternating_at_equal_cores, equal_cores, machine
from report import publish


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--photo")
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--backend", default="native")
    p.add_argument("--levels", default="best")
    p.add_argument("--out")
    p.add_argument("--stem", default="jpeg_ratio")
    args = p.parse_args()
    if args.photo:
        sample = np.asarray(Image.open(args.photo).convert("RGB"))
    else:
        photo = Image.fromarray(sample_photo("astronaut")).resize((args.size, args.size),
                                                                 Image.BICUBIC)
        sample = np.asarray(photo.convert("RGB"))
    encoders = {int(n): Encoder(args.bundle, args.backend, threads=int(n))
                for n in args.threads.split(",")}
    mp = sample.shape[0] * sample.shape[1] / 1e6
    m = machine()
    result = {"machine": m, "backend": {n: e.describe() for n, e in encoders.items()},
              "shape": list(sample.shape), "photo": args.photo, "rounds": args.rounds,
              "levels": {}}
    lines = [f"End to end against size-matched JPEG and WebP at equal cores, interleaved "
             f"({m['cpu']}, {m['cores']} cores, ISA {' '.join(m['isa'])}); "
             f"{sample.shape[1]}x{sample.shape[0]} RGB ({args.photo or 'astronaut, resized'}),"
             f" {args.rounds} rounds; backend {encoders[max(encoders)].describe()}", "",
             "| rans level | cores | ours: uint8 → .wlc (MP/s) | JPEG (MP/s, N at once) | "
             "WebP (MP/s, N at once) | ours ÷ JPEG | quartiles per round | fastest rounds' "
             "ratio | ours ÷ WebP | .wlc bytes | JPEG | WebP |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for level in args.levels.split(","):
        result["levels"][level] = measure(encoders, sample, args.rounds, level, mp, lines)
    publish(lines, result, args.out, args.stem)


def measure(encoders, sample, rounds, level, mp, lines):
    """One level's rounds against the baselines: its entry of the result, and its table
    rows appended to ``lines``."""
    rounds = alternating_at_equal_cores(encoders, sample, rounds, level)
    result = {**{k: v for k, v in rounds.items() if k != "cores"}, "cores": {}}
    sizes = (f"{result['wlc_bytes']:,} | q{result['quality']}: {result['jpeg_bytes']:,} | "
             f"q{result['webp_quality']}: {result['webp_bytes']:,}")
    for n, times in rounds["cores"].items():
        per_round = times["jpeg"] / (n * times["ours"])
        entry = {"ours_MPps": mp / np.median(times["ours"]),
                 "jpeg_MPps": n * mp / np.median(times["jpeg"]),
                 "webp_MPps": n * mp / np.median(times["webp"]),
                 "ratio": equal_cores(times, n, "jpeg"),
                 "ratio_quartiles": [float(q) for q in np.percentile(per_round, [25, 75])],
                 "fastest_ratio": float(times["jpeg"].min() / (n * times["ours"].min())),
                 "webp_ratio": equal_cores(times, n, "webp"),
                 "seconds": {k: v.tolist() for k, v in times.items()}}
        result["cores"][n] = entry
        lines.append(f"| {level} | {n} | {entry['ours_MPps']:.1f} | {entry['jpeg_MPps']:.1f} | "
                     f"{entry['webp_MPps']:.1f} | **{entry['ratio']:.3f}** | "
                     f"{entry['ratio_quartiles'][0]:.3f}–{entry['ratio_quartiles'][1]:.3f} | "
                     f"{entry['fastest_ratio']:.3f} | {entry['webp_ratio']:.3f} | {sizes} |")
    return result


if __name__ == "__main__":
    main()
