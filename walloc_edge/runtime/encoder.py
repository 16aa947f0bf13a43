"""``Encoder``: raw image or audio of any size → integer latents → .wlc bytes, without torch.

Any size: the input is reflect-padded to a multiple of 2^J (as the reference pads), then
encoded. Large inputs are encoded in tiles so memory stays bounded, and tiling is *exact*:
the wavelet packet transform is shift-invariant by blocks of 2^J samples, and one block's
latents depend only on the ``left``/``right`` samples around it (the bundle's
``receptive_field``). Each tile is fed with that border read from the whole padded signal
(periodically, as the codec wraps), and only the latents of its interior are kept, so the
latents of a tiled encode equal those of a whole-image encode and the decoder sees no seams.
Tiles are gathered straight from the input, never from a padded copy of it.
"""
import itertools
import os
from pathlib import Path

import numpy as np

from .backends import make_backend
from .bundle import Bundle, load_bundle
from .padding import padding_for, reflect_indices

__all__ = ["Encoder", "as_sensor_sample"]


def as_sensor_sample(x, modality, channels):
    """Check and convert user input to what the graphs take: uint8 (H, W, C) for images,
    int16 (L, C) for audio (floats in [-1, 1] are scaled by 32768), for a model of
    ``modality`` (a Modality) with ``channels`` channels. Returns (sample, spec) where spec
    records the original shape and dtype for the bitstream."""
    x = np.asarray(x)
    spec = {"shape": x.shape, "dtype": x.dtype}
    x = modality.as_raw(x)
    if x.shape[-1] != channels:
        raise ValueError(f"this model takes {channels} channel(s), the input has "
                         f"{x.shape[-1]} (shape {spec['shape']})")
    if 0 in x.shape:
        raise ValueError(f"the input is empty (shape {spec['shape']})")
    return x, spec


def _runs(index):
    """``index`` as slices: maximal runs of consecutive indices, rising or falling.

    A run starting at s grows while the step between neighbours stays d[s] = ±1; it is
    found with one search over the points where the step changes, so the cost is per run
    (a tile has a few: the wrap and the reflections), not per index."""
    index = np.asarray(index, np.int64)
    step = np.diff(index)
    changes = np.flatnonzero(step[1:] != step[:-1]) + 1  # k where step[k] != step[k − 1]
    runs, start, n = [], 0, len(index)
    while start < n:
        if start == n - 1 or abs(step[start]) != 1:
            end = start
        else:
            k = np.searchsorted(changes, start, "right")
            end = int(changes[k]) if k < len(changes) else n - 1
        a, b = int(index[start]), int(index[end])
        direction = 1 if b >= a else -1
        runs.append(slice(a, b + direction if b + direction >= 0 else None, direction))
        start = end + 1
    return runs


def gather(sample, index):
    """sample[np.ix_(*index)] for the leading axes, built from slices: the indices of a tile
    are a few runs (the wrap and the reflection at the edges), and copying runs of pixels is
    much faster than fancy indexing. Each block of runs is copied once, straight into place
    (a tile of one run per axis is a view)."""
    runs = [_runs(idx) for idx in index]
    if all(len(r) == 1 for r in runs):
        return sample[tuple(r[0] for r in runs)]
    out = np.empty(tuple(len(idx) for idx in index) + sample.shape[len(index):], sample.dtype)
    places = [_places(r, n) for r, n in zip(runs, sample.shape)]
    for block in itertools.product(*places):
        out[tuple(to for _, to in block)] = sample[tuple(run for run, _ in block)]
    return out


def _places(runs, size):
    """(run, slice of the output it fills) for consecutive ``runs`` of an axis of ``size``."""
    places, start = [], 0
    for run in runs:
        n = len(range(*run.indices(size)))
        places.append((run, slice(start, start + n)))
        start += n
    return places


