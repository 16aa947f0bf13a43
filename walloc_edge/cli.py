"""``walloc-edge <command>``: one console script, one sub-command per job.

Each command is a (configure, run) pair registered in ``COMMANDS``; only commands that
work are listed. A mistake in the user's input (a missing file, a bad option value) prints
one line naming it and exits with status 2; set WALLOC_EDGE_DEBUG=1 for the traceback.
"""
import argparse
import json
import os
import sys

import numpy as np

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
                   help="comma-separated formats: onnx (dynamic size), tflite (fixed size), "
                        "c (C99 sources for firmware) [default: onnx]")
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


def _configure_train(p):
    from .codec.training import PRESETS, TrainOptions

    d = TrainOptions()
    p.add_argument("--preset", required=True, choices=list(PRESETS),
                   help="the codec configuration to train")
    p.add_argument("--data", required=True,
                   help="a folder of images (PNG/JPEG/TIFF/.npy) or audio (WAV/FLAC), or "
                        "'synthetic' for generated data only")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument("--nd", type=int, help="decoder width (default: the preset's)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"[default: {d.steps}]")
    p.add_argument("--batch", type=int, default=d.batch, help=f"[default: {d.batch}]")
    p.add_argument("--crop", type=int, help="training crop: pixels per side (default 256) or "
                                            "audio samples (default 32768)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate [default: {d.lr}]")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"[default: {d.warmup}]")
    p.add_argument("--holdout", default="",
                   help="comma-separated file stems kept out of training and used to validate "
                        "(default: the last 5%% of the files)")
    p.add_argument("--synthetic-fraction", type=float, default=0.25,
                   help="share of synthetic examples mixed into folder data [default: 0.25]")
    p.add_argument("--val-every", type=int, default=d.val_every, help=f"[default: {d.val_every}]")
    p.add_argument("--save-every", type=int, default=d.save_every,
                   help=f"[default: {d.save_every}]")
    p.add_argument("--seed", type=int, default=d.seed, help=f"[default: {d.seed}]")
    p.add_argument("--device", default=d.device, help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--resume", action="store_true",
                   help="continue OUT from its saved step and optimiser state")
    p.add_argument("--init", metavar="MODEL",
                   help="fine-tune: start from MODEL's weights (a name or file) with a fresh "
                        "optimiser and schedule")
    p.add_argument("--latent-gain", type=float, default=1.0, metavar="K",
                   help="with --init: spread MODEL's latents K times wider first (finer "
                        "quantisation: more bits, less noise; the decoder's first layer is "
                        "divided by K so it starts from the same reconstruction) [default: 1]")
    p.epilog = ("Writes OUT (the model), OUT.state.pt (to resume) and OUT.log.csv (loss, learning\n"
                "rate and validation PSNR at intervals). Ctrl-C saves and stops. At the end,\n"
                "the model is evaluated on the held-out files (or generated samples) as\n"
                "walloc-edge eval would, into OUT.eval.json.\n\n"
                "example: walloc-edge train --preset rgb-16x --data photos/ --holdout 045,046 "
                "--out rgb16.safetensors")


