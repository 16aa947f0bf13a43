"""Training: a short seeded run learns, and an interrupted run resumes exactly."""
import json
import os
import signal

import numpy as np
import pytest
import torch

from walloc_edge.cli import main
from walloc_edge.codec import CodecConfig, load
from walloc_edge.codec.data import DeadLeaves, SyntheticAudio, dead_leaves
from walloc_edge.codec.training import TrainOptions, train
from walloc_edge.runtime.modality import IMAGE

TINY = CodecConfig("image", channels=1, J=1, latent_dim=2, Nd=32)


class Pictures:
    """Random crops of a few fixed dead-leaves pictures (stateless apart from the rng)."""

    def __init__(self, crop=32):
        rng = np.random.default_rng(7)
        self.pictures = [dead_leaves(64, 1, rng) for _ in range(3)]
        self.crop, self.calls = crop, 0

    def sample(self, rng):
        self.calls += 1
        picture = self.pictures[rng.integers(len(self.pictures))]
        y, x = rng.integers(64 - self.crop + 1, size=2)
        return picture[y:y + self.crop, x:x + self.crop]


def options(**kw):
    base = dict(steps=40, batch=4, crop=32, lr=1e-2, warmup=5, val_every=10, save_every=10,
                device="cpu")
    return TrainOptions(**{**base, **kw})


@pytest.mark.slow  # trains for tens of seconds on a 2-core machine
def test_short_seeded_run_learns(tmp_path):
    validation = [Pictures().pictures[0]]
    codec, history, stopped = train(TINY, Pictures(), validation, tmp_path / "m.safetensors",
                                    options(), progress=False, log=lambda s: None)
    assert not stopped and [h["step"] for h in history] == [10, 20, 30, 40]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert 10 < history[-1]["val_psnr"] < 60  # measured on real rounding, a sane number
    saved = load(tmp_path / "m.safetensors")
    assert saved.config == TINY
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(),
                                                 codec.state_dict().values()))
    assert (tmp_path / "m.log.csv").read_text().count("\n") == 5  # header + 4 rows


class InterruptAt(Pictures):
    """Sends this process SIGINT (Ctrl-C) while drawing the batch of step ``step``."""

    def __init__(self, step, batch):
        super().__init__()
        self.at = (step - 1) * batch + 1

    def sample(self, rng):
        if self.calls + 1 == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().sample(rng)


@pytest.mark.slow  # trains for tens of seconds on a 2-core machine
def test_ctrl_c_then_resume_equals_one_run(tmp_path):
    opts = options(steps=12, save_every=100, val_every=6)
    whole, _, _ = train(TINY, Pictures(), [], tmp_path / "a.safetensors", opts,
                        progress=False, log=lambda s: None)
    _, _, stopped = train(TINY, InterruptAt(7, opts.batch), [], tmp_path / "b.safetensors",
                          opts, progress=False, log=lambda s: None)
    assert stopped  # finished step 7, saved, stopped
    state = torch.load(tmp_path / "b.state.pt", weights_only=False)
    assert state["step"] == 7
    resumed, history, stopped = train(TINY, Pictures(), [], tmp_path / "b.safetensors", opts,
                                      resume=True, progress=False, log=lambda s: None)
    assert not stopped and history[-1]["step"] == 12
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_needs_a_saved_run(tmp_path):
    with pytest.raises(ValueError, match="nothing to resume"):
        train(TINY, Pictures(), [], tmp_path / "none.safetensors", options(), resume=True,
              progress=False)


def test_synthetic_sources():
    rng = np.random.default_rng(0)
    image = DeadLeaves(32, 3, pool=2).sample(rng)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and image.std() > 5
    audio = SyntheticAudio(4096, 2).sample(rng)
    assert audio.shape == (4096, 2) and audio.dtype == np.int16 and np.abs(audio).max() > 100


