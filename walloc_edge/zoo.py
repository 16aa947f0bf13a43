"""The embedded models: names for trained weights shipped in the ``walloc-edge-models``
distribution (``walloc-edge models`` lists them).

Every MODEL argument and ``walloc_edge.codec.load(name)`` accept the names. The weights are
a separate install (``walloc-edge[server]`` brings them), so that a sensor carries only the
runtime; without them the catalogue is empty and a name is not found.

An entry may be an operating point of another's weights: ``"latent_gain": K`` loads the file
with its latents spread K times wider (more bits, finer quantisation; ``scale_latents``), a
model of its own (its own model id), measured on its own.
"""
import json
from pathlib import Path

__all__ = ["embedded_models", "model_file", "model_gain", "weights_installed",
           "DEFAULT_IMAGE_MODEL", "DEFAULT_AUDIO_MODEL"]

DEFAULT_IMAGE_MODEL = "rgb-16x"
DEFAULT_AUDIO_MODEL = "stereo-5x"


def _home():
    """The folder of the installed weights, or None."""
    try:
        import walloc_edge_models
    except ImportError:
        return None
    return Path(walloc_edge_models.__file__).parent


def weights_installed() -> bool:
    return _home() is not None


def embedded_models() -> "dict[str, dict]":
    """name → description (config, file, training, measured quality) of every shipped model
    whose weights are installed."""
    home = _home()
    if home is None or not (home / "models.json").is_file():
        return {}
    models = json.loads((home / "models.json").read_text())
    return {name: info for name, info in models.items() if (home / info["file"]).is_file()}


def model_file(name: str) -> "Path | None":
    """The weights file of embedded model ``name``, or None."""
    info = embedded_models().get(str(name))
    return _home() / info["file"] if info else None


def model_gain(name: str) -> float:
    """The latent gain embedded model ``name`` applies to its weights (1 for most)."""
    return float(embedded_models().get(str(name), {}).get("latent_gain", 1.0))