class Encoder:
    """The sensor encoder of a bundle on one backend ("auto": the first of "native",
    "onnxruntime", "litert", "numpy" that can run here; ``backend.name`` says which).
    ``providers``: onnxruntime execution providers in order of preference (default: the
    CPU).

    ``tile``: interior samples per axis of one backend run for large inputs (default: the
    backend's ``run_interior``, else 1024 pixels, 65536 audio samples); a LiteRT graph's
    static size fixes it instead.
    """

    def __init__(self, bundle: "str | Path | Bundle", backend: str = "auto",
                 threads: int | None = None, tile: int | None = None,
                 providers: "str | list[str] | None" = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.backend = make_backend(backend, self.bundle, threads, providers)
        self.threads = threads or os.cpu_count() or 1  # the entropy coder's too
        b = self.bundle
        self.block = b.block
        self.left, self.right = b.receptive_field
        self.modality = b.modality
        self.ndim = self.modality.spatial_axes
        border = self.left + self.right
        if self.backend.static_shape:
            self.run_size = tuple(self.backend.static_shape)
        else:
            runs = self.backend.run_interior  # the backend's, per Modality
            interior = tile or (runs or {}).get(self.modality, self.modality.run_interior)
            interior = max(self.block, interior // self.block * self.block)
            self.run_size = (interior + border,) * self.ndim
        # Latent blocks each run yields exactly (the rest of the run is border).
        self.run_blocks = tuple((n - border) // self.block for n in self.run_size)
        if min(self.run_blocks) < 1:
            raise ValueError(f"a {self.run_size} graph is too small for this model's "
                             f"{border}-sample border; export a larger LiteRT size")

    def describe(self) -> str:
        """'onnxruntime (CPUExecutionProvider)', 'native (2 threads)': what runs the encoder."""
        detail = self.backend.detail or ", ".join(self.backend.providers)
        return self.backend.name + (f" ({detail})" if detail else "")

    @property
    def model_id(self):
        return self.bundle.model_id

    def padding(self, sizes: "tuple[int, ...]") -> "list[tuple[int, int]]":
        """(before, after) reflect padding per axis for an input of spatial ``sizes``."""
        return [padding_for(n, self.block) for n in sizes]

    def latents(self, x: np.ndarray) -> np.ndarray:
        """Integer latents: (latent_dim, h, w) for an image, (latent_dim, l) for audio."""
        sample, _ = as_sensor_sample(x, self.modality, self.bundle.channels)
        return self._latents(sample)

    def encode(self, x: np.ndarray, coder: str = "rans",
               tile: "int | tuple[int, ...] | None" = None, sample_rate: int = 0,
               level: str | None = None) -> bytes:
        """.wlc bytes for ``x`` (see docs/bitstream.md); audio may record its sample rate.
        ``tile``: latents a side of each coded tile (or one per axis; default the format's);
        ``level``: how hard the coder works (rans: "best", the default, "fast", "fastest")."""
        from .bitstream import write_bitstream

        sample, spec = as_sensor_sample(x, self.modality, self.bundle.channels)
        return write_bitstream(self.bundle, self._latents(sample), spec, coder, tile,
                               sample_rate, self.threads, level)

    def _latents(self, sample):
        sizes = sample.shape[:-1]
        pads = self.padding(sizes)
        padded = [n + a + b for n, (a, b) in zip(sizes, pads)]
        sources = [reflect_indices(n, a, b) for n, (a, b) in zip(sizes, pads)]
        if self.backend.run_at is not None:  # it reads runs in place: one contiguous copy
            sample = np.ascontiguousarray(sample)
        if self._fits_one_run(padded):
            return self._run(sample, sources)
        return self._tiled(sample, sources, padded)

    def _run(self, sample, index):
        """The backend's latents of the run sample[np.ix_(*index)]: read in place where the
        backend can (native), else gathered here."""
        if self.backend.run_at is not None:
            return self.backend.run_at(sample, index)
        return self.backend.run(gather(sample, index)[None])[0]

    def _fits_one_run(self, padded):
        if self.backend.static_shape:
            return tuple(padded) == self.run_size
        return (min(padded) >= self.backend.min_size
                and all(n <= r for n, r in zip(padded, self.run_size)))

    def _tiled(self, sample, sources, padded):
        B = self.block
        blocks = [n // B for n in padded]
        edge = self.modality.edge_latents  # the audio graph's extra latent at each end
        out = None
        for starts in np.ndindex(*[-(-n // r) for n, r in zip(blocks, self.run_blocks)]):
            first = [s * r for s, r in zip(starts, self.run_blocks)]
            count = [min(r, n - f) for f, r, n in zip(first, self.run_blocks, blocks)]
            index = [src[(B * f - self.left + np.arange(self._run_length(c, r))) % n]
                     for src, f, c, r, n in zip(sources, first, count, self.run_size, padded)]
            y = self._run(sample, index)
            if out is None:
                out = np.empty((y.shape[0], *[n + 2 * edge for n in blocks]), y.dtype)
                if edge:  # a latent of the zero padding: the same in every run
                    out[:, 0], out[:, -1] = y[:, 0], y[:, -1]
            skip = self.left // B + edge
            inner = tuple(slice(skip, skip + c) for c in count)
            target = tuple(slice(edge + f, edge + f + c) for f, c in zip(first, count))
            out[(slice(None), *target)] = y[(slice(None), *inner)]
        return out

    def _run_length(self, count, run_size):
        """Input samples of a run that yields ``count`` blocks (static graphs: always full)."""
        if self.backend.static_shape:
            return run_size
        n = self.block * count + self.left + self.right
        return max(n, -(-self.backend.min_size // self.block) * self.block)
