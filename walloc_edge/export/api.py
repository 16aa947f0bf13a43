"""export_bundle: write and validate the sensor bundle for a codec."""
import json
from pathlib import Path

import numpy as np
import torch

from .bundle import bundle_arrays, bundle_metadata
from .graphs import sensor_encoder
from .validate import audio_inputs, image_inputs, random_sample, validate

__all__ = ["FORMATS", "ExportError", "check_formats", "export_bundle"]

FORMATS = ("onnx", "tflite", "c")


class ExportError(ValueError):
    """A graph that did not pass validation (bad arguments raise plain ValueError)."""


def check_formats(formats, allow_none=False):
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not (formats or allow_none):
        raise ValueError(f"unknown format {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(FORMATS)}")


def _trace_example(codec, shape):
    rng = np.random.default_rng(0)
    return torch.from_numpy(random_sample(codec.config.modality, shape, codec.config.channels,
                                          rng))


def _check_static_shape(codec, encoder, shape):
    step = 2 ** codec.J
    for n in shape:
        if n % step or n < encoder.min_size:
            raise ValueError(f"TFLite size {'x'.join(map(str, shape))} must be multiples of "
                              f"2^J = {step} and at least {encoder.min_size}; e.g. "
                              f"{max(encoder.min_size, n - n % step)}")


def export_bundle(codec, out_dir, formats=("onnx",), static_shape=None, log=print):
    """Write the bundle for ``codec`` into ``out_dir``; returns the encoder.json content.

    ``static_shape``: (H, W) for images or (L,) for audio, the TFLite graph's fixed size.
    With no formats, only the weights and metadata are written: enough for the runtime's
    numpy backend. Raises ExportError when a graph fails validation (the files stay for
    inspection).
    """
    check_formats(formats, allow_none=True)
    encoder = sensor_encoder(codec)
    image = codec.config.modality == "image"
    step = 2 ** codec.J
    audio_length = step * max(64, encoder.min_size // step)  # default audio trace / TFLite size
    if static_shape is None:
        static_shape = (512, 512) if image else (audio_length,)
    if "tflite" in formats:
        _check_static_shape(codec, encoder, static_shape)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "encoder.npz", **bundle_arrays(codec, encoder))

    C = codec.config.channels
    graphs, failures = {}, []
    if "onnx" in formats:
        from .onnx_graph import OPSET, export_onnx, onnx_session

        traced = (256, 320) if image else (audio_length,)
        path = export_onnx(encoder, _trace_example(codec, traced), out_dir / "encoder.onnx")
        session = onnx_session(path)
        name = session.get_inputs()[0].name
        if image:
            m = max(encoder.min_size, step)
            inputs = image_inputs(C, [(m, m + step), (m + 13 * step, m + 5 * step)],
                                  multiple=step)
        else:
            inputs = audio_inputs(C, [encoder.min_size, step * 211])
        passed, report = validate(lambda raw: session.run(None, {name: raw})[0], codec, inputs)
        graphs["onnx"] = {"file": path.name, "opset": OPSET, "traced_shape": list(traced),
                          "dynamic": True, **report}
        log(_summary("onnx", report))
        if not passed:
            failures.append("onnx")
    if "tflite" in formats:
        from .tflite_graph import export_tflite, tflite_runner

        path = export_tflite(sensor_encoder(codec, "tflite"), _trace_example(codec, static_shape),
                             out_dir / "encoder.tflite")
        run = tflite_runner(path)
        if image:
            inputs = image_inputs(C, [static_shape], photo_size=static_shape, seed=1)
        else:
            inputs = audio_inputs(C, [static_shape[0]])
        passed, report = validate(run, codec, inputs)
        graphs["tflite"] = {"file": path.name, "static_shape": list(static_shape),
                            "dynamic": False, "latent_layout": "NHWC" if image else "NCL",
                            **report}
        log(_summary("tflite", report))
        if not passed:
            failures.append("tflite")

    if "c" in formats:
        report = _export_c(codec, encoder, graphs, out_dir, log)
        graphs["c"] = report
        if report["status"] == "validation failed":
            failures.append("c")

    metadata = bundle_metadata(codec, encoder, graphs)
    (out_dir / "encoder.json").write_text(json.dumps(metadata, indent=2) + "\n")
    if failures:
        raise ExportError(f"{', '.join(failures)} failed validation (fewer than 99.9% of "
                          f"latents identical to torch, or a difference above 1); see "
                          f"{out_dir / 'encoder.json'}")
    return metadata


def _export_c(codec, encoder, graphs, out_dir, log):
    """C sources in out_dir/c; compiled and validated when this machine has a C compiler."""
    from .c_export import build_c, c_runner, compiler, write_c_sources

    folder = write_c_sources(bundle_metadata(codec, encoder, graphs),
                             bundle_arrays(codec, encoder), out_dir / "c")
    info = {"folder": "c", "program": "c/walloc_encode"}
    if compiler() is None:
        log("c: sources written; not compiled (no C compiler here), so not validated")
        return {**info, "status": "not validated: no C compiler"}
    step, C = 2 ** codec.J, codec.config.channels
    audio = codec.config.modality == "audio"
    run = c_runner(build_c(folder), step, audio)
    if audio:
        inputs = audio_inputs(C, [5 * step, 37 * step], seed=2)
    else:
        inputs = image_inputs(C, [(5 * step, 7 * step)], multiple=step, seed=2)
    passed, report = validate(run, codec, inputs)
    log(_summary("c", report))
    return {**info, **report}


def _summary(fmt, report):
    lines = [f"{fmt}: {report['status']} — {report['identical']:.4%} of latents identical "
             f"to torch, max |diff| {report['max_diff']}"]
    lines += [f"    {c['input']:<32} {c['identical']:.4%} identical, max |diff| {c['max_diff']}"
              for c in report["checks"]]
    return "\n".join(lines)
