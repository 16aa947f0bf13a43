"""``BundleDecoder``: .wlc bytes → the signal from a bundle folder with its decoder graph
(``export_bundle(..., decoder=True)``), with no torch: a decode server installs onnxruntime
and numpy only. The de-companding and the wavelet synthesis run in numpy (``numeric``),
the decoder network on onnxruntime, large images in the torch ``Decoder``'s tiles and
synthesis blocks (``tiles``), so both decode alike (≥ 45 dB PSNR apart; measured ~100)."""
import json
from pathlib import Path

import numpy as np

from ..runtime import Bitstream, BitstreamError, Header, read_bitstream
from ..runtime.bundle import BundleError, load_bundle
from ..runtime.modality import IMAGE
from .cost import Cost, calibrate, estimate
from .errors import EngineError, ModelMismatchError
from .numeric import packet_synthesis, post_filter, to_normal
from .tiles import DECODE_TILE, SYNTHESIS_BLOCK, periodic_blocks, ramp, tile_spans

__all__ = ["BundleDecoder", "DECODER_FILES", "to_signal"]

DECODER_FILES = ("decoder.onnx", "decoder.npz", "decoder.json")


def to_signal(x: np.ndarray, header: Header) -> np.ndarray:
    """Decoder output (C, H, W) / (C, L) in [-0.5, 0.5] (or already raw samples) → numpy
    like the encoded input (float input back as floats in [-1, 1])."""
    raw = _to_raw(x, header.modality) if x.dtype.kind == "f" else x
    out = np.moveaxis(raw, 0, -1)
    if header.dtype.kind == "f":
        out = (out / header.modality.peak).astype(header.dtype)
    return out.reshape(header.shape)


def _to_raw(x, modality):
    full = np.iinfo(modality.dtype)
    return np.clip(np.round(modality.denormalise(x)), full.min, full.max).astype(modality.dtype)


