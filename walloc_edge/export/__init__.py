"""Encoder graphs for sensors (ONNX, LiteRT, C) exported from the torch codec, validated.

``export_bundle(model, out_dir, formats)`` writes the sensor bundle: the graphs,
``encoder.json`` and ``encoder.npz`` (their content: ``codec.sensor``), and validates every
graph against the torch model.
"""
from .api import ExportError, export_bundle

__all__ = ["ExportError", "export_bundle"]
