"""A sweep that places latents among the other inputs a fleet could send, on its own photos:
for each source size S, classifiers trained with equal budgets on 16× latents, 4× latents,
pixels resized to S/4 (as many values as 16× latents) and the full S × S pixels, all cut into
the same S/8 × S/8 grid of patches, for each classifier family and seed. One row per run:
what it scored against the bytes a sensor sends per image.

Runs are kept as they finish (``OUT/runs/*.json``), so a sweep that stops resumes where it
left off; the datasets (``OUT/data/S/INPUT``) are made once.
"""
import json
import math
from pathlib import Path

import numpy as np

from ..runtime.io import write_atomic
from .datasets import Converter, convert, load

__all__ = ["INPUTS", "Run", "plan", "make_datasets", "run_all", "table", "svg_plot"]

INPUTS = ("latents-16x", "latents-4x", "resized", "full")
COLOURS = {"latents-16x": "#2b6cb0", "latents-4x": "#805ad5", "resized": "#dd6b20",
           "full": "#38a169"}


class Run:
    """One classifier to train: source size, input kind, family, seed."""

    def __init__(self, size, input, model, seed):
        self.size, self.input, self.model, self.seed = size, input, model, seed

    @property
    def name(self):
        return f"{self.size}-{self.input}-{self.model}-{self.seed}"

    def __str__(self):
        return f"{self.size} px {self.input} {self.model} seed {self.seed}"


def plan(sizes, inputs, models, seeds):
    """Every run of the sweep, smallest sizes first (they finish soonest)."""
    return [Run(size, kind, model, seed) for size in sorted(sizes) for kind in inputs
            for model in models for seed in range(seeds)]


