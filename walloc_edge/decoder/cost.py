"""What decoding a bitstream will cost, from its header alone: peak memory and seconds, so
that a server can refuse a claim before it starts the work (a 191-byte message can claim
minutes of CPU, a 33 KB one gigabytes).

Memory follows the structure of the decode (``decoder.py``): the latents, the output, and
either the whole network's activations (a signal of one tile) or, for a tiled image, its
wavelet coefficients, one tile's activations, one band of coefficients copied for the
synthesis and one synthesis block. Seconds and the activations per latent are measured once
on this machine by decoding probes of zeros (:func:`calibrate`): a network call takes at
least what a thin tile's does (what makes a thin image slow: one call per short tile) and
more per latent beyond, and the synthesis a time per latent it takes in (with the latents
a block is given beyond its edges, many for a thin image); entropy decoding adds a time
per tile of the bitstream. A server starts often and its
calibration takes seconds, so :func:`cached_calibration` keeps each measurement in the
user's cache, per model, engine and precision, device, tile, CPU and thread count.
"""
import importlib.metadata
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..runtime import Header
from ..runtime.coders.rans import RansCoder
from ..runtime.cpu import cpu_model
from ..runtime.io import write_atomic
from ..runtime.modality import IMAGE

__all__ = ["Cost", "Speed", "available_memory", "cached_calibration", "calibrate",
           "entropy_cost", "estimate", "tile_seconds"]

SYNTHESIS_COPIES = 6  # a synthesis block's working set, in copies of its input (measured 4.7)
OUTPUT_COPIES = 3     # the output, its contiguous copy for the file writer, the writer's own
FLOAT_OUTPUT_COPIES = 5  # an untiled output in float: the network's, denormalised, rounded…
FALLBACK_BYTES_PER_LATENT = 64 << 10  # where peak memory cannot be read (no /proc): ~3x measured


@dataclass(frozen=True)
class Cost:
    """What a decode is estimated to take: peak bytes beyond what the server holds already,
    and seconds on this machine."""

    bytes: int
    seconds: float


@dataclass(frozen=True)
class Speed:
    """This machine's measured decode speed: the seconds of a network call over the short
    probe's latents and per latent more, seconds per latent synthesised, activation bytes
    per latent, and the seconds of entropy-decoding a tile beyond its latents (what makes
    a claim cut into tiny tiles slow: 65,536 tiles of one latent took 22 s)."""

    short_call: float
    short_latents: int
    per_latent: float
    per_synthesis_latent: float
    bytes_per_latent: float
    per_tile: float

    def call(self, latents: int) -> float:
        """Seconds of one network call over ``latents`` (never less than the short one)."""
        return self.short_call + self.per_latent * max(latents - self.short_latents, 0)


