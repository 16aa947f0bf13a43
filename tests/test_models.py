"""The embedded models: listed, loadable by name, exportable by name, as described."""
import json

import pytest

from walloc_edge.cli import main
from walloc_edge.codec import load
from walloc_edge.zoo import DEFAULT_IMAGE_MODEL, embedded_models


def test_default_models_are_shipped():
    models = embedded_models()
    assert DEFAULT_IMAGE_MODEL in models
    for name, info in models.items():
        codec = load(name)
        assert codec.config.to_dict() == info["config"], name
        assert {"description", "training"} <= set(info)
        assert {"measured", "measured_paper"} & set(info), name  # every model is measured


def test_models_command_lists_them(capsys):
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(embedded_models())


@pytest.mark.slow  # exports each shipped model (test_export exports the reference one)
@pytest.mark.parametrize("name", sorted(embedded_models()))
def test_export_by_name(name, tmp_path, capsys):
    assert main(["export", name, "--format", "onnx", "--out", str(tmp_path)]) == 0
    assert "validated" in capsys.readouterr().out
    assert (tmp_path / "encoder.onnx").is_file()


def test_an_operating_point_is_a_model_of_its_own(tmp_path, monkeypatch, reference_dir):
    """An entry with "latent_gain" loads another's weights with its latents spread wider:
    the encoder x K, the decoder's first layer / K, and a model id of its own."""
    import torch

    import walloc_edge.zoo as zoo
    from walloc_edge.codec import load, save
    from walloc_edge.codec.sensor import model_id

    base = load(reference_dir / "stereo_j4_l8.pth")
    save(base, tmp_path / "s.safetensors")
    entries = {"s": {"file": "s.safetensors"}, "s-fine": {"file": "s.safetensors",
                                                          "latent_gain": 2}}
    monkeypatch.setattr(zoo, "_home", lambda: tmp_path)
    monkeypatch.setattr(zoo, "embedded_models", lambda: entries)
    plain, fine = load("s"), load("s-fine")
    assert torch.allclose(fine.encoder[0].weight, 2 * plain.encoder[0].weight)
    assert torch.allclose(fine.decoder[1].conv1.weight_g, plain.decoder[1].conv1.weight_g / 2)
    assert model_id(fine) != model_id(plain)
