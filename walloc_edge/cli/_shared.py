"""What several commands share: help layout, progress bars, option types, input folders,
output folders, naming the option a refused value came from. Imports nothing heavy: the
sensor commands use it without torch."""
import argparse
import contextlib
import errno
import os
import sys
import tempfile
from pathlib import Path

from ._stops import Stopped

__all__ = ["HelpFormatter", "progress", "write_text", "output_dir", "input_files",
           "skipped_line", "positive_int", "positive_number", "thread_counts", "torch_device",
           "check_device", "naming", "add_decoder_options", "decoder_choices", "naming_engine",
           "check_model", "is_bundle", "add_backend_options",
           "add_video_options", "sensor_encoder", "add_overwrite_option"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Every option that has a default shows it as "(default: X)" (options without one say
    in their help what happens); descriptions and epilogs keep their line breaks, so that
    examples stay readable."""

    def _get_help_string(self, action):
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or default == [] or \
                "default" in (action.help or ""):
            return action.help
        if isinstance(default, (tuple, list)):  # a parsed list: shown as it is typed
            return f"{action.help} (default: {','.join(map(str, default))})"
        return super()._get_help_string(action)


def progress(items, what, unit="file"):
    """A progress bar over many items (tqdm when installed), the plain items otherwise."""
    if len(items) < 2:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=what, unit=unit, file=sys.stderr, leave=False, disable=None)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (its folder created) and say so."""
    from ..runtime.io import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())
    print(f"wrote {path}")


def output_dir(path, option="-o/--out"):
    """``path`` as a folder, created; a file of that name is a user error, not a traceback."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; give a folder (it is created if "
                         "missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file on the way, no permission, a read-only file system
        raise ValueError(f"{option} {path}: cannot create it ({e.strerror or e})") from None
    try:  # said before the work, not file by file after it; a probe, since permission
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")  # bits can tell wrong
    except OSError as e:  # (capabilities, CIFS and FUSE mounts)
        raise ValueError(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def input_files(args, modality):
    """(files as (path, output name) pairs, a line on what the folders held that was
    skipped) of the INPUT arguments, for a model of ``modality``."""
    from ..runtime.files import distinct_names, expand_inputs
    files, skipped = expand_inputs(args.inputs, modality.inputs, modality.plural)
    return distinct_names(files), skipped_line(skipped)


def add_overwrite_option(p):
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that exist (default: an output newer than its "
                        "input is kept, as a run again after a stop wants; one older than "
                        "its input is left as it is and the input reported as failed)")


def kept_output(target, source, overwrite, same=lambda target: True):
    """Whether ``target`` exists and is kept: it is newer than its ``source`` file (the
    output of an earlier run, say one that was stopped) and ``same(target)`` (e.g. made by
    this model). One older than its source, or made otherwise, is a FileExistsError: the
    input or the settings changed since it was made, and replacing it is --overwrite's to
    say, not a rerun's."""
    if overwrite or not target.exists():
        return False
    try:  # its change time too: a file copied in with an older time (cp -p, rsync -a,
        stat = source.stat()  # unzip) is changed now
        newer = target.stat().st_mtime_ns >= max(stat.st_mtime_ns, stat.st_ctime_ns)
    except OSError:  # the source went away meanwhile: it is said as it is read
        return False
    if not newer:
        raise FileExistsError(f"{target} exists and is older than {source} (or its last "
                              "change) (--overwrite replaces it)")
    if not same(target):
        raise FileExistsError(f"{target} exists, not made by this model and these settings "
                              "(--overwrite replaces it)")
    return True


class DiskFull(Exception):
    """An output folder's disk is full: a batch stops (every other input would fail)."""