def _proc_bytes(path, field):
    """A "Field:  N kB" line of a Linux /proc file, in bytes; None elsewhere."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory() -> "int | None":
    """Bytes this machine can give a process now without swapping (Linux's MemAvailable),
    else None."""
    return _proc_bytes("/proc/meminfo", "MemAvailable")


def _peak_rss():
    """The process's peak resident memory since the last reset (Linux), else None."""
    return _proc_bytes("/proc/self/status", "VmHWM")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _timed(run, *args):
    """(seconds, peak bytes over the resident memory before, or None) of ``run(*args)``."""
    measured = _reset_peak()
    before = _peak_rss() if measured else None
    start = time.perf_counter()
    run(*args)
    torch = sys.modules.get("torch")  # loaded by a torch decoder; a bundle's runs without
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()  # a GPU's work ends here, not when it is queued
    seconds = time.perf_counter() - start
    peak = _peak_rss() if measured else None
    return seconds, (peak - before if before is not None and peak is not None else None)


def calibrate(decoder) -> Speed:
    """Time the stages of ``decoder`` (a ``base.DecoderBase``: its ``zeros``, ``network``,
    ``synthesis`` and ``decode_latents``) on its engine and precision: the network on a
    short and a long probe of zero latents (a thin and a whole tile for images, 256 and
    4,096 latents for audio), each once to warm up and the fastest of two timed; the
    synthesis of the long probe's coefficients; and the peak memory of decoding the long
    probe whole (the host's: on a GPU the activations are the GPU's)."""
    if decoder.modality is IMAGE:
        short, long = (1, decoder.tile), (decoder.tile, decoder.tile)
    else:
        short, long = (256,), (4096,)
    seconds = []
    for shape in (short, long):
        z = decoder.zeros(shape)
        coefficients = decoder.network(z)  # warms up
        seconds.append(min(_timed(decoder.network, z)[0] for _ in range(2)))
    n1, n2 = math.prod(short), math.prod(long)
    # Timings on a busy machine can make the short probe look as slow as the long one: the
    # long probe's own time bounds the cost of its latents from below (an underestimate would
    # let a heavy claim in).
    per_latent = max(seconds[1] - seconds[0], seconds[1] / 2) / (n2 - n1)
    decoder.synthesis(coefficients)
    per_synthesis = _timed(decoder.synthesis, coefficients)[0] / n2
    del coefficients
    peak = max(_timed(decoder.decode_latents, z)[1] or 0,
               _timed(decoder.decode_latents, z)[1] or 0)
    per_byte = peak / n2 if peak else FALLBACK_BYTES_PER_LATENT
    return Speed(seconds[0], n1, per_latent, per_synthesis, per_byte,
                 tile_seconds(decoder.latent_dim, decoder.modality))


def tile_seconds(latent_dim, modality):
    """Seconds of entropy-decoding one tile of a few latents, the dearest a sender can make
    it: rANS (of the coders, the one that spends most on a tile) in its rANS mode (a small
    audio tile at level best may take the LZMA mode, which decodes far faster) over the
    whole latent range (the widest tables), on 64 such tiles, the faster of two rounds."""
    coder = RansCoder(level="fast")  # (never the LZMA mode)
    shape = (latent_dim, 2, 2) if modality is IMAGE else (latent_dim, 4)
    latents = np.random.default_rng(0).integers(-127, 128, shape).astype(np.int8)
    payload, params = coder.encode(latents, 8), coder.params(8)

    def tiles():
        for _ in range(64):
            coder.decode(payload, shape, 8, params)

    return min(_timed(tiles)[0] for _ in range(2)) / 64


def calibration_file() -> Path:
    """calibration.json in $XDG_CACHE_HOME/walloc-edge (else ~/.cache/walloc-edge)."""
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home, "walloc-edge", "calibration.json")


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _calibration_key(decoder) -> str:
    """What a measured speed holds for: the model, engine and precision, device and
    execution providers, tile, CPU (and GPU), thread count and the libraries' versions."""
    torch = sys.modules.get("torch")
    device = str(getattr(decoder, "device", "cpu"))
    hardware = [cpu_model()]
    if torch is not None and device.startswith("cuda"):
        hardware.append(torch.cuda.get_device_name(torch.device(device)))
    engine = getattr(decoder, "engine", None)
    session = getattr(engine, "session", None) or getattr(decoder, "session", None)
    providers = getattr(engine, "providers", None) or \
        getattr(session, "get_providers", lambda: None)()
    threads = [f"{torch.get_num_threads()} torch"] if torch is not None else []
    if session is not None:  # a session of a server's worker runs on its share of the cores
        threads.append(f"{session.get_session_options().intra_op_num_threads or os.cpu_count()}"
                       " onnxruntime")
    versions = [f"{name} {_version(name)}" for name in ("walloc-edge", "torch", "onnxruntime")
                if name == "walloc-edge" or name in sys.modules]
    return " | ".join(map(str, (decoder.model_id, decoder.engine_name, device, providers,
                                f"tile {decoder.tile}", *hardware, f"{', '.join(threads)} threads",
                                *versions)))


