"""``run_bench``: every row of the bench, in order — the sensor backends (each in its own
process), the C export, the entropy coders, torch, and the baselines."""
import tempfile
from pathlib import Path

import numpy as np

from ..runtime.backends import BACKENDS
from ..runtime.modality import IMAGE
from .baseline_rows import audio_baselines, image_baselines
from .coder_rows import coder_rows
from .inputs import bench_input
from .machine import machine
from .sensor_rows import c_row, sensor_row
from .torch_rows import load_codec, quality, torch_rows

__all__ = ["run_bench"]

REFERENCE_BACKEND = "onnxruntime"  # runs the validated graph: its latents check the others'


def run_bench(bundle=None, model=None, quick=False, threads=(1, 2), size=None, repeat=None,
              log=print, level=None):
    """Measure every row; returns {"machine", "unit", "input", "rows", …}. ``size`` and
    ``repeat`` override the input side and the timed runs that ``quick`` picks; ``level``
    is the rans level (None: its default) of the end-to-end and coder rows."""
    from ..runtime import CODERS, load_bundle, write_bitstream

    repeat = repeat or (3 if quick else 7)
    codec, torch_reason = load_codec(model)
    tmp = None
    if bundle is None:
        if codec is None:
            raise ValueError(f"give a bundle (exported on a workstation), or install torch to "
                             f"export the model here ({torch_reason})")
        tmp = tempfile.mkdtemp(prefix="walloc-edge-bench-")
        from ..export import export_bundle

        log(f"exporting {model} to ONNX, LiteRT and C (validated) ...")
        formats = ("onnx", "litert", "c") if codec.config.modality is IMAGE else \
            ("onnx", "litert")
        export_bundle(codec, tmp, formats, log=lambda s: None)
        bundle = tmp
    info = load_bundle(bundle)
    modality, channels = info.modality, info.channels
    sample, amount, unit = bench_input(modality, channels, quick, size)
    log(f"input: {'x'.join(map(str, sample.shape))} {sample.dtype}, {repeat} timed runs per row")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        np.save(Path(work) / "input.npy", sample)
        order = sorted(BACKENDS.values(), key=lambda cls: cls.name != REFERENCE_BACKEND)
        for backend, n in [(cls.name, t) for cls in order
                           for t in (threads if cls.threaded else (None,))]:
            row = sensor_row(bundle, info, backend, n, Path(work), repeat, amount, level)
            rows.append(row)
            log(f"  {row['row']}: " + (f"{row['encode']['median']:.1f} {unit}/s"
                                       if "encode" in row else row["status"]))
        latents = np.load(Path(work) / "latents.npy")
        if modality is IMAGE:
            raw = Path(work) / "input.raw"  # what the C host program reads
            raw.write_bytes(np.ascontiguousarray(sample).tobytes())
            rows += [c_row(bundle, raw, sample.shape, repeat, amount, latents, fixed)
                     for fixed in (False, True)]
    coding_rows = coder_rows(latents, info.latent_bits, amount, repeat, CODERS, level)
    # per coder, its first row: the C loops of rans where they are built
    coding = {row["coder"]: row["encode"]["median"] for row in reversed(coding_rows)}
    blob = write_bitstream(info, latents, {"shape": sample.shape, "dtype": sample.dtype}, "rans",
                           level=level)
    scores = quality(codec, blob, sample, torch_reason)
    for row in rows:
        if "encode" in row:
            row.update(coders=coding, compression_ratio=sample.nbytes / len(blob), **scores)
    rows += [{k: v for k, v in row.items() if k != "coder"} for row in coding_rows]
    rows += torch_rows(codec, sample, amount, repeat, torch_reason, blob)
    rows += image_baselines(sample, amount, repeat, len(blob)) if modality is IMAGE else \
        audio_baselines(sample, amount, repeat, len(blob))
    return {"machine": machine(), "unit": unit, "repeat": repeat,
            "input": {"shape": list(sample.shape), "dtype": str(sample.dtype)},
            "model_id": info.model_id, "level": CODERS["rans"].at_level(level).level,
            "rows": rows}
