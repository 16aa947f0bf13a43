"""Sensor side: numpy + pillow + one inference runtime; never imports torch."""
from .padding import crop, pad_reflect, padding_for, reflect_indices

__all__ = ["crop", "pad_reflect", "padding_for", "reflect_indices"]
