"""Training a codec as the reference does: MSE in the signal domain, AdamW, linear warm-up
then cosine decay, uniform noise in place of rounding; seeded and resumable.

A run writes ``MODEL`` (the project's .safetensors format, loadable everywhere), a training
state beside it (``MODEL.state.pt``: optimiser, step, random generators) from which
``resume`` continues exactly where it stopped, and a CSV log (``MODEL.log.csv``).

The loss has no rate term, so how finely the latents are quantised is whatever spread the
encoder has learned, and it grows slowly. ``models.scale_latents`` moves a trained model to a
finer operating point at once (more bits, less quantisation noise) as the start of a
fine-tuning run.
"""
import csv
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load, save
from .config import CodecConfig
from .device import resolve_device
from .models import build
from ..runtime.modality import AUDIO, IMAGE
from .padding import crop, pad

__all__ = ["PRESETS", "TrainOptions", "train", "evaluate", "to_tensor", "state_path"]

PRESETS = {
    # Decoder widths chosen so that decoding stays practical on a CPU (see the README).
    "rgb-16x": CodecConfig(IMAGE, channels=3, J=3, latent_dim=12, Nd=128),
    "rgb-4x": CodecConfig(IMAGE, channels=3, J=3, latent_dim=48, Nd=128),
    "gray-16x": CodecConfig(IMAGE, channels=1, J=3, latent_dim=4, Nd=64),
    "stereo-5x": CodecConfig(AUDIO, channels=2, J=8, latent_dim=108, Nd=216,
                             post_filter=True),
    "mono-4x": CodecConfig(AUDIO, channels=1, J=6, latent_dim=16, Nd=64),
}


@dataclass
class TrainOptions:
    steps: int = 20000
    batch: int = 8
    crop: int = 256            # pixels per side, or audio samples
    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup: int = 500
    seed: int = 0
    val_every: int = 500
    save_every: int = 500
    device: str = "auto"


def to_tensor(samples, modality):
    """Raw samples (uint8 H×W×C / int16 L×C) of ``modality`` → a float batch as the codec
    takes it."""
    return modality.to_model(torch.from_numpy(np.stack(samples)))


def learning_rate(step, options):
    if step < options.warmup:
        return options.lr * (step + 1) / options.warmup
    progress = (step - options.warmup) / max(1, options.steps - options.warmup)
    return options.min_lr + 0.5 * (options.lr - options.min_lr) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(codec, samples, device="cpu"):
    """Mean PSNR (dB) of encode → round → decode over raw samples of any size, with the peak
    `walloc-edge eval` uses: 255 for images, int16 full scale (32768) for audio."""
    codec.eval()
    kind = codec.config.modality
    peak = kind.peak / kind.divisor  # on the model's scale: 255 is 1 there, 32768 is 0.5
    psnrs = []
    for sample in samples:
        x = to_tensor([sample], codec.config.modality).to(device)
        size = x.shape[2:]
        x_hat = crop(codec.decode(codec.encode(pad(x, 2 ** codec.J))), size)
        mse = torch.mean((x - x_hat.clamp(-0.5, 0.5)) ** 2).item()
        psnrs.append(10 * math.log10(peak ** 2 / max(mse, 1e-12)))
    return float(np.mean(psnrs))


def state_path(out):
    """Where the run writing ``out`` keeps what --resume needs."""
    return Path(out).with_suffix(".state.pt")


def train(config, source, validation, out, options, resume=False, progress=True, log=print,
          init=None):
    """Train a codec of ``config`` on ``source`` (``sample(rng)`` → raw example), validating
    on the raw ``validation`` samples; returns (codec, history, stopped early by Ctrl-C).
    ``init``: a codec to start from (fine-tuning: a fresh optimiser and schedule)."""
    out = Path(out)
    device = resolve_device(options.device)
    state_file = state_path(out)
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    if resume:
        if not (out.exists() and state_file.exists()):
            raise ValueError(f"nothing to resume: {out} or {state_file} is missing")
        codec = load(out)
    else:
        codec = init if init is not None else build(config)
    if codec.config != config:
        raise ValueError(f"{out if resume else 'the initial model'} is a {codec.config} model, "
                         f"not the requested {config}")
    codec = codec.to(device)
    optimiser = torch.optim.AdamW(codec.parameters(), lr=options.lr, weight_decay=0.0)
    step, history = 0, []
    if resume:
        state = torch.load(state_file, map_location=device, weights_only=False)
        optimiser.load_state_dict(state["optimiser"])
        step, history = state["step"], state["history"]
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resuming {out} at step {step}")

    def checkpoint():
        out.parent.mkdir(parents=True, exist_ok=True)
        save(codec, out)
        torch.save({"step": step, "optimiser": optimiser.state_dict(), "history": history,
                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "options": asdict(options)}, state_file)
        with open(out.with_suffix(".log.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, ["step", "loss", "lr", "val_psnr", "seconds"])
            writer.writeheader()
            writer.writerows(history)

    stop = _GracefulStop(log)
    bar = _bar(options.steps, step, progress)
    start, losses = time.perf_counter(), []
    try:
        with stop:
            while step < options.steps and not stop.requested:
                codec.train()
                lr = learning_rate(step, options)
                for group in optimiser.param_groups:
                    group["lr"] = lr
                x = to_tensor([source.sample(rng) for _ in range(options.batch)],
                              config.modality).to(device)
                _, loss, _ = codec(x)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                losses.append(loss.item())
                if step % options.val_every == 0 or step == options.steps:
                    psnr = evaluate(codec, validation, device) if validation else float("nan")
                    history.append({"step": step, "loss": float(np.mean(losses)), "lr": lr,
                                    "val_psnr": psnr,
                                    "seconds": round(time.perf_counter() - start, 1)})
                    losses = []
                    if bar is not None:
                        bar.set_postfix(loss=f"{history[-1]['loss']:.2e}", val_psnr=f"{psnr:.2f}")
                elif bar is not None:
                    bar.set_postfix(loss=f"{losses[-1]:.2e}", refresh=False)
                if bar is not None:
                    bar.update(1)
                if step % options.save_every == 0 or step == options.steps:
                    checkpoint()
            if stop.requested:
                checkpoint()
                log(f"\nstopped at step {step}; saved {out}")
    finally:
        if bar is not None:
            bar.close()
    return codec.eval(), history, stop.requested


class _GracefulStop:
    """Ctrl-C during training: finish the step, save, stop (a second Ctrl-C stops at once)."""

    def __init__(self, log):
        self.log, self.requested, self.previous = log, False, None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.log("\nstopping after this step (Ctrl-C again to stop now)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _bar(total, initial, enabled):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    # In a log file (not a terminal), a line every 30 s instead of a redraw every 0.1 s.
    return tqdm(total=total, initial=initial, unit="step", desc="training", dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 30)
