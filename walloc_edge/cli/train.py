"""``walloc-edge train``: train a codec (image or audio folder, or synthetic data)."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..codec import data, load
from ..codec.models import scale_latents
from ..codec.training import PRESETS, TrainOptions, state_path, train
from ..decoder import Decoder
from ..evaluation.evaluate import (eval_table, evaluate_files, evaluate_sample,
                                   runtime_encoder, summarise)
from ..runtime.io import match_channels
from ..runtime.modality import IMAGE
from ._shared import check_device, naming, progress, torch_device, write_text


def configure(p):
    d = TrainOptions()
    p.add_argument("--preset", required=True, choices=list(PRESETS),
                   help="the codec configuration to train")
    p.add_argument("--data", required=True,
                   help="a folder of images (PNG/JPEG/TIFF/.npy) or audio (WAV/FLAC/Ogg), or "
                        "'synthetic' for generated data only")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument("--nd", type=int, help="decoder width (default: the preset's)")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="training steps (the cosine schedule's length)")
    p.add_argument("--batch", type=int, default=d.batch, help="examples per step")
    p.add_argument("--crop", type=int, help="training crop: pixels per side (default 256) or "
                                            "audio samples (default 32768)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=d.warmup, help="steps of linear warm-up")
    p.add_argument("--holdout", default="",
                   help="comma-separated file stems kept out of training and used to validate "
                        "(default: the last 5%% of the files)")
    p.add_argument("--synthetic-fraction", type=float, default=0.25,
                   help="share of synthetic examples mixed into folder data")
    p.add_argument("--val-every", type=int, default=d.val_every,
                   help="steps between validation PSNR measurements")
    p.add_argument("--save-every", type=int, default=d.save_every,
                   help="steps between checkpoints (OUT and OUT.state.pt)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (data and weights)")
    p.add_argument("--device", default=d.device, type=torch_device,
                   help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--resume", action="store_true",
                   help="continue OUT from its saved step and optimiser state")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run over an OUT that holds one (without --resume or "
                        "this, such an OUT is refused: it would lose that run)")
    p.add_argument("--init", metavar="MODEL",
                   help="fine-tune: start from MODEL's weights (a name or file) with a fresh "
                        "optimiser and schedule")
    p.add_argument("--latent-gain", type=float, default=1.0, metavar="K",
                   help="with --init: spread MODEL's latents K times wider first (finer "
                        "quantisation: more bits, less noise; the decoder's first layer is "
                        "divided by K so it starts from the same reconstruction)")
    p.epilog = ("Writes OUT (the model), OUT.state.pt (to resume) and OUT.log.csv (loss, learning\n"
                "rate and validation PSNR at intervals). Ctrl-C saves and stops. At the end,\n"
                "the model is evaluated on the held-out files (or generated samples) as\n"
                "walloc-edge eval would, into OUT.eval.json.\n\n"
                "examples:\n"
                "  walloc-edge train --preset rgb-16x --data photos/ --holdout 045,046 "
                "--out rgb16.safetensors\n"
                "  walloc-edge train --preset stereo-5x --data music/ --init stereo-5x "
                "--latent-gain 2 --out s5.safetensors")


def run(args):
    config = PRESETS[args.preset]
    if args.nd:
        config = replace(config, Nd=args.nd)
    check_device(args.device)
    init = _initial_model(args, config)
    image = config.modality is IMAGE
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
        source, validation, held_out = _folder_data(args, config, crop)
        if args.synthetic_fraction > 0:
            source = data.Mixture([source, synthetic],
                                  [1 - args.synthetic_fraction, args.synthetic_fraction])
    options = TrainOptions(steps=args.steps, batch=args.batch, crop=crop, lr=args.lr,
                           warmup=args.warmup, seed=args.seed, val_every=args.val_every,
                           save_every=args.save_every, device=args.device)
    earlier = [p for p in (Path(args.out), state_path(args.out)) if p.exists()]
    if earlier and not (args.resume or args.overwrite):  # it lost a run, Ctrl-C'd or done
        raise ValueError(f"{earlier[0]} exists: --resume continues that run, --overwrite "
                         "starts a new one over it")
    print(f"training {args.preset} ({config.modality}, J={config.J}, latent_dim="
          f"{config.latent_dim}, Nd={config.Nd}) on {args.data} -> {args.out}")
    codec, history, stopped = train(config, source, validation, args.out, options,
                                    resume=args.resume, init=init)
    if history:
        last = history[-1]
        print(f"step {last['step']}: loss {last['loss']:.3e}, validation PSNR "
              f"{last['val_psnr']:.2f} dB; wrote {args.out}")
    if stopped:
        print("continue with --resume")
        return 130
    if held_out:
        _final_eval(codec, args.out, held_out, args.device)
    return 0


def _initial_model(args, config):
    """The codec --init names (latents scaled by --latent-gain), or None."""
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
    decoder = Decoder(codec, device)
    cfg = decoder.codec.config
    encoder = runtime_encoder(decoder.codec)
    rate = 44100 if cfg.modality.has_rate else 0  # generated audio's
    named = [h for h in held_out if isinstance(h, tuple)]
    rows = [{"file": name, **evaluate_sample(decoder, encoder, sample, rate)}
            for name, sample in progress(named, "final eval")]
    files = [h for h in held_out if not isinstance(h, tuple)]
    rows += evaluate_files(decoder, encoder, files,
                           progress=lambda items: progress(items, "final eval"))
    summary = summarise(rows, cfg)
    print(f"final eval on {len(rows)} held-out {cfg.modality} sample(s):")
    print(eval_table(rows, summary, cfg.modality))
    write_text(Path(out).with_suffix(".eval.json"),
               json.dumps({"model": str(out), "coder": "rans", "mean": summary,
                           "files": rows}, indent=2) + "\n")


def _folder_data(args, config, crop):
    """(training source, validation samples, held-out files) from --data and --holdout."""
    image = config.modality is IMAGE
    held = [s.strip() for s in args.holdout.split(",") if s.strip()]
    if not Path(args.data).is_dir():
        raise ValueError(f"--data {args.data}: no such folder (or use --data synthetic)")
    with naming("--data"):
        files = data.data_files(args.data, config.modality.inputs)
    with naming("--holdout"):
        train_files, val_files = data.split_files(files, held)
    if image:
        source = data.ImageFolder(train_files, crop, config.channels)
        # Centre crops (at most 512 pixels a side) keep validation quick on a CPU.
        validation = [_centre(im, min(512, *im.shape[:2]))
                      for im in data.ImageFolder(val_files, 1, config.channels).images]
    else:
        source = data.AudioFolder(train_files, crop, config.channels)
        validation = [match_channels(c[:crop * 4], config.channels)
                      for c in data.AudioFolder(val_files, crop, config.channels).clips]
    return source, validation, val_files


def _centre(image, size):
    y, x = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[y:y + size, x:x + size]
