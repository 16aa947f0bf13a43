"""Loading and saving codecs.

Two formats are read:
- **reference**: ``X.pth`` (a torch pickle holding ``model_state_dict``) with ``X.json``
  beside it, as walloc 1.2.1 publishes RGB_16x, RGB_4x, stereo_5x…;
- **walloc-edge**: one ``.safetensors`` file whose metadata holds the format name, version
  and the config as JSON (see docs/model-format.md). No pickle, so loading runs no code.
"""
import json
from pathlib import Path

import torch

from .config import CodecConfig
from .models import build, scale_latents

__all__ = ["load", "save", "CheckpointError", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "walloc-edge-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A model file that is missing, unreadable, or does not match its config."""


def save(model: torch.nn.Module, path: "str | Path",
         parameter_dtype: "torch.dtype | None" = None) -> Path:
    """Write ``model`` in the walloc-edge format (weights + config in one file).

    ``parameter_dtype`` (e.g. torch.float16) stores the learned parameters smaller; buffers
    (the wavelet filters) stay exact. Loading casts back to float32.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: the walloc-edge model format uses the .safetensors suffix")
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "config": json.dumps(model.config.to_dict())}
    parameters = {name for name, _ in model.named_parameters()}
    state = {k: (v.to(parameter_dtype) if parameter_dtype and k in parameters else v)
             .detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return path


def load(path: "str | Path", device: str = "cpu") -> torch.nn.Module:
    """A codec in eval mode from a walloc-edge ``.safetensors``, a reference ``.pth``, or
    the name of a model shipped in the package (``walloc-edge models`` lists them)."""
    from ..zoo import embedded_models, model_file, model_gain, weights_installed

    path, gain = Path(path), 1.0
    if not path.is_file() and model_file(path):
        path, gain = model_file(path), model_gain(path)
    if not path.is_file():
        names = ", ".join(embedded_models()) if weights_installed() else \
            "not installed: pip install walloc-edge-models"
        raise CheckpointError(f"{path}: no such model file or embedded model (embedded: {names}; "
                              "or give a .safetensors file, or a reference .pth with its .json "
                              "beside it)")
    if path.suffix == ".safetensors":
        config, state = _read_safetensors(path)
    elif path.suffix in (".pth", ".pt"):
        config, state = _read_reference(path)
    else:
        raise CheckpointError(f"{path}: unknown model file type {path.suffix!r} "
                              "(expected .safetensors or .pth)")
    model = build(config)
    _load_state(model, state, path)
    if gain != 1:
        scale_latents(model, gain)
    return model.to(device).eval()


def _read_safetensors(path):
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: safetensors file without walloc-edge metadata "
                              f"(format={meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: model format version {meta['format_version']} is newer "
                              f"than this walloc-edge reads ({FORMAT_VERSION}); upgrade walloc-edge")
    return _config(json.loads(meta["config"]), CodecConfig.from_dict, path), state


def _read_reference(path):
    config_path = path.with_suffix(".json")
    if not config_path.is_file():
        raise CheckpointError(f"{path}: reference checkpoint needs its config {config_path.name} "
                              "beside it")
    try:
        data = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    config = _config(data, CodecConfig.from_reference, config_path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged pickle
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e})") from None
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: expected a dict with 'model_state_dict' (as walloc saves)")
    return config, checkpoint["model_state_dict"]


def _config(data, parse, path):
    try:
        return parse(data)
    except TypeError as e:
        raise CheckpointError(f"{path}: config is missing keys ({e})") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: invalid config ({e})") from None


def _load_state(model, state, path):
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the config: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{path}: weight shapes do not match the config: {wrong[:3]}")
    model.load_state_dict(state)
