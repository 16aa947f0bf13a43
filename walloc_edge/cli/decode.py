"""``walloc-edge decode``: .wlc bitstreams → signals with the torch decoder, or a bundle's
decoder graph without torch (server side)."""
import math
import signal
import sys
from pathlib import Path

from ..runtime.files import distinct_names, expand_inputs
from ..runtime.io import signal_path, write_signal
from ..runtime import read_bitstream
from ..runtime.console import say
from ..runtime.errors import NewerBitstreamError
from ._shared import (DiskFull, add_decoder_options, add_overwrite_option, batch_stopped,
                      check_device, check_format, check_model, decoder_choices, is_bundle, kept_line,
                      kept_output, naming_engine, output_dir, progress, raise_if_disk_full,
                      skipped_line)
from ._stops import stop_on

EXAMPLES = """A bitstream made by another model, or a corrupted one, is reported and skipped
(exit status 1); the others are still decoded. One made by a newer walloc-edge (a rans level
or model version this one does not know) is reported on stderr and skipped too; when every
input is such a one, nothing here can decode them: exit status 2 (upgrade walloc-edge).
Each output is written whole or not at all; an existing one newer than its .wlc (its time
and its last change) is kept: a run again after a stop decodes only what is missing; one
older is not replaced without --overwrite, and counts as failed. A full disk stops the
batch (exit status 2); Ctrl-C, SIGTERM or SIGHUP stop it (130 after Ctrl-C, else 1). A
folder's .wlc files (searched recursively) keep their place below it (wlc/a/1.wlc ->
OUT/a/1.png); inputs that share a name keep apart by their folders' names (a/x.wlc, b/x.wlc
given as files -> a_x.png, b_x.png), whatever else is given and in whatever order.

examples:
  walloc-edge decode rgb-16x wlc/ -o decoded/
  walloc-edge decode rgb-16x wlc/*.wlc -o decoded/
  walloc-edge decode stereo-5x clip.wlc --format flac -o decoded/
  walloc-edge decode bundle/ wlc/*.wlc -o decoded/   # bundle/: export --decoder; no torch"""


