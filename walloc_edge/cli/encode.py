"""``walloc-edge encode``: the sensor runtime on files, folders, video or a camera; no torch."""
import glob
import math
import signal
import time

from ..runtime.coders import CODERS
from ..runtime import read_bitstream
from ..runtime.console import say
from ..runtime.io import read_source, write_atomic
from ..runtime.modality import IMAGE
from ._shared import (DiskFull, add_backend_options, add_level_option, add_overwrite_option,
                      add_video_options, batch_stopped, check_video_options, coder_level,
                      input_files, kept_line,
                      kept_output, level_note, output_dir, progress, raise_if_disk_full,
                      sensor_encoder)
from ._stops import stop_on

EXAMPLES = """One OUT/NAME.wlc per input; files found in a folder keep their place below it
(photos/a/1.jpg -> OUT/a/1.wlc), and inputs that share a name keep apart (a.jpg, a.png ->
a-jpg.wlc, a-png.wlc). An existing .wlc of this model, coder and level newer than its input
(its time and its last change) is kept: a run again after a stop encodes only what is
missing; another is not replaced without --overwrite, and counts as failed. A video file's
frames are OUT/NAME-000000.wlc, ... (NAME-2fps-... with --fps 2), kept by a run again as
files are; a camera's OUT/camera0-START-000000.wlc, ..., START its capture's start (UTC). A
path that does not exist stops the command before any work (a typo); an unreadable or
unsupported input is reported and skipped; the rest are still encoded, and the exit status
is 1. A full disk stops the batch (exit status 2); Ctrl-C, SIGTERM or SIGHUP stop it (130
after Ctrl-C, else 1; --video ends on any of them, its frames so far kept). Each .wlc is
written whole or not at all.

examples:
  walloc-edge encode bundle/ photos/ -o wlc/
  walloc-edge encode bundle/ a.jpg b.png --coder webp -o wlc/
  walloc-edge encode bundle/ --video clip.mp4 --fps 2 --frames 100 -o wlc/
  walloc-edge encode bundle/ --video 0 --frames 10 -o wlc/          (the first camera)
  walloc-edge encode bundle-audio/ recordings/ --backend numpy -o wlc/"""


def configure(p):
    p.add_argument("bundle", help="sensor bundle folder (from walloc-edge export)")
    p.add_argument("inputs", nargs="*", default=[], metavar="INPUT",
                   help="images (PNG, JPEG, TIFF, BMP, WebP; .npy for hyperspectral cubes) or "
                        "audio (WAV, FLAC, Ogg), or folders of them (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="folder for the .wlc files (created)")
    add_backend_options(p)
    p.add_argument("--coder", default="rans", choices=list(CODERS), help="entropy coder")
    add_level_option(p)
    add_video_options(p)
    add_overwrite_option(p)
    p.epilog = EXAMPLES


def run(args):
    if not args.inputs and args.video is None:
        raise ValueError("give INPUT files or folders, --video SOURCE, or both")
    check_video_options(args)
    level = coder_level(args)  # a level the coder lacks is refused before any work
    encoder = sensor_encoder(args)
    b = encoder.bundle
    if args.video is not None and b.modality is not IMAGE:
        raise ValueError(f"--video needs an image model; {args.bundle} is an audio bundle")
    files, skipped = input_files(args, b.modality)
    if args.inputs and not files:
        raise ValueError(f"no {b.modality} files in {' '.join(args.inputs)}"
                         + (f" ({skipped})" if skipped else ""))
    out = output_dir(args.out)
    note = level_note(level, b.modality)
    if note:
        print(note)
    print(f"encoding with {encoder.describe()} + {args.coder}"
          f"{f' (level {level})' if level else ''} into {out}")
    totals = {"done": 0, "failed": 0, "kept": 0, "in": 0, "out": 0}

    def same_model(target):  # an output kept is this model's, coder's and level's
        from ..runtime.coders.rans import levels

        try:
            header = read_bitstream(target.read_bytes()).header
            return header.model_id == b.model_id and header.coder == args.coder and (
                args.coder != "rans" or
                levels.level_of(header.coder_params)[1] == levels.check_level(level))
        except (OSError, ValueError):  # unreadable, or no bitstream: not this run's
            return False

    stop_on(signal.SIGTERM, signal.SIGHUP)
    try:
        for path, name in progress(files, "encoding"):
            try:  # an output kept is decided before the input is read
                if kept_output(wlc_name(out / name), path, args.overwrite, same_model):
                    totals["kept"] += 1
                    continue
                source = read_source(path, b.modality, b.channels)
            except FileExistsError as e:
                totals["failed"] += 1
                say(f"skipped {path}: {e}")
                continue
            except ValueError as e:
                totals["failed"] += 1
                say(f"skipped {e}" if str(e).startswith(str(path)) else f"skipped {path}: {e}")
                continue
            _encode_one(encoder, args, source.sample, source.rate, path, out / name, totals,
                        source.raw_bytes, source.note)
        if args.video is not None:
            _encode_video(encoder, args, out, totals, same_model)
    except (KeyboardInterrupt, DiskFull) as e:
        _summary(totals, skipped, out)
        return batch_stopped(e, out, "encode")
    _summary(totals, skipped, out)
    return 1 if totals["failed"] else 0


def _summary(totals, skipped, out):
    if skipped:
        print(skipped)
    if totals["kept"]:
        print(kept_line(totals["kept"]))
    if totals["done"]:
        print(f"encoded {totals['done']} input(s): {totals['in']:,} -> {totals['out']:,} bytes "
              f"({ratio(totals['in'], totals['out'])}) in {out}")


def _encode_video(encoder, args, out, totals, same_model):
    """A video file's frames as OUT/NAME[-FPSfps]-000000.wlc, ...: the same frames at every
    run, so a run again keeps what an earlier one made, as for files. A camera's or a
    stream's as OUT/NAME-START-000000.wlc, START when its capture began (UTC): each run's
    frames are new, and none is taken for an earlier run's."""
    from ..runtime.sources import VideoSource

    source = VideoSource(args.video)
    video = source.file
    if video is not None:
        prefix = source.name + (f"-{args.fps:g}fps" if args.fps else "")
    else:
        now = time.time()  # to the millisecond: two runs started at once keep apart
        start = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1000):03d}Z"
        prefix = _new_prefix(out, f"{source.name}-{start}")
    try:
        for index, frame in enumerate(source.frames(args.fps, args.frames)):
            what, stem = f"{source.name} frame {index}", out / f"{prefix}-{index:06d}"
            try:
                if video is not None and kept_output(wlc_name(stem), video, args.overwrite,
                                                     same_model):
                    totals["kept"] += 1
                    continue
            except FileExistsError as e:
                totals["failed"] += 1
                say(f"skipped {what}: {e}")
                continue
            _encode_one(encoder, args, frame, 0, what, stem, totals)
    except KeyboardInterrupt:
        print(f"stopped: {source.name} after {totals['done']} input(s)")


