"""The sensor path end to end (uint8 frame → .wlc bytes, rans) against size-matched JPEG,
measured interleaved: one of ours, one JPEG, round after round, so that a shared machine's
drifting load falls on both alike; the ratio of the medians, and per round.

    python benchmarks/jpeg_ratio.py BUNDLE [--size 2048] [--rounds 31] [--threads 2]
        [--backend native] [--out benchmarks/results]

The input is the bench's: the bundled astronaut photo resized (bicubic) to SIZE x SIZE.
JPEG is Pillow's (libjpeg-turbo) at the quality whose file is closest in size to ours
(``walloc_edge.bench.alternating_with_jpeg``, what the bench's ratio column runs).
"""
import argparse

import numpy as np
from PIL import Image

from walloc_edge.data import sample_photo
from walloc_edge.runtime import Encoder
from walloc_edge.bench import alternating_with_jpeg, machine
from report import publish


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backend", default="native")
    p.add_argument("--out")
    args = p.parse_args()
    photo = Image.fromarray(sample_photo("astronaut")).resize((args.size, args.size),
                                                             Image.BICUBIC)
    sample = np.asarray(photo.convert("RGB"))
    encoder = Encoder(args.bundle, args.backend, threads=args.threads)
    rounds = alternating_with_jpeg(encoder, sample, args.rounds)
    ours, theirs = rounds["ours"], rounds["jpeg"]
    mp = args.size * args.size / 1e6
    result = {"machine": machine(), "backend": encoder.describe(), "size": args.size,
              "rounds": args.rounds, "wlc_bytes": rounds["wlc_bytes"],
              "jpeg_quality": rounds["quality"], "jpeg_bytes": rounds["jpeg_bytes"],
              "ours_MPps": mp / np.median(ours), "jpeg_MPps": mp / np.median(theirs),
              "ratio": float(np.median(theirs) / np.median(ours)),
              "ratio_quartiles": [float(q) for q in np.percentile(theirs / ours, [25, 75])]}
    m = result["machine"]
    lines = [f"End to end against size-matched JPEG, interleaved ({m['cpu']}, {m['cores']} "
             f"cores); {args.size}x{args.size} RGB, {args.rounds} rounds", "",
             "| path | MP/s (median) | bytes |", "|---|---|---|",
             f"| uint8 → .wlc with rans, {result['backend']} | {result['ours_MPps']:.1f} | "
             f"{result['wlc_bytes']:,} |",
             f"| JPEG (Pillow, libjpeg-turbo) q{result['jpeg_quality']} | "
             f"{result['jpeg_MPps']:.1f} | {result['jpeg_bytes']:,} |", "",
             f"Ratio (ours / JPEG, medians): **{result['ratio']:.3f}**; per round, quartiles "
             f"{result['ratio_quartiles'][0]:.3f}–{result['ratio_quartiles'][1]:.3f}."]
    publish(lines, result, args.out, "jpeg_ratio")


if __name__ == "__main__":
    main()