def configure(p):
    p.add_argument("model", help="the model that encoded the bitstreams: an embedded name "
                                 "(walloc-edge models), a .safetensors file, a reference .pth, "
                                 "or its bundle folder exported with --decoder (decodes on "
                                 "onnxruntime, no torch needed)")
    p.add_argument("inputs", nargs="+", metavar="IN.wlc",
                   help=".wlc bitstreams, or folders of them (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="folder for the decoded files (created)")
    p.add_argument("--format", help="png, tiff or npy for images (default png; npy for other "
                                    "band counts); wav, flac or npy for audio (default wav)")
    add_decoder_options(p)
    add_overwrite_option(p)
    p.epilog = EXAMPLES


def decoder_for(args):
    check_model(args.model)  # a typo is said as such, not as a missing torch
    tile = {} if args.tile is None else {"tile": args.tile}
    if is_bundle(args.model):  # its decoder graph: no torch
        from ..decoder.bundle import BundleDecoder

        with naming_engine():
            return BundleDecoder(args.model, **decoder_choices(args), **tile)
    from ..decoder import Decoder

    check_device(args.device)
    with naming_engine():
        decoder = Decoder(args.model, args.device, **decoder_choices(args), **tile)
    if args.engine == "auto" or args.precision == "auto":
        say(f"decoder: {decoder.engine_name} ({auto_line(decoder.engine)})")
    return decoder


def auto_line(engine):
    """How "auto" chose ``engine``: its probe's times, or the hardware's precision."""
    if not engine.probe_seconds:
        return "auto: the precision this hardware computes"
    times = ", ".join(f"{name} {1e3 * s:.0f} ms" for name, s in engine.probe_seconds.items())
    return f"auto: the fastest on a probe here; {times}"


def decode_to_file(decoder, source, stem, fmt, overwrite=True):
    """The .wlc file ``source`` → its signal, written next to ``stem``: (signal, path), or
    (None, path) for an output kept as it is (``kept_output``), judged from the header
    before any decode."""
    judged = {}

    def accept(header):
        decoder.check(header)  # another model's bitstream is refused, never "kept"
        judged["path"] = signal_path(header, stem, fmt)
        judged["kept"] = kept_output(judged["path"], source, overwrite)
        if not judged["kept"]:
            check_memory(decoder, header)

    stream = read_bitstream(source.read_bytes(), accept=accept)
    if judged["kept"]:
        return None, judged["path"]
    signal = decoder.decode(stream)
    Path(stem).parent.mkdir(parents=True, exist_ok=True)  # a folder's input keeps its place
    return signal, write_signal(signal, stream.header, stem, fmt, overwrite)


def check_memory(decoder, header):
    """Refuse (ValueError) a bitstream whose decode would need more memory than this machine
    has available, before anything is allocated: a file of a few hundred KB can claim a
    gigapixel image. Only a claim whose output alone is a sizeable share of the memory is
    estimated (which measures the decoder once, kept in the user's cache)."""
    from ..decoder.cost import available_memory, cached_calibration

    available = available_memory()
    if available is None or 16 * 4 * math.prod(header.shape) < available:
        return
    if decoder.speed is None:
        cached_calibration(decoder)
    need = decoder.cost(header).bytes
    if need > available:
        raise ValueError(f"decoding its {'x'.join(map(str, header.shape))} "
                         f"{header.modality} would take about {need / 2 ** 30:,.1f} GiB of "
                         f"memory, more than the {available / 2 ** 30:,.1f} GiB available "
                         "here")


def run(args):
    decoder = decoder_for(args)  # checks the decoder's options first
    check_format(args.format, decoder)
    missing = [item for item in args.inputs if not Path(item).exists()]
    files, skipped = expand_inputs([i for i in args.inputs if i not in missing], {".wlc"},
                                   "bitstreams")
    files += [(Path(item), Path(Path(item).stem)) for item in missing]  # reported, skipped
    if len(missing) == len(args.inputs):  # nothing to decode: no folder made
        raise ValueError(f"no such file or folder: {', '.join(missing[:3])}"
                         f"{' …' if len(missing) > 3 else ''}")
    if not any(path.is_file() for path, _ in files):
        raise ValueError(f"no .wlc files in {', '.join(args.inputs[:3])}"
                         f"{' …' if len(args.inputs) > 3 else ''}"
                         + (f" ({skipped_line(skipped)})" if skipped else ""))
    out = output_dir(args.out)
    counts = {"failed": 0, "newer": 0, "kept": 0, "done": 0}
    named = distinct_names(files)
    stop_on(signal.SIGTERM, signal.SIGHUP)
    try:
        for path, name in progress(named, "decoding"):
            _decode_one(decoder, args, path, out / name, counts)
    except (KeyboardInterrupt, DiskFull) as e:
        _summary(counts, skipped)
        return batch_stopped(e, out, "decode")
    _summary(counts, skipped)
    if counts["newer"] == len(named):
        return 2
    return 1 if counts["failed"] or counts["newer"] else 0


def _decode_one(decoder, args, path, stem, counts):
    """One .wlc decoded to its file, or said why not (a line); ``counts`` kept."""
    try:
        decoded, target = decode_to_file(decoder, path, stem, args.format, args.overwrite)
    except NewerBitstreamError as e:
        counts["newer"] += 1
        print(f"skipped {path}: {e}", file=sys.stderr)
        return
    except FileExistsError as e:
        counts["failed"] += 1
        say(f"skipped {path}: {e}" + ("" if "--overwrite" in str(e)
                                      else " (--overwrite replaces it)"))
        return
    except FileNotFoundError:
        counts["failed"] += 1
        say(f"skipped {path}: no such file or folder")
        return
    except OSError as e:
        raise_if_disk_full(e)
        counts["failed"] += 1
        say(f"skipped {path}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""))
        return
    except ValueError as e:
        counts["failed"] += 1
        say(f"skipped {path}: {e}")
        return
    except MemoryError:
        counts["failed"] += 1
        say(f"skipped {path}: this machine has not the memory to decode it")
        return
    if decoded is None:
        counts["kept"] += 1
        return
    counts["done"] += 1
    kind = "24-bit PCM" if decoded.dtype.kind == "f" and target.suffix == ".flac" else \
        decoded.dtype  # FLAC holds no float: the deepest PCM it has
    say(f"{path} -> {target}  {'x'.join(map(str, decoded.shape))} {kind}")


def _summary(counts, skipped):
    if skipped:
        print(skipped_line(skipped))
    if counts["kept"]:
        print(kept_line(counts["kept"]))
