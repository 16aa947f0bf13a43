"""``walloc-edge <command>``: one console script, one sub-command per job.

Each command is a (configure, run) pair registered in ``COMMANDS``; only commands that
work are listed. A mistake in the user's input (a missing file, a bad option value) prints
one line naming it and exits with status 2; set WALLOC_EDGE_DEBUG=1 for the traceback.
"""
import argparse
import json
import os
import sys

from . import __version__


def _configure_info(p):
    p.add_argument("model", help="a walloc-edge .safetensors model, or a reference X.pth "
                                 "with X.json beside it")
    p.add_argument("--json", action="store_true", help="print the description as JSON")


def _run_info(args):
    from .codec import load

    model = load(args.model)
    c = model.config
    count = lambda m: sum(p.numel() for p in m.parameters())
    latent_shape = "H/{0} x W/{0}".format(2 ** c.J) if c.modality == "image" else \
        "L/{} + 2".format(2 ** c.J)
    info = {
        "model": str(args.model),
        **c.to_dict(),
        "subbands": c.subbands,
        "dimensionality_reduction": round(c.dimensionality_reduction, 3),
        "latent_range": 2 ** (c.latent_bits - 1) - 1,
        "encoder_parameters": count(model.encoder),
        "decoder_parameters": count(model.decoder) + (count(model.post) if c.post_filter else 0),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return
    unit = "channels" if c.modality == "image" else "audio channels"
    print(f"model        {args.model}")
    print(f"modality     {c.modality}, {c.channels} {unit}")
    print(f"transform    {c.wavelet} wavelet packet, J={c.J} -> {c.subbands} subbands")
    print(f"latents      {c.latent_dim} x ({latent_shape}), {c.latent_bits}-bit "
          f"(integers in +-{info['latent_range']})")
    print(f"reduction    {info['dimensionality_reduction']:g}x fewer values than the input")
    print(f"encoder      {info['encoder_parameters']:,} parameters"
          f"{' (one 1x1 conv)' if c.lightweight_encode else f' (Ne={c.Ne})'}")
    print(f"decoder      {info['decoder_parameters']:,} parameters (Nd={c.Nd}"
          f"{', post filter' if c.post_filter else ''})")


def _configure_export(p):
    p.add_argument("model", help="a walloc-edge .safetensors model, or a reference X.pth "
                                 "with X.json beside it")
    p.add_argument("--format", default="onnx",
                   help="comma-separated graph formats: onnx (dynamic size), tflite (fixed "
                        "size) [default: onnx]")
    p.add_argument("--out", required=True, help="bundle directory to write (created)")
    p.add_argument("--height", type=int, help="TFLite image height (default 512)")
    p.add_argument("--width", type=int, help="TFLite image width (default 512)")
    p.add_argument("--length", type=int, help="TFLite audio length in samples "
                                              "(default 64 * 2^J)")
    p.epilog = ("Every graph is validated against the torch model (random inputs at sizes\n"
                "other than the traced one, and real photos or music-like audio); the export\n"
                "fails (exit 1) if fewer than 99.9% of integer latents are identical or any\n"
                "differs by more than 1.\n\n"
                "example: walloc-edge export RGB_16x.pth --format onnx,tflite --out bundle/")


def _run_export(args):
    from .codec import load
    from .export import ExportError, export_bundle
    from .export.api import check_formats

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    check_formats(formats)
    model = load(args.model)
    image = model.config.modality == "image"
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
        meta = export_bundle(model, args.out, formats, static_shape=static)
    except ExportError as e:
        print(f"walloc-edge export: failed: {e}", file=sys.stderr)
        return 1
    print(f"model id {meta['model_id']}; wrote {args.out}/encoder.json")


def _configure_encode(p):
    from .runtime import BACKENDS, CODERS

    p.add_argument("bundle", help="sensor bundle directory (from walloc-edge export)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="images (PNG, JPEG, TIFF; .npy for hyperspectral cubes) or audio "
                        "(WAV, FLAC)")
    p.add_argument("-o", "--out", required=True, help="directory for the .wlc files (created)")
    p.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                   help="what runs the encoder graph [default: onnxruntime]")
    p.add_argument("--coder", default="rans", choices=list(CODERS),
                   help="entropy coder [default: rans]")
    p.add_argument("--threads", type=int, help="threads for the backend (default: all cores)")
    p.epilog = ("One INPUT.wlc per input (the input's name with .wlc). An unreadable or\n"
                "unsupported input is reported and skipped; the rest are still encoded, and\n"
                "the exit status is 1.\n\n"
                "example: walloc-edge encode bundle/ photos/*.jpg -o wlc/ --coder rans")


def _run_encode(args):
    import time
    from pathlib import Path

    from .runtime import Encoder
    from .runtime.io import read_input

    encoder = Encoder(args.bundle, args.backend, threads=args.threads)
    b = encoder.bundle
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names, failed, total_in, total_out = set(), 0, 0, 0
    for path in _progress(args.inputs, "encoding"):
        path = Path(path)
        target = out / (path.stem + ".wlc")
        if target.name in names:  # two inputs with one stem: keep both
            target = out / (path.name + ".wlc")
        names.add(target.name)
        try:
            sample = read_input(path, b.modality, b.channels)
            start = time.perf_counter()
            blob = encoder.encode(sample, coder=args.coder)
            seconds = time.perf_counter() - start
        except ValueError as e:
            failed += 1
            _say(f"skipped {e}" if str(e).startswith(str(path)) else f"skipped {path}: {e}")
            continue
        target.write_bytes(blob)
        total_in, total_out = total_in + sample.nbytes, total_out + len(blob)
        unit = (sample.shape[0] * sample.shape[1], "MP") if b.modality == "image" else \
            (sample.shape[0], "MS")
        _say(f"{path} -> {target}  {len(blob):,} bytes ({sample.nbytes / len(blob):.1f}x "
             f"smaller)  {unit[0] / 1e6 / seconds:.1f} {unit[1]}/s")
    done = len(args.inputs) - failed
    if done:
        print(f"encoded {done} file(s) with {args.backend} + {args.coder}: {total_in:,} -> "
              f"{total_out:,} bytes ({total_in / max(total_out, 1):.1f}x) in {out}")
    return 1 if failed else 0


def _progress(items, what):
    """A progress bar over many items (tqdm when installed), the plain items otherwise."""
    if len(items) < 2:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=what, unit="file", file=sys.stderr, leave=False, disable=None)


def _say(line):
    """Print a line without breaking a progress bar."""
    try:
        from tqdm import tqdm
        tqdm.write(line)
    except ImportError:
        print(line)


COMMANDS = {
    "info": ("describe a model: configuration, latent shape, dimensionality reduction",
             _configure_info, _run_info),
    "export": ("write the sensor bundle (ONNX/TFLite encoder graphs + encoder.json) and "
               "validate each graph against torch", _configure_export, _run_export),
    "encode": ("sensor runtime: encode images or audio into .wlc bitstreams (no torch)",
               _configure_encode, _run_encode),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="walloc-edge",
        description="WaLLoC on sensors: export the wavelet + linear encoder, encode on the "
                    "device, decode centrally.")
    parser.add_argument("--version", action="version", version=f"walloc-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=summary, description=summary,
                                 formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][2](args) or 0
    except (ValueError, OSError) as e:  # user input: bad file, bad value
        if os.environ.get("WALLOC_EDGE_DEBUG"):
            raise
        print(f"walloc-edge {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