def _new_prefix(out, prefix):
    """``prefix``, or PREFIX-2, -3 … where an earlier run in the same second took it."""
    n, name = 1, prefix
    while any(out.glob(f"{glob.escape(name)}-[0-9]*.wlc")):
        n += 1
        name = f"{prefix}-{n}"
    return name


def wlc_name(stem):
    return stem.with_name(stem.name + ".wlc")


def _encode_one(encoder, args, sample, rate, what, stem, totals, raw_bytes=None, note=None):
    """Encode one sample to STEM.wlc; its ratio counted against ``raw_bytes`` (the input's
    own samples: default, the sample's), ``note`` (how it was fitted to the model) said."""
    target = wlc_name(stem)
    start = time.perf_counter()
    try:
        if target.exists() and not args.overwrite:  # (a file's output was judged already:
            raise FileExistsError(f"{target} exists (--overwrite replaces it)")  # a frame's)
        blob = encoder.encode(sample, coder=args.coder, sample_rate=rate, level=args.level)
        seconds = time.perf_counter() - start
        target.parent.mkdir(parents=True, exist_ok=True)  # a folder's input keeps its place
        write_atomic(target, blob)
    except (ValueError, FileExistsError) as e:
        totals["failed"] += 1
        say(f"skipped {what}: {e}")
        return
    except OSError as e:
        raise_if_disk_full(e)
        totals["failed"] += 1
        say(f"skipped {what}: cannot write {target} ({e.strerror or e})")
        return
    raw_bytes = sample.nbytes if raw_bytes is None else raw_bytes
    totals["done"] += 1
    totals["in"] += raw_bytes
    totals["out"] += len(blob)
    kind = encoder.bundle.modality
    amount, unit = math.prod(sample.shape[:kind.spatial_axes]), kind.unit
    say(f"{what} -> {target}  {len(blob):,} bytes ({ratio(raw_bytes, len(blob))})"
        f"  {amount / 1e6 / seconds:.1f} {unit}/s" + (f"  (note: {note})" if note else ""))


def ratio(raw, coded):
    """How much smaller ``coded`` bytes are than ``raw`` ones, in words."""
    if coded >= raw:
        return f"{coded / raw:.1f}x larger than its {raw:,} bytes of samples"
    return f"{raw / coded:.1f}x smaller"