def _run_train(args):
    from dataclasses import replace

    from .codec import data
    from .codec.training import PRESETS, TrainOptions, train

    config = PRESETS[args.preset]
    if args.nd:
        config = replace(config, Nd=args.nd)
    init = _initial_model(args, config)
    image = config.modality == "image"
    crop = args.crop or (256 if image else 32768)
    synthetic = data.DeadLeaves(crop, config.channels) if image else \
        data.SyntheticAudio(crop, config.channels)
    if args.data == "synthetic":
        source = synthetic
        val_rng = np.random.default_rng(12345)  # a fixed validation set, apart from training
        validation = [data.dead_leaves(crop, config.channels, val_rng) if image else
                      data.synthetic_audio(crop, config.channels, val_rng) for _ in range(4)]
        held_out = [(f"generated-{i}", v) for i, v in enumerate(validation)]
    else:
        source, validation, held_out = _folder_data(args, config, crop, data)
        if args.synthetic_fraction > 0:
            source = data.Mixture([source, synthetic],
                                  [1 - args.synthetic_fraction, args.synthetic_fraction])
    options = TrainOptions(steps=args.steps, batch=args.batch, crop=crop, lr=args.lr,
                           warmup=args.warmup, seed=args.seed, val_every=args.val_every,
                           save_every=args.save_every, device=args.device)
    print(f"training {args.preset} ({config.modality}, J={config.J}, latent_dim="
          f"{config.latent_dim}, Nd={config.Nd}) on {args.data} -> {args.out}")
    codec, history, stopped = train(config, source, validation, args.out, options,
                                    resume=args.resume, init=init)
    if history:
        last = history[-1]
        print(f"step {last['step']}: loss {last['loss']:.3e}, validation PSNR "
              f"{last['val_psnr']:.2f} dB; wrote {args.out}")
    if stopped:
        return 130
    if held_out:
        _final_eval(codec, args.out, held_out, args.device)
    return 0


def _initial_model(args, config):
    """The codec --init names (latents scaled by --latent-gain), or None."""
    from .codec import load
    from .codec.training import scale_latents

    if args.init is None:
        if args.latent_gain != 1:
            raise ValueError("--latent-gain scales the latents of the --init model; add --init")
        return None
    if args.resume:
        raise ValueError("--init starts a new run and --resume continues one: use one of them")
    codec = load(args.init)
    if codec.config != config:
        raise ValueError(f"--init {args.init} is an {codec.config.modality} model with "
                         f"{codec.config.latent_dim} latents, not a {args.preset} one")
    return scale_latents(codec, args.latent_gain) if args.latent_gain != 1 else codec


def _final_eval(codec, out, held_out, device):
    """`walloc-edge eval` of the trained ``codec`` (saved as ``out``) on the held-out files
    (or generated samples, as (name, sample)), into OUT.eval.json."""
    from pathlib import Path

    from .decoder import Decoder
    from .decoder.evaluate import evaluate_files, evaluate_sample, runtime_encoder, summarise

    decoder = Decoder(codec, device)
    cfg = decoder.codec.config
    encoder = runtime_encoder(decoder.codec)
    rate = 44100 if cfg.modality == "audio" else 0  # generated audio's
    named = [h for h in held_out if isinstance(h, tuple)]
    rows = [{"file": name, **evaluate_sample(decoder, encoder, sample, rate)}
            for name, sample in _progress(named, "final eval")]
    files = [h for h in held_out if not isinstance(h, tuple)]
    rows += evaluate_files(decoder, encoder, files,
                           progress=lambda items: _progress(items, "final eval"))
    summary = summarise(rows, cfg)
    print(f"final eval on {len(rows)} held-out {cfg.modality} sample(s):")
    _print_table(rows, summary, cfg.modality)
    report = Path(out).with_suffix(".eval.json")
    report.write_text(json.dumps({"model": str(out), "coder": "rans", "mean": summary,
                                  "files": rows}, indent=2) + "\n")
    print(f"wrote {report}")


def _folder_data(args, config, crop, data):
    """(training source, validation samples, held-out files) from --data and --holdout."""
    image = config.modality == "image"
    held = [s.strip() for s in args.holdout.split(",") if s.strip()]
    train_files, val_files = data.split_files(
        args.data, data.IMAGE_FILES if image else data.AUDIO_FILES, held)
    if image:
        source = data.ImageFolder(train_files, crop, config.channels)
        # Centre crops (at most 512 pixels a side) keep validation quick on a CPU.
        validation = [_centre(im, min(512, *im.shape[:2]))
                      for im in data.ImageFolder(val_files, 1, config.channels).images]
    else:
        source = data.AudioFolder(train_files, crop, config.channels)
        validation = [c[:crop * 4] for c in data.AudioFolder(val_files, crop, config.channels).clips]
    return source, validation, val_files


