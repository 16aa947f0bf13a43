"""Exported sensor graphs (ONNX, LiteRT) give the torch model's integer latents."""
import json

import numpy as np
import pytest
import torch

from walloc_edge.cli import main
from walloc_edge.codec import CodecConfig, build, load
from walloc_edge.codec.sensor import fused_filter_bank, sensor_encoder
from walloc_edge.export import export_bundle
from walloc_edge.export.api import check_formats
from walloc_edge.export.litert_graph import litert_runner
from walloc_edge.export.onnx_graph import onnx_session
from walloc_edge.export.validate import (MAX_DIFF, MIN_IDENTICAL, audio_inputs,
                                         image_inputs, torch_latents)
from walloc_edge.runtime.modality import IMAGE


def seeded(config, seed=0, spread=40):
    """A random codec whose latents use a wide part of the integer range."""
    torch.manual_seed(seed)
    codec = build(config).eval()
    codec.encoder[0].weight.data *= spread
    return codec


CONFIGS = {
    "gray": CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32),
    "rgb": CodecConfig("image", channels=3, J=3, latent_dim=12, Nd=32),
    "hyperspectral": CodecConfig("image", channels=31, J=1, latent_dim=16, Nd=32),
    "mono": CodecConfig("audio", channels=1, J=3, latent_dim=4, Nd=8),
    "stereo": CodecConfig("audio", channels=2, J=4, latent_dim=8, Nd=8, post_filter=True),
}


def assert_parity(latents, expected):
    assert latents.shape == expected.shape and latents.dtype == np.int8
    diff = np.abs(latents.astype(int) - expected)
    assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF


@pytest.mark.parametrize("name", CONFIGS)
def test_sensor_module_matches_codec(name):
    """The rearranged torch module itself (before any export)."""
    codec = seeded(CONFIGS[name])
    encoder = sensor_encoder(codec)
    step = 2 ** codec.J
    if codec.config.modality is IMAGE:
        inputs = image_inputs(codec.config.channels, [(encoder.min_size, 3 * step + 32)])
    else:
        inputs = audio_inputs(codec.config.channels, [encoder.min_size, 37 * step])
    for _, raw in inputs:
        with torch.no_grad():
            out = encoder(torch.from_numpy(raw)).numpy()
        assert_parity(out, torch_latents(codec, raw))


# One image and one audio model in the inner loop; every configuration in CI.
@pytest.mark.parametrize("name", [n if n == "rgb" else
                                  pytest.param(n, marks=pytest.mark.slow) for n in CONFIGS])
def test_onnx_and_litert_parity(name, exported):
    """Exported (again whenever the export code changes), validated, and then right at sizes
    the export never saw."""
    codec = seeded(CONFIGS[name], seed=1)
    image = codec.config.modality is IMAGE
    step = 2 ** codec.J
    static = (48, 64) if image else (step * 24,)
    bundle = exported(f"parity-{name}", codec, static_shape=static)
    meta = json.loads((bundle / "encoder.json").read_text())
    assert meta["graphs"]["onnx"]["status"] == meta["graphs"]["litert"]["status"] == "validated"

    session = onnx_session(bundle / "encoder.onnx")
    name_in = session.get_inputs()[0].name
    run_litert = litert_runner(bundle / "encoder.tflite")
    rng = np.random.default_rng(7)
    C = codec.config.channels
    if image:  # ONNX at sizes never traced nor validated at export
        dynamic = [rng.integers(0, 256, (1, h, w, C), dtype=np.uint8)
                   for h, w in [(40, 40), (88, 120)]]
        static_in = rng.integers(0, 256, (1, *static, C), dtype=np.uint8)
    else:
        dynamic = [rng.integers(-32768, 32768, (1, n, C), dtype=np.int16)
                   for n in (step * 10, step * 123)]
        static_in = rng.integers(-32768, 32768, (1, *static, C), dtype=np.int16)
    for raw in dynamic:
        assert_parity(session.run(None, {name_in: raw})[0], torch_latents(codec, raw))
    assert_parity(run_litert(static_in), torch_latents(codec, static_in))


def test_reference_checkpoint_exports_with_exact_latents(exported, reference_dir, rgb_golden):
    """Graph latents equal those the reference package computed (golden file)."""
    bundle = exported("rgb-onnx", load(reference_dir / "rgb_j3_l12.pth"), ("onnx",))
    session = onnx_session(bundle / "encoder.onnx")
    for photo in ("astronaut", "coffee"):
        raw = rgb_golden[f"{photo}/image"][None]
        latents = session.run(None, {"image": raw})[0]
        assert_parity(latents, rgb_golden[f"{photo}/Y"].astype(int))


def test_bundle_metadata(stereo):
    codec, folder = stereo  # the reference stereo checkpoint's bundle
    meta = json.loads((folder / "encoder.json").read_text())
    assert meta["format"] == "walloc-edge-bundle" and meta["format_version"] == 1
    assert len(meta["model_id"]) == 32 and meta["config"]["post_filter"] is True
    assert meta["input"]["dtype"] == "int16" and meta["latents"]["shape"][2] == "L/16 + 2"
    arrays = np.load(folder / "encoder.npz")
    np.testing.assert_array_equal(arrays["encoder_weight"],
                                  codec.encoder[0].weight.detach().numpy())


