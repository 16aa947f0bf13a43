"""Nothing lost, nothing written twice: sensors → serve over TCP through a server killed and
restarted, a sensor killed and restarted, a connection cut mid-message, a full disk, and
injected frames; property tests for the spool and the ledger. Loopback only, bounded."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import free_port
from walloc_edge.cli import main
from walloc_edge.firmware_bridge.delivery import Courier, Identity, Ledger, Spool
from walloc_edge.firmware_bridge.framing import (ACK_WRITTEN, Ack, AckReader, Keys,
                                                 encode_ack, frames_for)
from walloc_edge.firmware_bridge.transports import open_link, open_receiver
from walloc_edge.learning.datasets import load


def photos(folder, n, seed=0, size=(32, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            folder / f"p{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def bundle(rgb_weights_bundle):
    return rgb_weights_bundle


class Server:
    """`walloc-edge serve` in its own process, its output lines collected."""

    def __init__(self, reference_dir, out, port, *extra):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "walloc_edge.cli", "serve",
             str(reference_dir / "rgb_j3_l12.pth"), "--listen", f"tcp://127.0.0.1:{port}",
             "--out", str(out), "--device", "cpu", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.reading = threading.Thread(target=self._read, daemon=True)
        self.reading.start()
        self.wait_for(lambda: any(line.startswith("listening") for line in self.lines), 60)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def written(self):
        return sum(" -> " in line for line in self.lines)

    def wait_for(self, condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline and self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.reading.join(timeout=5)
        return "".join(self.lines)


def sensor(bundle, *argv, state):
    return subprocess.Popen([sys.executable, "-m", "walloc_edge.cli", "stream", str(bundle),
                             *map(str, argv), "--backend", "numpy", "--state", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def outputs(out):
    return sorted(p.name for p in out.glob("*.png"))


def assert_exactly_once(out, expected):
    """Every expected (sensor, source) came out once, and the ledger agrees."""
    names = outputs(out)
    assert len(names) == len(set(names)) == len(expected), names
    got = {(n.split("-")[0], n.split("-", 4)[4].rsplit(".", 1)[0]) for n in names}
    assert all(re.fullmatch(r"[0-9a-f]{16}-\d+-\d{6}-\d{8}T\d{6}Z-.+\.png", n) for n in names)
    assert got == expected
    ledger = (out / "ledger.txt").read_text().split()
    assert len(ledger[::2]) == len(set(ledger[::2])) == len(expected)


@pytest.mark.slow  # serve in its own process, restarted
def test_server_killed_and_restarted(bundle, reference_dir, tmp_path):
    """Three sensors x 8 photos while serve is SIGKILLed after 5 and restarted: each photo
    comes out exactly once, and every sensor reports all of its messages acknowledged."""
    port, out = free_port(), tmp_path / "received"
    server = Server(reference_dir, out, port)
    names = [f"{s:016x}" for s in (0xA1, 0xB2, 0xC3)]
    procs = [sensor(bundle, photos(tmp_path / f"in{i}", 8, seed=i), "--to",
                    f"tcp://127.0.0.1:{port}", "--sensor-id", name,  # default options
                    state=tmp_path / f"state{i}") for i, name in enumerate(names)]
    server.wait_for(lambda: server.written() >= 5, 120)
    server.kill()
    time.sleep(1)
    server = Server(reference_dir, out, port)
    logs = [p.communicate(timeout=180)[0] for p in procs]
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log
        assert "delivery: 8 acknowledged, 8 new" in log, log
    server.stop()
    assert_exactly_once(out, {(n, f"p{i:02d}") for n in names for i in range(8)})
    assert not any(list((tmp_path / f"state{i}" / "spool" / n).glob("*.msg"))
                   for i, n in enumerate(names))  # every spool emptied


@pytest.mark.slow  # serve in its own process, restarted
def test_sensor_killed_and_restarted(bundle, reference_dir, tmp_path):
    """A sensor with no server spools everything; killed, it keeps it; started again (no
    inputs: only its spool) once the server is up, it delivers each message once."""
    port, out, state = free_port(), tmp_path / "received", tmp_path / "state"
    first = sensor(bundle, photos(tmp_path / "in", 6), "--to", f"tcp://127.0.0.1:{port}",
                   "--sensor-id", "cam", state=state)
    deadline = time.monotonic() + 60
    while len(list(state.glob("spool/*/*.msg"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)  # a power cut: no goodbye
    first.wait(timeout=10)
    assert len(list(state.glob("spool/*/*.msg"))) == 6
    server = Server(reference_dir, out, port)
    again = sensor(bundle, "--to", f"tcp://127.0.0.1:{port}", "--sensor-id", "cam",
                   state=state)
    log = again.communicate(timeout=120)[0]
    assert again.returncode == 0 and "resending 6 message(s)" in log, log
    assert "6 acknowledged" in log and "boot 2" in log, log
    server.stop()
    sensor_id = outputs(out)[0].split("-")[0]
    assert_exactly_once(out, {(sensor_id, f"p{i:02d}") for i in range(6)})
    assert all(name.split("-")[1] == "1" for name in outputs(out))  # boot 1's messages


class CuttingProxy:
    """A TCP proxy that cuts the first connection after ``cut`` bytes from the sensor."""

    def __init__(self, target, cut):
        self.target, self.cut, self.cuts = target, cut, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            limit = self.cut if self.cuts == 0 else None
            self.cuts += 1
            threading.Thread(target=self._pipe, args=(client, upstream, limit),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None),
                             daemon=True).start()

    @staticmethod
    def _pipe(source, sink, limit):
        passed = 0
        try:
            while True:
                data = source.recv(4096)
                if not data:
                    break
                if limit is not None and passed + len(data) >= limit:
                    sink.sendall(data[:limit - passed])
                    break
                passed += len(data)
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.mark.slow  # serve in its own process, restarted
def test_connection_cut_mid_message(bundle, reference_dir, tmp_path):
    port, out = free_port(), tmp_path / "received"
    server = Server(reference_dir, out, port)
    proxy = CuttingProxy(port, cut=2500)  # inside the second or third message
    proc = sensor(bundle, photos(tmp_path / "in", 6, size=(48, 64)), "--to",
                  f"tcp://127.0.0.1:{proxy.port}", "--sensor-id", "cut",  # default options
                  state=tmp_path / "state")
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0 and "6 acknowledged" in log, log
    assert proxy.cuts >= 2  # it did have to reconnect
    server.stop()
    sensor_id = outputs(out)[0].split("-")[0]
    assert_exactly_once(out, {(sensor_id, f"p{i:02d}") for i in range(6)})


@pytest.mark.slow  # waits out a full disk, then resumes
@pytest.mark.parametrize("kept", ["decoded", "latents"])
def test_full_disk_is_not_acknowledged_and_resumes(kept, bundle, reference_dir, tmp_path,
                                                   monkeypatch):
    """Writing fails (ENOSPC) twice: serve goes on, does not acknowledge, and writes the
    messages when they come again; the sensor ends with everything acknowledged. The same
    for a server that keeps latents rows instead of decoded pictures."""
    import errno

    from walloc_edge.runtime import io  # serve imports write_signal from here
    from walloc_edge.learning.datasets import LiveDataset

    owner, name = (io, "write_signal") if kept == "decoded" else (LiveDataset, "add")
    real, failures = getattr(owner, name), [2]

    def flaky(*args, **kwargs):
        if failures[0]:
            failures[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    port, out = free_port(), tmp_path / "received"
    keep = [] if kept == "decoded" else ["--no-decode", "--latents", str(out / "latents")]
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", main(
        ["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", f"tcp://127.0.0.1:{port}",
         "--out", str(out), "--device", "cpu", "--count", "4", *keep])))
    thread.start()
    time.sleep(1)
    from walloc_edge.runtime import Encoder

    encoder = Encoder(bundle, "numpy")
    identity = Identity(0xD15C, 1)
    courier = Courier(open_link(f"tcp://127.0.0.1:{port}", identity.sensor), identity,
                      Spool(tmp_path / "spool"), log=lambda s: None, ack_timeout=1)
    courier.start()
    for i, path in enumerate(sorted(photos(tmp_path / "in", 4).glob("*.png"))):
        courier.send(encoder.encode(np.asarray(Image.open(path))), {"source": path.name})
    report = courier.finish(wait=60)
    thread.join(timeout=60)
    assert report.acknowledged == 4 and report.unacknowledged == 0 and report.resent >= 2
    assert failures == [0]
    if kept == "decoded":
        assert len(outputs(out)) == 4
    else:
        assert len(list((out / "latents").glob("part-*.parquet"))) == 4
        assert not list(out.glob("*.png")) and len(load(out / "latents")[1]) == 4


def test_injected_frames_are_rejected_and_do_not_block(tmp_path):
    """With keys configured, frames forged under a real sensor's id (no key, or a wrong one)
    are dropped; the real sensor's messages still arrive."""
    real_key, port = bytes(range(32)), free_port()
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", keys=Keys({7: real_key}))
    with socket.create_connection(("127.0.0.1", port)) as attacker:
        for sequence in range(5):  # the sequences the real sensor is about to use
            attacker.sendall(b"".join(frames_for(b"junk" * 100, 7, 1, sequence)))
            attacker.sendall(b"".join(frames_for(b"junk", 7, 1, sequence, key=b"x" * 32)))
        with socket.create_connection(("127.0.0.1", port)) as good:
            for sequence in range(5):
                good.sendall(b"".join(frames_for(f"real {sequence}".encode(), 7, 1, sequence,
                                                 key=real_key)))
            got = {}
            for item in receiver.messages(timeout=3):
                got[item.sequence] = item.message
                if len(got) == 5:
                    break
    receiver.stop()
    assert got == {s: f"real {s}".encode() for s in range(5)}
    assert receiver.stats.unauthenticated == 10


