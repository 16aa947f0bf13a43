"""The console script, called in-process as a user would call it."""
import json
import subprocess
import sys

import pytest

from helpers import BLOCK_TORCH, blocking, free_port, photos
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


def test_an_input_where_the_bundle_goes_says_so(capsys, tmp_path):
    """`encode photo.png photo.png -o x` (the bundle left out) said to export a model into
    photo.png."""
    (tmp_path / "photo.png").write_bytes(b"not really")
    assert main(["encode", str(tmp_path / "photo.png"), str(tmp_path / "photo.png"), "-o",
                 str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "photo.png is a file, not a bundle folder: give the bundle first" in err
    assert "Traceback" not in err and "--out" not in err.split("give the bundle")[0]
    (tmp_path / "mine.safetensors").write_bytes(b"weights")
    assert main(["encode", str(tmp_path / "mine.safetensors"), str(tmp_path / "photo.png"),
                 "-o", str(tmp_path / "x")]) == 2
    assert "mine.safetensors is a model file, not a bundle: export it" in capsys.readouterr().err


def all_parsers():
    from walloc_edge.cli import COMMANDS, build_parser

    for name in COMMANDS:
        parser = build_parser(name)
        yield name, parser._subparsers._group_actions[0].choices[name]


def test_every_option_has_help_and_every_command_an_example():
    for name, parser in all_parsers():
        for action in parser._actions:
            assert action.help, f"walloc-edge {name}: {action.option_strings or action.dest}"
        if name not in ("models",):
            assert parser.epilog and f"walloc-edge {name}" in parser.epilog, name


def test_help_examples_use_embedded_model_names(capsys):
    """A new user has rgb-16x, not RGB_16x.pth: the first example of each command must run."""
    for name, parser in all_parsers():
        examples = [line for line in (parser.epilog or "").splitlines()
                    if line.strip().startswith("walloc-edge")]
        if examples:
            assert ".pth" not in examples[0], (name, examples[0])


def test_transport_help_lists_every_scheme():
    helps = {name: parser.format_help() for name, parser in all_parsers()}
    for name in ("stream", "serve"):
        text = " ".join(helps[name].split())
        for scheme in ("tcp://", "udp://", "serial://", "mqtt://", "file://", "(std"):
            assert scheme in text, (name, scheme)


def test_defaults_are_shown_one_way():
    for name, parser in all_parsers():
        text = parser.format_help()
        assert "[default:" not in text and "(default: None)" not in text, name
        assert "(default: [])" not in text and "(default: (" not in text, name
    assert "(default: rans)" in dict(all_parsers())["encode"].format_help()
    assert "(default: 1,2)" in dict(all_parsers())["bench"].format_help()


def test_an_unknown_option_points_to_its_command_s_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--size", "3"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == ("walloc-edge bench: error: unrecognized "
                                               "arguments: --size 3 (see walloc-edge bench "
                                               "--help)")


def test_a_reader_that_stops_reading_is_no_error():
    """walloc-edge info MODEL | head -1: the pipe closes early; no error line, status 141."""
    proc = subprocess.Popen([sys.executable, "-m", "walloc_edge.cli", "info", "rgb-16x",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141 and proc.stderr.read() == b""


def test_an_output_folder_that_cannot_be_made_is_named(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["serve", "rgb-16x", "--listen", "tcp://127.0.0.1:9", "--out",
                 str(tmp_path / "file" / "sub")]) == 2
    assert f"--out {tmp_path}/file/sub: cannot create it (Not a directory)" in \
        capsys.readouterr().err


def test_info_of_a_path_that_is_not_there_says_so(capsys):
    """A mistyped bundle path is named, not taken for a model that needs torch."""
    assert main(["info", "no/such/bundle"]) == 2
    assert "no/such/bundle: no such bundle folder or model file" in capsys.readouterr().err


def test_a_missing_torch_points_a_server_at_the_torch_free_install(tmp_path):
    """Without torch, decode names [server] and the torch-free way ([decode] and a bundle);
    train, which has no torch-free way, names the CPU wheel only."""
    for argv, torch_free in ((["decode", "rgb-16x", "x.wlc", "-o", str(tmp_path)], True),
                             (["train", "--synthetic", "--out", str(tmp_path / "m")], False)):
        code = BLOCK_TORCH + f"from walloc_edge.cli import main; raise SystemExit(main({argv!r}))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "pip install 'walloc-edge[server]'" in done.stderr and "whl/cpu" in done.stderr
        assert ("walloc-edge[decode]" in done.stderr) == torch_free, done.stderr


def test_decode_of_files_that_are_not_there_makes_nothing(tmp_path, capsys):
    out = tmp_path / "decoded"
    assert main(["decode", "rgb-16x", str(tmp_path / "a.wlc"), str(tmp_path / "b.wlc"),
                 "-o", str(out)]) == 2
    assert "no such file or folder: " in capsys.readouterr().err and not out.exists()


def test_serve_refuses_a_bad_listen_url_before_making_outputs(tmp_path, capsys):
    out = tmp_path / "received"
    assert main(["serve", "rgb-16x", "--listen", "bogus://x", "--out", str(out)]) == 2
    assert "--listen bogus://x: unknown transport" in capsys.readouterr().err
    assert not out.exists()


def test_serve_on_a_port_in_use_makes_no_outputs(tmp_path, capsys):
    """A --listen or --http port another program holds: one line, and no output folder
    (nor its ledger and metrics) left behind."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for i, argv in enumerate((["--listen", f"tcp://127.0.0.1:{port}"],
                                  ["--listen", f"tcp://127.0.0.1:{free_port()}", "--http",
                                   str(port)])):
            out = tmp_path / f"received{i}"
            assert main(["serve", "rgb-16x", *argv, "--out", str(out)]) == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and str(port) in err, err
            assert not out.exists()


def test_serve_refuses_a_store_url_it_cannot_write_rather_than_making_a_folder(tmp_path,
                                                                              capsys,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    for option in ("--out", "--latents"):
        extra = ["--out", "received"] if option == "--latents" else []
        assert main(["serve", "rgb-16x", "--listen", "tcp://127.0.0.1:9", option,
                     "gs://frames/site", *extra]) == 2
        err = capsys.readouterr().err
        assert f"{option} gs://frames/site: no store for gs:// here" in err, err
    assert list(tmp_path.iterdir()) == []


def test_serve_without_pyarrow_refuses_latents_before_taking_a_message(tmp_path):
    """--latents needs pyarrow: said at start, one line naming the extra, nothing made (a
    server that found out at its first message would take it and then not keep it)."""
    argv = ["serve", "rgb-16x", "--listen", "tcp://127.0.0.1:9", "--out", "received",
            "--latents", "rows"]
    code = blocking("pyarrow") + f"from walloc_edge.cli import main; raise SystemExit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("walloc-edge serve: needs pyarrow, which is not installed "
                                   "here: pip install 'walloc-edge[learning]'"), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_stream_without_paho_says_so_before_making_its_state(tmp_path, rgb_bundle):
    """A sensor without [bridge] asked for MQTT: one line naming the extra, and no identity
    or boot number used up for a run that never started."""
    argv = ["stream", str(rgb_bundle), str(tmp_path / "in"), "--to", "mqtt://127.0.0.1/cams",
            "--state", str(tmp_path / "state")]
    (tmp_path / "in").mkdir()
    code = blocking("paho") + f"from walloc_edge.cli import main; raise SystemExit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("walloc-edge stream: error: mqtt://127.0.0.1/cams: MQTT "
                                   "links need paho-mqtt: pip install 'walloc-edge[bridge]'"), \
        done.stderr
    assert not (tmp_path / "state").exists()


def test_a_sensor_whose_broker_is_not_up_spools_and_says_why(tmp_path, rgb_bundle, capsys):
    """No broker on the port yet (a sensor that boots first): stream starts, spools the
    message and says why it cannot send it, instead of exiting at once."""
    photos(tmp_path / "in", 1)
    argv = ["stream", str(rgb_bundle), str(tmp_path / "in"), "--to",
            f"mqtt://127.0.0.1:{free_port()}/cams", "--state", str(tmp_path / "state"),
            "--backend", "numpy", "--wait", "1"]
    assert main(argv) == 1  # a message left in the spool
    out = capsys.readouterr().out
    assert "queued " in out and "p00.png" in out
    assert "(Connection refused); spooling and retrying" in out, out
    assert "1 unacknowledged, kept in the spool" in out


def test_an_output_folder_that_cannot_be_written_is_said_before_the_work(
        tmp_path, capsys, rgb_bundle):
    """A read-only --out (a read-only bind mount where the test may make one; a folder
    without write permission for a user who is not root; /proc, where nobody makes files,
    for root without mount) is one line before any input is encoded, not an errno per
    file after."""
    import os
    from pathlib import Path

    out = tmp_path / "ro"
    out.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "--bind", "-o", "ro", str(out), str(out)], capture_output=True).returncode == 0
    if not mounted and os.geteuid() != 0:
        out.chmod(0o555)
    elif not mounted:
        out.rmdir()
        out = Path("/proc")
    try:
        photos(tmp_path / "in", 1)
        assert main(["encode", str(rgb_bundle), str(tmp_path / "in"), "-o", str(out)]) == 2
        captured = capsys.readouterr()
        assert f"-o/--out {out}: cannot write there (" in captured.err
        assert "p00" not in captured.out
    finally:
        if mounted:
            subprocess.run(["umount", str(out)], check=True)
        if out.parent == tmp_path:
            out.chmod(0o755)
