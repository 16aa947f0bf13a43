"""Model files: the walloc-edge format round-trips, bad files get errors naming the problem."""
import json
import shutil
import warnings

import pytest
import torch

from walloc_edge.codec import CheckpointError, CodecConfig, build, load, save


@pytest.fixture(scope="module")
def small_image_model():
    torch.manual_seed(0)
    return build(CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32)).eval()


def test_own_format_round_trips_config_and_weights(tmp_path, small_image_model):
    path = save(small_image_model, tmp_path / "m.safetensors")
    loaded = load(path)
    assert loaded.config == small_image_model.config and not loaded.training
    for (k, a), (_, b) in zip(small_image_model.state_dict().items(),
                              loaded.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.rand(1, 1, 16, 16) - 0.5
    assert torch.equal(loaded.encode(x), small_image_model.encode(x))


def test_own_format_round_trips_audio(tmp_path):
    model = build(CodecConfig("audio", channels=2, J=2, latent_dim=4, Nd=8, post_filter=True))
    assert load(save(model, tmp_path / "a.safetensors")).config == model.config


def test_audio_models_build_without_deprecation_noise():
    """Oobleck's weight_norm warns once per block: users would see a screenful per load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(CodecConfig("audio", channels=2, J=2, latent_dim=4, Nd=8, Ne=8,
                          lightweight_encode=False))
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]


def test_reference_checkpoint_converts_to_own_format(tmp_path, reference_dir):
    reference = load(reference_dir / "rgb_j3_l12.pth")
    converted = load(save(reference, tmp_path / "rgb.safetensors"))
    x = torch.rand(1, 3, 16, 24) - 0.5
    assert torch.equal(converted.encode(x), reference.encode(x))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        load(tmp_path / "absent.pth")


def test_reference_without_json(tmp_path, reference_dir):
    shutil.copy(reference_dir / "rgb_j3_l12.pth", tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="x.json beside it"):
        load(tmp_path / "x.pth")


def test_reference_with_mismatched_config(tmp_path, reference_dir):
    shutil.copy(reference_dir / "rgb_j3_l12.pth", tmp_path / "x.pth")
    config = json.loads((reference_dir / "rgb_j3_l12.json").read_text())
    (tmp_path / "x.json").write_text(json.dumps({**config, "latent_dim": 16}))
    with pytest.raises(CheckpointError, match="shapes do not match.*encoder.0.weight"):
        load(tmp_path / "x.pth")
    (tmp_path / "x.json").write_text(json.dumps({**config, "J": 2}))
    with pytest.raises(CheckpointError, match="shapes do not match"):
        load(tmp_path / "x.pth")


def test_reference_config_missing_keys_or_broken(tmp_path, reference_dir):
    shutil.copy(reference_dir / "rgb_j3_l12.pth", tmp_path / "x.pth")
    (tmp_path / "x.json").write_text(json.dumps({"channels": 3}))
    with pytest.raises(CheckpointError, match="x.json: config is missing keys"):
        load(tmp_path / "x.pth")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="x.json: not valid JSON"):
        load(tmp_path / "x.pth")


def test_image_weights_with_audio_config(tmp_path, reference_dir):
    shutil.copy(reference_dir / "rgb_j3_l12.pth", tmp_path / "x.pth")
    shutil.copy(reference_dir / "stereo_j4_l8.json", tmp_path / "x.json")
    with pytest.raises(CheckpointError, match="weights do not match the config"):
        load(tmp_path / "x.pth")


def test_damaged_files(tmp_path, small_image_model):
    (tmp_path / "bad.pth").write_bytes(b"\x00garbage")
    (tmp_path / "bad.json").write_text(json.dumps(small_image_model.config.reference_kwargs()))
    with pytest.raises(CheckpointError, match="bad.pth: cannot read"):
        load(tmp_path / "bad.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load(tmp_path / "bad.safetensors")
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match="unknown model file type"):
        load(tmp_path / "m.onnx")


def test_newer_format_version_is_refused(tmp_path, small_image_model):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in small_image_model.state_dict().items()},
              str(tmp_path / "new.safetensors"),
              metadata={"format": "walloc-edge-model", "format_version": "99",
                        "config": json.dumps(small_image_model.config.to_dict())})
    with pytest.raises(CheckpointError, match="upgrade walloc-edge"):
        load(tmp_path / "new.safetensors")


@pytest.mark.parametrize("bad, message", [
    (dict(modality="video"), "modality"),
    (dict(Nd=40), "multiple of 32"),
    (dict(J=0), "J must be a positive integer"),
    (dict(lightweight_encode=False), "Ne"),
    (dict(post_filter=True), "post_filter exists only for audio"),
])
def test_config_validation(bad, message):
    good = dict(modality="image", channels=3, J=3, latent_dim=12, Nd=32)
    with pytest.raises(ValueError, match=message):
        CodecConfig(**{**good, **bad})


def test_config_reports_dimensionality_reduction():
    assert CodecConfig("image", channels=3, J=3, latent_dim=12, Nd=32) \
        .dimensionality_reduction == 16
    assert CodecConfig("audio", channels=2, J=8, latent_dim=108, Nd=108) \
        .dimensionality_reduction == pytest.approx(4.74, abs=0.01)