def test_serve_refuses_unauthenticated_sensors(bundle, reference_dir, tmp_path, capsys):
    """End to end with keys: the keyed sensor is written, a sensor without a key is not."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"cam1": "11" * 32}))
    (tmp_path / "cam1.key").write_text("11" * 32 + "\n")
    link = tmp_path / "link.frames"
    inputs = photos(tmp_path / "in", 2)
    assert main(["stream", str(bundle), str(inputs), "--to", f"file://{link}", "--sensor-id",
                 "cam1", "--key", str(tmp_path / "cam1.key"), "--backend", "numpy"]) == 0
    assert main(["stream", str(bundle), str(inputs), "--to", f"file://{link}", "--sensor-id",
                 "intruder", "--backend", "numpy"]) == 0
    out = tmp_path / "received"
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", f"file://{link}",
                 "--out", str(out), "--device", "cpu", "--keys", str(keys)]) == 0
    text = capsys.readouterr().out
    assert "decoded 2" in text and "unauthenticated 2" in text, text
    assert len(outputs(out)) == 2


def test_crafted_messages_never_stop_serve(bundle, reference_dir, tmp_path, capsys):
    """A valid-CRC .wlc with fields pointing past its end (once a struct.error that ended
    serve), junk, and a valid one claiming more pixels than --max-pixels: each is refused
    with a reason, before any decoding, and the good message after them is written."""
    import struct
    import zlib

    from walloc_edge.firmware_bridge.transports import open_sender
    from walloc_edge.runtime import Encoder

    encoder = Encoder(bundle, "numpy")
    good = encoder.encode(np.zeros((32, 32, 3), np.uint8))
    body = bytearray(good[:-4])
    body[-40:] = b"\xff" * 40  # fields past their end, CRC made valid again
    broken = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    big = encoder.encode(np.zeros((64, 96, 3), np.uint8))  # 6,144 pixels
    link = tmp_path / "link.frames"
    with open_sender(str(link), sensor=9) as sender:
        for message in (broken, b"junk", big, good):
            sender.send(message)
    out = tmp_path / "received"
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(link),
                 "--out", str(out), "--device", "cpu", "--max-pixels", "2000"]) == 0
    text = capsys.readouterr().out
    assert "decoded 1, rejected 3" in text, text
    assert "claims 64x96 = 6,144 pixels, over --max-pixels 2,000" in text, text
    assert len(outputs(out)) == 1


def test_size_is_checked_before_decoding():
    """The 37,832 x 37,832 claim of a 665 KB message is refused from its header alone."""
    from walloc_edge.server import check_size
    from walloc_edge.firmware_bridge.loops import Rejected
    from walloc_edge.runtime import Header
    from walloc_edge.runtime.modality import IMAGE

    header = Header(IMAGE, "0" * 32, (37832, 37832, 3), np.dtype(np.uint8), J=3,
                    latent_bits=8, latent_dim=12, coder="rans", coder_params=b"",
                    tile=(256, 256))
    with pytest.raises(Rejected, match="1,431,260,224 pixels"):
        check_size(header, 64e6, 64e6)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "reopen"]), st.integers(0, 20),
                          st.binary(max_size=300)), max_size=40))
def test_spool_property(tmp_path_factory, operations):
    """The spool, reopened at any point (a restart), holds exactly the added, not removed,
    not dropped messages, byte for byte, within its size."""
    folder = tmp_path_factory.mktemp("spool")
    spool, model = Spool(folder, max_bytes=2000), {}
    for op, sequence, message in operations:
        key = (1, sequence)
        if op == "add":
            for dropped in spool.add(key, message, {"n": sequence}):
                model.pop(dropped)
            model[key] = message
        elif op == "remove":
            spool.remove(key)
            model.pop(key, None)
        else:
            spool = Spool(folder, max_bytes=2000)
        assert spool.keys() == sorted(model)
        assert all(spool.get(k)[0] == model[k] for k in model)
        assert spool.bytes <= 2000


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text("abc0123-", min_size=1, max_size=12), max_size=30))
def test_ledger_property(tmp_path_factory, keys):
    """What the ledger recorded is there after a reopen, and nothing else."""
    path = tmp_path_factory.mktemp("ledger") / "ledger.txt"
    ledger = Ledger(path)
    for key in keys[: len(keys) // 2]:
        ledger.record(key, "out.png")
    ledger.close()
    again = Ledger(path)
    assert all(k in again for k in keys[: len(keys) // 2])
    assert not any(k in again for k in set(keys[len(keys) // 2:]) - set(keys[: len(keys) // 2]))


def test_identity_is_kept_and_boots_count(tmp_path):
    first, second = Identity.start(tmp_path), Identity.start(tmp_path)
    assert first.sensor == second.sensor and (first.boot, second.boot) == (1, 2)
    named = Identity.start(tmp_path, "cam1")
    assert named.sensor != first.sensor and named.boot == 1
    assert Identity.start(tmp_path, "00000000000000ff").sensor == 255


def test_acks_are_authenticated_when_keyed():
    key = b"k" * 32
    good = encode_ack(Ack(ACK_WRITTEN, 1, 2, 3), key)
    forged = encode_ack(Ack(ACK_WRITTEN, 1, 2, 4))
    assert AckReader(key).feed(forged + good) == [Ack(ACK_WRITTEN, 1, 2, 3)]
    assert AckReader().feed(forged) == [Ack(ACK_WRITTEN, 1, 2, 4)]


def test_old_version_frames_are_refused_by_name(tmp_path, capsys):
    v1 = bytes.fromhex("a5574c4601000700020100000100030003006b19c973776c638eb30cb3")
    link = tmp_path / "old.frames"
    link.write_bytes(v1 * 3)
    receiver = open_receiver(str(link))
    assert list(receiver.messages(timeout=0.3)) == []
    assert receiver.stats.old_version == 3 and receiver.stats.corrupted == 0


class MqttServer(Server):
    def __init__(self, reference_dir, out, url, *extra):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "walloc_edge.cli", "serve",
             str(reference_dir / "rgb_j3_l12.pth"), "--listen", url, "--out", str(out),
             "--device", "cpu", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.reading = threading.Thread(target=self._read, daemon=True)
        self.reading.start()
        self.wait_for(lambda: any(line.startswith("listening") for line in self.lines), 60)


@pytest.mark.slow  # serve in its own process, restarted
def test_mqtt_late_server_and_broker_restart(bundle, reference_dir, tmp_path, mosquitto):
    """Two sensors publish before any server subscribes; serve starts late, the broker is
    restarted mid-run, serve is restarted: every photo comes out exactly once, and the
    sensors hear the server's own acknowledgement (not only the broker's PUBACK)."""
    broker = mosquitto(persistent=True)
    topic = f"mqtt://127.0.0.1:{broker.port}/site/cams"
    shared = f"mqtt://127.0.0.1:{broker.port}/$share/decoders/site/cams?client=decoder1"
    out = tmp_path / "received"
    names = ["00000000000000e1", "00000000000000e2"]
    try:
        procs = [sensor(bundle, photos(tmp_path / f"in{i}", 6, seed=i), "--to", topic,
                        "--sensor-id", name, "--ack-timeout", "3", "--wait", "120",
                        state=tmp_path / f"state{i}") for i, name in enumerate(names)]
        time.sleep(3)  # the sensors publish into the void: nobody subscribes yet
        server = MqttServer(reference_dir, out, shared)
        server.wait_for(lambda: server.written() >= 3, 120)
        broker.restart()
        server.wait_for(lambda: server.written() >= 6, 120)
        server.kill()
        server = MqttServer(reference_dir, out, shared)
        logs = [p.communicate(timeout=240)[0] for p in procs]
        server.stop()
    finally:
        broker.stop()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0 and "6 acknowledged, 6 new" in log, log
    assert_exactly_once(out, {(n, f"p{i:02d}") for n in names for i in range(6)})


def make_tls(folder):
    """A private CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    def run(*argv):
        subprocess.run(["openssl", *argv], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
        "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return folder / "ca.pem"


@pytest.mark.slow  # serve in its own process, restarted
def test_mqtt_over_tls_with_a_password(bundle, reference_dir, tmp_path, capsys, mosquitto):
    """mosquitto with TLS and a password file on loopback: sensor and server connect with
    mqtts:// and USER:PASS@, and everything is delivered; without the password the sensor
    is refused in one line."""
    import shutil

    folder = tmp_path / "broker"
    folder.mkdir()
    ca = make_tls(folder)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), "cam", "s3cret"],
                   check=True, capture_output=True)
    shutil.os.chmod(folder / "passwd", 0o600)
    broker = mosquitto(
        f"allow_anonymous false\npassword_file {folder}/passwd\n"
        f"cafile {ca}\ncertfile {folder}/server.pem\nkeyfile {folder}/server.key\n")
    port = broker.port
    try:
        base = f"mqtts://cam:s3cret@127.0.0.1:{port}/site/tls"
        out = tmp_path / "received"
        server = MqttServer(reference_dir, out, f"{base}?ca={ca}&client=tls-server")
        proc = sensor(bundle, photos(tmp_path / "in", 3), "--to", f"{base}?ca={ca}",
                      "--sensor-id", "tls-cam", state=tmp_path / "state")
        log = proc.communicate(timeout=120)[0]
        server.stop()
        assert proc.returncode == 0 and "3 acknowledged" in log, log
        assert len(outputs(out)) == 3
        capsys.readouterr()
        assert main(["stream", str(bundle), str(tmp_path / "in"), "--to",
                     f"mqtts://cam:wrong@127.0.0.1:{port}/site/tls?ca={ca}", "--backend",
                     "numpy", "--wait", "2"]) == 1
        text = capsys.readouterr().out
        assert "refused the connection" in text and "3 unacknowledged, kept" in text, text
    finally:
        broker.stop()


