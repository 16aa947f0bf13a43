"""Reading a sensor bundle (``walloc-edge export``'s output directory) without torch, and
the model id that names a model everywhere (bundle, bitstream, decoder)."""
import functools
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .modality import modality as modality_of

__all__ = ["BundleError", "Bundle", "load_bundle", "model_id"]

BUNDLE_FORMAT = "walloc-edge-bundle"
BUNDLE_VERSION = 1


def model_id(config: dict, arrays: "dict[str, np.ndarray]") -> str:
    """32 hex digits: SHA-256 of the config (a dict) and the encoder's arrays (name → numpy
    array: its weights and wavelet filters), so that the sensor and the server name a model
    the same way without sharing any code but this."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, array in sorted(arrays.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()[:32]


class BundleError(ValueError):
    """A bundle directory that is missing, incomplete or of another format version."""


@dataclass(frozen=True)
class Bundle:
    """What a sensor needs from a bundle: metadata and the paths of its graphs and weights."""

    path: Path
    meta: dict

    @property
    def config(self):
        return self.meta["config"]

    @property
    def model_id(self):
        return self.meta["model_id"]

    @property
    def modality(self):
        """The Modality of the signals the model encodes."""
        return modality_of(self.config["modality"])

    @property
    def channels(self):
        return self.config["channels"]

    @property
    def block(self):
        """2^J: input samples per latent sample along each axis."""
        return self.meta["input"]["multiple"]

    @property
    def receptive_field(self):
        """(left, right): input samples on each side of a block that its latents depend on."""
        rf = self.meta["input"]["receptive_field"]
        return rf["left"], rf["right"]

    @property
    def latent_dtype(self):
        return np.dtype(self.meta["latents"]["dtype"])

    @property
    def latent_bits(self):
        return self.config["latent_bits"]

    def graph(self, fmt: str) -> "tuple[Path, dict]":
        """Path of the ``fmt`` graph ("onnx", "litert"); BundleError if it was not exported."""
        info = self.meta.get("graphs", {}).get(fmt)
        if info is None or not (self.path / info["file"]).is_file():
            have = ", ".join(self.meta.get("graphs", {})) or "none"
            raise BundleError(f"{self.path} has no {fmt} graph (it has: {have}); export the "
                              f"model into it again with that format (walloc-edge export)")
        return self.path / info["file"], info

    @functools.cached_property
    def weights_problem(self) -> "str | None":
        """Why encoder.npz cannot be used (missing, damaged, another model's), or None."""
        try:
            self.arrays()
        except BundleError as e:
            return str(e)
        return None

    def arrays(self) -> "dict[str, np.ndarray]":
        """encoder.npz: weights and filters (see docs/sensor-bundle.md), checked against the
        model id (a copy cut short, or another model's file, is refused, not encoded
        with); read once, a new dict each call."""
        return dict(self._checked_arrays)

    @functools.cached_property
    def _checked_arrays(self) -> "dict[str, np.ndarray]":
        path = self.path / self.meta.get("weights", "encoder.npz")
        if not path.is_file():
            raise BundleError(f"{path} is missing; re-export the bundle")
        try:
            with np.load(path) as npz:
                arrays = dict(npz)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise BundleError(f"{path} is damaged ({e}); export the bundle or copy it "
                              "again") from None
        model = {k: v for k, v in arrays.items() if k.startswith(("encoder_", "wt."))}
        if model_id(self.config, model) != self.model_id:
            raise BundleError(f"{path} is not the weights of model {self.model_id} that "
                              f"{self.path / 'encoder.json'} names (another model's, or "
                              "changed); export the bundle or copy it again")
        return arrays


def load_bundle(path: "str | Path") -> Bundle:
    """Read ``path``/encoder.json, checking that it is a bundle this runtime understands."""
    path = Path(path)
    meta_path = path / "encoder.json"
    if path.is_file() and path.suffix.lower() in (".pth", ".pt", ".safetensors"):
        raise BundleError(f"{path} is a model file, not a bundle: export it into one first "
                          f"(walloc-edge export {path} --out FOLDER, where torch is installed)")
    if path.is_file():  # an input given where the bundle goes: the bundle left out
        raise BundleError(f"{path} is a file, not a bundle folder: give the bundle first "
                          "(a folder walloc-edge export MODEL --out FOLDER made), then the "
                          "inputs")
    if not meta_path.is_file():
        what = "does not exist" if not path.exists() else "has no encoder.json"
        raise BundleError(f"bundle {path} {what}; export a model into it first (walloc-edge "
                          f"export MODEL --out {path}, where torch is installed: a model's "
                          "name, such as rgb-16x, is not a bundle)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{meta_path} is not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{meta_path} is not a walloc-edge sensor bundle")
    if meta.get("format_version") != BUNDLE_VERSION:
        raise BundleError(f"{meta_path} has bundle format version {meta.get('format_version')}"
                          f"; this runtime reads version {BUNDLE_VERSION}: re-export it")
    graphs = meta.get("graphs", {})
    if "tflite" in graphs:  # earlier exports key the LiteRT graph by its file type: still read
        meta["graphs"] = {"litert" if fmt == "tflite" else fmt: info
                          for fmt, info in graphs.items()}
    return Bundle(path, meta)