def raise_if_disk_full(error):
    """DiskFull for an OSError that says the disk is full; nothing for any other."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFull(error.strerror) from None


def batch_stopped(stop, out, verb):
    """The end of an encode or decode batch cut short by ``stop`` (a Ctrl-C, a service
    manager's Stopped, or DiskFull: a ValueError, one line) after its summary was said:
    its exit status."""
    if isinstance(stop, DiskFull):
        raise ValueError(f"-o {out}: the disk is full ({stop}); the rest was not {verb}d "
                         f"(a run again, with room, {verb}s what is missing)")
    print(f"stopped ({stop or 'Ctrl-C'}): a run again {verb}s what is missing")
    return 1 if isinstance(stop, Stopped) else 130


def kept_line(kept):
    """The summary of outputs kept by ``kept_output``, or ''."""
    return (f"kept {kept} existing output(s), each newer than its input (--overwrite "
            "replaces them)") if kept else ""


def skipped_line(skipped):
    """'skipped in the folders: 1 hidden (.name), 2 not images (.txt)' or ''; a file given
    by name is never skipped so."""
    if not skipped:
        return ""
    grouped = {}  # "not images (.txt)", "not images (.wlc)" -> 2 not images (.txt, .wlc)
    for reason, n in sorted(skipped.items()):
        what, _, detail = reason.partition(" (")
        count, details = grouped.get(what, (0, []))
        grouped[what] = (count + n, details + ([detail.rstrip(")")] if detail else []))
    return "skipped in the folders: " + ", ".join(
        f"{n} {what}" + (f" ({', '.join(details)})" if details else "")
        for what, (n, details) in grouped.items())


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def positive_number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def thread_counts(text):
    """'1,2' → (1, 2): thread counts for the bench."""
    try:
        counts = tuple(positive_int(t) for t in text.split(",") if t.strip())
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give thread counts as whole numbers separated by commas, e.g. 1,2") \
            from None
    if not counts:
        raise argparse.ArgumentTypeError("give at least one thread count, e.g. 1,2")
    return counts


def torch_device(text):
    """auto, cpu, cuda or cuda:N; anything else is a usage error naming the choices."""
    name = text.strip().lower()
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and
                                                   name[5:].isdigit()):
        return name
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda or "
                                     "cuda:N (e.g. cuda:0)")


def check_device(device):
    """Refuse a --device that is not here (CUDA without a GPU) before any model loads."""
    from ..codec.device import resolve_device

    with naming("--device"):
        resolve_device(device)


@contextlib.contextmanager
def naming(option):
    """Name ``option`` in the ValueError a library call raises about the value the option
    gave it (the library's message starts with the value: "--watch in: no such folder")."""
    try:
        yield
    except ValueError as e:
        raise ValueError(f"{option} {e}") from None


def add_decoder_options(p, engine="torch"):
    """The decoder options; ``engine``: the command's default engine (decoder_choices')."""
    p.add_argument("--device", default="auto", type=torch_device,
                   help="decoder device: auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--tile", type=positive_int, metavar="LATENTS",
                   help="decode images with more latents than this a side in overlapping tiles "
                        "of this size (default 64: 512 pixels at J = 3). It bounds the "
                        "decoder's memory and time; tiles agree with a whole decode to about "
                        "53 dB PSNR")
    p.add_argument("--engine",
                   help="what runs the decoder network: torch, onnxruntime (the network "
                        "exported to ONNX once, kept in ~/.cache/walloc-edge), or auto: the "
                        "fastest here of those that agree with fp32 torch at >= 45 dB PSNR "
                        "(on the CPU measured on a small probe: torch in bf16 where the CPU "
                        "has avx512_bf16/AMX, onnxruntime fp32, torch fp32; on CUDA torch "
                        f"bf16/fp16). Default: {engine}; onnxruntime for a bundle folder as MODEL "
                        "(its decoder graph, no torch needed)")
    p.add_argument("--precision",
                   help="the decoder network's precision: fp32, bf16, fp16 (where the CPU or "
                        "GPU computes it), int8 (onnxruntime: its MatMuls quantised), or auto "
                        "(default: fp32; auto with --engine auto). "
                        "De-companding and wavelet synthesis stay fp32")
    p.add_argument("--provider", metavar="LIST",
                   help="onnxruntime execution providers of the decoder (--engine onnxruntime "
                        "or auto), e.g. tensorrt,cuda,cpu (default: the CPU)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the torch engine's network (slow first decode; "
                        "decodes without it, with a warning, where compiling fails)")


def decoder_choices(args, engine="torch"):
    """The Decoder keywords that the decoder options name (--tile aside), ``engine`` unless
    --engine says otherwise; a bundle folder as MODEL decodes with its decoder graph on
    onnxruntime."""
    engine = args.engine or ("onnxruntime" if is_bundle(args.model) else engine)
    return {"engine": engine, "precision": args.precision,
            "providers": args.provider, "compile": args.compile}


def check_model(model):
    """A MODEL argument that names nothing here (a mistyped path, bundle or model name) is
    said so, before anything needs torch to load it: ValueError naming what exists."""
    path = Path(model)
    if path.is_dir() and not is_bundle(path):
        raise ValueError(f"{model}: a folder, but no bundle (no encoder.json in it); give a "
                         "bundle folder from walloc-edge export, a model file or an embedded "
                         "model's name")
    if path.is_file() and path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"{model}: not a model file (.safetensors, or a reference .pth); "
                         "give one, a bundle folder or an embedded model's name")
    if path.exists():
        return
    if len(path.parts) > 1 or path.suffix:
        raise ValueError(f"{model}: no such bundle folder or model file")
    from ..zoo import embedded_models, weights_installed

    if not weights_installed():
        raise ValueError(f"{model}: no such bundle folder here, and the embedded models "
                         "are not installed: pip install 'walloc-edge[server]' (a bundle "
                         "exported with --decoder decodes without them)")
    if model not in embedded_models():
        raise ValueError(f"{model}: no such bundle folder or embedded model (embedded: "
                         f"{', '.join(embedded_models())})")


def is_bundle(model):
    """Whether MODEL names a sensor bundle folder (not a model name or file)."""
    return Path(model, "encoder.json").is_file()


@contextlib.contextmanager
def naming_engine():
    """Name the decoder option (--engine, --precision, --provider, --compile) that a
    decoder EngineError is about."""
    try:
        yield
    except ValueError as e:
        if not hasattr(e, "option"):
            raise
        raise ValueError(f"--{e.option} {e.detail}") from None


def add_backend_options(p):
    """--backend, --provider and --threads of the sensor runtime."""
    from ..runtime.backends import BACKENDS

    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                   help="what runs the sensor encoder (native: the C core, built at install "
                        "where a C compiler is found; fixed-point: the same in integers, only "
                        "when named); auto takes the first of "
                        f"{', '.join(b for b in BACKENDS if b != 'fixed-point')} that can run "
                        "the bundle here (walloc-edge info says which and why)")
    p.add_argument("--provider", metavar="LIST",
                   help="onnxruntime execution providers in order of preference, e.g. "
                        "tensorrt,cuda,cpu on a Jetson (default: the CPU)")
    p.add_argument("--threads", type=positive_int,
                   help="threads for the backend (default: all cores)")