def test_train_command(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image
    for i in range(3):
        Image.fromarray(dead_leaves(48, 3, np.random.default_rng(i))).save(photos / f"{i}.png")
    out = tmp_path / "rgb.safetensors"
    args = ["train", "--preset", "rgb-16x", "--nd", "32", "--data", str(photos), "--holdout",
            "2", "--out", str(out), "--steps", "2", "--batch", "2", "--crop", "32",
            "--val-every", "1", "--save-every", "1", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert load(out).config.Nd == 32 and "validation PSNR" in printed
    assert "final eval on 1 held-out image sample(s)" in printed  # photo 2, as walloc-edge eval
    report = json.loads(out.with_suffix(".eval.json").read_text())
    assert report["files"][0]["file"].endswith("2.png") and report["mean"]["psnr"] > 0
    assert main(args[:-2] + ["--holdout", "9"]) == 2  # a stem that is not there
    assert "not in" in capsys.readouterr().err
    model = out.read_bytes()  # run again without --resume: it replaced the run, unsaid
    assert main(args) == 2 and out.read_bytes() == model
    assert "--resume continues that run, --overwrite" in capsys.readouterr().err


@pytest.mark.slow  # trains for tens of seconds on a 2-core machine
def test_train_on_synthetic_audio_ends_with_an_eval(tmp_path, capsys):
    out = tmp_path / "mono.safetensors"
    assert main(["train", "--preset", "mono-4x", "--data", "synthetic", "--out", str(out),
                 "--steps", "2", "--batch", "2", "--crop", "4096", "--val-every", "2",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    validation = float(printed.split("validation PSNR ")[1].split(" dB")[0])
    report = json.loads(out.with_suffix(".eval.json").read_text())
    assert [r["file"] for r in report["files"]] == [f"generated-{i}" for i in range(4)]
    # The same samples, the same peak (int16 full scale): training's figure is eval's.
    assert abs(report["mean"]["psnr"] - validation) < 0.05


@pytest.mark.parametrize("config", [CodecConfig("image", channels=3, J=2, latent_dim=6, Nd=32),
                                    CodecConfig("audio", channels=2, J=3, latent_dim=8, Nd=16)])
def test_scaled_latents_keep_the_reconstruction(config):
    """Latents K times wider, the decoder's first layer ÷ K: the same output from the same
    unrounded latents (where the compander is linear), and K times finer rounding."""
    from walloc_edge.codec import build
    from walloc_edge.codec.models import scale_latents

    torch.manual_seed(0)
    codec = build(config).eval()
    x = torch.rand(1, config.channels, *((16, 16) if config.modality is IMAGE else (64,))) - 0.5
    with torch.no_grad():
        before = codec.encoder[:-1](codec.wavelet_analysis(x))
        out_before = codec.decoder(before)
        scale_latents(codec, 3.0)
        after = codec.encoder[:-1](codec.wavelet_analysis(x))
        out_after = codec.decoder(after)
    assert before.abs().max() < 10  # the compander's linear range
    assert torch.allclose(after, 3 * before, rtol=0.02, atol=1e-4)
    assert torch.allclose(out_after, out_before, rtol=1e-3, atol=1e-4)


@pytest.mark.slow  # trains for tens of seconds on a 2-core machine
def test_fine_tune_from_a_model_with_a_latent_gain(tmp_path, capsys):
    start = tmp_path / "start.safetensors"
    args = ["train", "--preset", "mono-4x", "--data", "synthetic", "--steps", "2", "--batch",
            "2", "--crop", "4096", "--val-every", "2", "--device", "cpu"]
    assert main(args + ["--out", str(start)]) == 0
    tuned = tmp_path / "tuned.safetensors"
    assert main(args + ["--out", str(tuned), "--init", str(start), "--latent-gain", "4"]) == 0
    weight = lambda path: load(path).encoder[0].weight.detach()
    # Two steps of lr 1e-3 move a weight by at most ~2e-3: the gain is what moved it.
    assert torch.allclose(weight(tuned), 4 * weight(start), atol=5e-3)
    capsys.readouterr()
    assert main(args + ["--out", str(tuned), "--latent-gain", "4"]) == 2
    assert "add --init" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "x.safetensors"), "--init", "rgb-16x"]) == 2
    assert "not a mono-4x one" in capsys.readouterr().err
