"""How the bench and the benchmark scripts measure: one timing loop (a warm-up run, then
timed runs), the alternating comparison with JPEG and WebP at equal cores, a peak-memory
sampler, and a fresh process per measurement so that its memory and threads are its own."""
import io
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

__all__ = ["once", "timed", "speed", "PeakMemory", "alternating_at_equal_cores", "equal_cores",
           "in_fresh_process", "pillow_bytes", "size_matched"]


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


def alternating_at_equal_cores(encoders, sample, rounds, level=None):
    """End to end (``sample``, uint8 H x W x 1 or 3 → .wlc with rans at ``level``) against
    Pillow's JPEG and WebP at the qualities whose files are closest in size, at equal cores:
    for each ``encoders`` entry (cores → an Encoder on that many threads), one frame of ours
    against that many JPEG (and WebP) encodes of the frame at once, one a process (Pillow's
    WebP holds the GIL), as a device with that many cores would run them. One of each a
    round, alternating, so that a shared machine's drifting load falls on all alike:
    {"cores": {N: {"ours", "jpeg", "webp": seconds a round}}, "quality", "webp_quality",
    "wlc_bytes", "jpeg_bytes", "webp_bytes"}; ``equal_cores`` makes the ratios."""
    from PIL import Image

    image = Image.fromarray(sample if sample.shape[2] == 3 else sample[..., 0])
    first = next(iter(encoders.values()))
    size = len(first.encode(sample, coder="rans", level=level))  # both warm up here
    qualities = {fmt: size_matched(lambda q: len(pillow_bytes(image, fmt, quality=q)), span,
                                   size)
                 for fmt, span in (("JPEG", range(1, 96)), ("WEBP", range(0, 101)))}
    result = {"cores": {n: {"ours": [], "jpeg": [], "webp": []} for n in encoders},
              "quality": qualities["JPEG"], "webp_quality": qualities["WEBP"], "wlc_bytes": size,
              "jpeg_bytes": len(pillow_bytes(image, "JPEG", quality=qualities["JPEG"])),
              "webp_bytes": len(pillow_bytes(image, "WEBP", quality=qualities["WEBP"]))}
    pools = {n: ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_hold, initargs=(image,))
             for n in encoders if n > 1}
    try:
        for n, pool in pools.items():  # started and warm before any round
            list(pool.map(_encode_held, [("JPEG", qualities["JPEG"])] * n))
        for _ in range(rounds):
            for n, encoder in encoders.items():
                times = result["cores"][n]
                times["ours"].append(once(lambda: encoder.encode(sample, coder="rans",
                                                                 level=level))[0])
                for fmt in ("JPEG", "WEBP"):
                    job = (fmt, qualities[fmt])
                    times[fmt.lower()].append(once(
                        (lambda: pillow_bytes(image, fmt, quality=job[1])) if n == 1 else
                        (lambda: list(pools[n].map(_encode_held, [job] * n))))[0])
    finally:
        for pool in pools.values():
            pool.shutdown()
    for times in result["cores"].values():
        for key in times:
            times[key] = np.array(times[key])
    return result


_HELD = []  # a baseline worker's image, encoded again and again


def _hold(image):
    _HELD.append(image)


def _encode_held(job):
    fmt, quality = job
    return len(pillow_bytes(_HELD[0], fmt, quality=quality))


def equal_cores(times, cores, baseline):
    """Our frames a second ÷ ``baseline``'s ("jpeg", "webp") on ``cores`` cores, from one
    entry of ``alternating_at_equal_cores``'s "cores": ratio of the medians."""
    return float(np.median(times[baseline]) / (cores * np.median(times["ours"])))


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
