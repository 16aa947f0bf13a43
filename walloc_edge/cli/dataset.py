"""``walloc-edge dataset``: an image folder (one subfolder per class) → a latents dataset."""
import tempfile
from pathlib import Path

from ..runtime.console import say
from ._shared import positive_int, progress

EXAMPLES = """Images of any size are brought to SIZE x SIZE first: resized (bicubic) so that the
shorter side is SIZE, then the centre square is cut. Latents are computed by the sensor
runtime (what a device would send); --resize N writes the baseline instead: the same squares
resized to N x N pixels (area averaging). 224 x 224 RGB at 16x has as many latent values as
56 x 56 pixels (4x: 112 x 112). The output is a folder of Parquet parts and dataset.json
(the class map, the model and its id); it appears only when complete.

examples:
  walloc-edge dataset rgb-16x imagenette/train --out data/latents-16x
  walloc-edge dataset rgb-16x imagenette/train --resize 56 --out data/pixels-56
  walloc-edge dataset rgb-16x imagenette/train --continuous --out data/c16  (before rounding)
  walloc-edge dataset rgb-16x photos/ --out data/l16 --engine ray     (Ray Data; RAY_ADDRESS
                                                                      joins a cluster)
  walloc-edge dataset bundle/ photos/ --out data/l16                 (a sensor bundle: no torch)"""


def configure(p):
    p.add_argument("model", help="an embedded image model name, a model file, or a sensor "
                                 "bundle folder (then no torch is needed)")
    p.add_argument("images", help="a folder with one subfolder of images per class")
    p.add_argument("--out", required=True, help="the dataset folder to write")
    p.add_argument("--resize", type=positive_int, metavar="N",
                   help="write N x N pixels instead of latents (the baseline)")
    p.add_argument("--continuous", action="store_true",
                   help="write the encoder's continuous latents (before rounding, float32) "
                        "instead of what sensors send; needs the model, not a bundle")
    p.add_argument("--size", type=positive_int, default=224,
                   help="side of the square each image is brought to (for latents a multiple "
                        "of the model's block, 8 for the RGB models)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: Ray Data (pip install 'walloc-edge[ray]')")
    p.add_argument("--backend", default="numpy",
                   help="sensor runtime backend for a bundle (auto, native, onnxruntime, litert, numpy)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out images that cannot be read (each is named) instead of "
                        "stopping at the first")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing dataset folder (default: refuse)")
    p.epilog = EXAMPLES


def image_bundle(model, folder):
    """(bundle folder, model name, Bundle) for MODEL, which must be an RGB image model: a
    bundle as it is, or the model's encoder written to ``folder`` (numpy backend weights;
    needs torch to read the model)."""
    from ..runtime import load_bundle
    from ..runtime.modality import IMAGE

    if (Path(model) / "encoder.json").is_file():
        path, name = Path(model), Path(model).name
    else:
        from ..codec import load
        from ..codec.sensor import write_bundle

        write_bundle(load(model), folder)
        path, name = Path(folder), model
    bundle = load_bundle(path)
    if bundle.modality is not IMAGE or bundle.config["channels"] != 3:
        raise ValueError(f"{model} is not an RGB image model; datasets are made from RGB "
                         "photos")
    return path, name, bundle


def run(args):
    from ..learning.datasets import Converter, convert

    with tempfile.TemporaryDirectory(prefix="walloc-edge-dataset-") as tmp:
        folder, name, bundle = image_bundle(args.model, tmp)
        cfg = bundle.config
        if args.size % bundle.block and not args.resize:
            below = args.size // bundle.block * bundle.block
            raise ValueError(f"--size {args.size} is not a multiple of {bundle.block} ({name} "
                             f"encodes blocks of {bundle.block} pixels): use "
                             f"{below or bundle.block} or {below + bundle.block}")
        side = -(-args.size // bundle.block)
        latent_values = cfg["latent_dim"] * side * side
        kind = "pixels" if args.resize else "latents"
        if args.resize:
            say(f"{args.resize}x{args.resize} RGB pixels: {3 * args.resize ** 2:,} values per "
                f"image ({name}'s latents of {args.size}x{args.size}: {latent_values:,})")
        else:
            say(f"{name} latents of {args.size}x{args.size} images: {cfg['latent_dim']}x{side}"
                f"x{side} = {latent_values:,} values per image")
        info = {"kind": kind, "model": name, "model_id": bundle.model_id, "size": args.size,
                "resize": args.resize}
        if args.continuous:
            if args.resize or folder == Path(args.model):
                raise ValueError("--continuous writes latents of a model (its torch encoder): "
                                 "give a model, not a bundle, and no --resize")
            from ..learning.training import ContinuousConverter

            converter = ContinuousConverter(folder, args.size, args.model, args.backend)
        else:
            converter = Converter(folder, args.size, args.resize, args.backend)
        try:
            meta = convert(args.images, args.out, converter, info, args.engine,
                           args.skip_unreadable, args.overwrite,
                           progress=lambda jobs: progress(jobs, "converting", "image"), log=say)
        except FileExistsError as e:
            raise FileExistsError(f"{e} (--overwrite replaces it)") from None
    print(f"wrote {args.out}: {meta.rows:,} images of {len(meta.classes)} classes ({kind})")
