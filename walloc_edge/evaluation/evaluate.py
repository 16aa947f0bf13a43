"""Rate, distortion and speed over files (``walloc-edge eval``).

Each file goes the way a deployment sends it: the sensor runtime encodes it to .wlc (numpy
backend over the model's own weights, or any bundle's backend), the torch decoder decodes
the bytes, and the result is compared with the input.
"""
import math
import os
import tempfile
import time

import numpy as np

from ..decoder.metrics import mel_distance, ms_ssim, psnr, si_sdr
from ..runtime import Encoder
from ..runtime.io import read_input
from ..runtime.modality import AUDIO
from .baselines import flac_bytes, opus_at

__all__ = ["evaluate_files", "evaluate_sample", "summarise", "eval_table", "runtime_encoder",
           "paper_audio", "PROTOCOLS"]



def runtime_encoder(codec, bundle=None, backend="numpy"):
    """A sensor-runtime Encoder for ``codec``: over ``bundle`` if given, else over the
    model's weights written to a temporary bundle (numpy backend; no graph export)."""
    if bundle is not None:
        from ..codec.sensor import model_id

        encoder = Encoder(bundle, backend)
        if encoder.bundle.model_id != model_id(codec):  # each file would fail, or mislead
            raise ValueError(f"--bundle {bundle} is an export of another model "
                             f"({encoder.bundle.modality}, model id {encoder.bundle.model_id}); "
                             "give the bundle exported from this MODEL")
        return encoder
    from ..codec.sensor import write_bundle

    folder = tempfile.TemporaryDirectory(prefix="walloc-edge-bundle-")
    write_bundle(codec, folder.name)
    encoder = Encoder(folder.name, "numpy")
    encoder.bundle_folder = folder  # removed with the encoder
    return encoder


def _units(sample, kind):
    """(megapixels or megasamples, unit name) of one input of Modality ``kind``."""
    return math.prod(sample.shape[:kind.spatial_axes]) / 1e6, kind.unit


PROTOCOLS = ("default", "paper")


def paper_audio(sample):
    """The paper's audio preparation: the clip's mean removed and its peak scaled to 0.5
    (so [-0.5, 0.5], the model's input scale). Returns float64 (L, C)."""
    x = np.asarray(sample, np.float64) / (32768.0 if sample.dtype == np.int16 else 1.0)
    x = x - x.mean()
    peak = np.abs(x).max()
    return x * (0.5 / peak) if peak > 0 else x


def evaluate_files(decoder, encoder, files, coder="rans", progress=None, protocol="default",
                   baselines=False):
    """One row of measurements per file (see :func:`evaluate_sample`); unreadable files get
    an error."""
    cfg = decoder.codec.config
    rows = []
    for path in progress(files) if progress else files:
        try:
            sample, rate = read_input(path, cfg.modality, cfg.channels)
            rows.append({"file": str(path), **evaluate_sample(decoder, encoder, sample, rate,
                                                               coder, protocol, baselines)})
        except ValueError as e:
            rows.append({"file": str(path), "error": str(e)})
    return rows