def _read_calibrations(path):
    """The cache's {key: Speed fields}; empty where it is missing or not such a file."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _as_speed(entry):
    """The Speed a cache entry holds, or None where it is not one (a corrupt file)."""
    names = [f.name for f in fields(Speed)]
    if not isinstance(entry, dict) or sorted(entry) != sorted(names) or not all(
            isinstance(entry[n], (int, float)) and entry[n] > 0 for n in names):
        return None
    return Speed(**{n: entry[n] for n in names})


def cached_calibration(decoder) -> Speed:
    """``decoder.speed``, measured (``decoder.calibrate()``) once per model, engine and
    precision, device, tile, CPU and thread count: a measurement kept in
    :func:`calibration_file` is read back; a missing or corrupt one is measured and the file
    rewritten (atomically: servers starting at once each leave a whole file). Delete the
    file to measure again (after a hardware change, say)."""
    path, key = calibration_file(), _calibration_key(decoder)
    decoder.speed = _as_speed(_read_calibrations(path).get(key))
    if decoder.speed is not None:
        return decoder.speed
    decoder.calibrate()
    speed = decoder.speed
    entries = _read_calibrations(path)
    entries[key] = asdict(speed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(entries, indent=1).encode())
    except OSError:  # a cache that cannot be written costs a measurement at each start
        pass
    return speed


ENTROPY_BYTES_PER_LATENT = 32  # a rans tile's working arrays (int64 buffer, residuals, …)


def entropy_cost(header: Header, per_tile: float) -> Cost:
    """What entropy-decoding every tile of a bitstream with ``header`` takes (a server that
    keeps latents without decoding them): the latents, the largest tile's working arrays,
    and ``per_tile`` seconds a tile (``tile_seconds``)."""
    tile = header.latent_dim * math.prod(min(n, t) for n, t in zip(header.latent_shape[1:],
                                                                    header.tile))
    held = math.prod(header.latent_shape) * (2 if header.latent_bits > 8 else 1)
    return Cost(held + ENTROPY_BYTES_PER_LATENT * tile, per_tile * header.tile_count())


def estimate(decoder, header: Header, speed: Speed, tile_spans, synthesis_block) -> Cost:
    """The cost of decoding a bitstream with ``header`` (already checked against the
    decoder's model) on a machine of ``speed``, for a decoder whose tiles are
    ``tile_spans(n, tile, overlap)`` and whose synthesis takes ``synthesis_block`` latents
    at once."""
    sizes = header.latent_shape[1:]
    latents = math.prod(sizes)
    values = math.prod(n * header.block for n in sizes) * decoder.channels  # padded output
    held = latents * decoder.latent_dim * (2 * (2 if header.latent_bits > 8 else 1) + 4)
    if decoder.modality is not IMAGE or max(sizes) <= decoder.tile:  # one network call
        memory = held + speed.bytes_per_latent * latents + FLOAT_OUTPUT_COPIES * 4 * values
        return Cost(int(memory), speed.call(latents) + speed.per_synthesis_latent * latents
                    + speed.per_tile * header.tile_count())
    h, w = sizes
    rows = tile_spans(h, decoder.tile, decoder.overlap)
    cols = tile_spans(w, decoder.tile, decoder.overlap)
    tile_latents = (rows[0][1] - rows[0][0]) * (cols[0][1] - cols[0][0])
    subbands = decoder.channels * 4 ** decoder.J
    pad = decoder.taps
    band_rows = h if h <= decoder.tile else decoder.tile + 2 * pad
    width = max(decoder.tile, synthesis_block // (band_rows + 2 * pad) - 2 * pad)
    block = (band_rows + 2 * pad) * (min(w, width) + 2 * pad)
    blocks = (1 if h <= decoder.tile else -(-h // decoder.tile)) * (1 if w <= width else
                                                                  -(-w // width))
    memory = (held + 4 * (subbands + 1) * latents + OUTPUT_COPIES * values
              + speed.bytes_per_latent * tile_latents
              + (4 * subbands * band_rows * w if h > decoder.tile else 0)
              + SYNTHESIS_COPIES * 4 * subbands * block)
    calls = len(rows) * len(cols)
    seconds = (calls * speed.call(tile_latents)
               + blocks * block * speed.per_synthesis_latent
               + speed.per_tile * header.tile_count())
    return Cost(int(memory), seconds)
