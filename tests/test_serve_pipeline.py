"""serve with several workers: acknowledged only after the ledger names the message, in
whatever order the workers finish; a copy of a message in flight is not written twice; and
with three sensors streaming through a server killed and restarted, every photo exactly
once."""
import threading
import time

import numpy as np
import pytest

from helpers import Serve, free_port, output_parts, photos, sensor
from walloc_edge.firmware_bridge.loops import serve_messages
from walloc_edge.firmware_bridge.transports.base import Received
from walloc_edge.runtime import Encoder
from walloc_edge.server import Handler, Outputs, ServedModel


class Replay:
    """A receiver that hands over ``first`` at once, then ``late`` once ``ready()``."""

    def __init__(self, first, late, ready):
        self.batches, self.ready = [first, late], ready
        self.stopped = threading.Event()

    def messages(self, timeout=0.2, hold=False):
        if len(self.batches) == 2 or (self.batches and self.ready()):
            yield from self.batches.pop(0)
            if not self.batches:
                self.stopped.set()
        else:
            time.sleep(timeout)

    def stop(self):
        self.stopped.set()


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_workers_acknowledge_after_the_ledger_and_never_write_twice(rgb_weights_bundle,
                                                                   reference_dir, tmp_path):
    model = ServedModel(str(reference_dir / "rgb_j3_l12.pth"), device="cpu")
    decode = model.decode
    # the first message (the one 48 pixels wide) stays in flight while the others pass it
    model.decode = lambda stream: (time.sleep(1.5 if stream.header.shape[1] == 48 else 0.05),
                                   decode(stream))[1]
    encoder = Encoder(rgb_weights_bundle, backend="numpy")
    rng = np.random.default_rng(0)
    out, acks, released = tmp_path / "out", [], []
    out.mkdir()

    def message(sensor, sequence, blob):
        key = f"{sensor:016x}-1-{sequence}"

        def reply(frame, to):  # the ledger on disk must name it already
            acks.append((key, key in (out / "ledger.txt").read_text()))
            return True
        return Received("test", sensor, 1, sequence, blob, {"source": f"s{sensor}-{sequence}"},
                        reply, lambda: released.append(key))

    blobs = {(s, q): encoder.encode(rng.integers(0, 256, (32, 48 if (s, q) == (1, 0) else 40,
                                                          3), dtype=np.uint8))
             for s in (1, 2, 3) for q in (0, 1)}
    first = [message(s, q, b) for (s, q), b in blobs.items()]
    first.insert(1, message(1, 0, blobs[1, 0]))  # a copy while the first is in flight
    with Outputs(out, model) as outputs:
        late = [message(1, 0, blobs[1, 0])]  # a copy once the first is written
        receiver = Replay(first, late, lambda: f"{1:016x}-1-0" in outputs)
        result = serve_messages(receiver, Handler(model, outputs, log=lambda line: None),
                                workers=3, log=lambda line: None)
    assert result == (7, 0, 0)  # the copy in flight is dropped, unacknowledged
    assert len(released) == 8  # every message's bytes left the memory account
    assert all(on_disk for _, on_disk in acks)
    assert sorted(key for key, _ in acks) == sorted(
        [f"{s:016x}-1-{q}" for s, q in blobs] + [f"{1:016x}-1-0"])
    assert len(list(out.glob("*.png"))) == 6
    ledger = [line.split()[0] for line in (out / "ledger.txt").read_text().splitlines()]
    assert len(ledger) == len(set(ledger)) == 6


@pytest.mark.slow  # serve in its own process, killed and restarted
def test_workers_through_a_server_killed_and_restarted(rgb_weights_bundle, reference_dir,
                                                       tmp_path):
    port, out = free_port(), tmp_path / "received"
    server = Serve.reference(reference_dir, out, port, "--workers", "3")
    names = [f"{s:016x}" for s in (0xA1, 0xB2, 0xC3)]
    procs = [sensor(rgb_weights_bundle, photos(tmp_path / f"in{i}", 8, i), "--to",
                    f"tcp://127.0.0.1:{port}", "--sensor-id", name, state=tmp_path / f"state{i}")
             for i, name in enumerate(names)]
    server.wait_for(lambda: server.written() >= 5, 120)
    server.kill()
    time.sleep(1)
    server = Serve.reference(reference_dir, out, port, "--workers", "3")
    for proc in procs:
        log = proc.communicate(timeout=180)[0]
        assert proc.returncode == 0 and "delivery: 8 acknowledged, 8 new" in log, log
    server.stop()
    names_out = sorted(p.name for p in out.glob("*.png"))
    assert len(names_out) == len(set(names_out)) == 24, names_out
    parts = [output_parts(n) for n in names_out]
    got = {(p["sensor"], p["source"]) for p in parts}
    assert got == {(n, f"p{i:02d}") for n in names for i in range(8)}
    assert all(p["captured"] and p["suffix"] == ".png" for p in parts), names_out
    ledger = [line.split()[0] for line in (out / "ledger.txt").read_text().splitlines()]
    assert len(ledger) == len(set(ledger)) == 24
    assert not any(list((tmp_path / f"state{i}" / "spool" / n).glob("*.msg"))
                   for i, n in enumerate(names))  # every spool emptied


def test_workers_log_whole_lines(capfd):
    """Workers, connections and couriers log from threads of their own: every line comes out
    whole (print writes a line and its newline separately, so lines ran together and a
    reader counting them missed one)."""
    from walloc_edge.runtime.console import say

    def talk(k):
        for i in range(400):
            say(f"worker {k} line {i}")

    threads = [threading.Thread(target=talk, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = capfd.readouterr().out.splitlines()
    assert sorted(lines) == sorted(f"worker {k} line {i}" for k in range(8) for i in range(400))


def test_a_second_server_on_one_output_folder_refuses_to_start(reference_dir, tmp_path):
    """Two servers writing one folder would each miss what the other records (the ledger is
    read at start) and write a message twice: the second refuses in one line naming the
    first's pid, before taking any message; once the first is killed (its lock goes with
    it), a server starts there again."""
    import subprocess
    import sys

    first = Serve.reference(reference_dir, tmp_path / "out", free_port())
    try:
        second = subprocess.run(
            [sys.executable, "-m", "walloc_edge.cli", "serve",
             reference_dir / "rgb_j3_l12.pth", "--listen", f"tcp://127.0.0.1:{free_port()}",
             "--out", tmp_path / "out" / ".", "--device", "cpu"],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        [line] = second.stderr.strip().splitlines()
        assert f"another walloc-edge serve (pid {first.proc.pid} on " in line, line
    finally:
        first.kill()
    again = Serve.reference(reference_dir, tmp_path / "out", free_port())
    again.kill()
