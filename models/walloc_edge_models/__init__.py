"""The trained weights of walloc-edge's embedded models (``walloc-edge models`` lists them).

A separate distribution, so that a sensor, which runs an exported bundle and never the
decoder, installs without these ~11 MB; ``walloc-edge[server]`` brings it. ``models.json``
beside this file describes each model: its file, config, training command and measurements.
"""
from pathlib import Path

HERE = Path(__file__).parent
__version__ = "0.1.0"