@pytest.mark.slow  # floods for seconds
def test_rate_limit_keeps_a_flooding_sensor_from_crowding_others():
    port = free_port()
    from walloc_edge.firmware_bridge.transports import ReceiverLimits

    receiver = open_receiver(f"tcp://127.0.0.1:{port}",
                             limits=ReceiverLimits(rate=1, burst=5))
    with socket.create_connection(("127.0.0.1", port)) as flood, \
            socket.create_connection(("127.0.0.1", port)) as good:
        flood.sendall(b"".join(f for i in range(200) for f in frames_for(b"x", 66, 1, i)))
        time.sleep(0.3)
        for i in range(3):
            good.sendall(b"".join(frames_for(b"good", 7, 1, i)))
        got = {}
        for item in receiver.messages(timeout=2):
            got.setdefault(item.sensor, []).append(item.sequence)
    receiver.stop()
    assert len(got[66]) <= 6 and got[7] == [0, 1, 2]
    assert receiver.stats.rate_limited >= 194


def test_fragment_floods_are_bounded():
    """Never-completed fragments from many senders hold at most the configured memory, and
    many streams do not slow the reassembler down (its per-frame work is constant)."""
    from walloc_edge.firmware_bridge.framing import Frame
    from walloc_edge.firmware_bridge.reassembly import Reassembler

    joiner = Reassembler(max_pending_bytes=1 << 20, max_streams=1000)
    chunk = bytes(30000)
    start = time.perf_counter()
    for sensor in range(5000):  # each sends the first fragment of a 2-fragment message
        joiner.add(Frame(sensor, 1, 0, 0, 2, chunk))
        assert joiner.pending_bytes <= 1 << 20
    assert len(joiner.streams) == 1000
    first_half = time.perf_counter() - start
    assert joiner.add(Frame(1, 1, 0, 0, 1, b"ok")).data == b"ok"
    assert first_half < 10  # 5000 frames: a linear scan per frame would take far longer


