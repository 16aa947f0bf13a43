"""``walloc-edge classify train|eval``: classifiers on latents (or pixels) datasets."""
import argparse
import json
import math
from pathlib import Path

from ..runtime.console import say
from . import Parser
from ._shared import (HelpFormatter, output_dir, positive_int, positive_number, progress,
                      write_text)
from .classify_probe import configure_probe, run_probe

EXAMPLES = """Both classifier families (--model cnn or vit) are the same for latents and pixels:
a stem cuts every input into a grid of patches of equal image area (--grid, by default the
source side / 8), then identical layers (see walloc_edge/learning/classifier.py), so a
latents model and a pixels model at the same operating point have the same budget. Recipes (--augment):
flips (the stored rows, flipped at random) and paper (random resized crops and flips of the
images in pixel space, encoded on the fly by the model's sensor encoder or resized: the WaLLoC
paper's recipe; needs the images the dataset was made from).

examples:
  walloc-edge classify train data/latents-16x --out clf16.safetensors
  walloc-edge classify train data/pixels-56 --out clf56.safetensors --augment paper --seed 1
  walloc-edge classify train data/latents-112 --out vit.safetensors --model vit --registers 4
  walloc-edge classify eval clf16.safetensors data/latents-16x --json eval.json \\
      --confusion confusion.png"""


def configure(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser,
                           help="train (a classifier on a dataset), eval (one on a dataset), "
                                "sweep (latents against pixels on an image folder) or probe "
                                "(a detail-reading task made from photos)")
    t = sub.add_parser("train", help="train a classifier on a dataset",
                       formatter_class=HelpFormatter, epilog=EXAMPLES,
                       description="Train a classifier on a dataset from walloc-edge dataset; "
                                   "a share of each class is held out for validation.")
    t.add_argument("data", help="a dataset folder (walloc-edge dataset)")
    t.add_argument("--out", required=True, help="the classifier file to write (.safetensors)")
    t.add_argument("--epochs", type=positive_int, default=20, help="passes over the data")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    t.add_argument("--augment", choices=("flips", "paper"), default="flips",
                   help="flips, or paper (pixel-space crops and flips, encoded on the fly)")
    t.add_argument("--model", choices=("cnn", "vit"), default="cnn",
                   help="the classifier family: cnn, or vit (an isotropic patch transformer)")
    t.add_argument("--grid", type=positive_int,
                   help="patches per side the stem cuts every input into (default: the "
                        "source side / 8; it must divide the input's side)")
    t.add_argument("--registers", type=int, default=0, metavar="N",
                   help="register tokens of the vit family")
    t.add_argument("--val", type=positive_number, default=0.2, metavar="FRACTION",
                   help="share of each class held out for validation")
    t.add_argument("--split-seed", type=int, default=0,
                   help="seed of the held-out split (keep it to compare seeds on one split)")
    t.add_argument("--batch", type=positive_int, default=128, help="images per step")
    t.add_argument("--threads", type=positive_int, help="torch threads (default: all cores)")
    t.add_argument("--json", help="also write the training report (history, validation "
                                  "metrics, times) here")
    e = sub.add_parser("eval", help="top-1, top-5, per-class accuracy and confusion matrix",
                       formatter_class=HelpFormatter, epilog=EXAMPLES,
                       description="Evaluate a classifier on a dataset made with the same "
                                   "model: on its held-out split if it is the dataset the "
                                   "classifier was trained on, else on every row.")
    e.add_argument("classifier", help="a classifier file (walloc-edge classify train)")
    e.add_argument("data", help="a dataset folder")
    e.add_argument("--all", action="store_true",
                   help="every row, even of the training dataset")
    e.add_argument("--json", help="write top-1, top-5, per-class accuracy and the confusion "
                                  "matrix here")
    e.add_argument("--confusion", metavar="PNG", help="draw the confusion matrix here")
    _configure_sweep(sub)
    configure_probe(sub)
    p.epilog = EXAMPLES


