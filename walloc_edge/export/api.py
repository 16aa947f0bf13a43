"""export_bundle: write and validate the sensor bundle for a codec."""
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..codec.sensor import (bundle_arrays, bundle_metadata, model_id, sensor_encoder,
                            write_bundle)
from ..runtime.modality import IMAGE
from .validate import audio_inputs, image_inputs, random_sample, validate

__all__ = ["FORMATS", "EXPORTERS", "ExportError", "check_formats", "export_bundle"]


class ExportError(ValueError):
    """A graph that did not pass validation (bad arguments raise plain ValueError)."""


def check_formats(formats, allow_none=False):
    """``formats`` by their names in ``EXPORTERS`` (aliases replaced); ValueError for an
    unknown one, or for none unless ``allow_none``."""
    formats = tuple(FORMAT_ALIASES.get(f, f) for f in formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not (formats or allow_none):
        raise ValueError(f"unknown format {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(FORMATS)}")
    return formats


def _trace_example(codec, shape):
    rng = np.random.default_rng(0)
    return torch.from_numpy(random_sample(codec.config.modality, shape, codec.config.channels,
                                          rng))


def _check_static_shape(codec, encoder, shape):
    step = 2 ** codec.J
    for n in shape:
        if n % step or n < encoder.min_size:
            raise ValueError(f"LiteRT size {'x'.join(map(str, shape))} must be multiples of "
                              f"2^J = {step} and at least {encoder.min_size}; e.g. "
                              f"{max(encoder.min_size, n - n % step)}")


@dataclass(frozen=True)
class _Job:
    """What every exporter is given: the codec, its sensor encoder module, the folder, and
    the fixed size of static graphs."""

    codec: torch.nn.Module
    encoder: torch.nn.Module
    out_dir: Path
    static_shape: tuple
    audio_length: int  # the default audio trace / LiteRT size
    log: object

    @property
    def image(self):
        return self.codec.config.modality is IMAGE

    @property
    def step(self):
        return 2 ** self.codec.J

    @property
    def channels(self):
        return self.codec.config.channels


def _onnx(job, graphs):
    """encoder.onnx: dynamic H, W (or L), traced once, validated at other sizes."""
    from .onnx_graph import OPSET, export_onnx, onnx_session

    traced = (256, 320) if job.image else (job.audio_length,)
    path = export_onnx(job.encoder, _trace_example(job.codec, traced),
                       job.out_dir / "encoder.onnx")
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    if job.image:
        m, step = max(job.encoder.min_size, job.step), job.step
        inputs = image_inputs(job.channels, [(m, m + step), (m + 13 * step, m + 5 * step)],
                              multiple=step)
    else:
        inputs = audio_inputs(job.channels, [job.encoder.min_size, job.step * 211])
    passed, report = validate(lambda raw: session.run(None, {name: raw})[0], job.codec, inputs)
    return {"file": path.name, "opset": OPSET, "traced_shape": list(traced), "dynamic": True,
            **report}, passed


def _litert(job, graphs):
    """encoder.tflite: static ``static_shape``, NHWC latents for images."""
    from .litert_graph import export_litert, litert_runner

    path = export_litert(sensor_encoder(job.codec, "litert"),
                         _trace_example(job.codec, job.static_shape),
                         job.out_dir / "encoder.tflite")
    if job.image:
        inputs = image_inputs(job.channels, [job.static_shape], photo_size=job.static_shape,
                              seed=1)
    else:
        inputs = audio_inputs(job.channels, [job.static_shape[0]])
    passed, report = validate(litert_runner(path), job.codec, inputs)
    return {"file": path.name, "static_shape": list(job.static_shape), "dynamic": False,
            "latent_layout": "NHWC" if job.image else "NCL", **report}, passed


def _c(job, graphs):
    """C sources in out_dir/c; compiled and validated when this machine has a C compiler."""
    from .c_export import build_c, c_runner, compiler, write_c_sources

    folder = write_c_sources(bundle_metadata(job.codec, job.encoder, graphs),
                             bundle_arrays(job.codec, job.encoder), job.out_dir / "c")
    info = {"folder": "c", "program": "c/walloc_encode"}
    if compiler() is None:
        return {**info, "status": "not validated: no C compiler"}, True
    step = job.step
    program = build_c(folder)
    if job.image:
        inputs = image_inputs(job.channels, [(5 * step, 7 * step)], multiple=step, seed=2)
    else:
        inputs = audio_inputs(job.channels, [5 * step, 37 * step], seed=2)
    passed, report = validate(c_runner(program, step, not job.image), job.codec, inputs)
    fixed_passed, fixed = validate(c_runner(program, step, not job.image, fixed=True),
                                   job.codec, inputs)
    extra = {"fixed": fixed}
    if "#define WALLOC_FIXED_CORE 1" in (folder / "walloc_model.h").read_text():
        core_passed, extra["fixed_point"] = validate(
            c_runner(program, step, not job.image, fixed_point=True), job.codec, inputs)
        fixed_passed = fixed_passed and core_passed
    return {**info, **report, **extra}, passed and fixed_passed


# Format name: the function that writes and validates its graph, (job, graphs so far) →
# (its report for encoder.json, whether it passed). In the order they are written.
EXPORTERS = {"onnx": _onnx, "litert": _litert, "c": _c}
FORMATS = tuple(EXPORTERS)
# Other names a format may be asked for by: "tflite", the LiteRT graph's file type.
FORMAT_ALIASES = {"tflite": "litert"}


def export_bundle(codec: torch.nn.Module, out_dir: "str | Path",
                  formats: "tuple[str, ...]" = ("onnx",),
                  static_shape: "tuple[int, ...] | None" = None,
                  log: "Callable[[str], object]" = print, decoder: bool = False) -> dict:
    """Write the bundle for ``codec`` into ``out_dir``; returns the encoder.json content.

    ``static_shape``: (H, W) for images or (L,) for audio, the LiteRT graph's fixed size.
    With no formats, only the weights and metadata are written: enough for the runtime's
    numpy backend. ``decoder``: also the decoder network as decoder.onnx, with what the
    de-companding and synthesis around it need (``decoder_graph.export_decoder``). Raises
    ExportError when a graph fails validation (the files stay for inspection).
    """
    formats = check_formats(formats, allow_none=True)
    encoder = sensor_encoder(codec)
    step = 2 ** codec.J
    audio_length = step * max(64, encoder.min_size // step)
    image = codec.config.modality is IMAGE
    if static_shape is None:
        static_shape = (512, 512) if image else (audio_length,)
    if "litert" in formats:
        _check_static_shape(codec, encoder, static_shape)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = _Job(codec, encoder, out_dir, tuple(static_shape), audio_length, log)
    earlier, failures = _earlier_graphs(out_dir, codec, formats, log), []
    if not decoder:
        _note_another_decoder(out_dir, codec, log)
    graphs = {}
    for fmt in (f for f in FORMATS if f in formats):
        report, passed = EXPORTERS[fmt](job, graphs)
        log(_summary(fmt, report))
        graphs[fmt] = report
        if not passed:
            failures.append(fmt)
    graphs = {f: graphs.get(f) or earlier[f] for f in FORMATS if f in graphs or f in earlier}
    metadata = write_bundle(codec, out_dir, encoder, graphs)
    if decoder:
        from .decoder_graph import MIN_AGREEMENT_DB, export_decoder

        passed, report = export_decoder(codec, out_dir, log)
        if not passed:
            raise ExportError(f"the decoder graph failed validation (decodes agree with torch "
                              f"at {report['agreement_db']:.1f} dB PSNR, fewer than "
                              f"{MIN_AGREEMENT_DB:g}); see {out_dir / 'decoder.json'}")
    if failures:
        raise ExportError(f"{', '.join(failures)} failed validation (fewer than 99.9% of "
                          f"latents identical to torch, or a difference above 1); see "
                          f"{out_dir / 'encoder.json'}")
    return metadata


def _earlier_graphs(out_dir, codec, formats, log):
    """The graphs an earlier export of this same model left in ``out_dir`` that this one
    does not make again and that passed their validation, so that exporting the decoder (or
    another format) afterwards keeps them in encoder.json; none where the folder held
    another model's bundle (said)."""
    try:
        old = json.loads((out_dir / "encoder.json").read_text())
        graphs = dict(old["graphs"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if old.get("model_id") != model_id(codec):
        left = [name for fmt, report in graphs.items()
                if FORMAT_ALIASES.get(fmt, fmt) not in formats and isinstance(report, dict)
                for name in [report.get("file") or report.get("folder")]
                if isinstance(name, str) and (out_dir / name).exists()]
        left = [f"{name}/" if (out_dir / name).is_dir() else name for name in left]
        if graphs:
            log(f"note: {out_dir} held a bundle of another model ({old.get('model_id')}); "
                f"its graphs ({', '.join(graphs)}) are not kept"
                + (f": {', '.join(left)} there {'is' if len(left) == 1 else 'are'} still "
                   "that model's (a C program built there encodes with it): delete "
                   f"{'it' if len(left) == 1 else 'them'}" if left else ""))
        return {}
    kept = {}
    for fmt, report in graphs.items():
        fmt = FORMAT_ALIASES.get(fmt, fmt)  # older bundles name the LiteRT graph "tflite"
        name = isinstance(report, dict) and (report.get("file") or report.get("folder"))
        if (fmt in FORMATS and fmt not in formats and isinstance(name, str) and
                (out_dir / name).exists() and report.get("status") != "validation failed"):
            kept[fmt] = report
    return kept


def _note_another_decoder(out_dir, codec, log):
    """Say so where ``out_dir`` holds another model's decoder graph, which this export does
    not replace (decode and info refuse it; the files are the user's to delete)."""
    try:
        other = json.loads((out_dir / "decoder.json").read_text()).get("model_id")
    except (OSError, ValueError, AttributeError):
        return
    if other and other != model_id(codec):
        log(f"note: {out_dir}'s decoder graph (decoder.onnx, decoder.npz, decoder.json) is of "
            f"another model ({other}); export with --decoder to replace it, or delete it")


def _summary(fmt, report):
    if "checks" not in report:  # C sources on a machine without a compiler
        return f"{fmt}: sources written; {report['status']}"
    lines = [f"{fmt}: {report['status']} — {report['identical']:.4%} of latents identical "
             f"to torch, max |diff| {report['max_diff']}"]
    lines += [f"    {c['input']:<32} {c['identical']:.4%} identical, max |diff| {c['max_diff']}"
              for c in report["checks"]]
    lines += [f"  {what}: {report[key]['status']} — {report[key]['identical']:.4%} identical, "
              f"max |diff| {report[key]['max_diff']}"  # the C program's other encoders
              for key, what in (("fixed", "its fixed-memory encoder (--fixed)"),
                                ("fixed_point", "its fixed-point core (--fixed-point)"))
              if key in report]
    return "\n".join(lines)
