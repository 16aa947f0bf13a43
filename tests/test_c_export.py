"""The C encoder: compiled with the system compiler, its latents equal the ONNX graph's, and
its .wlc is read by the Python runtime."""
import subprocess

import numpy as np
import pytest
import torch

from walloc_edge.cli import main
from walloc_edge.codec import CodecConfig, build, load
from walloc_edge.data import sample_photo
from walloc_edge.export import export_bundle
from walloc_edge.export.validate import _as_channels
from walloc_edge.runtime import Encoder, read_latents


@pytest.fixture(scope="module")
def rgb_bundle(tmp_path_factory, reference_dir):
    out = tmp_path_factory.mktemp("c")
    meta = export_bundle(load(reference_dir / "rgb_j3_l12.pth"), out, ("onnx", "c"),
                         log=lambda s: None)
    assert meta["graphs"]["c"]["status"] == "validated"
    return out


def run_c(bundle, image, mode="--latents", *coder):
    h, w, c = image.shape
    raw, result = bundle / "in.raw", bundle / "out.bin"
    raw.write_bytes(np.ascontiguousarray(image).tobytes())
    subprocess.run([str(bundle / "c" / "walloc_encode"), mode, str(raw), str(h), str(w),
                    str(c), str(result), *coder], check=True)
    return result.read_bytes()


@pytest.mark.parametrize("size", [(301, 457), (64, 64), (9, 13)])
def test_c_latents_equal_the_onnx_graph(rgb_bundle, size):
    photo = sample_photo("coffee")[:size[0], :size[1]]
    onnx = Encoder(rgb_bundle, "onnxruntime").latents(photo)
    c = np.frombuffer(run_c(rgb_bundle, photo), np.int8).reshape(onnx.shape)
    diff = np.abs(c.astype(int) - onnx)
    assert (diff == 0).mean() >= 0.999 and diff.max() <= 1


def test_c_wlc_is_read_by_python(rgb_bundle):
    photo = sample_photo("astronaut")[:123, :77]
    header, latents = read_latents(run_c(rgb_bundle, photo, "--wlc", "raw"))
    assert header.shape == photo.shape and header.coder == "raw"
    assert header.model_id == Encoder(rgb_bundle, "numpy").model_id
    diff = np.abs(latents.astype(int) - Encoder(rgb_bundle, "numpy").latents(photo))
    assert (diff == 0).mean() >= 0.999 and diff.max() <= 1


def test_gray_model_in_c(tmp_path):
    torch.manual_seed(0)
    codec = build(CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32)).eval()
    codec.encoder[0].weight.data *= 40
    export_bundle(codec, tmp_path, ("c",), log=lambda s: None)
    gray = _as_channels(sample_photo("coffee"), 1)[:50, :70]
    onnx_free = Encoder(tmp_path, "numpy").latents(gray)
    c = np.frombuffer(run_c(tmp_path, gray), np.int8).reshape(onnx_free.shape)
    assert (c == onnx_free).mean() >= 0.999


def test_c_refuses_wrong_input(rgb_bundle):
    result = subprocess.run([str(rgb_bundle / "c" / "walloc_encode"), "--latents", "x", "4",
                             "4", "1", "y"], capture_output=True, text=True)
    assert result.returncode == 2 and "C = 3" in result.stderr


def test_c_export_of_an_audio_model_is_refused(reference_dir, tmp_path, capsys):
    assert main(["export", str(reference_dir / "stereo_j4_l8.pth"), "--format", "c",
                 "--out", str(tmp_path)]) == 2
    assert "image models" in capsys.readouterr().err


def test_c_frames_are_served(rgb_bundle, reference_dir, tmp_path, capsys):
    """Firmware path: the C program frames its .wlc; walloc-edge serve reads and decodes it."""
    photo = sample_photo("coffee")[:40, :56]
    link = tmp_path / "link.frames"
    link.write_bytes(run_c(rgb_bundle, photo, "--frames"))
    out = tmp_path / "received"
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(link),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "decoded 1, rejected 0" in capsys.readouterr().out
    from PIL import Image
    assert np.asarray(Image.open(out / "0-0.png")).shape == photo.shape


def test_c_rans_bytes_equal_the_python_coder(rgb_bundle, tmp_path):
    """Shared test vectors: the C rans coder writes exactly RansCoder("planar")'s bytes."""
    from walloc_edge.runtime.coders.rans import RansCoder

    rng = np.random.default_rng(0)
    real = Encoder(rgb_bundle, "numpy").latents(sample_photo("astronaut"))[:, :64, :64]
    vectors = [np.ascontiguousarray(real),
               np.clip(np.round(rng.normal(0, 30, (12, 17, 23))), -127, 127).astype(np.int8),
               np.full((12, 3, 5), -127, np.int8), np.zeros((12, 1, 1), np.int8)]
    python = RansCoder("planar")
    for latents in vectors:
        _, h, w = latents.shape
        src, dst = tmp_path / "tile.lat", tmp_path / "tile.rans"
        src.write_bytes(latents.tobytes())
        subprocess.run([str(rgb_bundle / "c" / "walloc_encode"), "--rans-tile", str(src),
                        str(h), str(w), str(dst)], check=True)
        assert dst.read_bytes() == python.encode(latents, 8)
        assert np.array_equal(python.decode(dst.read_bytes(), latents.shape, 8,
                                            python.params(8)), latents)


def test_c_rans_wlc_and_frames_decode_in_python(rgb_bundle):
    photo = sample_photo("coffee")[:301, :457]
    header, latents = read_latents(run_c(rgb_bundle, photo, "--wlc"))
    assert header.coder == "rans"
    assert (latents == Encoder(rgb_bundle, "numpy").latents(photo)).mean() >= 0.999