def _configure_sweep(sub):
    s = sub.add_parser("sweep", help="accuracy against bytes sent: latents, resized and full "
                                     "pixels at several sizes, with equal budgets",
                       formatter_class=HelpFormatter, epilog=SWEEP_EXAMPLES,
                       description="For each source size S: classifiers on 16x latents, 4x "
                                   "latents, pixels resized to S/4 and full S x S pixels, all "
                                   "cut into an S/8 grid, for each family and seed. Finished "
                                   "runs are kept in OUT: run it again to resume.")
    s.add_argument("images", help="a folder with one subfolder of images per class")
    s.add_argument("--out", required=True, help="the folder of the datasets and runs")
    s.add_argument("--sizes", type=positive_ints, default="224,112,56",
                   help="source sizes in pixels, multiples of the models' block (8)")
    s.add_argument("--inputs", type=_inputs, default="latents-16x,latents-4x,resized,full",
                   help="which inputs to compare")
    s.add_argument("--models", type=_families, default="cnn",
                   help="classifier families (cnn, vit)")
    s.add_argument("--seeds", type=positive_int, default=1, help="seeds per run")
    s.add_argument("--epochs", type=positive_int, default=15, help="passes over the data")
    s.add_argument("--batch", type=positive_int, default=128, help="images per step")
    s.add_argument("--latents-16x", dest="model16", default="rgb-16x", metavar="MODEL",
                   help="the 16x model (a name, a model file or a sensor bundle)")
    s.add_argument("--latents-4x", dest="model4", default="rgb-4x", metavar="MODEL",
                   help="the 4x model")
    s.add_argument("--threads", type=positive_int, help="torch threads (default: all cores)")
    s.add_argument("--json", help="write one row per run here")
    s.add_argument("--table", metavar="MD", help="write the Markdown table here")
    s.add_argument("--plot", metavar="SVG", help="write the plot here (default: OUT/sweep.svg)")
    s.add_argument("--finished-only", action="store_true",
                   help="train nothing: write the table, JSON and plot of the runs OUT holds "
                        "(while a sweep still runs, or one that was stopped)")


SWEEP_EXAMPLES = """examples:
  walloc-edge classify sweep imagenette/train --out sweep/ --sizes 112,56 --seeds 3 \\
      --json sweep.json
  walloc-edge classify sweep photos/ --out sweep/ --models cnn,vit --epochs 5"""


def positive_ints(text):
    return tuple(positive_int(part) for part in text.split(","))


def _choices(allowed):
    def parse(text):
        picked = tuple(part.strip() for part in text.split(","))
        bad = [p for p in picked if p not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad)}: choose among "
                                             f"{', '.join(allowed)}")
        return picked
    return parse


_inputs = _choices(("latents-16x", "latents-4x", "resized", "full"))
_families = _choices(("cnn", "vit"))


def run(args):
    return {"train": _train, "eval": _evaluate, "sweep": _sweep,
            "probe": run_probe}[args.action](args)


def _sweep(args):
    import tempfile

    from ..learning.datasets import find_images
    from ..learning.sweep import make_datasets, plan, run_all, svg_plot, table
    from .dataset import image_bundle

    find_images(args.images)
    with tempfile.TemporaryDirectory(prefix="walloc-edge-sweep-") as tmp:
        bundles = {kind: image_bundle(model, f"{tmp}/{kind}")
                   for kind, model in (("latents-16x", args.model16), ("latents-4x", args.model4))
                   if kind in args.inputs or kind == "latents-16x"}
        for _, name, bundle in bundles.values():
            step = math.lcm(8, bundle.block)  # whole blocks, and an S/8 grid of patches
            bad = [size for size in args.sizes if size % step]
            if bad:
                raise ValueError(f"--sizes {bad[0]} is not a multiple of {step} ({name} "
                                 f"encodes blocks of {bundle.block} pixels; the classifiers "
                                 "cut S/8 x S/8 patches)")
        out = output_dir(args.out, "--out")
        if not args.finished_only:
            make_datasets(args.images, out, args.sizes, args.inputs, bundles, log=say,
                          progress=lambda jobs: progress(jobs, "converting", "image"))
    runs = plan(args.sizes, args.inputs, args.models, args.seeds)
    rows = run_all(runs, out, args.epochs, args.batch, args.threads, log=say,
                   train=not args.finished_only)
    print(table(rows), end="")
    if args.json:
        write_text(args.json, json.dumps(rows, indent=2) + "\n")
    if args.table:
        write_text(args.table, table(rows))
    write_text(args.plot or out / "sweep.svg", svg_plot(rows))


