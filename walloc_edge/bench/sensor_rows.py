"""The sensor rows: each runtime backend measured in a process of its own, and the C
export's host program (the runtime's core, and the fixed-memory encoder)."""
import subprocess
from pathlib import Path

import numpy as np

from ..runtime.backends import BACKENDS
from .timing import (PeakMemory, alternating_at_equal_cores, equal_cores, in_fresh_process,
                     speed, timed)

__all__ = ["sensor_row", "c_row", "measure_backend"]


def sensor_row(bundle, info, backend, threads, work, repeat, amount, level=None):
    """One backend measured in a fresh process (no torch there), so that its memory and
    threads are its own; end to end with rans at ``level``."""
    name = f"{backend}, {threads} thread{'s' * (threads != 1)}" if threads else backend
    try:
        measured = in_fresh_process(measure_backend, str(bundle), backend, threads, str(work),
                                    repeat, amount, level)
    except Exception as e:  # whatever ended its process: this row says so, the others go on
        return {"row": name, "kind": "sensor", "status": f"failed: {type(e).__name__}: {e}"}
    row = {"row": name, "kind": "sensor", **measured}
    graph = info.meta.get("graphs", {}).get(BACKENDS[backend].graph, {})
    if "status" not in row:
        row["status"] = graph.get("status", "C, weights from encoder.npz" if backend == "native"
                                  else "weights from encoder.npz")
        if graph.get("file"):
            row["file_MB"] = (Path(bundle) / graph["file"]).stat().st_size / 1e6
    return row


def measure_backend(bundle, backend, threads, work, repeat, amount, level=None):
    """Speed, latency and peak memory of one backend (run in its own process): the input
    is ``work``/input.npy; the first backend's latents, saved there, are the others'
    reference. End to end (rans at ``level``) against JPEG and WebP on as many cores as the
    encoder's threads."""
    from ..runtime import Encoder
    from ..runtime.backends import BackendError

    sample = np.load(Path(work) / "input.npy")
    try:
        encoder = Encoder(bundle, backend, threads=threads)
    except (BackendError, ValueError) as e:
        return {"status": f"skipped: {e}"}
    encoder.latents(sample[:64, :64] if sample.ndim == 3 else sample[:4096])
    with PeakMemory() as memory:
        times = timed(lambda: encoder.latents(sample), repeat)
    latents = encoder.latents(sample)
    reference = Path(work) / "latents.npy"
    if not reference.exists():
        np.save(reference, latents)
    same = float((np.load(reference) == latents).mean())
    row = {"encode": speed(times, amount), "peak_MB": memory.mb, "identical_latents": same}
    if sample.ndim == 3 and sample.shape[2] in (1, 3):
        cores = encoder.threads
        rounds = alternating_at_equal_cores({cores: encoder}, sample, repeat, level)
        times = rounds["cores"][cores]
        end_to_end = times["ours"]
        row.update(cores=cores, jpeg_share=equal_cores(times, cores, "jpeg"),
                   webp_share=equal_cores(times, cores, "webp"))
    else:
        end_to_end = timed(lambda: encoder.encode(sample, coder="rans", level=level), repeat)
    return {**row, "end_to_end": speed(end_to_end, amount)["median"]}


def c_row(bundle, raw, shape, repeat, amount, latents, fixed):
    """The C export's host program, one thread, reading the raw image (of ``shape``) from
    the file ``raw``: the runtime's core, or the fixed-memory encoder (``--fixed``)."""
    row = {"row": "C export, fixed-memory encoder (walloc_encode --fixed)" if fixed else
           "C export, the core (walloc_encode, 1 thread)", "kind": "sensor"}
    program = Path(bundle) / "c" / "walloc_encode"
    if not program.exists():
        return {**row, "status": "skipped: no C export in the bundle (export --format c)"}
    out = raw.with_name("c.raw")
    h, w, c = shape
    command = [str(program), *(["--fixed"] if fixed else []), "--latents", str(raw), str(h),
               str(w), str(c), str(out)]
    times = timed(lambda: subprocess.run(command, check=True), repeat)
    same = np.frombuffer(out.read_bytes(), np.int8).reshape(latents.shape) == latents
    return {**row, "status": "validated", "file_MB": program.stat().st_size / 1e6,
            "encode": speed(times, amount), "identical_latents": float(same.mean())}