def _crop(x, sizes):
    """The centre ``sizes`` of (C, …) ``x`` (the encoder padded around it)."""
    return x[(slice(None), *(slice((n - s) // 2, (n - s) // 2 + s)
                             for n, s in zip(x.shape[1:], sizes)))]


class BundleDecoder:
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
        meta = json.loads((path / "decoder.json").read_text())
        if meta.get("model_id") != self.bundle.model_id:
            raise BundleError(f"{path}: decoder.json is of model {meta.get('model_id')}, the "
                              f"bundle of {self.bundle.model_id}: export the bundle again")
        if meta.get("status") != "validated":
            raise BundleError(f"{path}: its decoder graph failed validation against torch "
                              "(decoder.json)")
        config = self.bundle.config
        self.model_id, self.modality = self.bundle.model_id, self.bundle.modality
        self.channels, self.latent_dim, self.J = \
            config["channels"], config["latent_dim"], config["J"]
        with np.load(path / "decoder.npz") as npz:
            self.filters = dict(npz)
        self.post = None
        if config.get("post_filter"):
            if "post.weight" not in self.filters:
                raise BundleError(f"{path}: decoder.npz lacks the model's post-filter: export "
                                  "the bundle's decoder again")
            self.post = self.filters["post.weight"], self.filters["post.bias"]
        self.taps = self.filters["iwt.g0_col" if self.modality is IMAGE else "iwt.g0"].size
        compander = meta["compander"]
        self.compander = None if compander["scale"] is None else \
            (compander["scale"], compander["latent_max"])
        if tile <= 3 * overlap:
            raise ValueError(f"a tile of {tile} latents is too small for an overlap of {overlap}: "
                             f"use at least {3 * overlap + 1}")
        self.tile, self.overlap = tile, overlap
        self.session = _session(path / "decoder.onnx", providers, threads)
        self.input = self.session.get_inputs()[0].name
        self.engine_name = "onnxruntime fp32"
        self.speed = None  # measured on first need (``calibrate``)

    def check(self, header: Header) -> None:
        if header.model_id != self.model_id:
            raise ModelMismatchError(
                f"this bitstream was made by model {header.model_id}, this decoder is model "
                f"{self.model_id}: decode it with the model that encoded it")
        if (header.modality, header.latent_dim, header.J, header.channels) != \
                (self.modality, self.latent_dim, self.J, self.channels):
            raise BitstreamError("the bitstream's shape fields do not match its model id")

    def calibrate(self) -> None:
        """Measure this machine's decode speed (a second or two), which ``cost`` scales."""
        self.speed = calibrate(self)

    def cost(self, header: Header) -> Cost:
        """Peak memory and seconds that decoding a bitstream with ``header`` would take here,
        from the header alone (refuses one this decoder cannot decode, as ``check``)."""
        self.check(header)
        if self.speed is None:
            self.calibrate()
        return estimate(self, header, self.speed, tile_spans, SYNTHESIS_BLOCK)

    def decode(self, blob: "bytes | Bitstream") -> np.ndarray:
        """The signal in ``blob`` (.wlc bytes, or a Bitstream already read), as the encoder
        was given it."""
        return self.decode_many([blob])[0]

    def decode_many(self, blobs: "list[bytes | Bitstream]") -> "list[np.ndarray]":
        """Decode several bitstreams (bytes or Bitstream), one at a time."""
        streams = [b if isinstance(b, Bitstream) else read_bitstream(b) for b in blobs]
        for s in streams:
            self.check(s.header)
        out = []
        for s in streams:
            x = self._decode_latents(s.latents()[None])[0]
            out.append(to_signal(_crop(x, s.header.sizes), s.header))
        return out

    def _zeros(self, shape):
        """Latents of zeros (a calibration probe)."""
        return np.zeros((1, self.latent_dim, *shape), np.float32)

    def _network(self, z):
        """(1, latent_dim, …) latents → (1, subbands, …) wavelet coefficients."""
        normal = np.asarray(z, np.float32) if self.compander is None else \
            to_normal(z, *self.compander)
        return self.session.run(None, {self.input: normal})[0]

    def _synthesis(self, coefficients):
        """(1, subbands, …) coefficients → (1, C, …) signal (unclamped)."""
        x = packet_synthesis(coefficients[0], self.filters, self.J)
        return (x if self.post is None else post_filter(x, *self.post))[None]

    def _needs_tiles(self, z):
        return z.ndim == 3 and max(z.shape[1:]) > self.tile

    def _decode_latents(self, z):
        """(1, latent_dim, …) latents → (1, C, padded size…) in [-0.5, 0.5], or for a large
        image in uint8."""
        if not self._needs_tiles(z[0]):
            return np.clip(self._synthesis(self._network(z)), -0.5, 0.5)
        return self._decode_tiles(z)

    def _decode_tiles(self, z):
        """As the torch ``Decoder``'s: the network tile by tile, cross-faded into the whole
        image's coefficients, then synthesis a band of rows at a time."""
        _, _, h, w = z.shape
        rows, cols = tile_spans(h, self.tile, self.overlap), tile_spans(w, self.tile, self.overlap)
        row_ramps = [ramp(rows, i, self.overlap) for i in range(len(rows))]
        col_ramps = [ramp(cols, j, self.overlap) for j in range(len(cols))]
        coefficients, weight = None, np.zeros((h, w), np.float32)
        for (ys, ye), row_ramp in zip(rows, row_ramps):
            for (xs, xe), col_ramp in zip(cols, col_ramps):
                x = self._network(z[:, :, ys:ye, xs:xe])[0]
                if coefficients is None:
                    coefficients = np.zeros((len(x), h, w), np.float32)
                fade = row_ramp[:, None] * col_ramp[None, :]
                coefficients[:, ys:ye, xs:xe] += x * fade
                weight[ys:ye, xs:xe] += fade
        coefficients /= weight
        return self._synthesize_bands(coefficients)

    def _synthesize_bands(self, coefficients):
        """(subbands, h, w) → (1, C, h·2^J, w·2^J) uint8 in the torch ``Decoder``'s blocks
        (each given ``taps`` latents beyond its edges, wrapping around)."""
        B, (_, h, w), pad = 2 ** self.J, coefficients.shape, self.taps
        out = np.empty((1, self.channels, h * B, w * B), np.uint8)
        for top, bottom, rows, row_cut in periodic_blocks(h, self.tile, pad):
            band = coefficients[:, rows]
            width = max(self.tile, SYNTHESIS_BLOCK // (len(band[0]) + 2 * pad) - 2 * pad)
            for left, right, cols, col_cut in periodic_blocks(w, width, pad):
                x = packet_synthesis(band[:, :, cols], self.filters, self.J)
                x = x[:, row_cut * B:(row_cut + bottom - top) * B,
                      col_cut * B:(col_cut + right - left) * B]
                out[0, :, top * B:bottom * B, left * B:right * B] = \
                    _to_raw(np.clip(x, -0.5, 0.5), IMAGE)
        return out


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
    """An onnxruntime session whose threads do not spin after a run (they would take the
    cores from the numpy synthesis that follows)."""
    from ..runtime.backends import BackendError, resolve_providers

    try:
        import onnxruntime as ort
    except ImportError:
        raise BundleError("a bundle's decoder needs onnxruntime: pip install "
                          "'walloc-edge[decode]'") from None
    try:
        chosen = resolve_providers(providers, ort.get_available_providers())
    except BackendError as e:
        raise EngineError("provider", f"{providers}: {e}") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=chosen)
