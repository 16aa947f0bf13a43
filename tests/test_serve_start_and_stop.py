"""serve's start and stop: bad arguments are one line naming the option, before anything is
made; one server a folder; a stop by signal is clean and a start clears what a killed
server left half-written."""
import json
import signal
import subprocess
import sys
import time

import pytest

from helpers import Serve, free_port
from walloc_edge.cli import main


def test_sighup_stops_serve_cleanly_and_a_killed_server_s_half_writes_are_cleared(
        reference_dir, tmp_path):
    """SIGHUP (a closed terminal) ended serve at once, with no summary and temporary files
    left in its folders for good: it stops as SIGTERM does now (unless it was ignored at the
    start, as nohup asks), and a start clears what a killed server left half-written in
    --out and --latents."""
    out, latents = tmp_path / "out", tmp_path / "latents"
    for folder in (out, latents):
        folder.mkdir()
        (folder / ".part-x.parquet.tmp-999999999-1").write_bytes(b"half")  # a server gone
    server = Serve.reference(reference_dir, out, free_port(), "--latents", latents,
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    # (as a terminal starts it, even where pytest itself runs under nohup)
    assert not list(out.glob(".*.tmp-*")) and not list(latents.glob(".*.tmp-*"))
    server.proc.send_signal(signal.SIGHUP)
    assert server.proc.wait(timeout=30) == 0
    server.reading.join(timeout=5)
    said = "".join(server.lines)
    assert "stopping" in said and "decoded 0, rejected 0" in said, said
    nohup = Serve.reference(reference_dir, tmp_path / "out2", free_port(),  # SIGHUP ignored
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    nohup.proc.send_signal(signal.SIGHUP)  # as nohup asks: not a stop
    time.sleep(1)
    assert nohup.proc.poll() is None
    assert "decoded 0" in nohup.stop()


@pytest.mark.parametrize("keys, said", [
    ({"cam1": 5}, "the key of cam1 is not hex"),
    ({"cam1": "abcd"}, "the key of cam1 is 2 bytes; use at least 16"),
    (["cam1"], 'give JSON {"SENSOR": "HEX KEY", ...}'),
    ({"": "00" * 16}, "a sensor named ''"),
])
def test_a_bad_keys_file_is_one_line(keys, said, reference_dir, tmp_path, capsys):
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    code = main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen",
                 f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--keys", str(tmp_path / "keys.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and said in err and "--keys" in err, err


def test_bad_models_and_latents_folders_are_one_line_naming_them(reference_dir, tmp_path,
                                                                 capsys):
    """A folder that is no bundle, or a photo, given as MODEL was said to need torch; a file
    or an unwritable path as --latents was raw errno text; a second serve on one --latents
    folder was let write rows numbered like the first's."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"png")
    (tmp_path / "afile").write_text("x")
    listen = ["--listen", f"tcp://127.0.0.1:{free_port()}", "--device", "cpu"]
    model = str(reference_dir / "rgb_j3_l12.pth")
    cases = [([str(tmp_path / "photos"), "--out", str(tmp_path / "o1")], "no bundle"),
             ([str(tmp_path / "photos" / "a.png"), "--out", str(tmp_path / "o2")],
              "not a model file"),
             ([model, "--out", str(tmp_path / "o3"), "--latents", str(tmp_path / "afile")],
              "--latents"),
             ([model, "--out", str(tmp_path / "o4"), "--latents", "/proc/no/such"],
              "--latents")]
    for argv, said in cases:
        code = main(["serve", *argv, *listen])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and said in err, (argv, err)
        assert "Errno" not in err and "torch" not in err, err
    first = Serve.reference(reference_dir, tmp_path / "o5", free_port(), "--latents",
                            tmp_path / "latents")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "walloc_edge.cli", "serve", model, *listen, "--out",
             tmp_path / "o6", "--latents", tmp_path / "latents"],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        [line] = second.stderr.strip().splitlines()
        assert line.startswith("walloc-edge serve: error: --latents ") and \
            f"another walloc-edge serve (pid {first.proc.pid} on " in line, line
    finally:
        first.kill()


@pytest.mark.parametrize("argv, said", [
    (["--idle", "-5"], "--idle: -5 must be more than 0"),
    (["--http", "PORT"], "--listen tcp://127.0.0.1:PORT takes that port"),
    (["--format", "wav"], "--format wav: image is written as png, tiff, npy"),
    (["--metrics", "{tmp}"], "--metrics {tmp}: a folder, not a file"),
    (["--metrics", "{tmp}/no/m.jsonl"], "--metrics {tmp}/no/m.jsonl: no folder {tmp}/no"),
    (["--metrics", "{tmp}/dangling"], "--metrics {tmp}/dangling: a link to nothing"),
])
def test_bad_serve_options_are_one_line(argv, said, reference_dir, tmp_path, capsys):
    """--idle -5 was taken, and serve ended at once with status 0; --http on the port its
    own --listen takes said only "Address already in use"; a --format the model's outputs
    cannot take started a server that refused every message for good."""
    port = str(free_port())
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    argv = [a.replace("PORT", port).replace("{tmp}", str(tmp_path)) for a in argv]
    said = said.replace("{tmp}", str(tmp_path))
    try:
        code = main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen",
                     f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "out"), "--device",
                     "cpu", *argv])
    except SystemExit as e:  # argparse's
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and said.replace("PORT", port) in err, err
    assert not (tmp_path / "out").exists()


def test_the_summary_says_how_long_and_how_fast_and_counts_heartbeats(reference_dir,
                                                                      tmp_path, capsys):
    """Its last lines: the messages (and the time and rate they took), then the frames,
    heartbeats among them said as such."""
    from walloc_edge.firmware_bridge.framing import encode_heartbeat, frames_for
    from walloc_edge.firmware_bridge.transports import open_sender

    link = tmp_path / "link.frames"
    with open_sender(str(link), sensor=7) as sender:
        sender.send(b"not a bitstream")
    with open(link, "ab") as f:
        f.write(encode_heartbeat(7, 1, 0, {"spool": 0}))
        f.write(b"".join(frames_for(b"x" * 10, 7, 1, 5, 60000)) * 2)  # sent again: its
        # frame counted again, the message handed on (and refused) again
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(link),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 1  # (all refused)
    messages, frames = capsys.readouterr().out.strip().splitlines()[-2:]
    assert messages.startswith("decoded 0, rejected 3,") and " s, 0.00 written a second" in \
        messages, messages
    assert frames.startswith("frames 4 (heartbeats 1; again 1: dropped"), frames