def make_datasets(images, out, sizes, inputs, bundles, log=print, progress=None):
    """Make the datasets the sweep trains on that ``out`` lacks. ``bundles``: input kind →
    (bundle folder, model name, Bundle) of the latents models ("latents-16x", "latents-4x");
    the pixel inputs take the 16× model's id as theirs."""
    reference = bundles["latents-16x"]
    for size in sorted(sizes):
        for kind in inputs:
            folder = Path(out) / "data" / str(size) / kind
            if (folder / "dataset.json").is_file():
                continue
            path, name, bundle = bundles.get(kind, reference)
            resize = {"resized": size // 4, "full": size}.get(kind)
            info = {"kind": "pixels" if resize else "latents", "model": name,
                    "model_id": bundle.model_id, "size": size, "resize": resize}
            log(f"making the {size} px {kind} dataset")
            convert(images, folder, Converter(path, size, resize), info, overwrite=True,
                    progress=progress)


def run_all(runs, out, epochs, batch=128, threads=None, log=print, train=True):
    """Train and score every run ``out/runs`` does not hold yet; returns every row (with
    ``train`` False, trains nothing and returns the rows of the finished runs)."""
    import torch

    from .training import train_classifier

    if threads:
        torch.set_num_threads(threads)
    folder = Path(out) / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for run in runs:
        done = folder / f"{run.name}.json"
        if done.is_file():
            row = json.loads(done.read_text())
            if row["epochs"] == epochs:
                rows[run.name] = row
    if rows:
        log(f"kept {len(rows)} finished runs of {len(runs)}")
    if not train:
        return [rows[run.name] for run in runs if run.name in rows]
    for number, run in enumerate(runs, 1):
        if run.name in rows:
            continue
        info, data = load(Path(out) / "data" / str(run.size) / run.input)
        _, report = train_classifier(info, data, epochs=epochs, seed=run.seed, arch=run.model,
                                     grid=run.size // 8, batch=batch, log=lambda line: None)
        sent = data.column("sent_bytes").to_numpy()
        row = {"size": run.size, "input": run.input, "model": run.model, "seed": run.seed,
               "top1": report["top1"], "top5": report["top5"],
               "bytes_per_image": float(sent.mean()), "train_s": report["train_seconds"],
               "values_per_image": int(np.prod(data.column("shape")[0].as_py())),
               "parameters": report["parameters"], "epochs": epochs,
               "train_images": report["train_images"], "val_images": report["val_images"]}
        write_atomic(folder / f"{run.name}.json", (json.dumps(row, indent=2) + "\n").encode())
        rows[run.name] = row
        log(f"[{number}/{len(runs)}] {run}: top-1 {row['top1']:.1%}, top-5 {row['top5']:.1%} "
            f"({row['train_s']:.0f} s)")
    return [rows[run.name] for run in runs]


def _groups(rows):
    """{(size, input, model): [rows of each seed]} in the rows' order."""
    groups = {}
    for row in rows:
        groups.setdefault((row["size"], row["input"], row["model"]), []).append(row)
    return groups


def _spread(values):
    mean = float(np.mean(values))
    return (f"{mean:.1%} ± {float(np.std(values, ddof=1)):.1%}" if len(values) > 1
            else f"{mean:.1%}")


def table(rows):
    """A Markdown table: one line per (size, input, family), mean ± standard deviation over
    the seeds."""
    lines = ["| size | input | family | values/image | bytes sent/image | parameters | seeds "
             "| top-1 | top-5 | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (size, kind, model), group in _groups(rows).items():
        first = group[0]
        lines.append(f"| {size} | {kind} | {model} | {first['values_per_image']:,} | "
                     f"{first['bytes_per_image']:,.0f} | {first['parameters']:,} | "
                     f"{len(group)} | {_spread([r['top1'] for r in group])} | "
                     f"{_spread([r['top5'] for r in group])} | "
                     f"{np.mean([r['train_s'] for r in group]):.0f} |")
    return "\n".join(lines) + "\n"


def svg_plot(rows, title="top-1 against bytes sent per image"):
    """Top-1 (mean over seeds, bar from the lowest to the highest seed) against bytes sent
    per image (log scale): one line per input kind and family (vit dashed), through the
    source sizes."""
    if not rows:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>\n"
    width, height, left, top, right, bottom = 760, 440, 60, 40, 170, 50
    xs = [r["bytes_per_image"] for r in rows]
    lo, hi = math.log10(min(xs) / 1.3), math.log10(max(xs) * 1.3)
    accuracies = [r["top1"] for r in rows]
    y_lo = max(0.0, math.floor(min(accuracies) * 10 - 0.5) / 10)
    y_hi = min(1.0, math.ceil(max(accuracies) * 10 + 0.5) / 10)
    span_x, span_y = width - left - right, height - top - bottom

    def x(v):
        return left + span_x * (math.log10(v) - lo) / (hi - lo)

    def y(v):
        return top + span_y * (1 - (v - y_lo) / (y_hi - y_lo))

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           "font-family='sans-serif' font-size='12'>",
           f"<text x='{left}' y='20' font-weight='bold'>{title}</text>",
           f"<rect x='{left}' y='{top}' width='{span_x}' height='{span_y}' fill='none' "
           "stroke='#888'/>"]
    for k in range(round(y_lo * 10), round(y_hi * 10) + 1):
        out.append(f"<text x='{left - 6}' y='{y(k / 10) + 4:.1f}' text-anchor='end'>"
                   f"{k * 10}%</text>")
    for e in range(math.ceil(lo * 2), math.floor(hi * 2) + 1):  # 1, 3, 10, 30 … KB
        v = 10 ** (e / 2)
        out.append(f"<line x1='{x(v):.1f}' y1='{top + span_y}' x2='{x(v):.1f}' "
                   f"y2='{top + span_y + 4}' stroke='#888'/>")
        out.append(f"<text x='{x(v):.1f}' y='{top + span_y + 18}' text-anchor='middle'>"
                   f"{v / 1000:.3g} KB</text>")
    out.append(f"<text x='{left + span_x / 2}' y='{height - 8}' text-anchor='middle'>bytes "
               "a sensor sends per image (log scale); labels: source size in px</text>")
    lines = {}
    for (size, kind, model), group in _groups(rows).items():
        lines.setdefault((kind, model), []).append((size, group))
    for i, ((kind, model), points) in enumerate(lines.items()):
        colour, dash = COLOURS[kind], " stroke-dasharray='5,3'" if model != "cnn" else ""
        coords = []
        for size, group in sorted(points):
            px = x(np.mean([r["bytes_per_image"] for r in group]))
            top1 = [r["top1"] for r in group]
            coords.append((px, y(np.mean(top1))))
            out.append(f"<line x1='{px:.1f}' y1='{y(min(top1)):.1f}' x2='{px:.1f}' "
                       f"y2='{y(max(top1)):.1f}' stroke='{colour}'/>")
            out.append(f"<circle cx='{px:.1f}' cy='{y(np.mean(top1)):.1f}' r='3' "
                       f"fill='{colour}'/>")
            out.append(f"<text x='{px + 5:.1f}' y='{y(np.mean(top1)) - 5:.1f}' "
                       f"font-size='10' fill='{colour}'>{size}</text>")
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
        out.append(f"<polyline points='{path}' fill='none' stroke='{colour}'{dash}/>")
        ly = top + 16 * i + 8
        out.append(f"<line x1='{width - right + 12}' y1='{ly}' x2='{width - right + 32}' "
                   f"y2='{ly}' stroke='{colour}'{dash}/>")
        out.append(f"<text x='{width - right + 36}' y='{ly + 4}'>{kind} {model}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
