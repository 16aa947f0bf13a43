"""Encoder graphs for sensors (ONNX, TFLite) exported from the torch codec, validated.

``export_bundle(model, out_dir, formats)`` writes the sensor bundle: the graphs,
``encoder.json`` and ``encoder.npz``, and validates every graph against the torch model.
"""
from .api import ExportError, export_bundle
from .graphs import SensorEncoder1D, SensorEncoder2D, sensor_encoder

__all__ = ["ExportError", "export_bundle", "sensor_encoder", "SensorEncoder1D",
           "SensorEncoder2D"]