def _centre(image, size):
    y, x = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[y:y + size, x:x + size]


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
            sample, rate = read_input(path, b.modality, b.channels)
            start = time.perf_counter()
            blob = encoder.encode(sample, coder=args.coder, sample_rate=rate)
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


def _add_decoder_options(p):
    p.add_argument("--device", default="auto", help="decoder device: auto (CUDA when present), "
                                                   "cpu, cuda")
    p.add_argument("--tile", type=int, metavar="LATENTS",
                   help="decode images with more latents than this a side in overlapping tiles "
                        "of this size (default 64: 512 pixels at J = 3). It bounds the "
                        "decoder's memory and time; tiles agree with a whole decode to about "
                        "53 dB PSNR")


def _decoder(args):
    from .decoder import Decoder

    return Decoder(args.model, args.device, **({} if args.tile is None else {"tile": args.tile}))


def _configure_decode(p):
    p.add_argument("model", help="the model that encoded the bitstreams: a .safetensors file, "
                                 "a reference .pth, or an embedded model name")
    p.add_argument("inputs", nargs="+", metavar="IN.wlc")
    p.add_argument("-o", "--out", required=True, help="directory for the decoded files (created)")
    p.add_argument("--format", help="png, tiff or npy for images (default png; npy for other "
                                    "band counts); wav, flac or npy for audio (default wav)")
    _add_decoder_options(p)
    p.epilog = ("A bitstream made by another model, or a corrupted one, is reported and\n"
                "skipped (exit status 1); the others are still decoded.\n\n"
                "example: walloc-edge decode rgb-16x wlc/*.wlc -o decoded/")


def _decode_to_file(decoder, blob, stem, fmt):
    """.wlc bytes → the decoded signal, written next to ``stem``; (signal, path)."""
    from .decoder.evaluate import write_signal
    from .runtime import read_bitstream

    stream = read_bitstream(blob)
    signal = decoder.decode(stream)
    return signal, write_signal(signal, stream.header, stem, fmt)


def _run_decode(args):
    from pathlib import Path

    decoder = _decoder(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in _progress(args.inputs, "decoding"):
        path = Path(path)
        try:
            signal, target = _decode_to_file(decoder, path.read_bytes(), out / path.stem,
                                             args.format)
        except (OSError, ValueError) as e:
            failed += 1
            _say(f"skipped {path}: {e}")
            continue
        _say(f"{path} -> {target}  {'x'.join(map(str, signal.shape))} {signal.dtype}")
    return 1 if failed else 0


def _configure_eval(p):
    from .runtime import CODERS

    p.add_argument("model", help="a .safetensors file, a reference .pth, or an embedded name")
    p.add_argument("data", nargs="+", help="a folder of images or audio, or files")
    p.add_argument("--coder", default="rans", choices=list(CODERS),
                   help="entropy coder [default: rans]")
    p.add_argument("--bundle", help="encode with this exported bundle's backend instead of "
                                    "the numpy backend over the model's weights")
    p.add_argument("--backend", default="onnxruntime", help="backend for --bundle")
    _add_decoder_options(p)
    p.add_argument("--json", help="also write the per-file rows and the means to this file")
    p.epilog = ("Each file: sensor runtime encode -> .wlc -> torch decode, then PSNR, MS-SSIM\n"
                "(images), bits per pixel (per sample for audio), compression ratio and\n"
                "encode/decode MP/s (MS/s).\n\n"
                "example: walloc-edge eval rgb-16x photos/ --json eval.json")


def _run_eval(args):
    from pathlib import Path

    from .decoder.evaluate import evaluate_files, runtime_encoder, summarise
    from .runtime.io import AUDIO_SUFFIXES, IMAGE_SUFFIXES

    decoder = _decoder(args)
    cfg = decoder.codec.config
    suffixes = (IMAGE_SUFFIXES | {".npy"}) if cfg.modality == "image" else AUDIO_SUFFIXES
    files = []
    for item in map(Path, args.data):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in suffixes)
        elif item.is_file():
            files.append(item)
        else:
            raise ValueError(f"{item}: no such file or folder")
    if not files:
        raise ValueError(f"no {cfg.modality} files in {' '.join(args.data)}")
    encoder = runtime_encoder(decoder.codec, args.bundle, args.backend)
    rows = evaluate_files(decoder, encoder, files, args.coder,
                          progress=lambda items: _progress(items, "evaluating"))
    summary = summarise(rows, cfg)
    _print_table(rows, summary, cfg.modality)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "coder": args.coder,
                                               "mean": summary, "files": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if summary["failed"] else 0


