"""``BundleDecoder``: .wlc bytes → the signal from a bundle folder with its decoder graph
(``export_bundle(..., decoder=True)``), with no torch: a decode server installs onnxruntime
and numpy only. The de-companding and the wavelet synthesis run in numpy (``numeric``),
the decoder network on onnxruntime, large images in the torch ``Decoder``'s tiles and
synthesis blocks (``tiles``), so both decode alike (≥ 45 dB PSNR apart; measured ~100).
Equal-shape frames (not tiled) go through the network as one batch."""
import json
import zipfile
from pathlib import Path

import numpy as np

from ..runtime.bundle import BundleError, load_bundle
from ..runtime.modality import IMAGE
from .base import DecoderBase, to_signal
from .errors import EngineError
from .numeric import packet_synthesis, post_filter, to_normal
from .session import open_session, resolve_providers, takes_one
from .tiles import DECODE_TILE

__all__ = ["BundleDecoder", "DECODER_FILES", "to_signal"]

DECODER_FILES = ("decoder.onnx", "decoder.npz", "decoder.json")


class BundleDecoder(DecoderBase):
    """The decoder of the bundle folder ``bundle``, on onnxruntime's ``providers`` (as the
    sensor names them; default the CPU) with ``threads`` (default: all cores). ``tile`` and
    ``overlap`` as the torch ``Decoder``'s. ``engine`` and ``precision`` are accepted as the
    ``Decoder``'s are, for one set of options: onnxruntime (or auto) in fp32 (or auto)."""

    def __init__(self, bundle: "str | Path", tile: int = DECODE_TILE, overlap: int = 8,
                 engine: str = "onnxruntime", precision: "str | None" = None,
                 providers: "str | list[str] | None" = None, compile: bool = False,
                 threads: "int | None" = None):
        path = Path(bundle)
        missing = [name for name in DECODER_FILES if not (path / name).is_file()]
        if missing:
            raise BundleError(f"{path}: this bundle has no decoder graph ({', '.join(missing)} "
                              "missing): export it with its decoder, or decode with the model")
        _check_choices(engine, precision, compile)
        self.bundle = load_bundle(path)
        try:
            meta = json.loads((path / "decoder.json").read_text())
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise BundleError(f"{path / 'decoder.json'} is not readable JSON ({e}); export the "
                              "bundle's decoder again") from None
        if meta.get("model_id") != self.bundle.model_id:
            raise BundleError(f"{path}: decoder.json is of model {meta.get('model_id')}, the "
                              f"bundle of {self.bundle.model_id}: export the bundle again")
        if meta.get("status") != "validated":
            raise BundleError(f"{path}: its decoder graph failed validation against torch "
                              "(decoder.json)")
        config = self.bundle.config
        self.model_id, self.modality = self.bundle.model_id, self.bundle.modality
        self.channels, self.latent_dim, self.J, self.latent_bits = \
            config["channels"], config["latent_dim"], config["J"], config["latent_bits"]
        try:
            with np.load(path / "decoder.npz") as npz:
                self.filters = dict(npz)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise BundleError(f"{path / 'decoder.npz'} is damaged ({e}); export the bundle's "
                              "decoder again or copy it again") from None
        self.post = None
        if config.get("post_filter"):
            if "post.weight" not in self.filters:
                raise BundleError(f"{path}: decoder.npz lacks the model's post-filter: export "
                                  "the bundle's decoder again")
            self.post = self.filters["post.weight"], self.filters["post.bias"]
        self.taps = self.filters["iwt.g0_col" if self.modality is IMAGE else "iwt.g0"].size
        try:
            compander = meta["compander"]
            self.compander = None if compander["scale"] is None else \
                (compander["scale"], compander["latent_max"])
        except (KeyError, TypeError):
            raise BundleError(f"{path / 'decoder.json'} lacks the compander's settings; export "
                              "the bundle's decoder again") from None
        self._set_tiles(tile, overlap)
        self.session = _session(path / "decoder.onnx", providers, threads)
        self.input = self.session.get_inputs()[0].name
        self.batches = not takes_one(self.session)
        self.engine_name = "onnxruntime fp32"

    def zeros(self, shape: "tuple[int, ...]") -> np.ndarray:
        """Latents of zeros (a calibration probe)."""
        return np.zeros((1, self.latent_dim, *shape), np.float32)

    def network(self, z: np.ndarray) -> np.ndarray:
        """(B, latent_dim, …) latents → (B, subbands, …) wavelet coefficients."""
        normal = np.asarray(z, np.float32) if self.compander is None else \
            to_normal(z, *self.compander)
        return self.session.run(None, {self.input: normal})[0]

    def synthesis(self, coefficients: np.ndarray) -> np.ndarray:
        """(B, subbands, …) coefficients → (B, C, …) signal (unclamped), an item at a time."""
        out = []
        for item in coefficients:
            x = packet_synthesis(item, self.filters, self.J)
            out.append(x if self.post is None else post_filter(x, *self.post))
        return np.stack(out)

    def clamp(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, -0.5, 0.5)

    def _batch(self, latents):
        return np.stack(latents)

    def _to_numpy(self, x):
        return x

    def _block_synthesis(self, coefficients):
        return packet_synthesis(coefficients, self.filters, self.J)


def _check_choices(engine, precision, compile):
    if engine not in ("auto", "onnxruntime"):
        raise EngineError("engine", f"{engine}: a bundle's decoder graph runs on onnxruntime; "
                          "available: auto, onnxruntime (torch takes the model itself)")
    if precision not in (None, "auto", "fp32"):
        raise EngineError("precision", f"{precision}: a bundle's decoder graph runs fp32; "
                          "available: auto, fp32")
    if compile:
        raise EngineError("compile", "compiles the torch engine, which a bundle's decoder "
                          "graph does not run")


def _session(path, providers, threads):
    try:
        chosen = resolve_providers(providers)
    except ImportError:
        raise BundleError("a bundle's decoder needs onnxruntime: pip install "
                          "'walloc-edge[decode]'") from None
    return open_session(path, chosen, threads)
