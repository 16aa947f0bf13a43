"""What coding each block row's latents while they are in cache (the transform and the rans
coder fused into one pass) could save at most: the coder's time on latents the transform has
just written (what two passes do: the transform's working set has gone through the caches
since) against its time on the same latents coded a moment before (all in cache: what a
fused pass would find), alternating, one thread.

    python benchmarks/fused_coding_bound.py BUNDLE [--size 2048] [--rounds 15]
        [--levels fastest,fast,best] [--out benchmarks/results]

The difference bounds the gain of fusing: a fused pass also runs the same coder, only on
latents nearer at hand.
"""
import argparse

import numpy as np
from PIL import Image

from walloc_edge.bench import machine
from walloc_edge.bench.timing import once
from walloc_edge.data import sample_photo
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.coders.rans import RansCoder
from report import publish


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--levels", default="fastest,fast,best")
    p.add_argument("--out")
    args = p.parse_args()
    photo = np.asarray(Image.fromarray(sample_photo("astronaut")).resize(
        (args.size, args.size), Image.BICUBIC).convert("RGB"))
    encoder = Encoder(args.bundle, threads=1)
    m = machine()
    lines = [f"The rans coder on latents just written by the transform and on latents in cache "
             f"({m['cpu']}, {m['cores']} cores, ISA {' '.join(m['isa'])}); {args.size}x"
             f"{args.size} RGB (astronaut, resized), {encoder.describe()}, coder on 1 thread, "
             f"{args.rounds} rounds alternating", "",
             "| rans level | transform ms | coder ms, after the transform | coder ms, in cache | "
             "a fused pass saves at most |", "|---|---|---|---|---|"]
    rows = {}
    for level in args.levels.split(","):
        coder = RansCoder(level=level)
        times = {"transform": [], "after": [], "cached": []}
        for _ in range(args.rounds):
            seconds, latents = once(lambda: encoder.latents(photo))
            times["transform"].append(seconds)
            times["after"].append(once(lambda: coder.encode(latents, 8, 1))[0])
            times["cached"].append(once(lambda: coder.encode(latents, 8, 1))[0])
        ms = {k: float(np.median(v) * 1e3) for k, v in times.items()}
        saved = (ms["after"] - ms["cached"]) / (ms["transform"] + ms["after"])
        rows[level] = {**ms, "saved_share": saved}
        lines.append(f"| {level} | {ms['transform']:.1f} | {ms['after']:.2f} | "
                     f"{ms['cached']:.2f} | {saved:.1%} of the frame |")
    publish(lines, {"machine": m, "size": args.size, "rounds": args.rounds, "levels": rows},
            args.out, "fused_coding_bound")


if __name__ == "__main__":
    main()
