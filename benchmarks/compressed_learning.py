"""The paper's comparison, measured: classifiers trained on WaLLoC latents against the same
classifiers trained on pixels resized to the same number of values, and on full-resolution
pixels (the ceiling), with several seeds.

    python benchmarks/compressed_learning.py IMAGES --work DIR [--seeds 0 1 2] [--epochs 20]
        [--recipes flips paper] [--paper-points 16x 4x ceiling] [--jobs 2]
        [--out benchmarks/results]

IMAGES: a folder with one subfolder per class (e.g. ../shared/data/imagenette/train). The
datasets are made in WORK with the walloc-edge dataset code (kept and reused): rgb-16x
latents against 56x56 pixels, rgb-4x latents against 112x112, and 224x224 pixels. Each
variant is trained with each recipe and seed (walloc_edge.learning.training: one classifier
family, the same budget; 20% of each class held out, the same split for every run), --jobs
runs at a time with one torch thread each. Reported: validation top-1/top-5 as mean ± sample
standard deviation over the seeds, the parameter count, training time, inference time per
image, and the bytes a sensor sends per image (the .wlc with rans; for pixels, a PNG).
"""
import argparse
import json
import multiprocessing
import platform
from pathlib import Path

import numpy as np

from walloc_edge.learning.datasets import load
from report import publish

VARIANTS = {  # name: (model, resize or None, operating point)
    "16x latents": ("rgb-16x", None, "16x"), "56x56 pixels": ("rgb-16x", 56, "16x"),
    "4x latents": ("rgb-4x", None, "4x"), "112x112 pixels": ("rgb-4x", 112, "4x"),
    "224x224 pixels": ("rgb-16x", 224, "ceiling"),
}


def folder_name(variant):
    return variant.replace(" ", "-")


def make_datasets(images, work, variants):
    import tempfile

    from walloc_edge.codec import load as load_model
    from walloc_edge.export import export_bundle
    from walloc_edge.learning.datasets import Converter, convert
    from walloc_edge.runtime import load_bundle

    for variant in variants:
        model, resize, _ = VARIANTS[variant]
        out = work / folder_name(variant)
        if (out / "dataset.json").is_file():
            continue
        print(f"making {out} ...", flush=True)
        with tempfile.TemporaryDirectory() as bundle:
            export_bundle(load_model(model), bundle, formats=(), log=lambda s: None)
            info = {"kind": "pixels" if resize else "latents", "model": model,
                    "model_id": load_bundle(bundle).model_id, "size": 224, "resize": resize}
            convert(images, out, Converter(bundle, 224, resize), info)


def train_one(job):
    """One (variant, recipe, seed) run in a worker process with one torch thread; its result
    is kept in WORK/runs/, so an interrupted benchmark resumes where it stopped."""
    import torch

    from walloc_edge.learning.training import train_classifier

    variant, recipe, seed, folder, epochs = job
    done = folder.parent / "runs" / f"{folder.name}-{recipe}-{seed}-{epochs}.json"
    if done.is_file():
        return json.loads(done.read_text())
    torch.set_num_threads(1)
    info, table = load(folder)
    _, report = train_classifier(info, table, epochs=epochs, seed=seed, augment=recipe,
                                 log=lambda line: None)
    sent = float(np.mean(table.column("sent_bytes").to_numpy()))
    print(f"{variant}, {recipe}, seed {seed}: top-1 {report['top1']:.1%} "
          f"({report['train_seconds']:.0f} s)", flush=True)
    result = {"variant": variant, "recipe": recipe, "seed": seed, "top1": report["top1"],
              "top5": report["top5"], "parameters": report["parameters"],
              "train_seconds": report["train_seconds"],
              "inference_ms_per_image": report["inference_ms_per_image"],
              "values_per_image": int(np.prod(table.column("shape")[0].as_py())),
              "sent_bytes_per_image": sent, "history": report["history"]}
    done.parent.mkdir(exist_ok=True)
    done.write_text(json.dumps(result))
    return result


def summary(runs):
    rows = []
    for recipe in dict.fromkeys(r["recipe"] for r in runs):
        for variant in VARIANTS:
            mine = [r for r in runs if r["variant"] == variant and r["recipe"] == recipe]
            if not mine:
                continue
            top1, top5 = (np.array([r[k] for r in mine]) for k in ("top1", "top5"))
            spread = lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
            rows.append({"recipe": recipe, "variant": variant, "point": VARIANTS[variant][2],
                         "seeds": len(mine), "top1_mean": float(top1.mean()),
                         "top1_std": spread(top1), "top5_mean": float(top5.mean()),
                         "top5_std": spread(top5),
                         **{k: float(np.mean([r[k] for r in mine])) for k in (
                             "parameters", "train_seconds", "inference_ms_per_image",
                             "values_per_image", "sent_bytes_per_image")}})
    return rows


def markdown(rows, args, train_images):
    lines = [f"# Classifiers on latents vs resized pixels: {args.images}", "",
             f"{train_images} training and {args.val_images} held-out images (20% of each "
             f"class, one split), {args.epochs} epochs, seeds {', '.join(map(str, args.seeds))}"
             f"; one torch thread per run on {platform.machine()} "
             f"({multiprocessing.cpu_count()} cores, {args.jobs} runs at a time). Top-1/top-5: "
             "mean ± standard deviation over the seeds.", "",
             "| recipe | operating point | input | values/image | sent bytes/image | "
             "parameters | top-1 | top-5 | train s | inference ms/image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['point']} | {r['variant']} | "
                     f"{r['values_per_image']:,.0f} | {r['sent_bytes_per_image']:,.0f} | "
                     f"{r['parameters']:,.0f} | {r['top1_mean']:.1%} ± {r['top1_std']:.1%} | "
                     f"{r['top5_mean']:.1%} ± {r['top5_std']:.1%} | {r['train_seconds']:.0f} | "
                     f"{r['inference_ms_per_image']:.2f} |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images")
    p.add_argument("--work", type=Path, required=True, help="where the datasets are made")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--recipes", nargs="+", default=["flips", "paper"])
    p.add_argument("--paper-points", nargs="+", default=["16x", "4x", "ceiling"],
                   help="operating points at which the (slower) paper recipe also runs")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args()
    make_datasets(args.images, args.work, args.variants)
    jobs = [(v, r, s, args.work / folder_name(v), args.epochs)
            for r in args.recipes for v in args.variants for s in args.seeds
            if r != "paper" or VARIANTS[v][2] in args.paper_points]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(train_one, jobs, chunksize=1)
    _, table = load(args.work / folder_name(args.variants[0]))
    args.val_images = sum(round(0.2 * n) for n in np.bincount(table.column("label").to_numpy()))
    rows = summary(runs)
    publish(markdown(rows, args, len(table) - args.val_images), {"summary": rows, "runs": runs},
            args.out, "compressed_learning")


if __name__ == "__main__":
    main()