def evaluate_sample(decoder, encoder, sample, rate=0, coder="rans", protocol="default",
                    baselines=False):
    """PSNR, MS-SSIM (images), bits per pixel (or per sample), compression ratio, encode and
    decode speed of one raw sample through the sensor encoder and the decoder.

    ``protocol="paper"`` measures as the WaLLoC paper's evaluation does, in extra columns:
    audio is first mean-removed and peak-normalised to ±0.5, ``paper_psnr`` is
    −10·log10(MSE) on that scale, ``paper_bits`` counts bits per sample of each channel
    (images: bits per pixel), and encode speed is CPU time (``paper_encode_*ps``); the
    compression ratio over a set is then 16 (24 for RGB) / mean ``paper_bits``, a ratio of
    means (:func:`summarise`).

    ``baselines`` (audio): Opus at the size of the .wlc and FLAC, measured the same way, in
    ``opus_*`` and ``flac_*`` columns.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")
    audio = decoder.codec.config.modality is AUDIO
    row = _paper_audio_row(decoder, encoder, sample, rate, coder) \
        if protocol == "paper" and audio else \
        _default_row(decoder, encoder, sample, rate, coder, protocol)
    if baselines and audio:
        row.update(_audio_baselines(sample, rate or 44100, row["bytes"], protocol == "paper"))
    return row


def _default_row(decoder, encoder, sample, rate, coder, protocol):
    cfg = decoder.codec.config
    start = time.perf_counter()
    blob = encoder.encode(sample, coder=coder, sample_rate=rate)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    out = decoder.decode(blob)
    decode_s = time.perf_counter() - start
    kind = cfg.modality
    size, unit = _units(sample, kind)
    row = {"shape": list(sample.shape), "bytes": len(blob), "psnr": psnr(sample, out),
           f"bits_per_{kind.per}": 8 * len(blob) / (size * 1e6),
           # against 8-bit pixels / 16-bit PCM, however the file was read (float for Ogg)
           "compression_ratio": sample.size * kind.bits_per_value / 8 / len(blob),
           f"encode_{unit}ps": size / encode_s, f"decode_{unit}ps": size / decode_s}
    if kind is AUDIO:
        row["si_sdr"] = si_sdr(sample, out)
        row["mel_distance"] = mel_distance(sample, out, rate or 44100)
    else:
        row["ms_ssim"] = ms_ssim(sample if sample.ndim == 3 else sample[..., None],
                                 out if out.ndim == 3 else out[..., None])
        if protocol == "paper":
            row["paper_psnr"] = row["psnr"]
            row["paper_bits"] = row["bits_per_pixel"]
    return row


def _paper_audio_row(decoder, encoder, sample, rate, coder):
    x = paper_audio(sample)
    cpu = time.process_time()
    blob = encoder.encode((2 * x).astype(np.float32), coder=coder, sample_rate=rate)
    encode_cpu = time.process_time() - cpu
    start = time.perf_counter()
    y = decoder.decode(blob).astype(np.float64) / 2
    decode_s = time.perf_counter() - start
    mse = float(np.mean((x - y) ** 2))
    length, channels = x.shape
    bits = 8 * len(blob) / (length * channels)
    return {"shape": list(sample.shape), "bytes": len(blob),
            "paper_psnr": math.inf if mse == 0 else -10 * math.log10(mse),
            "paper_bits": bits, "si_sdr": si_sdr(x, y), "mel_distance": mel_distance(
                x, y, rate or 44100), "paper_encode_MSps": length / 1e6 / max(encode_cpu, 1e-9),
            "decode_MSps": length / 1e6 / decode_s}


def _audio_baselines(sample, rate, target_bytes, paper):
    """Opus at ``target_bytes`` and FLAC of the clip, scored as the model's row is: against
    the clip as read (``paper``: mean-removed and peak-normalised to 0.5)."""
    if paper:
        x = paper_audio(sample)
        data, y, _ = opus_at(2 * x, rate, target_bytes)
        y = y / 2
        mse = float(np.mean((x - y) ** 2))
        scores = {"opus_paper_psnr": math.inf if mse == 0 else -10 * math.log10(mse)}
        flac = flac_bytes(2 * x, rate)
    else:
        pcm = sample.dtype == np.int16
        x = sample / 32768.0 if pcm else np.asarray(sample, np.float64)
        data, y, _ = opus_at(x, rate, target_bytes)
        y = np.clip(np.round(y * 32768), -32768, 32767).astype(np.int16) if pcm else \
            y.astype(sample.dtype)
        x = sample
        scores = {"opus_psnr": psnr(sample, y)}
        flac = flac_bytes(sample / 32768.0 if pcm else sample, rate)
    return {"opus_bytes": len(data), **scores, "opus_si_sdr": si_sdr(x, y),
            "opus_mel_distance": mel_distance(x, y, rate),
            "flac_compression_ratio": sample.size * 2 / flac}


def summarise(rows, config):
    """Means over the files that worked, plus what holds for every file. With the paper's
    columns, ``paper_compression_ratio`` is 16 bits (24 for RGB, 8 per image channel) over
    the mean bits per sample (per pixel): a ratio of means, as the paper reports it."""
    ok = [r for r in rows if "error" not in r]
    keys = [k for k in (ok[0] if ok else {}) if isinstance(ok[0][k], float)]
    mean = {k: float(np.mean([r[k] for r in ok])) for k in keys}
    if "paper_bits" in mean:
        kind = config.modality  # audio: bits per sample; images: per pixel
        full = kind.bits_per_value * (1 if kind is AUDIO else config.channels)
        mean["paper_compression_ratio"] = full / mean["paper_bits"]
    return {"files": len(rows), "failed": len(rows) - len(ok),
            "dimensionality_reduction": config.dimensionality_reduction, **mean}


def eval_table(rows, summary, kind):
    """The per-file table and the means that `eval` and `train` print, as text, for a model
    of Modality ``kind``."""
    lines = []
    unit, rate = kind.unit, f"bits_per_{kind.per}"
    audio = kind is AUDIO
    columns = [("psnr", "PSNR dB", "{:.2f}"), ("paper_psnr", "paper PSNR", "{:.2f}"),
               ("ms_ssim", "MS-SSIM", "{:.4f}"), ("si_sdr", "SI-SDR dB", "{:.2f}"),
               ("mel_distance", "mel dB", "{:.3f}"),
               (rate, "bits/frame" if audio else "bpp", "{:.3f}"),
               ("paper_bits", "bits/sample" if audio else "bpp", "{:.3f}"),
               ("compression_ratio", "ratio", "{:.1f}"),
               (f"encode_{unit}ps", f"enc {unit}/s", "{:.1f}"),
               (f"paper_encode_{unit}ps", f"enc {unit}/s cpu", "{:.2f}"),
               (f"decode_{unit}ps", f"dec {unit}/s", "{:.2f}"),
               ("opus_psnr", "Opus PSNR", "{:.2f}"), ("opus_paper_psnr", "Opus pPSNR", "{:.2f}"),
               ("opus_si_sdr", "Opus SISDR", "{:.2f}"), ("opus_mel_distance", "Opus mel",
                                                         "{:.3f}"),
               ("flac_compression_ratio", "FLAC ratio", "{:.2f}")]
    columns = [c for c in columns if any(c[0] in r for r in rows)]
    width = max([len(os.path.basename(r["file"])) for r in rows] + [4])
    lines.append(f"{'file':<{width}}  " + "  ".join(f"{title:>10}" for _, title, _ in columns))
    for r in rows + [{"file": "mean", **summary}]:
        if "error" in r:
            lines.append(f"{os.path.basename(r['file']):<{width}}  error: {r['error']}")
            continue
        lines.append(f"{os.path.basename(r['file']):<{width}}  " +
                     "  ".join(f"{fmt.format(r[key]):>10}" for key, _, fmt in columns))
    lines.append(f"dimensionality reduction {summary['dimensionality_reduction']:.4g}x; "
                 f"{summary['files'] - summary['failed']} of {summary['files']} files")
    if "paper_compression_ratio" not in summary:
        lines.append("default protocol: PSNR against " + (
            "int16 full scale, ratios against 16-bit PCM" if audio else
            "255, ratios against 8-bit pixels") + " (the mean of the files' ratios); "
            "--protocol paper for the paper's")
    else:
        full, per = ("16 bits", "sample of each channel") if audio else \
            ("8 bits x channels", "pixel")
        lines.append(f"paper's protocol: compression ratio "
                     f"{summary['paper_compression_ratio']:.2f} ({full} / mean bits per {per}), "
                     f"PSNR {summary['paper_psnr']:.2f} dB"
                     + (" (clips mean-removed, peak-normalised to 0.5, on that scale)"
                        if audio else ""))
    return "\n".join(lines)
