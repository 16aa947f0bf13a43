"""Two builds of the native core against each other, timed alternately in one process: the
way to judge a change to the C core on a shared machine, where load drifts between runs.

    python benchmarks/native_ab.py BUNDLE --base OLD.so [--new NEW.so] [--widths 512,2048,4096]
        [--threads 1] [--rounds 15] [--out benchmarks/results] [--stem NAME]

OLD.so (NEW.so: default, the installed extension) is a build of
walloc_edge/runtime/native_encoder.c and native_fixed.c from another commit, e.g.

    git worktree add /tmp/base COMMIT && cd /tmp/base/walloc_edge/runtime &&
    gcc -O3 -std=c99 -fPIC -shared -pthread native_encoder.c native_fixed.c -o /tmp/base.so -lm

Each width W encodes the bench's photo (the bundled astronaut, resized to 2048x2048) laid out
as (4 Mi / W) rows of W pixels, so every width has the same pixels: rows of 2048 or fewer are
one run of the core, wider ones several (their borders read through the core's reflection
path). Per round, one encode with each build; their latents are compared every round.
"""
import argparse

import numpy as np
from PIL import Image

from walloc_edge.bench import machine
from walloc_edge.bench.timing import once
from walloc_edge.data import sample_photo
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.backends import native
from ab import add_build_options, builds as ab_builds
from report import publish

ENTRY_POINTS = ("walloc_native_encode_image", "walloc_native_encode_audio",
                "walloc_native_quantize")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    add_build_options(p)
    p.add_argument("--widths", default="512,2048,4096")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out")
    p.add_argument("--stem", help="the results' file name (default native_ab_<threads>t)")
    args = p.parse_args()
    if native._LIB is None:
        p.error(f"the native core is not loaded here ({native._REASON})")
    builds = ab_builds(args, native._LIB, ENTRY_POINTS)
    encoder = Encoder(args.bundle, "native", threads=args.threads)
    photo = np.asarray(Image.fromarray(sample_photo("astronaut")).resize(
        (2048, 2048), Image.BICUBIC).convert("RGB"))
    m = machine()
    lines = [f"Native core, two builds alternating ({m['cpu']}, {m['cores']} cores, ISA "
             f"{' '.join(m['isa'])}); {args.threads} thread(s), {args.rounds} rounds, "
             "Encoder.latents of 4 Mi RGB pixels", "",
             "| width × rows | base MP/s | new MP/s | new ÷ base | latents |", "|---|---|---|---|---|"]
    rows, installed = [], native._LIB
    for width in (int(w) for w in args.widths.split(",")):
        frame = np.ascontiguousarray(np.resize(photo, (photo.size // 3 // width, width, 3)))
        times, same = {name: [] for name in builds}, True
        for _ in range(args.rounds):
            latents = {}
            for name, lib in builds.items():
                native._LIB = lib
                seconds, latents[name] = once(lambda: encoder.latents(frame))
                times[name].append(seconds)
            same &= np.array_equal(latents["base"], latents["new"])
        mps = {name: frame.shape[0] * width / 1e6 / np.median(t) for name, t in times.items()}
        rows.append({"width": width, "rows": frame.shape[0], "MPps": mps, "identical": same})
        lines.append(f"| {width} × {frame.shape[0]} | {mps['base']:.0f} | {mps['new']:.0f} | "
                     f"**{mps['new'] / mps['base']:.2f}×** | "
                     f"{'identical' if same else 'DIFFER'} |")
    native._LIB = installed
    publish(lines, {"machine": m, "threads": args.threads, "rounds": args.rounds,
                    "rows": rows}, args.out, args.stem or f"native_ab_{args.threads}t")


if __name__ == "__main__":
    main()