def _train(args):
    from ..learning.classifier import save_classifier
    from ..learning.datasets import load
    from ..learning.training import train_classifier

    if args.val >= 1:
        raise ValueError(f"--val {args.val} must be a fraction below 1")
    if args.registers and args.model != "vit":
        raise ValueError("--registers are tokens of the vit family (--model vit)")
    try:  # the output's folder before the training, not after it
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {args.out}: cannot make its folder "
                         f"({e.strerror or e})") from None
    info, table = load(args.data)
    model, report = train_classifier(
        info, table, epochs=args.epochs, seed=args.seed, augment=args.augment,
        val_fraction=args.val, split_seed=args.split_seed, batch=args.batch,
        arch=args.model, grid=args.grid, threads=args.threads,
        **({"registers": args.registers} if args.model == "vit" else {}), progress=lambda items: progress(items, "training", "epoch"),
        log=say)
    model.config["trained_on"] = {"images": info.fields.get("images"),  # a server's dataset:
                                  "rows": info.fields.get("rows"),  # neither (it grows)
                                  "val": args.val, "split_seed": args.split_seed}
    save_classifier(model, args.out)
    cfg = model.config
    print(f"wrote {args.out}: {cfg['arch']} on a {cfg['grid']}x{cfg['grid']} grid, "
          f"{report['parameters']:,} parameters, validation top-1 "
          f"{report['top1']:.1%}, top-5 {report['top5']:.1%} on {report['val_images']} images "
          f"({report['train_seconds']:.0f} s)")
    if args.json:
        write_text(args.json, json.dumps(report, indent=2) + "\n")


def _evaluate(args):
    from ..learning.classifier import check_compatible, load_classifier
    from ..learning.datasets import arrays, load
    from ..learning.training import as_input, confusion_png, evaluate_classifier, split

    model = load_classifier(args.classifier)
    cfg = model.config
    info, table = load(args.data)
    data, labels = arrays(table, info.kind)
    shape = (data.shape[3], *data.shape[1:3]) if info.kind == "pixels" else data.shape[1:]
    check_compatible(model, args.classifier, args.data, info.kind, info.model, info.model_id,
                     info.classes, info.fields.get("latents", "rounded"), shape)
    trained = cfg.get("trained_on", {})
    rows = "every row"
    if not args.all and trained.get("rows") is not None and (  # (a server's grows: none)
            trained.get("images"), trained.get("rows")) == (info.fields.get("images"),
                                                             info.fields.get("rows")):
        _, held_out = split(labels, trained["val"], trained["split_seed"])
        data, labels = data[held_out], labels[held_out]
        rows = "the held-out split it was not trained on"
    import torch

    x = as_input(data, info.kind)
    report = evaluate_classifier(model, x, torch.from_numpy(labels), len(info.classes))
    print(f"{len(labels)} images ({rows}): top-1 {report['top1']:.1%}, top-5 "
          f"{report['top5']:.1%}, {report['inference_ms_per_image']:.2f} ms per image")
    width = max(len(c) for c in info.classes)
    for name, accuracy in zip(info.classes, report["per_class"]):
        print(f"  {name:<{width}}  {accuracy:6.1%}")
    if args.json:
        write_text(args.json, json.dumps({"classifier": args.classifier, "data": args.data,
                                          "images": len(labels), "rows": rows, **report},
                                         indent=2) + "\n")
    if args.confusion:
        confusion_png(report["confusion"], info.classes, args.confusion)
        print(f"wrote {args.confusion}")
