"""The console script, called in-process as a user would call it."""
import json

import pytest

from walloc_edge.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "info" in out and "describe a sensor bundle (no torch) or a model" in out
    assert "encode" in out and "needs [server]" in out  # which extra each command needs


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: walloc-edge" in capsys.readouterr().out


def test_info_reference_checkpoint(capsys, reference_dir):
    assert main(["info", str(reference_dir / "rgb_j3_l12.pth")]) == 0
    out = capsys.readouterr().out
    assert "J=3 -> 192 subbands" in out and "16x" in out


def test_info_json(capsys, reference_dir):
    assert main(["info", str(reference_dir / "stereo_j4_l8.pth"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["modality"] == "audio" and info["post_filter"] is True
    assert info["dimensionality_reduction"] == 4 and info["encoder_parameters"] == 8 * 32 + 8


def test_user_error_is_one_line_not_a_traceback(capsys, tmp_path):
    assert main(["info", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("walloc-edge info: error:") and "missing.pth" in err
    assert "Traceback" not in err