def test_model_id_tracks_encoder_weights(reference_dir):
    from walloc_edge.codec.sensor import model_id

    codec = load(reference_dir / "rgb_j3_l12.pth")
    before = model_id(codec)
    assert model_id(load(reference_dir / "rgb_j3_l12.pth")) == before
    codec.encoder[0].bias.data[0] += 1e-3
    assert model_id(codec) != before


def test_fused_filter_bank_support():
    K, left = fused_filter_bank("bior4.4", 3)
    assert K.shape == (8, 64) and left == 32  # 8 blocks of 8 taps, 4 blocks before
    K, left = fused_filter_bank("haar", 2)
    assert K.shape == (4, 4) and left == 0   # Haar: no overlap between blocks


def test_cli_export_and_errors(tmp_path, reference_dir, capsys):
    model = str(reference_dir / "rgb_j3_l12.pth")
    assert main(["export", model, "--format", "onnx", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "onnx: validated" in out and (tmp_path / "b" / "encoder.onnx").is_file()
    assert main(["export", model, "--format", "onnx,jpeg", "--out", str(tmp_path)]) == 2
    assert "unknown format jpeg" in capsys.readouterr().err
    assert main(["export", model, "--format", "litert", "--height", "36",
                 "--out", str(tmp_path)]) == 2
    assert "multiples of 2^J = 8" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope.pth"), "--out", str(tmp_path)]) == 2
    assert "no such model file" in capsys.readouterr().err
    (tmp_path / "photo.png").write_bytes(b"not a folder")  # was an errno after the work
    assert main(["export", model, "--out", str(tmp_path / "photo.png")]) == 2
    assert "a file; a bundle is a folder" in capsys.readouterr().err


def test_tflite_is_another_name_for_the_litert_format():
    assert check_formats(("onnx", "tflite", "c")) == ("onnx", "litert", "c")
    with pytest.raises(ValueError, match="choose from onnx, litert, c"):
        check_formats(("tflite2",))


def test_onnx_and_litert_arrangements_agree():
    """The LiteRT arrangement (planar core, NHWC in and out) computes the ONNX one's latents."""
    codec = seeded(CONFIGS["rgb"], seed=3)
    raw = torch.from_numpy(image_inputs(3, [(64, 48)])[0][1])
    with torch.no_grad():
        a = sensor_encoder(codec, "onnx")(raw)
        b = sensor_encoder(codec, "litert")(raw)
    assert b.shape == (1, 8, 6, 12)  # NHWC latents
    assert_parity(b.permute(0, 3, 1, 2).numpy(), a.numpy().astype(int))


@pytest.mark.slow  # exports another transform depth
def test_deeper_transform_validates_on_photos_cropped_to_blocks(tmp_path):
    """J = 4: photos (e.g. 400x600) are cropped to multiples of 16 for validation."""
    codec = seeded(CodecConfig("image", channels=3, J=4, latent_dim=24, Nd=32))
    meta = export_bundle(codec, tmp_path, ("onnx",), log=lambda *_: None)
    checks = meta["graphs"]["onnx"]["checks"]
    assert meta["graphs"]["onnx"]["status"] == "validated"
    assert any(c["input"] == "photo coffee 400x592" for c in checks)


def test_litert_image_graph_is_nhwc_without_transposes(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    codec = seeded(CONFIGS["rgb"], seed=3)
    meta = export_bundle(codec, tmp_path, ("litert",), static_shape=(64, 96), log=lambda s: None)
    interpreter = Interpreter(model_path=str(tmp_path / "encoder.tflite"))
    interpreter.allocate_tensors()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "TRANSPOSE" not in ops and {"CONV_2D", "DEPTHWISE_CONV_2D"} <= ops
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 64, 96, 3]
    assert list(interpreter.get_output_details()[0]["shape"]) == [1, 8, 12, 12]
    assert meta["graphs"]["litert"]["latent_layout"] == "NHWC"


def test_a_later_export_of_the_same_model_keeps_the_earlier_graphs(tmp_path):
    """Exporting the decoder (or any format) into a bundle folder afterwards keeps the
    graphs made before for the same model; another model's are not kept, and said so."""
    codec, other = seeded(CONFIGS["gray"]), seeded(CONFIGS["gray"], seed=1)
    lines = []
    export_bundle(codec, tmp_path, ("onnx",), log=lines.append)
    export_bundle(codec, tmp_path, (), log=lines.append)  # weights only, as --decoder alone
    graphs = json.loads((tmp_path / "encoder.json").read_text())["graphs"]
    assert list(graphs) == ["onnx"] and graphs["onnx"]["file"] == "encoder.onnx"
    meta = json.loads((tmp_path / "encoder.json").read_text())
    meta["graphs"]["onnx"]["status"] = "validation failed"  # a failed graph is not kept
    (tmp_path / "encoder.json").write_text(json.dumps(meta))
    export_bundle(codec, tmp_path, (), log=lines.append)
    assert json.loads((tmp_path / "encoder.json").read_text())["graphs"] == {}
    export_bundle(codec, tmp_path, ("onnx",), log=lines.append)
    export_bundle(other, tmp_path, (), log=lines.append)
    assert json.loads((tmp_path / "encoder.json").read_text())["graphs"] == {}
    assert "held a bundle of another model" in lines[-1] and "(onnx)" in lines[-1]
    assert "encoder.onnx there is still that model's" in lines[-1]  # its file is named
