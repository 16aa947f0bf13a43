"""How many messages a second `walloc-edge serve` takes from three sensors, one message at a
time (--workers 1) and with several workers, against a baseline serve in the same run.

    python benchmarks/serve_throughput.py [--model rgb-16x] [--count 40] [--large-count 4]
                                          [--workers 1 2 3] [--repeat 3]
                                          [--sizes 224 1024] [--baseline PATH]
                                          [--out benchmarks/results] [--name serve_throughput]

Three sensors (walloc-edge stream, rans) each encode COUNT frames of 224x224 and LARGE_COUNT
of 1024x1024 (crops of the bundled photos, resized) into a file link of their own; the three
links are joined, one sensor after the other, and serve replays them on the CPU (its turns
interleave the sensors), decoding to PNG and keeping latents only (--no-decode --latents),
with its default engine. Each serve runs in a process of its own: this tree's, and with
--baseline the package at PATH (another checkout, e.g. a `git worktree` of an older commit
with its C extensions built), the two alternating REPEAT times; the medians are reported.
Messages/s: messages over the span from the start of the first message's handling (its
metrics line's time less its handling time) to the last message's metrics line (model
loading and calibration left out; with several workers, one message's span is not zero);
start: seconds from the process's start to that first handling. Last, whether batching
equal-shape 224x224 frames pays on the CPU: the decoder's ms per frame at batch sizes 1 to 8
(one torch thread, as a worker of two has on two cores; the best of several runs).
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from report import publish

from walloc_edge.bench.machine import machine
from walloc_edge.cli import main as walloc_edge
from walloc_edge.data import sample_photo

HERE = Path(__file__).resolve().parents[1]
CONFIGURATIONS = {"decode to PNG": [], "latents only (--no-decode --latents)":
                  ["--no-decode", "--latents", "{out}/latents"]}


def frames(folder, count, side, seed):
    """``count`` crops of the bundled photos, resized to side x side."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    photos = [sample_photo("astronaut"), sample_photo("coffee")]
    for i in range(count):
        photo = photos[i % 2]
        h, w = photo.shape[:2]
        crop = int(min(h, w) * rng.uniform(0.5, 1))
        top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        Image.fromarray(photo[top:top + crop, left:left + crop]).resize((side, side)).save(
            folder / f"f{i:04d}.png")


