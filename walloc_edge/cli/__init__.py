"""``walloc-edge <command>``: one console script, one module per command.

Each command module has ``configure(parser)`` and ``run(args)`` and is imported only when
its command runs, so the sensor commands (encode, stream, info BUNDLE, bench --bundle) start
on a device without torch. A command that needs a package this installation lacks says in
one line which extra to install. A mistake in the user's input (a missing file, a bad
option value) prints one line naming it and exits with status 2; set WALLOC_EDGE_DEBUG=1
for the traceback.
"""
import argparse
import importlib
import os
import sys

from .. import __version__
from ._shared import HelpFormatter

__all__ = ["main", "COMMANDS"]

# name: (one-line summary, the extra it needs beyond the sensor runtime or None). Each is
# the module of that name here. The order is that of `--help`: the main job, the catalogue,
# then the path a signal takes.
COMMANDS = {
    "demo": ("the main job: export, encode a photo on the sensor runtime, decode, report",
             "server"),
    "models": ("list the models shipped with walloc-edge", None),
    "info": ("describe a sensor bundle (no torch) or a model", None),
    "export": ("write the sensor bundle (ONNX/LiteRT/C encoders + encoder.json), validated "
               "against torch", "export"),
    "encode": ("sensor: encode images, audio, video or a camera into .wlc bitstreams", None),
    "stream": ("sensor: encode files, a watched folder, video or a camera and send them over "
               "a transport", None),
    "serve": ("server: receive bitstreams, verify, decode, write files and a metrics log",
              "server"),
    "decode": ("server: decode .wlc bitstreams into PNG/TIFF/NPY/WAV/FLAC", "server"),
    "eval": ("rate, distortion and speed over a folder: PSNR, MS-SSIM, bpp, ratio, MP/s",
             "server"),
    "bench": ("per-device throughput of every backend, with JPEG/WebP/PNG baselines "
              "(--bundle: no torch)", None),
    "train": ("train a codec on a folder of images or audio, or on synthetic data; resumable",
              "server"),
    "dataset": ("turn a folder of class subfolders of images into a latents dataset (Parquet), "
                "or its resized-pixels baseline", "learning"),
    "classify": ("train and evaluate classifiers on latents (or pixels) datasets: learning "
                 "without decoding", "server,learning"),
}

# Packages a command may lack, and the extra that brings each; a command that names its own
# extra (export) is told that one for the torch side.
EXTRA_FOR = {
    "torch": "server", "diffusers": "server", "pywt": "server", "safetensors": "server",
    "walloc_edge_models": "server", "onnx": "export", "onnxscript": "export",
    "litert_torch": "export", "cv2": "camera", "paho": "bridge", "serial": "bridge",
    "soundfile": "runtime", "tqdm": "runtime", "onnxruntime": "runtime",
    "ai_edge_litert": "litert", "pyarrow": "learning", "ray": "ray",
    "prometheus_client": "server",
}


SENSOR_COMMANDS = ("encode", "stream")
# Commands that also run without torch on a bundle exported with --decoder ([decode]).
BUNDLE_COMMANDS = ("serve", "decode")


def _chosen_command(argv):
    """The command named in ``argv`` (the first word that is not an option), or None."""
    return next((word for word in argv if not word.startswith("-")), None)


class Parser(argparse.ArgumentParser):
    """A usage mistake is one line that names the option and where help is, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    commands = None  # the top parser's subparsers (build_parser)

    def choices_of(self, command):
        """The parser of ``command`` (this one when None)."""
        known = self.commands.choices if self.commands else {}
        return known.get(command, self)


def build_parser(command=None):
    """The argument parser; only ``command``'s own options are configured (importing its
    module), so that listing the commands imports nothing heavy."""
    parser = Parser(
        prog="walloc-edge", formatter_class=HelpFormatter,
        description="WaLLoC on sensors: export the wavelet + linear encoder, encode on the "
                    "device, decode centrally.",
        epilog="extras (pip install 'walloc-edge[EXTRA]'):\n"
               "  runtime   a sensor: onnxruntime, soundfile, tqdm\n"
               "  litert    a sensor with LiteRT (XNNPACK) instead\n"
               "  camera    video files, cameras and RTSP streams (OpenCV)\n"
               "  bridge    serial and MQTT links\n"
               "  server    decode, serve, eval, train, demo: torch and the model weights\n"
               "  decode    decode and serve without torch, from a bundle exported with "
               "--decoder\n"
               "  s3        serve --out s3://BUCKET/PREFIX (an object store, through s3fs)\n"
               "  export    export models to ONNX/LiteRT/C (includes server)\n"
               "  learning  latents datasets (pyarrow); with server, classifiers\n"
               "  ray       datasets on Ray Data (includes learning)\n\n"
               "'walloc-edge COMMAND --help' explains each command, with examples.")
    parser.add_argument("--version", action="version", version=f"walloc-edge {__version__}")
    sub = parser.commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                                  parser_class=Parser)
    for name, (summary, extra) in COMMANDS.items():
        shown = summary + (" (needs [server]; [decode] runs a bundle without torch)"
                           if name in BUNDLE_COMMANDS else f" (needs [{extra}])" if extra else
                           " (no torch)" if name in SENSOR_COMMANDS else "")
        p = sub.add_parser(name, help=shown, description=shown, formatter_class=HelpFormatter)
        if name == command:
            _module(name).configure(p)
    return parser


def _module(name):
    return importlib.import_module(f".{name}", __name__)


def _missing_extra(command, error):
    """One line for a command that needs a package that is not installed, or None."""
    root = (error.name or "").split(".")[0]
    extra = EXTRA_FOR.get(root)
    if extra is None:
        return None
    if extra == "server" and COMMANDS.get(command, (None, None))[1] == "export":
        extra = "export"
    line = (f"walloc-edge {command}: needs {root}, which is not installed here: "
            f"pip install 'walloc-edge[{extra}]'")
    if root == "torch":
        line += " (a CPU machine: install torch's CPU wheel first, from " \
                "https://download.pytorch.org/whl/cpu)"
    if command in BUNDLE_COMMANDS and extra == "server":
        line += "; or, without torch, 'walloc-edge[decode]' and a bundle exported with --decoder"
    return line


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _chosen_command(argv)
    try:
        parser = build_parser(command if command in COMMANDS else None)
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the command's parser, which points to its own --help
            parser.choices_of(args.command).error(
                f"unrecognized arguments: {' '.join(unknown)}")
        if args.command is None:
            parser.print_help()
            return 2
        return _module(args.command).run(args) or 0
    except ModuleNotFoundError as e:
        line = _missing_extra(command, e)
        if line is None or os.environ.get("WALLOC_EDGE_DEBUG"):
            raise
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # before a command's own stop (a model still loading)
        from ._stops import Stopped

        print(f"walloc-edge {command}: stopped", file=sys.stderr)
        return 0 if isinstance(e, Stopped) else 130
    except BrokenPipeError:  # its reader stopped reading (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's own
        return 141  # flush at exit would raise again); 128 + SIGPIPE, as a shell's tools
    except (ValueError, OSError) as e:  # user input: bad file, bad value
        if os.environ.get("WALLOC_EDGE_DEBUG"):
            raise
        print(f"walloc-edge {command}: error: {e}", file=sys.stderr)
        return 2
