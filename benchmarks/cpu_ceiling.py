"""What this CPU's arithmetic allows a decoder engine: dense matrix products in fp32, bf16 and
int8 (the decoder's convolutions and attention are such products), their GFLOP/s, and so the
most any lower precision can gain over fp32 here.

    python benchmarks/cpu_ceiling.py [--threads N] [--size 2048] [--out benchmarks/results]

The decoder costs about 56 GFLOP a megapixel (rgb-16x; docs/server.md), so a decode engine
at R GFLOP/s decodes at most R / 56 MP/s. A precision whose products run k times as fast as
fp32's can make the whole decode at most k times as fast (less, where the decode does other
work); `bf16 / fp32` below is that k for bf16. Medians of several timed products each,
taking turns.
"""
import argparse
import statistics
import time

import torch
from report import publish

from walloc_edge.bench.machine import machine

GFLOP_PER_MP = 56.0  # rgb-16x's decoder (torch.utils.flop_counter; docs/server.md)


def rate(a, b, product, repeat):
    """GFLOP/s of ``product(a, b)`` (median of ``repeat`` runs after a warm-up)."""
    n, k = a.shape
    m = b.shape[1]
    product(a, b)
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        product(a, b)
        seconds.append(time.perf_counter() - start)
    return 2 * n * k * m / statistics.median(seconds) / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(args.size, args.size, generator=g)
    b = torch.randn(args.size, args.size, generator=g)
    kinds = {"fp32": (a, b, torch.mm),
             "bf16": (a.bfloat16(), b.bfloat16(), torch.mm),
             "int8": (a.clamp(-3, 3).mul(40).to(torch.int8),
                      b.clamp(-3, 3).mul(40).to(torch.int8).t().contiguous().t(),
                      torch._int_mm)}
    results = {name: [] for name in kinds}
    for _ in range(3):  # taking turns, so that a busy spell touches each alike
        for name, (x, y, product) in kinds.items():
            try:
                results[name].append(rate(x, y, product, args.repeat))
            except RuntimeError as e:  # int8 products need a kernel torch has here
                results[name] = str(e).splitlines()[0]
    fp32 = statistics.median(results["fp32"])
    lines = [f"# What this CPU's arithmetic allows: {info['cpu']}, {args.threads} threads "
             f"({', '.join(info['isa'])}), torch {torch.__version__}", "",
             f"{args.size}² × {args.size}² matrix products, median of {args.repeat} runs, "
             "three rounds taking turns.", "",
             "| precision | GFLOP/s | × fp32 | decoder MP/s at most |", "|---|---|---|---|"]
    for name, runs in results.items():
        if isinstance(runs, str):
            lines.append(f"| {name} | – | – | not here: {runs} |")
            continue
        r = statistics.median(runs)
        lines.append(f"| {name} | {r:.0f} | {r / fp32:.2f} | {r / GFLOP_PER_MP:.2f} |")
    publish(lines, {"machine": info, "threads": args.threads, "size": args.size,
                    "gflops": results}, args.out, "cpu_ceiling")


if __name__ == "__main__":
    main()
