"""Two builds of the rans coder's C loops against each other, timed alternately in one
process: the way to judge a change to ``_native.c`` on a shared machine, as native_ab.py
judges the encoder core.

    python benchmarks/rans_ab.py BUNDLE --base OLD.so [--new NEW.so] [--levels best,fast]
        [--rounds 21] [--out benchmarks/results] [--stem NAME]

OLD.so (NEW.so: default, the installed extension) is a build of
walloc_edge/runtime/coders/rans/_native.c from another commit, e.g.

    git worktree add /tmp/base COMMIT && cd /tmp/base && python setup.py -q build_ext
        --inplace && cp walloc_edge/runtime/coders/rans/_native.*.so /tmp/rans_base.so

The latents are the bench's photo's (the bundled astronaut, resized to 2048x2048) from
BUNDLE's encoder. Per round and level, the whole tile through the coder on one thread with
each build (the fit, the residuals and contexts, the rANS pass; Python's share included),
and the two C steps on their own (``residuals``, ``encode``); the payloads are compared
every round: they must be the same bytes.
"""
import argparse

import numpy as np

from walloc_edge.bench import machine
from walloc_edge.bench.inputs import bench_input
from walloc_edge.bench.timing import once
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.coders.rans import RansCoder, native
from walloc_edge.runtime.modality import IMAGE
from ab import add_build_options, builds as ab_builds
from report import publish

ENTRY_POINTS = ("walloc_rans_decode", "walloc_rans_grams", "walloc_rans_residuals",
                "walloc_rans_encode")
STEPS = ("residuals", "encode")  # the C steps timed on their own


def recorded_calls(coder, latents):
    """The arguments the coder passes to each step of STEPS for ``latents``."""
    calls, originals = {}, {step: getattr(native, step) for step in STEPS}

    def recorder(step):
        def record(*args, **kwargs):
            calls[step] = (args, kwargs)
            return originals[step](*args, **kwargs)
        return record
    for step in STEPS:
        setattr(native, step, recorder(step))
    try:
        coder.encode(latents, 8)
    finally:
        for step, fn in originals.items():
            setattr(native, step, fn)
    return calls


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    add_build_options(p)
    p.add_argument("--levels", default="best,fast")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--out")
    p.add_argument("--stem", default="rans_ab")
    args = p.parse_args()
    if native._LIB is None:
        p.error(f"the rans C loops are not loaded here ({native.reason()})")
    builds = ab_builds(args, native._LIB, ENTRY_POINTS)
    photo, _, _ = bench_input(IMAGE, 3, quick=False, size=2048)
    latents = Encoder(args.bundle, "native", threads=1).latents(photo)
    m = machine()
    lines = [f"rans C loops, two builds alternating ({m['cpu']}, {m['cores']} cores, ISA "
             f"{' '.join(m['isa'])}); one thread, {args.rounds} rounds, the latents "
             f"{'x'.join(map(str, latents.shape))} of a 2048x2048 photo", "",
             "| level | part | base ms | new ms | new ÷ base (speed) | payload |",
             "|---|---|---|---|---|---|"]
    rows, installed = [], native._LIB
    try:
        for level in args.levels.split(","):
            coder = RansCoder(level=level)
            calls = recorded_calls(coder, latents)
            parts = {"whole coder": lambda: coder.encode(latents, 8)}
            parts.update({step: (lambda step=step: getattr(native, step)(*calls[step][0],
                                                                          **calls[step][1]))
                          for step in STEPS})
            times = {(part, name): [] for part in parts for name in builds}
            same = True
            for _ in range(args.rounds):
                for part, run in parts.items():
                    out = {}
                    for name, lib in builds.items():
                        native._LIB = lib
                        seconds, out[name] = once(run)
                        times[part, name].append(seconds)
                    if part == "whole coder":
                        same &= out["base"] == out["new"]
            for part in parts:
                ms = {name: 1e3 * np.median(times[part, name]) for name in builds}
                rows.append({"level": level, "part": part, "ms": ms, "identical": same})
                lines.append(f"| {level} | {part} | {ms['base']:.2f} | {ms['new']:.2f} | "
                             f"**{ms['base'] / ms['new']:.2f}×** | "
                             f"{'identical' if same else 'DIFFER'} |")
    finally:
        native._LIB = installed
    publish(lines, {"machine": m, "rounds": args.rounds, "rows": rows}, args.out, args.stem)


if __name__ == "__main__":
    main()
