"""Shared fixtures: the reference checkpoints and golden outputs in tests/reference/."""
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="session")
def reference_dir():
    return REFERENCE


@pytest.fixture(scope="session")
def rgb_golden():
    return dict(np.load(REFERENCE / "rgb_j3_l12.npz"))


@pytest.fixture(scope="session")
def stereo_golden():
    return dict(np.load(REFERENCE / "stereo_j4_l8.npz"))


@pytest.fixture(scope="session")
def rgb_bundle(tmp_path_factory):
    """The reference RGB checkpoint exported once per run (ONNX + TFLite at 128x96)."""
    from walloc_edge.codec import load
    from walloc_edge.export import export_bundle

    out = tmp_path_factory.mktemp("rgb-bundle")
    export_bundle(load(REFERENCE / "rgb_j3_l12.pth"), out, ("onnx", "tflite"),
                  static_shape=(128, 96), log=lambda s: None)
    return out


@pytest.fixture(autouse=True)
def sensor_state(tmp_path_factory, monkeypatch):
    """Sensors in tests keep their identity and spool in a temporary folder, not in HOME."""
    folder = tmp_path_factory.mktemp("sensor-state")
    monkeypatch.setenv("WALLOC_EDGE_STATE", str(folder))
    return folder


@pytest.fixture(scope="session", autouse=True)
def golden_files():
    """WALLOC_EDGE_GENERATE_GOLDEN=1 rewrites the golden .wlc files before the tests (only
    when the bitstream format changes on purpose; the tests then pin the new bytes)."""
    import os

    if os.environ.get("WALLOC_EDGE_GENERATE_GOLDEN") == "1":
        import runpy

        runpy.run_path(str(Path(__file__).parent / "golden" / "make_golden.py"),
                       run_name="__main__")