def _print_table(rows, summary, modality):
    unit = "MP" if modality == "image" else "MS"
    rate = "bits_per_pixel" if modality == "image" else "bits_per_sample"
    columns = [("psnr", "PSNR dB", "{:.2f}"), ("ms_ssim", "MS-SSIM", "{:.4f}"),
               (rate, "bpp" if modality == "image" else "bits/sample", "{:.3f}"),
               ("compression_ratio", "ratio", "{:.1f}"),
               (f"encode_{unit}ps", f"enc {unit}/s", "{:.1f}"),
               (f"decode_{unit}ps", f"dec {unit}/s", "{:.2f}")]
    columns = [c for c in columns if any(c[0] in r for r in rows)]
    width = max([len(os.path.basename(r["file"])) for r in rows] + [4])
    print(f"{'file':<{width}}  " + "  ".join(f"{title:>10}" for _, title, _ in columns))
    for r in rows + [{"file": "mean", **summary}]:
        if "error" in r:
            print(f"{os.path.basename(r['file']):<{width}}  error: {r['error']}")
            continue
        print(f"{os.path.basename(r['file']):<{width}}  " +
              "  ".join(f"{fmt.format(r[key]):>10}" for key, _, fmt in columns))
    print(f"dimensionality reduction {summary['dimensionality_reduction']:g}x; "
          f"{summary['files'] - summary['failed']} of {summary['files']} files")


def _configure_demo(p):
    p.add_argument("--model", help="an RGB image model (default: the embedded rgb-16x)")
    p.add_argument("--audio-model", help="an audio model for the music part (default: the "
                                         "embedded stereo-5x when there is one)")
    p.add_argument("--out", default="demo-out", help="output folder [default: demo-out]")
    p.epilog = ("Exports the model's sensor encoder to ONNX (validated), encodes a bundled\n"
                "photo with the torch-free runtime into a .wlc, decodes it with torch, prints\n"
                "dimensionality reduction, compression ratio, bpp, PSNR, MS-SSIM and MP/s,\n"
                "and writes a side-by-side picture (original | decoded | error x4).")


def _run_demo(args):
    from .demo import run_demo
    from .models import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL, embedded_models

    model = args.model or DEFAULT_IMAGE_MODEL
    if args.model is None and model not in embedded_models():
        raise ValueError(f"the embedded model {model} is not in this installation; "
                         "pass --model PATH")
    audio = args.audio_model or (DEFAULT_AUDIO_MODEL if DEFAULT_AUDIO_MODEL in
                                 embedded_models() else None)
    run_demo(model, args.out, audio_model=audio)


