"""Models shipped inside the package, trained with ``walloc-edge train``.

``models.json`` lists each one: its file here, how it was trained (the command) and what it
measured on held-out data; ``walloc_edge.codec.load(name)`` and every MODEL argument accept
the names.
"""
import json
from pathlib import Path

__all__ = ["embedded_models", "embedded_model_file", "DEFAULT_IMAGE_MODEL",
           "DEFAULT_AUDIO_MODEL"]

HERE = Path(__file__).parent
DEFAULT_IMAGE_MODEL = "rgb-16x"
DEFAULT_AUDIO_MODEL = "stereo-5x"


def embedded_models():
    """name → description (config, file, training, measured quality) of every shipped model."""
    manifest = HERE / "models.json"
    if not manifest.is_file():
        return {}
    models = json.loads(manifest.read_text())
    return {name: info for name, info in models.items() if (HERE / info["file"]).is_file()}


def embedded_model_file(name):
    """The file of embedded model ``name``, or None."""
    info = embedded_models().get(str(name))
    return HERE / info["file"] if info else None