def add_video_options(p):
    p.add_argument("--video", metavar="SOURCE",
                   help="also encode frames from a video: a camera index (0), a video file, "
                        "a stream URL (rtsp://...), or picamera2 (a Raspberry Pi camera); "
                        "needs [camera] (OpenCV) or picamera2")
    p.add_argument("--fps", type=positive_number, metavar="N",
                   help="at most N video frames a second (of the file's own time for a file), "
                        "dropping the others (default: every frame)")
    p.add_argument("--frames", type=positive_int, metavar="N",
                   help="stop after N video frames (default: to the end of the video, or "
                        "Ctrl-C for a camera)")


def check_video_options(args):
    """--fps and --frames without --video: refused, not ignored."""
    given = [name for name, value in (("--fps", args.fps), ("--frames", args.frames)) if value]
    if given and args.video is None:
        raise ValueError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                         "--video frames; add --video SOURCE")


def add_level_option(p):
    """--level: how hard the coder works (rans: best, fast, fastest)."""
    from ..runtime.coders import CODERS

    p.add_argument("--level", choices=CODERS["rans"].levels,
                   help="the rans coder's level, as zstd's: best (the default) fits its "
                        "predictors to each frame; fast fits them on fewer latents (0.2%% "
                        "larger on photos, 1%% on music); fastest uses fixed ones (10%% "
                        "larger on photos; not for audio); every decoder reads every level")


def coder_level(args):
    """--level, checked against --coder (only rans has levels)."""
    if args.level is not None and args.coder != "rans":
        raise ValueError(f"--level applies to the rans coder, not --coder {args.coder}")
    return args.level


def level_note(level, modality):
    """A note where --level costs far more size than it says for this modality, or None."""
    from ..runtime.modality import AUDIO

    if level == "fastest" and modality is AUDIO:
        return ("note: --level fastest makes audio 1.5-1.7 times the size of --level best "
                "(its fixed predictors see nothing of how music's channels predict each "
                "other); --level fast is about 1% larger than best")
    return None


def sensor_encoder(args):
    """The runtime Encoder that --backend, --provider and --threads name."""
    from ..runtime import Encoder
    from ..runtime.backends import BackendError

    try:
        return Encoder(args.bundle, args.backend, threads=args.threads, providers=args.provider)
    except BackendError as e:
        if args.provider is None:
            raise ValueError(f"--backend {args.backend}: {e}") from None
        raise ValueError(f"--provider {args.provider}: {e} (--backend onnxruntime or auto "
                         "takes providers)") from None


def check_format(fmt, decoder):
    """--format against what the decoder's signals can be written as: refused before any
    work, not file by file."""
    formats = decoder.modality.output_formats
    if fmt is not None and fmt not in formats:
        raise ValueError(f"--format {fmt}: {decoder.modality} is written as "
                         f"{', '.join(formats)}")
    if fmt in ("png", "tiff") and decoder.channels not in (1, 3):
        raise ValueError(f"--format {fmt}: this model's images have {decoder.channels} bands; "
                         "write them as npy")
    from ..runtime.io import FLAC_MAX_CHANNELS

    if fmt == "flac" and decoder.channels > FLAC_MAX_CHANNELS:
        raise ValueError(f"--format flac: this model's audio has {decoder.channels} channels, "
                         f"FLAC {FLAC_MAX_CHANNELS} at most; write it as wav")