def batch_ms(model, sizes=(1, 2, 4, 8), runs=12):
    """Decoder ms per 224x224 frame at each batch size (best of ``runs`` frames' worth)."""
    import time

    import torch

    from walloc_edge.decoder import Decoder

    decoder = Decoder(model, "cpu")
    torch.set_num_threads(1)
    z = torch.randn(1, decoder.codec.config.latent_dim, 28, 28)
    best = {}
    with torch.no_grad():
        for size in sizes * 2:  # twice round, so that no size only sees a cold start
            batch = z.repeat(size, 1, 1, 1)
            for _ in range(max(2, runs // size)):
                start = time.perf_counter()
                decoder.codec.decode(batch)
                ms = 1e3 * (time.perf_counter() - start) / size
                best[size] = min(best.get(size, ms), ms)
    return best


def encode(work, args):
    """{side: the joined link of the three sensors' frames of that side}."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert walloc_edge(["export", args.model, "--format", "onnx", "--out",
                            str(work / "bundle")]) == 0
    links = {}
    for side, count in ((224, args.count), (1024, args.large_count)):
        if side not in args.sizes:
            continue
        links[side] = link = work / f"{side}.frames"
        with open(link, "wb") as joined:
            for s in range(3):
                frames(work / f"in-{side}-{s}", count, side, seed=side + s)
                own = work / f"{side}-{s}.frames"
                with contextlib.redirect_stdout(io.StringIO()):
                    assert walloc_edge(["stream", str(work / "bundle"),
                                        str(work / f"in-{side}-{s}"), "--to", f"file://{own}", "--sensor-id", f"cam{s}",
                                        "--state", str(work / f"state-{side}-{s}")]) == 0
                joined.write(own.read_bytes())
    return links


def serve(root, model, link, out, workers, options):
    """One run of the serve of the package at ``root`` over ``link``: messages, messages/s
    and seconds to the first message's handling."""
    started = time.time()
    subprocess.run([sys.executable, "-m", "walloc_edge.cli", "serve", model, "--listen",
                    str(link), "--out", str(out), "--device", "cpu", "--max-decode-seconds",
                    "600", "--workers", str(workers), *options], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(root)})
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first = min(r["time"] - r["decode_s"] for r in lines)
    return {"messages": len(lines), "messages_per_s": len(lines) / (max(r["time"] for r in lines)
                                                                   - first),
            "start_s": first - started}


def rate(x):
    return f"{x:.{1 if x >= 10 else 2}f}"


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="rgb-16x")
    p.add_argument("--count", type=int, default=40, help="224x224 frames per sensor")
    p.add_argument("--large-count", type=int, default=4, help="1024x1024 frames per sensor")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--repeat", type=int, default=3, help="runs of each serve, alternating")
    p.add_argument("--sizes", type=int, nargs="+", choices=(224, 1024), default=[224, 1024],
                   help="frame sides to replay")
    p.add_argument("--baseline", metavar="PATH",
                   help="also run the walloc_edge package at PATH (a checkout) as the baseline")
    p.add_argument("--out")
    p.add_argument("--name", default="serve_throughput", help="the result files' name")
    args = p.parse_args()
    info = machine()
    print(f"CPU: {info['cpu']}, {info['cores']} cores ({', '.join(info['isa'])}); "
          f"torch {info['versions']['torch']}", flush=True)
    versions = {"this tree": HERE}
    if args.baseline:
        versions = {f"baseline ({Path(args.baseline).name})": Path(args.baseline), **versions}
    runs, loads = {}, [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        links = encode(work, args)
        for side, link in links.items():
            for name, extra in CONFIGURATIONS.items():
                for workers in args.workers:
                    for _ in range(args.repeat):
                        for version, root in versions.items():
                            out = work / f"out-{sum(map(len, runs.values()))}"
                            row = serve(root, args.model, link, out, workers,
                                        [o.format(out=out) for o in extra])
                            runs.setdefault((version, f"{side}x{side}", name, workers),
                                            []).append(row)
                            print(version, side, name, workers, row, flush=True)
                            loads.append(os.getloadavg())
    rows = [{"version": version, "frames": frames, "configuration": name, "workers": workers,
             "messages": results[0]["messages"],
             "messages_per_s": statistics.median(r["messages_per_s"] for r in results),
             "runs": [round(r["messages_per_s"], 2) for r in results],
             "start_s": statistics.median(r["start_s"] for r in results)}
            for (version, frames, name, workers), results in runs.items()]
    base = {(r["frames"], r["configuration"], r["workers"]): r["messages_per_s"] for r in rows
            if r["version"] == next(iter(versions))}
    lines = [f"# serve throughput, three sensors: `{args.model}`, CPU {info['cpu']} "
             f"({info['cores']} cores, {', '.join(info['isa'])}), torch "
             f"{info['versions']['torch']}", "",
             f"Medians of {args.repeat} runs each, alternating; load average (1 min) "
             f"{min(x[0] for x in loads):.1f} to {max(x[0] for x in loads):.1f} during the run.",
             "", "| frames | configuration | serve | --workers | messages | messages/s (runs) | "
             f"× {next(iter(versions))} | × {next(iter(versions))} --workers 1 | start s |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['frames']} | {r['configuration']} | {r['version']} | {r['workers']} | "
              f"{r['messages']} | {rate(r['messages_per_s'])} "
              f"({', '.join(map(rate, r['runs']))}) | "
              f"{r['messages_per_s'] / base[r['frames'], r['configuration'], r['workers']]:.2f}"
              f" | {r['messages_per_s'] / base[r['frames'], r['configuration'], 1]:.2f} | "
              f"{r['start_s']:.1f} |"
              for r in sorted(rows, key=lambda r: (r["frames"], r["configuration"],
                                                   r["workers"]))]
    batches = batch_ms(args.model)
    lines += ["", "Batching equal-shape 224x224 frames on the CPU (decoder network and synthesis, "
              "one torch thread): ms per frame " + ", ".join(
                  f"{ms:.1f} at batch {size}" for size, ms in batches.items())]
    publish(lines, {"machine": info, "rows": rows, "load_average": loads,
                    "batch_ms_per_frame": batches}, args.out,
            args.name)


if __name__ == "__main__":
    main()
