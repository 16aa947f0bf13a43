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
        assert {"description", "training", "measured"} <= set(info)


def test_models_command_lists_them(capsys):
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(embedded_models())


@pytest.mark.parametrize("name", sorted(embedded_models()))
def test_export_by_name(name, tmp_path, capsys):
    assert main(["export", name, "--format", "onnx", "--out", str(tmp_path)]) == 0
    assert "validated" in capsys.readouterr().out
    assert (tmp_path / "encoder.onnx").is_file()
