"""How the bench and the benchmark scripts measure: one timing loop (a warm-up run, then
timed runs), the alternating comparison with JPEG, a peak-memory sampler, and a fresh
process per measurement so that its memory and threads are its own."""
import io
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

__all__ = ["once", "timed", "speed", "PeakMemory", "alternating_with_jpeg", "in_fresh_process",
           "pillow_bytes", "size_matched"]


def once(fn, clock=time.perf_counter):
    """Seconds (of ``clock``: wall time unless told) of one run of ``fn``, and its result."""
    start = clock()
    result = fn()
    return clock() - start, result


def timed(fn, repeat, clock=time.perf_counter):
    """Seconds of ``repeat`` runs of ``fn`` after one warm-up run."""
    fn()
    return np.array([once(fn, clock)[0] for _ in range(repeat)])


def speed(times, amount):
    """Throughput of ``amount`` (megapixels or megasamples) per run: median, min–max, and
    per-run latency p50/p90 in ms."""
    return {"median": float(amount / np.median(times)), "min": float(amount / times.max()),
            "max": float(amount / times.min()), "p50_ms": float(np.percentile(times, 50) * 1e3),
            "p90_ms": float(np.percentile(times, 90) * 1e3)}


class PeakMemory:
    """Peak resident memory above the level at entry, in MB (Linux; None elsewhere)."""

    def __enter__(self):
        self.base, self.peak, self.running = _rss(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _rss() or 0)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.mb = None if self.base is None else max(0.0, (self.peak - self.base) / 1e6)


def _rss():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def in_fresh_process(fn, *args):
    """``fn(*args)`` in a process started for it alone (spawned: it imports the package
    anew and inherits nothing but the arguments), so that the memory and threads measured
    are its own; returns what ``fn`` returns and raises what it raises. ``fn`` must be a
    module-level function; the process's own output is not shown."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_quiet) as pool:
        return pool.submit(fn, *args).result()


def _quiet():
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def alternating_with_jpeg(encoder, sample, rounds):
    """End to end (``sample``, uint8 H x W x 1 or 3 → .wlc with rans) against Pillow's JPEG
    at the quality whose file is closest in size, one of each a round, so that a shared
    machine's drifting load falls on both alike: {"ours", "jpeg": seconds a round,
    "quality", "wlc_bytes", "jpeg_bytes"}."""
    from PIL import Image

    image = Image.fromarray(sample if sample.shape[2] == 3 else sample[..., 0])
    size = len(encoder.encode(sample, coder="rans"))  # both warm up here
    quality = size_matched(lambda q: len(pillow_bytes(image, "JPEG", quality=q)),
                           range(1, 96), size)
    jpeg_bytes = len(pillow_bytes(image, "JPEG", quality=quality))
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(once(lambda: encoder.encode(sample, coder="rans"))[0])
        theirs.append(once(lambda: pillow_bytes(image, "JPEG", quality=quality))[0])
    return {"ours": np.array(ours), "jpeg": np.array(theirs), "quality": quality,
            "wlc_bytes": size, "jpeg_bytes": jpeg_bytes}


def pillow_bytes(image, fmt, **options):
    """``image`` (a PIL image) saved in ``fmt`` with ``options``, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def size_matched(size_of, qualities, target):
    """The quality whose size is closest to ``target`` (sizes grow with quality: bisect)."""
    lo, hi = qualities.start, qualities.stop - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size_of(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda q: abs(size_of(q) - target))
