"""The sensor path end to end (uint8 frame → .wlc bytes, rans) against size-matched JPEG,
measured interleaved: one of ours, one JPEG, round after round, so that a shared machine's
drifting load falls on both alike; the ratio of the medians, and per round.

    python benchmarks/jpeg_ratio.py BUNDLE [--size 2048] [--rounds 31] [--threads 2]
        [--backend native] [--out benchmarks/results]

The input is the bench's: the bundled astronaut photo resized (bicubic) to SIZE x SIZE.
JPEG is Pillow's (libjpeg-turbo) at the quality whose file is closest in size to ours.
"""
import argparse
import io
import time

import numpy as np
from PIL import Image

from walloc_edge.data import sample_photo
from walloc_edge.runtime import Encoder
from walloc_edge.tools.bench import machine
from report import publish


def jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def size_matched(image, target):
    """The JPEG quality whose size is closest to ``target`` bytes (sizes grow with it)."""
    lo, hi = 1, 95
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if len(jpeg(image, mid)) < target else (lo, mid)
    return min((lo, hi), key=lambda q: abs(len(jpeg(image, q)) - target))


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
    blob = encoder.encode(sample)
    quality = size_matched(photo, len(blob))
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(seconds(lambda: encoder.encode(sample)))
        theirs.append(seconds(lambda: jpeg(photo, quality)))
    ours, theirs = np.array(ours), np.array(theirs)
    mp = args.size * args.size / 1e6
    per_round = theirs / ours
    result = {"machine": machine(), "backend": encoder.describe(), "size": args.size,
              "rounds": args.rounds, "wlc_bytes": len(blob), "jpeg_quality": quality,
              "jpeg_bytes": len(jpeg(photo, quality)), "ours_MPps": mp / np.median(ours),
              "jpeg_MPps": mp / np.median(theirs),
              "ratio": float(np.median(theirs) / np.median(ours)),
              "ratio_quartiles": [float(q) for q in np.percentile(per_round, [25, 75])]}
    m = result["machine"]
    lines = [f"End to end against size-matched JPEG, interleaved ({m['cpu']}, {m['cores']} "
             f"cores); {args.size}x{args.size} RGB, {args.rounds} rounds", "",
             "| path | MP/s (median) | bytes |", "|---|---|---|",
             f"| uint8 → .wlc with rans, {result['backend']} | {result['ours_MPps']:.1f} | "
             f"{len(blob):,} |",
             f"| JPEG (Pillow, libjpeg-turbo) q{quality} | {result['jpeg_MPps']:.1f} | "
             f"{result['jpeg_bytes']:,} |", "",
             f"Ratio (ours / JPEG, medians): **{result['ratio']:.3f}**; per round, quartiles "
             f"{result['ratio_quartiles'][0]:.3f}–{result['ratio_quartiles'][1]:.3f}."]
    publish(lines, result, args.out, "jpeg_ratio")


if __name__ == "__main__":
    main()
