"""``walloc-edge export``: a model's sensor encoder as a bundle, each graph validated."""
import sys
from pathlib import Path

from ..codec import load
from ..export import ExportError, export_bundle
from ..export.api import check_formats
from ..runtime.modality import IMAGE
from ._shared import positive_int

EXAMPLES = """Every graph is validated against the torch model (random inputs at sizes other
than the traced one, and real photos or music-like audio); the export fails (exit 1) if
fewer than 99.9% of integer latents are identical or any differs by more than 1.

examples:
  walloc-edge export rgb-16x --format onnx,litert --out bundle/
  walloc-edge export stereo-5x --format onnx,c --out bundle-audio/
  walloc-edge export rgb-16x --decoder --out bundle/   (and decoder.onnx for the server)
  walloc-edge export RGB_16x.pth --out bundle/   (a reference checkpoint, RGB_16x.json beside)"""


def configure(p):
    p.add_argument("model", help="an embedded model name (walloc-edge models), a walloc-edge "
                                 ".safetensors model, or a reference X.pth with X.json beside it")
    p.add_argument("--format", default="onnx",
                   help="comma-separated formats: onnx (dynamic size), litert (fixed size, "
                        "encoder.tflite; tflite is taken as another name for it), c (C99 "
                        "sources for firmware)")
    p.add_argument("--out", required=True, help="bundle folder to write (created)")
    p.add_argument("--height", type=positive_int, help="LiteRT image height (default 512)")
    p.add_argument("--width", type=positive_int, help="LiteRT image width (default 512)")
    p.add_argument("--length", type=positive_int,
                   help="LiteRT audio length in samples (default 64 * 2^J)")
    p.add_argument("--decoder", action="store_true",
                   help="also export the decoder network as decoder.onnx (validated: decodes "
                        "agree with torch at >= 45 dB PSNR), with the compander constants and "
                        "synthesis filters (decoder.json, decoder.npz)")
    p.epilog = EXAMPLES


def run(args):
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    formats = check_formats(formats)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: a file; a bundle is a folder (give a new or a "
                         "bundle's folder)")
    model = load(args.model)
    image = model.config.modality is IMAGE
    if image and args.length or not image and (args.height or args.width):
        raise ValueError(f"{args.model} is an {model.config.modality} model: use "
                         f"{'--height/--width' if image else '--length'}")
    static = None
    if image and (args.height or args.width):
        static = (args.height or 512, args.width or 512)
    elif args.length:
        static = (args.length,)
    print(f"exporting {args.model} ({model.config.modality}, J={model.J}, "
          f"latent_dim={model.latent_dim}) to {args.out}: {', '.join(formats)}")
    try:
        meta = export_bundle(model, args.out, formats, static_shape=static,
                             decoder=args.decoder)
    except ExportError as e:
        print(f"walloc-edge export: failed: {e}", file=sys.stderr)
        return 1
    print(f"model id {meta['model_id']}; wrote {Path(args.out) / 'encoder.json'}"
          + (f" (graphs: {', '.join(meta['graphs'])})" if meta["graphs"] else ""))