@pytest.mark.slow  # serve in its own process, restarted
def test_accept_survives_running_out_of_file_descriptors(bundle, reference_dir, tmp_path):
    """serve with few file descriptors, flooded with connections: accept fails (EMFILE), serve
    logs it and goes on, and a sensor is served once the flood lets go."""
    import resource

    port, out = free_port(), tmp_path / "received"

    def few_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.Popen(
        [sys.executable, "-m", "walloc_edge.cli", "serve", str(reference_dir / "rgb_j3_l12.pth"),
         "--listen", f"tcp://127.0.0.1:{port}", "--out", str(out), "--device", "cpu",
         "--count", "1", "--max-connections-per-host", "400"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, preexec_fn=few_fds)
    server = Server.__new__(Server)
    server.proc, server.lines = proc, []
    server.reading = threading.Thread(target=server._read, daemon=True)
    server.reading.start()
    server.wait_for(lambda: any(line.startswith("listening") for line in server.lines), 60)
    flood = []
    for _ in range(400):
        try:
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    server.wait_for(lambda: any("Too many open files" in line for line in server.lines), 30)
    for s in flood:
        s.close()
    result = sensor(bundle, photos(tmp_path / "in", 1), "--to", f"tcp://127.0.0.1:{port}",
                    "--sensor-id", "survivor", state=tmp_path / "state")
    log = result.communicate(timeout=120)[0]
    proc.wait(timeout=60)
    assert result.returncode == 0 and "1 acknowledged" in log, log + "".join(server.lines)
    assert len(outputs(out)) == 1


def test_ledger_ignores_a_line_cut_short(tmp_path):
    path = tmp_path / "ledger.txt"
    path.write_text("aaaa-1-12 x.png\naaaa-1-1")  # the second line was cut by a full disk
    ledger = Ledger(path)
    assert "aaaa-1-12" in ledger and "aaaa-1-1" not in ledger
    ledger.record("aaaa-1-1", "y.png")
    ledger.close()
    assert "aaaa-1-1" in Ledger(path)


def mount_small_disk(folder, size="1m"):
    """A real, small filesystem (tmpfs) at ``folder``; False where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                             str(folder)], capture_output=True)
    return result.returncode == 0


@pytest.mark.slow  # serve in its own process, restarted
def test_a_really_full_disk(bundle, reference_dir, tmp_path):
    """serve writes to a 1 MB filesystem that is filled up: nothing is acknowledged while
    it is full (serve goes on), and once space is freed every message is written, once."""
    out = tmp_path / "disk"
    if not mount_small_disk(out):
        pytest.skip("mounting a tmpfs is not permitted here (needs root)")
    try:
        port = free_port()
        server = Server(reference_dir, out, port)
        filler = out / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError:  # ENOSPC: the disk is full
            pass
        finally:
            os.close(fd)
        proc = sensor(bundle, photos(tmp_path / "in", 4), "--to", f"tcp://127.0.0.1:{port}",
                      "--sensor-id", "full", "--ack-timeout", "2", state=tmp_path / "state")
        server.wait_for(lambda: sum("not acknowledged" in line for line in server.lines) >= 2,
                        60)
        assert not outputs(out)
        filler.unlink()  # space comes back
        log = proc.communicate(timeout=120)[0]
        server.stop()
        assert proc.returncode == 0 and "4 acknowledged" in log, log
        sensor_id = outputs(out)[0].split("-")[0]
        assert_exactly_once(out, {(sensor_id, f"p{i:02d}") for i in range(4)})
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)