def _configure_stream(p):
    from .runtime import BACKENDS, CODERS

    p.add_argument("bundle", help="sensor bundle directory (from walloc-edge export)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="images or audio files to send")
    p.add_argument("--to", required=True, help="tcp://HOST:PORT, udp://HOST:PORT[?mtu=1400], "
                                               "file:///PATH or - (stdout)")
    p.add_argument("--watch", metavar="DIR", help="also send every file that appears in DIR "
                                                  "until Ctrl-C")
    p.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    p.add_argument("--coder", default="rans", choices=list(CODERS))
    p.add_argument("--stream-id", type=int, default=0, help="this sensor's stream number "
                                                            "(0-65535) [default: 0]")
    p.epilog = "example: walloc-edge stream bundle/ photos/*.jpg --to tcp://10.0.0.2:9000"


def _run_stream(args):
    from .firmware_bridge.loops import stream_files, watch_folder
    from .firmware_bridge.transports import open_sender
    from .runtime import Encoder

    if not args.inputs and not args.watch:
        raise ValueError("give INPUT files, --watch DIR, or both")
    if not 0 <= args.stream_id <= 0xFFFF:
        raise ValueError(f"--stream-id {args.stream_id} is outside 0..65535")
    encoder = Encoder(args.bundle, args.backend)
    log = (lambda line: print(line, file=sys.stderr)) if args.to == "-" else print
    sent = failed = 0
    stopped = False
    with open_sender(args.to, args.stream_id) as sender:
        try:
            sent, failed = stream_files(encoder, sender, args.inputs, args.coder, log)
            if args.watch:
                more, more_failed = watch_folder(encoder, sender, args.watch, args.coder,
                                                 log=log)
                sent, failed = sent + more, failed + more_failed
        except KeyboardInterrupt:
            stopped = True
            sent = sender.sequence
    log(f"{'stopped: ' if stopped else ''}sent {sent} message(s), {sender.bytes:,} bytes to "
        f"{args.to}" + (f"; {failed} input(s) skipped" if failed else ""))
    return 130 if stopped else 1 if failed else 0


def _configure_serve(p):
    p.add_argument("model", help="the model the sensors encode with (path or embedded name)")
    p.add_argument("--listen", required=True, help="tcp://HOST:PORT, udp://HOST:PORT, "
                                                   "file:///PATH or - (stdin)")
    p.add_argument("--out", required=True, help="directory for decoded files and metrics.jsonl")
    p.add_argument("--format", help="output format (see walloc-edge decode --help)")
    _add_decoder_options(p)
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--idle", type=float, help="stop after this many seconds without a message")
    p.epilog = ("Each message: verify the .wlc (CRC, model id), decode it, write\n"
                "OUT/<stream>-<sequence>.<ext>, append a line to OUT/metrics.jsonl. Bad\n"
                "messages are logged with their sender and skipped. Ctrl-C stops and reports\n"
                "frames received, corrupted, lost and duplicated.\n\n"
                "example: walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/")


def _run_serve(args):
    import time
    from pathlib import Path

    from .firmware_bridge.loops import serve_messages
    from .firmware_bridge.transports import open_receiver

    decoder = _decoder(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    receiver = open_receiver(args.listen)
    if receiver.address:
        print(f"listening on {args.listen} (model {decoder.model_id}); Ctrl-C to stop")
    metrics = open(out / "metrics.jsonl", "a")

    def handle(received):
        start = time.perf_counter()
        signal, path = _decode_to_file(decoder, received.message,
                                       out / f"{received.stream}-{received.sequence}",
                                       args.format)
        record = {"time": time.time(), "sender": received.sender, "stream": received.stream,
                  "sequence": received.sequence, "bytes": len(received.message),
                  "shape": list(signal.shape), "decode_s": time.perf_counter() - start,
                  "file": str(path)}
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        print(f"{received.sender} stream {received.stream} #{received.sequence}: "
              f"{len(received.message):,} bytes -> {path}")

    with metrics:
        handled, rejected = serve_messages(receiver, handle, args.count, args.idle)
    stats = receiver.stats
    print(f"decoded {handled}, rejected {rejected}; frames {stats.frames}, corrupted "
          f"{stats.corrupted} ({stats.skipped_bytes} bytes skipped), lost messages "
          f"{stats.lost}, duplicates {stats.duplicates}")
    return 0


def _configure_bench(p):
    p.add_argument("--model", help="model to export and to decode with (default: the embedded "
                                   "rgb-16x when torch is installed)")
    p.add_argument("--bundle", help="an exported sensor bundle: benchmark it without torch "
                                    "(as on a Raspberry Pi or Jetson)")
    p.add_argument("--quick", action="store_true", help="a 1024x1024 input and 3 runs per row "
                                                        "(about a minute on 2 cores)")
    p.add_argument("--threads", default="1,2", help="onnxruntime thread counts [default: 1,2]")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--markdown", help="write the table as Markdown")
    p.add_argument("--plot", help="write a bar chart of the throughputs (SVG)")
    p.epilog = ("Rows: each backend (onnxruntime per thread count, LiteRT/XNNPACK, numpy), the\n"
                "torch encoder and decoder, and JPEG / WebP (size-matched) and PNG. Every number\n"
                "is measured in the run; a backend missing here shows as skipped, with why.")


def _run_bench(args):
    import sys as _sys

    from .bench import markdown, print_table, run_bench, svg_plot

    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    model = args.model
    if model is None and args.bundle is None:
        from .models import DEFAULT_IMAGE_MODEL

        model = DEFAULT_IMAGE_MODEL
    result = run_bench(args.bundle, model, quick=args.quick, threads=threads)
    print_table(result)
    command = "walloc-edge " + " ".join(_sys.argv[1:])
    if args.json:
        _write_text(args.json, json.dumps(result, indent=2) + "\n")
    if args.markdown:
        _write_text(args.markdown, markdown(result, command))
    if args.plot:
        _write_text(args.plot, svg_plot(result))


def _write_text(path, text):
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    print(f"wrote {path}")


def _configure_models(p):
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def _run_models(args):
    from .models import HERE, embedded_models

    models = embedded_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return
    if not models:
        print("no embedded models in this installation")
        return
    for name, info in models.items():
        size = (HERE / info["file"]).stat().st_size / 1e6
        print(f"{name:<10} {info['description']} ({size:.1f} MB)")
        steps = info.get("training", {}).get("steps")
        if steps:
            print(f"{'':<10}   trained {steps:,} steps (command: walloc-edge models --json)")
        measured = [_MEASURED.get(key, key + " {:g}").format(value)
                    for key, value in info.get("measured", {}).items()]
        if measured:
            print(f"{'':<10}   measured: {', '.join(measured)}")


_MEASURED = {"dimensionality_reduction": "{:.2f}x fewer values", "psnr": "PSNR {:.2f} dB",
             "ms_ssim": "MS-SSIM {:.3f}", "compression_ratio": "ratio {:.1f}",
             "bits_per_pixel": "{:.3f} bpp", "bits_per_sample": "{:.3f} bits/sample",
             "encode_MPps": "encode {:.1f} MP/s", "decode_MPps": "decode {:.2f} MP/s",
             "encode_MSps": "encode {:.2f} MS/s", "decode_MSps": "decode {:.2f} MS/s"}


COMMANDS = {
    "info": ("describe a model: configuration, latent shape, dimensionality reduction",
             _configure_info, _run_info),
    "export": ("write the sensor bundle (ONNX/TFLite encoder graphs + encoder.json) and "
               "validate each graph against torch", _configure_export, _run_export),
    "encode": ("sensor runtime: encode images or audio into .wlc bitstreams (no torch)",
               _configure_encode, _run_encode),
    "train": ("train a codec on a folder of images or audio, or on synthetic data; resumable",
              _configure_train, _run_train),
    "decode": ("server: decode .wlc bitstreams with the torch decoder into PNG/NPY/WAV",
               _configure_decode, _run_decode),
    "eval": ("rate, distortion and speed over a folder: PSNR, MS-SSIM, bpp, ratio, MP/s",
             _configure_eval, _run_eval),
    "demo": ("the main job: export, encode a photo on the sensor runtime, decode, report",
             _configure_demo, _run_demo),
    "models": ("list the models shipped in the package", _configure_models, _run_models),
    "bench": ("per-device throughput of every backend, with JPEG/WebP/PNG baselines",
              _configure_bench, _run_bench),
    "stream": ("sensor: encode files (or a watched folder) and send them over a transport",
               _configure_stream, _run_stream),
    "serve": ("server: receive bitstreams, verify, decode, write files and a metrics log",
              _configure_serve, _run_serve),
}


# The order of `walloc-edge --help`: the main job, then the path a signal takes.
COMMANDS = {name: COMMANDS[name] for name in (
    "demo", "models", "info", "export", "encode", "stream", "serve", "decode", "eval", "bench",
    "train")}


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
