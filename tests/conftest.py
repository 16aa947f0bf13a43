"""Shared fixtures: the reference checkpoints and golden outputs in tests/reference/, and the
bundles of small models that many test files encode with (exported once per run)."""
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


# Exported bundles of small models, once per run: (codec, bundle folder) with ONNX and
# TFLite graphs (TFLite at the static size given).

def _export(tmp_path_factory, name, codec, static):
    from walloc_edge.export import export_bundle

    out = tmp_path_factory.mktemp(name)
    export_bundle(codec, out, ("onnx", "tflite"), static_shape=static, log=lambda s: None)
    return codec, out


def _seeded(config, seed=0):
    import torch

    from walloc_edge.codec import build

    torch.manual_seed(seed)
    codec = build(config).eval()
    codec.encoder[0].weight.data *= 40  # latents over a wide part of the range
    return codec


@pytest.fixture(scope="session")
def rgb(tmp_path_factory, reference_dir):
    from walloc_edge.codec import load

    return _export(tmp_path_factory, "rgb", load(reference_dir / "rgb_j3_l12.pth"), (128, 96))


@pytest.fixture(scope="session")
def rgb_bundle(rgb):
    """The reference RGB checkpoint's bundle folder (ONNX + TFLite at 128x96)."""
    return rgb[1]


@pytest.fixture(scope="session")
def rgb_weights_bundle(tmp_path_factory, reference_dir):
    """The reference RGB checkpoint's bundle without graphs (the numpy backend's weights)."""
    from walloc_edge.codec import load
    from walloc_edge.export import export_bundle

    out = tmp_path_factory.mktemp("rgb-weights")
    export_bundle(load(reference_dir / "rgb_j3_l12.pth"), out, (), log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def stereo(tmp_path_factory, reference_dir):
    from walloc_edge.codec import load

    return _export(tmp_path_factory, "stereo", load(reference_dir / "stereo_j4_l8.pth"),
                   (1024,))


@pytest.fixture(scope="session")
def gray(tmp_path_factory):
    from walloc_edge.codec import CodecConfig

    return _export(tmp_path_factory, "gray",
                   _seeded(CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32)), (64, 64))


@pytest.fixture(scope="session")
def cube(tmp_path_factory):
    from walloc_edge.codec import CodecConfig

    config = CodecConfig("image", channels=31, J=1, latent_dim=16, Nd=32)
    return _export(tmp_path_factory, "cube", _seeded(config), (64, 64))


@pytest.fixture(scope="session")
def mono(tmp_path_factory):
    from walloc_edge.codec import CodecConfig

    config = CodecConfig("audio", channels=1, J=3, latent_dim=4, Nd=8)
    return _export(tmp_path_factory, "mono", _seeded(config), (512,))


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
