"""Golden outputs of the reference package (PyPI walloc 1.2.1) for the parity tests.

Run once in a separate environment that has the reference installed; the project's tests
only read what this writes:

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0
    /tmp/refvenv/bin/pip install --no-deps walloc==1.2.1
    /tmp/refvenv/bin/pip install einops PyWavelets pytorch-wavelets diffusers 'setuptools<81' scikit-image
    PYTHONPATH=tests/reference/stub /tmp/refvenv/bin/python tests/reference/make_reference.py

(`stub/torchvision` stands in for the two torchvision transforms walloc imports.)
Writes, beside this file, reference checkpoints `<name>.pth` + `<name>.json` exactly as the
reference publishes them, and `<name>.npz` with inputs and the reference's outputs.
"""
import json
from pathlib import Path

import numpy as np
import torch
import skimage.data
import walloc.walloc as W

HERE = Path(__file__).parent


def synthetic_stereo(length, seed):
    """Music-like int16 stereo: decaying harmonic notes plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 44100
    out = np.zeros((length, 2))
    for start in range(0, length, length // 4):
        f0 = rng.uniform(110, 880)
        env = np.exp(-(t - t[start]) * 8) * (np.arange(length) >= start)
        note = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
        pan = rng.uniform(0.2, 0.8)
        out += np.stack([pan * note * env, (1 - pan) * note * env], axis=1)
    out += 0.01 * rng.standard_normal(out.shape)
    out *= 0.8 / np.abs(out).max()
    return np.round(out * 32767).astype(np.int16)


def save_checkpoint(model, config, name):
    torch.save({"model_state_dict": model.state_dict()}, HERE / f"{name}.pth")
    (HERE / f"{name}.json").write_text(json.dumps(config, indent=4))


@torch.no_grad()
def run(model, x, post_filter=False):
    X = model.wavelet_analysis(x, J=model.J)
    Y = model.encoder(X)
    X_hat = model.decoder(Y)
    x_hat = model.wavelet_synthesis(X_hat, J=model.J)
    if post_filter:
        x_hat = model.post(x_hat)
    x_hat = model.clamp(x_hat)
    return {"X": X.numpy(), "Y": Y.numpy(), "X_hat": X_hat.numpy(), "x_hat": x_hat.numpy()}


def image_reference():
    torch.manual_seed(0)
    config = dict(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8,
                  lightweight_encode=True)
    model = W.Codec2D(**config).eval()
    # Random init gives latents within a few steps of zero; widen them to exercise the range.
    model.encoder[0].weight.data *= 40
    save_checkpoint(model, config, "rgb_j3_l12")

    photos = {"astronaut": skimage.data.astronaut()[96:224, 160:320],  # 128 x 160
              "coffee": skimage.data.coffee()[200:264, 300:396],       # 64 x 96
              "chelsea_odd": skimage.data.chelsea()[50:150, 100:175]}  # 100 x 75: padded
    out = {}
    for key, photo in photos.items():
        x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255 - 0.5
        out[f"{key}/image"] = photo
        if key.endswith("_odd"):
            padded = W.pad(x, p=2 ** config["J"])
            out[f"{key}/padded"] = padded.numpy()
            res = run(model, padded)
            res["x_hat"] = W.crop(torch.from_numpy(res["x_hat"]), photo.shape[:2]).numpy()
        else:
            res = run(model, x)
        out.update({f"{key}/{k}": v for k, v in res.items()})
        with torch.no_grad():
            model.eval()
            _, mse, tf = model(x if not key.endswith("_odd") else padded)
        out[f"{key}/forward_losses"] = np.array([mse.item(), tf.item()])
    np.savez_compressed(HERE / "rgb_j3_l12.npz", **out)


def audio_reference():
    torch.manual_seed(1)
    config = dict(channels=2, J=4, Ne=None, Nd=32, latent_dim=8, latent_bits=8,
                  lightweight_encode=True, post_filter=True)
    model = W.Codec1D(**config).eval()
    model.encoder[0].weight.data *= 40
    save_checkpoint(model, config, "stereo_j4_l8")
    pcm = synthetic_stereo(4096, seed=1)
    x = torch.from_numpy(pcm.T.copy())[None].float() / 65536
    out = {"stereo/pcm": pcm}
    out.update({f"stereo/{k}": v for k, v in run(model, x, post_filter=True).items()})
    np.savez_compressed(HERE / "stereo_j4_l8.npz", **out)


if __name__ == "__main__":
    image_reference()
    audio_reference()
    print("wrote", sorted(p.name for p in HERE.iterdir() if p.suffix in (".pth", ".json", ".npz")))
