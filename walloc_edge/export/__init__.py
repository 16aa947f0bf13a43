"""Encoder graphs for sensors (ONNX, TFLite, C) exported from the torch codec."""
