"""``walloc-edge bench``: how many megapixels per second each sensor backend encodes on this
machine, next to what a sensor would use instead (JPEG, WebP, PNG).

Everything in the table is measured in the run. The runtime rows need only the sensor
runtime (give ``--bundle`` exported on a workstation); rows that need torch (the torch
encoder, decoding and PSNR) or a runtime that is not installed show as skipped, with why.

Method: one warm-up run, then ``repeat`` timed runs per row; medians with min–max, and
per-frame latency p50/p90. End to end (uint8 frame → .wlc bytes with rans) alternates, for
images, with a size-matched JPEG encode round by round in the row's process, so the ratio
of the two ("÷ JPEG, alternating") holds on a shared machine whose load drifts between
rows. Peak memory is the resident set above what the process held just before the row,
sampled every 2 ms. Inputs: the bundled astronaut photo resized to
2048×2048 (1024×1024 with ``quick``); audio models: 10 s of generated stereo music.
"""
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["run_bench", "machine", "markdown", "svg_plot", "print_table", "timed", "PeakMemory",
           "alternating_with_jpeg", "measure_backend"]


def machine():
    """What the numbers were measured on."""
    info = {"system": platform.system(), "architecture": platform.machine(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "isa": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and info["cpu"] in ("", platform.machine()):
                info["cpu"] = value.strip()
            if key.strip() in ("flags", "Features"):
                flags = set(value.split())
                info["isa"] = sorted(flags & {"avx2", "avx512f", "fma", "sse4_2", "neon",
                                              "asimd", "sve"})
    except OSError:
        pass
    versions = {}
    for module in ("numpy", "onnxruntime", "ai_edge_litert", "torch", "PIL"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = None
    info["versions"] = versions
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


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


def timed(fn, repeat):
    """Seconds of ``repeat`` runs of ``fn`` after one warm-up run."""
    fn()
    return np.array([_seconds(fn) for _ in range(repeat)])


def _speed(times, amount):
    return {"median": float(amount / np.median(times)), "min": float(amount / times.max()),
            "max": float(amount / times.min()), "p50_ms": float(np.percentile(times, 50) * 1e3),
            "p90_ms": float(np.percentile(times, 90) * 1e3)}


def _bench_input(modality, channels, quick, size=None):
    from ..data import synthetic_music

    if modality == "image":
        from PIL import Image

        from ..data import sample_photo

        size = size or (1024 if quick else 2048)
        photo = Image.fromarray(sample_photo("astronaut")).resize((size, size), Image.BICUBIC)
        sample = np.asarray(photo.convert("RGB" if channels == 3 else "L"))
        if channels not in (1, 3):
            sample = np.repeat(sample[..., :1], channels, axis=2)
        return (sample if sample.ndim == 3 else sample[..., None]), size * size / 1e6, "MP"
    seconds = 5 if quick else 10
    return synthetic_music(44100 * seconds, channels), 44100 * seconds / 1e6, "MS"


def run_bench(bundle=None, model=None, quick=False, threads=(1, 2), size=None, repeat=None,
              log=print):
    """Measure every row; returns {"machine", "unit", "input", "rows", …}. ``size`` and
    ``repeat`` override the input side and the timed runs that ``quick`` picks."""
    from ..runtime import CODERS, load_bundle, write_bitstream

    repeat = repeat or (3 if quick else 7)
    codec, torch_reason = _load_codec(model)
    tmp = None
    if bundle is None:
        if codec is None:
            raise ValueError(f"give --bundle (exported on a workstation), or install torch to "
                             f"export --model here ({torch_reason})")
        tmp = tempfile.mkdtemp(prefix="walloc-edge-bench-")
        from ..export import export_bundle

        log(f"exporting {model} to ONNX, TFLite and C (validated) ...")
        formats = ("onnx", "tflite", "c") if codec.config.modality == "image" else \
            ("onnx", "tflite")
        export_bundle(codec, tmp, formats, log=lambda s: None)
        bundle = tmp
    info = load_bundle(bundle)
    modality, channels = info.modality, info.channels
    sample, amount, unit = _bench_input(modality, channels, quick, size)
    log(f"input: {'x'.join(map(str, sample.shape))} {sample.dtype}, {repeat} timed runs per row")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        np.save(Path(work) / "input.npy", sample)
        # onnxruntime first: its latents (the validated graph's) are the others' reference
        for backend, n in ([("onnxruntime", t) for t in threads] + [("native", t) for t in threads]
                           + [("litert", max(threads)), ("numpy", None)]):
            row = _sensor_row(bundle, info, backend, n, Path(work), repeat, amount)
            rows.append(row)
            log(f"  {row['row']}: " + (f"{row['encode']['median']:.1f} {unit}/s"
                                       if "encode" in row else row["status"]))
        latents = np.load(Path(work) / "latents.npy")
        if modality == "image":
            raw = Path(work) / "input.raw"  # what the C host program reads
            raw.write_bytes(np.ascontiguousarray(sample).tobytes())
            rows += [_c_row(bundle, raw, sample.shape, repeat, amount, latents, fixed)
                     for fixed in (False, True)]
    coder_rows = _coder_rows(latents, info.latent_bits, amount, repeat, CODERS)
    # per coder, its first row: the C loops of rans where they are built
    coding = {row["coder"]: row["encode"]["median"] for row in reversed(coder_rows)}
    blob = write_bitstream(info, latents, {"shape": sample.shape, "dtype": sample.dtype}, "rans")
    quality = _quality(codec, blob, sample, torch_reason)
    for row in rows:
        if "encode" in row:
            row.update(coders=coding, compression_ratio=sample.nbytes / len(blob), **quality)
    rows += [{k: v for k, v in row.items() if k != "coder"} for row in coder_rows]
    rows += _torch_rows(codec, sample, amount, repeat, torch_reason, blob)
    rows += _image_baselines(sample, amount, repeat, len(blob)) if modality == "image" else \
        _audio_baselines(sample, amount, repeat, len(blob))
    return {"machine": machine(), "unit": unit, "repeat": repeat,
            "input": {"shape": list(sample.shape), "dtype": str(sample.dtype)},
            "model_id": info.model_id, "rows": rows}


def _sensor_row(bundle, info, backend, threads, work, repeat, amount):
    """One backend measured in a fresh process (no torch there), so that its memory and
    threads are its own."""
    name = f"{backend}, {threads} thread{'s' * (threads != 1)}" if threads else backend
    job = json.dumps([str(bundle), backend, threads, str(work), repeat, amount])
    root = str(Path(__file__).resolve().parents[2])  # this very package in the child too
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", __name__, job], capture_output=True,
                            text=True, env=env)
    if result.returncode:
        return {"row": name, "kind": "sensor",
                "status": "failed: " + (result.stderr.strip().splitlines() or ["?"])[-1]}
    row = {"row": name, "kind": "sensor", **json.loads(result.stdout.strip().splitlines()[-1])}
    graph = info.meta.get("graphs", {}).get({"onnxruntime": "onnx", "litert": "tflite"}
                                            .get(backend, ""), {})
    if "status" not in row:
        row["status"] = graph.get("status", "C, weights from encoder.npz" if backend == "native"
                                  else "weights from encoder.npz")
        if graph.get("file"):
            row["file_MB"] = (Path(bundle) / graph["file"]).stat().st_size / 1e6
    return row


def _c_row(bundle, raw, shape, repeat, amount, latents, fixed):
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
            "encode": _speed(times, amount), "identical_latents": float(same.mean())}


def measure_backend(bundle, backend, threads, work, repeat, amount):
    """Speed, latency and peak memory of one backend (run in its own process)."""
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
    row = {"encode": _speed(times, amount), "peak_MB": memory.mb, "identical_latents": same}
    if sample.ndim == 3 and sample.shape[2] in (1, 3):
        rounds = alternating_with_jpeg(encoder, sample, repeat)
        end_to_end = rounds["ours"]
        row["jpeg_share"] = float(np.median(rounds["jpeg"]) / np.median(end_to_end))
    else:
        end_to_end = timed(lambda: encoder.encode(sample, coder="rans"), repeat)
    return {**row, "end_to_end": _speed(end_to_end, amount)["median"]}


def alternating_with_jpeg(encoder, sample, rounds):
    """End to end (``sample``, uint8 H x W x 1 or 3 → .wlc with rans) against Pillow's JPEG
    at the quality whose file is closest in size, one of each a round, so that a shared
    machine's drifting load falls on both alike: {"ours", "jpeg": seconds a round,
    "quality", "wlc_bytes", "jpeg_bytes"}."""
    from PIL import Image

    image = Image.fromarray(sample if sample.shape[2] == 3 else sample[..., 0])
    size = len(encoder.encode(sample, coder="rans"))  # both warm up here
    quality = _size_matched(lambda q: len(_pillow_bytes(image, "JPEG", quality=q)),
                            range(1, 96), size)
    jpeg_bytes = len(_pillow_bytes(image, "JPEG", quality=quality))
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(_seconds(lambda: encoder.encode(sample, coder="rans")))
        theirs.append(_seconds(lambda: _pillow_bytes(image, "JPEG", quality=quality)))
    return {"ours": np.array(ours), "jpeg": np.array(theirs), "quality": quality,
            "wlc_bytes": size, "jpeg_bytes": jpeg_bytes}


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _pillow_bytes(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _load_codec(model):
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch is not installed (pip install 'walloc-edge[server]')"
    if model is None:
        return None, "no --model given"
    from ..codec import load

    return load(model), None


def _coder_rows(latents, bits, amount, repeat, coders):
    """Encode and decode speed of each entropy coder on the latents of the input: rans with
    its C loops (where built) and with the numpy reference, the WebP and PNG mosaics."""
    from ..runtime.coders.rans import native

    def row(label, coder, status="measured"):
        payload = coder.encode(latents, bits)
        params = coder.params(bits)
        return {"row": label, "kind": "coder", "status": status, "coder": coder.name,
                "encode": _speed(timed(lambda: coder.encode(latents, bits), repeat), amount),
                "decode": _speed(timed(lambda: coder.decode(payload, latents.shape, bits,
                                                            params), repeat), amount),
                "compression_ratio": None, "bytes": len(payload)}

    status = "measured" if native.available() else f"measured; C: {native.reason()}"
    with native.turned_off():
        rows = [row("rans coder (numpy)", coders["rans"], status)]
    if native.available():  # first, so that the coder column reads the C loops
        rows.insert(0, row("rans coder (C)", coders["rans"]))
    return rows + [row("webp mosaic coder (libwebp)", coders["webp"]),
                   row("png mosaic coder (zlib)", coders["png"])]


def _quality(codec, blob, sample, reason):
    if codec is None:
        return {"psnr": None, "psnr_note": f"skipped: {reason}"}
    from ..decoder import Decoder, psnr

    return {"psnr": psnr(sample, Decoder(codec, "cpu").decode(blob).reshape(sample.shape))}


def _torch_rows(codec, sample, amount, repeat, reason, blob):
    if codec is None:
        return [{"row": "torch encoder (Codec.encode)", "kind": "sensor",
                 "status": f"skipped: {reason}"},
                {"row": "torch decoder", "kind": "decoder", "status": f"skipped: {reason}"}]
    import torch

    from ..codec import pad
    from ..decoder import Decoder

    from ..runtime.modality import MODALITIES

    x = MODALITIES[codec.config.modality].to_model(torch.from_numpy(np.array(sample))[None])
    x = pad(x, 2 ** codec.J)
    with torch.no_grad():
        times = timed(lambda: codec.encode(x), max(1, repeat // 2))
    rows = [{"row": "torch encoder (Codec.encode)", "kind": "sensor", "status": "reference math",
             "encode": _speed(times, amount)}]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        decoder = Decoder(codec, device)
        times = timed(lambda: decoder.decode(blob), 1)
        rows.append({"row": f"torch decoder ({device})", "kind": "decoder", "status": "measured",
                     "decode": _speed(times, amount)})
    return rows


def _size_matched(size_of, qualities, target):
    """The quality whose size is closest to ``target`` (sizes grow with quality: bisect)."""
    lo, hi = qualities.start, qualities.stop - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size_of(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda q: abs(size_of(q) - target))


def _image_baselines(sample, amount, repeat, target_bytes):
    """JPEG and WebP (lossy) at the quality whose size is closest to the codec's, and PNG."""
    from PIL import Image

    from ..runtime.metrics import psnr

    image = Image.fromarray(sample if sample.shape[2] == 3 else sample[..., 0])

    def encode(fmt, **options):
        return _pillow_bytes(image, fmt, **options)

    rows = []
    for label, fmt, qualities in (("JPEG (Pillow, libjpeg-turbo)", "JPEG", range(1, 96)),
                                  ("WebP lossy (Pillow, libwebp)", "WEBP", range(0, 101))):
        quality = _size_matched(lambda q: len(encode(fmt, quality=q)), qualities, target_bytes)
        data = encode(fmt, quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(data))).reshape(sample.shape)
        rows.append({"row": f"{label} q{quality}, size-matched", "kind": "baseline",
                     "status": "baseline",
                     "encode": _speed(timed(lambda: encode(fmt, quality=quality), repeat), amount),
                     "decode": _speed(timed(lambda: Image.open(io.BytesIO(data)).load(), repeat),
                                      amount),
                     "compression_ratio": sample.nbytes / len(data),
                     "psnr": psnr(sample, decoded)})
    data = encode("PNG")
    rows.append({"row": "PNG lossless (Pillow, zlib)", "kind": "baseline", "status": "baseline",
                 "encode": _speed(timed(lambda: encode("PNG"), max(1, repeat // 2)), amount),
                 "decode": _speed(timed(lambda: Image.open(io.BytesIO(data)).load(), repeat),
                                  amount),
                 "compression_ratio": sample.nbytes / len(data), "psnr": float("inf")})
    return rows


def _audio_baselines(sample, amount, repeat, target_bytes):
    """Opus at the size closest to the codec's (libopus via soundfile, resampled to 48 kHz
    and back, both counted) and FLAC (lossless, what a recorder would store instead)."""
    try:
        import soundfile
    except ImportError:
        return [{"row": "Opus and FLAC", "kind": "baseline",
                 "status": "skipped: soundfile is not installed"}]
    from ..evaluation.baselines import OPUS_RATE, flac_encode, opus_at, opus_encode, resample
    from ..runtime.metrics import psnr

    x = sample / 32768.0
    data, decoded, level = opus_at(x, 44100, target_bytes)
    pcm = np.clip(np.round(decoded * 32768), -32768, 32767).astype(np.int16)
    flac = flac_encode(sample, 44100)
    return [{"row": f"Opus (soundfile, libopus) level {level:.2f}, size-matched", "kind": "baseline",
             "status": "baseline",
             "encode": _speed(timed(lambda: opus_encode(x, 44100, level), repeat), amount),
             "decode": _speed(timed(lambda: resample(soundfile.read(
                 io.BytesIO(data), always_2d=True)[0], OPUS_RATE, 44100), repeat), amount),
             "compression_ratio": sample.nbytes / len(data), "psnr": psnr(sample, pcm)},
            {"row": "FLAC lossless (soundfile, libsndfile)", "kind": "baseline",
             "status": "baseline",
             "encode": _speed(timed(lambda: flac_encode(sample, 44100), repeat), amount),
             "decode": _speed(timed(lambda: soundfile.read(io.BytesIO(flac), dtype="int16"),
                                    repeat), amount),
             "compression_ratio": sample.nbytes / len(flac), "psnr": float("inf")}]


def _cells(row, unit):
    e, d = row.get("encode"), row.get("decode")
    fmt = lambda v, f: "" if v is None else f.format(v)
    coders = row.get("coders", {})
    return [row["row"], row["status"][:60], fmt(row.get("file_MB"), "{:.2f}"),
            "" if not e else f"{e['median']:.1f} ({e['min']:.1f}-{e['max']:.1f})",
            "" if not e else f"{e['p50_ms']:.0f}/{e['p90_ms']:.0f}",
            "/".join(f"{coders[c]:.1f}" for c in ("rans", "webp", "png")) if coders else "",
            fmt(row.get("end_to_end"), "{:.1f}"), fmt(row.get("jpeg_share"), "{:.3f}×"),
            fmt(row.get("peak_MB"), "{:.0f}"),
            "" if not d else f"{d['median']:.2f}",
            fmt(row.get("compression_ratio"), "{:.1f}"), fmt(row.get("psnr"), "{:.2f}")]


def _headers(unit):
    return ["row", "status", "file MB", f"encode {unit}/s (min-max)", "p50/p90 ms",
            f"rans/webp/png {unit}/s", f"end-to-end {unit}/s", "÷ JPEG, alternating",
            "peak MB", f"decode {unit}/s",
            "ratio", "PSNR dB"]


def _machine_line(m):
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return (f"{m['cpu']} ({m['architecture']}, {m['cores']} cores, ISA {' '.join(m['isa']) or '?'}"
            f"; GPU {m['gpu'] or 'none'}); {versions}")


def print_table(result):
    unit = result["unit"]
    table = [_headers(unit)] + [_cells(r, unit) for r in result["rows"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print(_machine_line(result["machine"]))
    print(f"input {'x'.join(map(str, result['input']['shape']))}, median of {result['repeat']}")
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def markdown(result, command):
    unit = result["unit"]
    lines = [f"Machine: {_machine_line(result['machine'])}", "",
             f"Input: {'x'.join(map(str, result['input']['shape']))} "
             f"{result['input']['dtype']}; median of {result['repeat']} timed runs after a "
             "warm-up", "",
             "| " + " | ".join(_headers(unit)) + " |", "|" + "---|" * len(_headers(unit))]
    lines += ["| " + " | ".join(_cells(r, unit)) + " |" for r in result["rows"]]
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def svg_plot(result):
    """A horizontal bar chart of encode (and decode) throughput per row, log scale."""
    bars = []
    for r in result["rows"]:
        for key, what in (("encode", "encode"), ("decode", "decode")):
            if r.get(key):
                bars.append((f"{r['row']} — {what}", r[key]["median"], r["kind"]))
    if not bars:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    top = max(v for _, v, _ in bars)
    lo = min(v for _, v, _ in bars) / 2
    scale = lambda v: 420 * np.log(v / lo) / np.log(top / lo)
    colours = {"sensor": "#2b6cb0", "coder": "#38a169", "decoder": "#805ad5",
               "baseline": "#a0aec0"}
    height = 30 + 22 * len(bars)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='900' height='{height}' "
           "font-family='sans-serif' font-size='12'>",
           f"<text x='10' y='18' font-weight='bold'>{result['unit']}/s (log scale) — "
           f"{_machine_line(result['machine'])[:110]}</text>"]
    for i, (label, value, kind) in enumerate(bars):
        y = 30 + 22 * i
        out.append(f"<text x='10' y='{y + 14}'>{label[:52]}</text>")
        out.append(f"<rect x='370' y='{y + 2}' width='{max(scale(value), 1):.1f}' height='16' "
                   f"fill='{colours[kind]}'/>")
        out.append(f"<text x='{375 + scale(value):.1f}' y='{y + 14}'>{value:.2f}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # one backend row, in a process of its own (see _sensor_row)
    print(json.dumps(measure_backend(*json.loads(sys.argv[1]))))
