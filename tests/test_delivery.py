"""Nothing lost, nothing written twice: sensors → serve over TCP through a server killed and
restarted, a sensor killed and restarted, a connection cut mid-message, a full disk, and
injected frames; property tests for the spool and the ledger. Loopback only, bounded."""
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import FakeLink, Serve, free_port, output_parts, photos, sensor, wait_for
from walloc_edge.cli import main
from walloc_edge.firmware_bridge.delivery import Courier, Identity, Spool
from walloc_edge.server.delivery import Ledger
from walloc_edge.firmware_bridge.framing import (ACK_COLLISION, ACK_REJECTED, ACK_WRITTEN, Ack,
                                                 AckReader, Keys, decode_frame, encode_ack,
                                                 frames_for)
from walloc_edge.firmware_bridge.transports import open_link, open_receiver
from walloc_edge.firmware_bridge.transports.base import Link
from walloc_edge.learning.datasets import load


@pytest.fixture(scope="module")
def bundle(rgb_weights_bundle):
    return rgb_weights_bundle


def outputs(out):
    return sorted(p.name for p in out.glob("*.png"))


def assert_exactly_once(out, expected):
    """Every expected (sensor, source) came out once, and the ledger agrees."""
    names = outputs(out)
    assert len(names) == len(set(names)) == len(expected), names
    parts = [output_parts(n) for n in names]
    assert all(p["captured"] and p["suffix"] == ".png" for p in parts), names
    got = {(p["sensor"], p["source"]) for p in parts}
    assert got == expected
    ledger = [line.split()[0] for line in (out / "ledger.txt").read_text().splitlines()]
    assert len(ledger) == len(set(ledger)) == len(expected)


@pytest.mark.slow  # serve in its own process, restarted
def test_server_killed_and_restarted(bundle, reference_dir, tmp_path):
    """Three sensors x 8 photos while serve is SIGKILLed after 5 and restarted: each photo
    comes out exactly once, and every sensor reports all of its messages acknowledged."""
    port, out = free_port(), tmp_path / "received"
    server = Serve.reference(reference_dir, out, port)
    names = [f"{s:016x}" for s in (0xA1, 0xB2, 0xC3)]
    procs = [sensor(bundle, photos(tmp_path / f"in{i}", 8, seed=i), "--to",
                    f"tcp://127.0.0.1:{port}", "--sensor-id", name,  # default options
                    state=tmp_path / f"state{i}") for i, name in enumerate(names)]
    server.wait_for(lambda: server.written() >= 5, 120)
    server.kill()
    time.sleep(1)
    server = Serve.reference(reference_dir, out, port)
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
    server = Serve.reference(reference_dir, out, port)
    again = sensor(bundle, "--to", f"tcp://127.0.0.1:{port}", "--sensor-id", "cam",
                   state=state)
    log = again.communicate(timeout=120)[0]
    assert again.returncode == 0 and "resending 6 message(s)" in log, log
    assert "6 acknowledged" in log and "boot 2" in log, log
    server.stop()
    sensor_id = output_parts(outputs(out)[0])["sensor"]
    assert_exactly_once(out, {(sensor_id, f"p{i:02d}") for i in range(6)})
    assert all(output_parts(name)["boot"] == "1" for name in outputs(out))  # boot 1's messages


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
    server = Serve.reference(reference_dir, out, port)
    proxy = CuttingProxy(port, cut=2500)  # inside the second or third message
    proc = sensor(bundle, photos(tmp_path / "in", 6, size=(48, 64)), "--to",
                  f"tcp://127.0.0.1:{proxy.port}", "--sensor-id", "cut",  # default options
                  state=tmp_path / "state")
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0 and "6 acknowledged" in log, log
    assert proxy.cuts >= 2  # it did have to reconnect
    server.stop()
    sensor_id = output_parts(outputs(out)[0])["sensor"]
    assert_exactly_once(out, {(sensor_id, f"p{i:02d}") for i in range(6)})


@pytest.mark.slow  # waits out a full disk, then resumes
@pytest.mark.parametrize("kept", ["decoded", "latents"])
def test_full_disk_is_not_acknowledged_and_resumes(kept, bundle, reference_dir, tmp_path,
                                                   monkeypatch):
    """Writing fails (ENOSPC) twice: serve goes on, does not acknowledge, and writes the
    messages when they come again; the sensor ends with everything acknowledged. The same
    for a server that keeps latents rows instead of decoded pictures."""
    import errno

    from walloc_edge.runtime import io  # serve calls write_signal through this module
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


def test_serve_says_what_the_link_threw_away(tmp_path):
    """Garbage on the port and a sensor without the key leave a line in serve's log (at
    most one every few seconds), not only counters."""
    from walloc_edge.firmware_bridge.loops import serve_messages

    key, port, lines = bytes(range(32)), free_port(), []
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", keys=Keys({7: key}))
    with socket.create_connection(("127.0.0.1", port)) as peer:
        peer.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(1000))
        peer.sendall(b"".join(frames_for(b"no key", 7, 1, 0)))
        peer.sendall(b"".join(frames_for(b"real", 7, 1, 1, key=key)))
        handled = serve_messages(receiver, lambda received: None, count=1, log=lines.append)
    assert handled[0] == 1
    said = [line for line in lines if line.startswith("the link threw away")]
    # one line, or two where a tick fell between the garbage and the frame without the key
    # (the second is the last word at the end, not another within the interval)
    assert 1 <= len(said) <= 2, lines
    assert "1 frame(s) failed authentication" in " ".join(said), said
    assert "that were no frames" in " ".join(said), said


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


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
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
                 "--out", str(out), "--device", "cpu", "--keys", str(keys)]) == 1  # (the
    # intruder's messages did not come out: exit 1, a file having no sensor to send again)
    text = capsys.readouterr().out
    assert "decoded 2" in text and "unauthenticated 2" in text, text
    assert len(outputs(out)) == 2


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
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
                 "--out", str(out), "--device", "cpu", "--max-pixels", "2000"]) == 1
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


@pytest.mark.slow  # serve in its own process, restarted
def test_mqtt_late_server_and_broker_restart(bundle, reference_dir, tmp_path, mosquitto):
    """Two sensors start before their broker, then publish before any server subscribes;
    serve starts late, the broker is restarted mid-run, serve is restarted: every photo
    comes out exactly once, and the sensors hear the server's own acknowledgement (not only
    the broker's PUBACK)."""
    broker = mosquitto(persistent=True)
    broker.stop()  # its port kept: the sensors boot first, spool and keep trying
    topic = f"mqtt://127.0.0.1:{broker.port}/site/cams"
    shared = f"mqtt://127.0.0.1:{broker.port}/$share/decoders/site/cams?client=decoder1"
    out = tmp_path / "received"
    names = ["00000000000000e1", "00000000000000e2"]
    try:
        procs = [sensor(bundle, photos(tmp_path / f"in{i}", 6, seed=i), "--to", topic,
                        "--sensor-id", name, "--ack-timeout", "3", "--wait", "120",
                        state=tmp_path / f"state{i}") for i, name in enumerate(names)]
        time.sleep(3)
        broker.start()
        time.sleep(3)  # the sensors publish into the void: nobody subscribes yet
        server = Serve.reference(reference_dir, out, shared)
        server.wait_for(lambda: server.written() >= 3, 120)
        broker.restart()
        server.wait_for(lambda: server.written() >= 6, 120)
        server.kill()
        server = Serve.reference(reference_dir, out, shared)
        logs = [p.communicate(timeout=240)[0] for p in procs]
        server.stop()
    finally:
        broker.stop()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0 and "6 acknowledged, 6 new" in log, log
    assert_exactly_once(out, {(n, f"p{i:02d}") for n in names for i in range(6)})


@pytest.mark.slow  # serve in its own process
def test_same_sensor_id_on_two_devices_over_mqtt(bundle, reference_dir, tmp_path, mosquitto):
    """Over MQTT, too, two devices given one --sensor-id lose nothing: each process hears
    only the answers to its own messages (its own reply topic), so one never takes the
    other's "written" for its own message under the same key (it did: 8 of 10 lost)."""
    broker = mosquitto()
    topic = f"mqtt://127.0.0.1:{broker.port}/site/cams"
    out = tmp_path / "received"
    server = Serve.reference(reference_dir, out, topic)
    try:
        inputs = [named_photos(tmp_path / f"in{i}", "ab"[i], 6, 6 * i) for i in range(2)]
        procs = [sensor(bundle, inputs[i], "--to", topic, "--sensor-id", "twin",
                        "--ack-timeout", "3", "--wait", "120", state=tmp_path / f"device{i}")
                 for i in range(2)]
        logs = [p.communicate(timeout=180)[0] for p in procs]
        collisions = serve_collisions(server)
    finally:
        broker.stop()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0 and "6 acknowledged" in log, log
    assert collisions >= 1, logs
    assert_each_once_with_its_content(out, inputs, bundle)


def test_an_mqtt_sensor_hears_a_server_older_than_reply_topics(mosquitto):
    """A server from before reply topics answers on TOPIC/ack/SENSOR: a sensor still hears
    it there (it listened only on its own reply topic, so sensors upgraded before their
    servers resent everything until their spools overflowed)."""
    import paho.mqtt.client as mqtt

    broker = mosquitto()
    link = open_link(f"mqtt://127.0.0.1:{broker.port}/site/cams", 0x1234)
    heard = []
    link.on_ack = heard.append
    old_server = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    old_server.connect("127.0.0.1", broker.port)
    old_server.loop_start()
    try:
        ack = Ack(ACK_WRITTEN, 0x1234, 1, 0)
        deadline = time.monotonic() + 20
        while not heard and time.monotonic() < deadline:  # until the link has subscribed
            old_server.publish("site/cams/ack/0000000000001234", encode_ack(ack), qos=1)
            time.sleep(0.2)
        assert heard[:1] == [ack]
    finally:
        old_server.loop_stop()
        old_server.disconnect()
        link.close()


def test_a_server_says_when_its_broker_is_gone_and_back(mosquitto):
    """The broker stops: the receiver logs it once and says why it is down (serve's
    /healthz answers 503 with it); back, it subscribes again and says so."""
    broker = mosquitto()
    lines = []
    receiver = open_receiver(f"mqtt://127.0.0.1:{broker.port}/site/cams", log=lines.append)
    try:
        assert receiver.down is None
        broker.stop()
        wait_for(lambda: receiver.down is not None, 20)
        assert "the MQTT broker is unreachable" in receiver.down
        assert [line for line in lines if line.startswith("lost the broker")] == lines
        broker.start()
        wait_for(lambda: receiver.down is None, 30)
        assert lines[-1].startswith("the broker is back") and len(lines) == 2, lines
    finally:
        receiver.stop()


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
        server = Serve.reference(reference_dir, out, f"{base}?ca={ca}&client=tls-server")
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
        assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen",
                     f"mqtts://cam:wrong@127.0.0.1:{port}/site/tls?ca={ca}", "--out",
                     str(tmp_path / "refused"), "--device", "cpu"]) == 2  # it tried forever
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the broker refuses this server (Not authorized)" in \
            err and "wrong" not in err, err
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
    for sensor_id in range(5000):  # each sends the first fragment of a 2-fragment message
        joiner.add(Frame(sensor_id, 1, 0, 0, 2, chunk))
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

    server = Serve.reference(reference_dir, out, port, "--count", "1",
                             "--max-connections-per-host", "400", preexec_fn=few_fds)
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
    server.proc.wait(timeout=60)
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


def test_ledger_cuts_a_short_line_by_bytes_after_a_damaged_byte(tmp_path):
    """The repair counted the text's characters, not the file's bytes: after a damaged
    byte (read as one replacement character of three bytes) it cut too little, and the
    next key was joined to the rest of the cut line."""
    path = tmp_path / "ledger.txt"
    path.write_bytes(b"aaaa-1-12 x\xff\xfe.png\naaaa-1-1")
    Ledger(path).close()
    assert path.read_bytes() == b"aaaa-1-12 x\xff\xfe.png\n"
    ledger = Ledger(path)
    ledger.record("aaaa-1-2", "y.png")
    ledger.close()
    assert "aaaa-1-2" in Ledger(path) and "aaaa-1-1" not in Ledger(path)


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
        server = Serve.reference(reference_dir, out, port)
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
        sensor_id = output_parts(outputs(out)[0])["sensor"]
        assert_exactly_once(out, {(sensor_id, f"p{i:02d}") for i in range(4)})
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)


def named_photos(folder, prefix, n, first):
    """``n`` pictures PREFIX00.png, ...: every sensor's sources told apart by name and by
    colour (the 27 colours ``first``, ``first`` + 1, ... of a palette far apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = first + i
        colour = [30 + 100 * (k // 9), 30 + 100 * (k // 3 % 3), 30 + 100 * (k % 3)]
        Image.fromarray(np.full((32, 40, 3), colour, np.uint8)).save(
            folder / f"{prefix}{i:02d}.png")
    return folder


def assert_each_once_with_its_content(out, inputs, bundle):
    """Every input came out exactly once, under its own name, and the ledger line of that
    output holds the digest of that input's own bitstream (encoding is deterministic)."""
    from walloc_edge.server.delivery import message_digest
    from walloc_edge.runtime import Encoder
    from walloc_edge.runtime.io import read_input

    encoder = Encoder(bundle, "numpy")
    b = encoder.bundle
    digests = {p.stem: message_digest(encoder.encode(read_input(p, b.modality, b.channels)[0]))
               for folder in inputs for p in folder.glob("*.png")}
    names = outputs(out)
    assert sorted(output_parts(n)["source"] for n in names) == sorted(digests)
    lines = [line.split() for line in (out / "ledger.txt").read_text().splitlines()]
    assert len({line[0] for line in lines}) == len(lines) == len(digests)
    for key, name, digest, *_ in lines:
        assert digest == f"digest={digests[output_parts(name)['source']]}", name


def serve_collisions(server):
    return int(re.search(r"collisions (\d+)", server.stop()).group(1))


@pytest.mark.slow  # serve in its own process
def test_same_sensor_id_on_two_devices(bundle, reference_dir, tmp_path):
    """Two devices (two state folders) given one --sensor-id send at once: each takes boot 1;
    the server refuses the second's messages as collisions, that device sends them again
    under a new boot, and every photo comes out exactly once."""
    port, out = free_port(), tmp_path / "received"
    server = Serve.reference(reference_dir, out, port)
    inputs = [named_photos(tmp_path / f"in{i}", "ab"[i], 8, 8 * i) for i in range(2)]
    procs = [sensor(bundle, inputs[i], "--to", f"tcp://127.0.0.1:{port}", "--sensor-id",
                    "twin", "--ack-timeout", "5", state=tmp_path / f"device{i}")
             for i in range(2)]
    logs = [p.communicate(timeout=180)[0] for p in procs]
    collisions = serve_collisions(server)
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0 and "8 acknowledged" in log, log
    assert collisions >= 1 and any("collision(s)" in log for log in logs), logs
    assert_each_once_with_its_content(out, inputs, bundle)


@pytest.mark.slow  # serve in its own process
def test_state_folder_restored_from_a_copy(bundle, reference_dir, tmp_path):
    """A state folder restored from a backup starts the boot it had again, with other
    photos: those collide, go out under a new boot, and nothing is lost."""
    import shutil

    port, out, state = free_port(), tmp_path / "received", tmp_path / "state"
    server = Serve.reference(reference_dir, out, port)
    inputs = [named_photos(tmp_path / f"in{i}", "xyz"[i], n, first)
              for i, (n, first) in enumerate(((1, 0), (5, 1), (5, 6)))]
    runs = []
    for i, folder in enumerate(inputs):
        if i == 2:  # the backup taken after the first run comes back
            shutil.rmtree(state)
            shutil.copytree(tmp_path / "backup", state)
        proc = sensor(bundle, folder, "--to", f"tcp://127.0.0.1:{port}", state=state)
        runs.append(proc.communicate(timeout=120)[0])
        assert proc.returncode == 0, runs[-1]
        if i == 0:
            shutil.copytree(state, tmp_path / "backup")
    assert "boot 2" in runs[1] and "boot 2" in runs[2], runs
    assert "5 acknowledged" in runs[2] and "collision(s)" in runs[2], runs[2]
    assert serve_collisions(server) >= 1
    assert_each_once_with_its_content(out, inputs, bundle)


@pytest.mark.slow  # serve in its own process
def test_four_processes_on_one_state_folder(bundle, reference_dir, tmp_path):
    """Four streams start at once on one state folder: each takes its own boot (under the
    lock), none deletes another's spool files, and every photo comes out exactly once."""
    port, out, state = free_port(), tmp_path / "received", tmp_path / "state"
    server = Serve.reference(reference_dir, out, port)
    inputs = [named_photos(tmp_path / f"in{i}", "abcd"[i], 5, 5 * i) for i in range(4)]
    procs = [sensor(bundle, folder, "--to", f"tcp://127.0.0.1:{port}", "--wait", "200",
                    state=state) for folder in inputs]  # --wait: a restart on a busy machine
    logs = [p.communicate(timeout=240)[0] for p in procs]
    collisions = serve_collisions(server)
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0 and "error" not in log, log
    boots = [re.search(r"boot (\d+)", log).group(1) for log in logs]
    assert sorted(boots) == ["1", "2", "3", "4"], logs
    assert collisions == 0
    assert_each_once_with_its_content(out, inputs, bundle)
    assert not list(state.glob("spool/*/*.msg"))


def test_ledger_tells_a_collision_from_a_resend(tmp_path):
    """The same key with the same content (and start) is a resend; other content, or
    another start of the sensor under a key or boot it has seen, is a collision; a line
    without a digest matches any content. All of it survives a reopen."""
    path = tmp_path / "ledger.txt"
    path.write_text("aaaa-1-0 old.png\n")  # a line from a server that kept no digest
    ledger = Ledger(path)
    ledger.record("aaaa-2-0", "x.png", "d1", "n1")
    ledger.record("aaaa-3-0", "", "d3")  # a sensor that sends no nonce
    ledger.close()
    ledger = Ledger(path)
    assert ledger.collision("aaaa-1-0", "anything", "n9") is None
    assert ledger.collision("aaaa-2-0", "d1", "n1") is None
    assert "other content" in ledger.collision("aaaa-2-0", "d2", "n1")
    assert "another start" in ledger.collision("aaaa-2-0", "d1", "n2")
    assert "boot number" in ledger.collision("aaaa-2-7", "d7", "n2")
    assert ledger.collision("aaaa-2-7", "d7", "n1") is None  # the same start, new key
    assert ledger.collision("aaaa-2-7", "d7") is None
    assert ledger.collision("aaaa-3-0", "d3", "n5") is None
    assert "other content" in ledger.collision("aaaa-3-0", "d4")
    assert ledger.collision("bbbb-2-0", "d2", "n2") is None


def test_boots_are_taken_under_a_lock(tmp_path):
    """Sixteen starts at once on one state folder: sixteen different boot numbers."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        starts = list(pool.map(lambda _: Identity.start(tmp_path, "cam"), range(16)))
    assert sorted(i.boot for i in starts) == list(range(1, 17))
    assert len({i.nonce for i in starts}) == 16
    renewed = starts[0].renew()
    assert renewed.boot == 17 and renewed.sensor == starts[0].sensor
    assert json.loads((tmp_path / "identity.json").read_text())["boots"] == {
        renewed.name: 17}


def test_spool_keeps_a_live_process_s_unfinished_write(tmp_path):
    """A starting spool removes the temporaries of writers that are gone, not another live
    process's write in progress."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live = tmp_path / f".1-0.msg.tmp-{os.getppid()}-1"
    gone = tmp_path / f".1-1.msg.tmp-{dead}-1"
    live.write_bytes(b"half")
    gone.write_bytes(b"half")
    Spool(tmp_path)
    assert live.exists() and not gone.exists()


def test_courier_sends_a_collided_message_again_under_a_new_boot(tmp_path):
    """A status the courier does not know keeps the message; a collision keeps it too,
    moves it to a new boot (taken from the state folder) and sends it again; only a
    written acknowledgement takes it off the spool."""
    identity = Identity.start(tmp_path / "state", "cam")
    link = FakeLink()
    courier = Courier(link, identity, Spool(tmp_path / "spool"), log=lambda s: None)
    courier.start()
    key = courier.send(b"message", {"source": "a.png"})
    assert courier.spool.get(key)[1] == {"source": "a.png", "nonce": identity.nonce}
    wait_for(lambda: len(link.written) == 1)  # a server answers only what it received
    link.on_ack(Ack(77, identity.sensor, *key))
    assert courier.spool.keys() == [key]
    link.on_ack(Ack(ACK_COLLISION, identity.sensor, *key))
    new = (identity.boot + 1, 0)
    assert courier.identity.boot == new[0] and courier.spool.keys() == [new]
    message, meta = courier.spool.get(new)
    assert message == b"message" and meta["nonce"] == courier.identity.nonce != identity.nonce
    wait_for(lambda: len(link.written) == 2)  # due at once: the courier's thread sends it
    link.on_ack(Ack(ACK_COLLISION, identity.sensor, *key))  # a late repeat: nothing to do
    link.on_ack(Ack(ACK_WRITTEN, identity.sensor, *new))
    report = courier.finish(wait=1)
    assert report.collisions == 1 and report.acknowledged == 1 and report.complete
    assert "1 collision(s)" in report.line()
    assert courier.send(b"next")[0] == new[0]  # new messages follow on the new boot


def test_a_message_refused_for_good_is_set_aside_not_deleted(tmp_path):
    """A refusal may come from a server's setting (its model, its decode limit): the
    message leaves the queue but is kept in the spool's refused/ folder, said in the log,
    and sent again once moved back; refused/ keeps the spool's size, its oldest given up
    (and said)."""
    identity = Identity.start(tmp_path / "state", "cam")
    link, lines = FakeLink(), []
    spool = Spool(tmp_path / "spool", max_bytes=150)
    courier = Courier(link, identity, spool, log=lines.append)
    courier.start()
    first = courier.send(b"x" * 60)
    wait_for(lambda: len(link.written) == 1)
    link.on_ack(Ack(ACK_REJECTED, identity.sensor, *first))
    kept = tmp_path / "spool" / "refused" / f"{first[0]}-{first[1]}.msg"
    assert courier.spool.keys() == [] and kept.is_file()
    assert f"kept in {kept.parent}" in lines[-1] and "to send it again" in lines[-1]
    second = courier.send(b"y" * 60)
    wait_for(lambda: len(link.written) == 2)
    link.on_ack(Ack(ACK_REJECTED, identity.sensor, *second))  # both over 150 bytes
    assert not kept.exists() and "1 older refused message(s) given up" in lines[-1]
    report = courier.finish(wait=1)
    assert report.rejected == 2
    later = tmp_path / "spool" / "refused" / f"{second[0]}-{second[1]}.msg"
    later.rename(tmp_path / "spool" / later.name)  # the server fixed: back into the queue
    again = Spool(tmp_path / "spool", max_bytes=150)
    assert again.keys() == [second] and again.get(second)[0] == b"y" * 60
    early, late, third = (9, 0), (9, 1), (9, 2)  # spooled in this order, refused as
    again.add(early, b"e" * 60)                   # late, early, third: the cap gives up
    time.sleep(0.05)                              # the earliest refusal (late), not the
    again.add(late, b"l" * 60)                    # earliest spooled
    again.refuse(late)
    again.refuse(early)
    again.add(third, b"t" * 60)
    kept, dropped = again.refuse(third)
    refused = sorted(p.name for p in (tmp_path / "spool" / "refused").iterdir())
    assert kept.name == "9-2.msg" and dropped == 1 and refused == ["9-0.msg", "9-2.msg"]


def test_a_courier_with_heartbeats_says_its_last_status_as_it_stops(tmp_path):
    """A stream that ends with everything acknowledged sends a last heartbeat (spool 0), so
    that a dashboard does not keep showing the spool of its previous heartbeat; it says the
    sensor stopped, which a dashboard shows instead of "quiet" (a crash sends none)."""
    from walloc_edge.firmware_bridge.framing import FLAG_HEARTBEAT, unpack_heartbeat

    identity = Identity.start(tmp_path / "state", "cam")
    link = FakeLink()
    courier = Courier(link, identity, Spool(tmp_path / "spool"), log=lambda s: None,
                      heartbeat=3600)
    courier.start()
    key = courier.send(b"message")
    wait_for(lambda: len(link.written) == 2)  # the first heartbeat and the message
    link.on_ack(Ack(ACK_WRITTEN, identity.sensor, *key))
    assert courier.finish(wait=5).complete
    frames = [decode_frame(f) for written in link.written for f in
              (written if isinstance(written, list) else [written])]
    assert frames[-1].flags & FLAG_HEARTBEAT  # after the message: the last status
    last = unpack_heartbeat(frames[-1].payload)
    assert last["spool"] == 0 and last["state"] == "stopped"
    assert "state" not in unpack_heartbeat(frames[0].payload)


@pytest.mark.slow  # serve in a thread, a decoder loaded
def test_a_sensor_without_a_nonce_is_not_told_to_drop_a_collided_message(
        bundle, reference_dir, tmp_path, capsys):
    """Other content under a written key: a sensor that sends its start's nonce hears
    status 2 (collision); one that sends none (it would take any status for "done") hears
    nothing, so it keeps the message. Both are counted."""
    from walloc_edge.firmware_bridge.framing import FLAG_META, pack_meta
    from walloc_edge.runtime import Encoder

    encoder = Encoder(bundle, "numpy")
    first, other = (encoder.encode(np.full((32, 32, 3), v, np.uint8)) for v in (10, 200))
    port, out = free_port(), tmp_path / "received"
    thread = threading.Thread(target=main, args=(
        ["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", f"tcp://127.0.0.1:{port}",
         "--out", str(out), "--device", "cpu", "--count", "3"],))
    thread.start()
    deadline = time.monotonic() + 60
    while "listening" not in capsys.readouterr().out and time.monotonic() < deadline:
        time.sleep(0.1)
    reader = AckReader()

    def send(frames, expect_ack):
        conn.sendall(b"".join(frames))
        conn.settimeout(5 if expect_ack else 2)
        try:
            return reader.feed(conn.recv(4096))
        except socket.timeout:
            return []

    with socket.create_connection(("127.0.0.1", port)) as conn:
        assert send(frames_for(first, 7, 1, 0), True) == [Ack(ACK_WRITTEN, 7, 1, 0)]
        assert send(frames_for(other, 7, 1, 0), False) == []
        with_nonce = pack_meta(other, {"nonce": "abc123"})
        assert send(frames_for(with_nonce, 7, 1, 0, flags=FLAG_META), True) == [
            Ack(ACK_COLLISION, 7, 1, 0)]
    thread.join(timeout=30)
    text = capsys.readouterr().out
    assert "collisions 2" in text and text.count("COLLISION") == 2, text
    assert len(outputs(out)) == 1


class RacingLink(Link):
    """Acknowledges each message inside ``write`` (before the caller goes on), from another
    thread at once, late, twice, or (the first time) not at all: acknowledgements arrive
    before, during and after the courier registers a message as in flight."""

    acks = True

    def __init__(self, seed=0):
        super().__init__("racing:")
        self.rng, self.seen = random.Random(seed), {}

    def write(self, frames):
        frame = decode_frame(frames[0])
        key = (frame.boot, frame.sequence)
        self.seen[key] = self.seen.get(key, 0) + 1
        ack = Ack(ACK_WRITTEN, frame.sensor, frame.boot, frame.sequence)
        mode = self.rng.choice(["inside", "thread", "late", "twice", "lost"])
        if mode == "lost" and self.seen[key] == 1:
            return  # sent again after the acknowledgement timeout
        if mode in ("inside", "twice"):
            self.on_ack(ack)
        if mode in ("thread", "twice"):
            threading.Thread(target=self.on_ack, args=(ack,)).start()
        if mode == "late":
            threading.Timer(0.02, self.on_ack, (ack,)).start()


def test_in_flight_table_survives_racing_acknowledgements(tmp_path):
    """300 messages through a window of 8 with acknowledgements racing the courier's
    bookkeeping: no stale in-flight entry ever fills the window (send never stalls), and
    every message is counted acknowledged exactly once."""
    link, identity = RacingLink(), Identity(0x5EED, 1)
    courier = Courier(link, identity, Spool(tmp_path / "spool"), log=lambda s: None,
                      ack_timeout=0.1, window=8)
    courier.start()
    sending = threading.Thread(target=lambda: [courier.send(b"m%d" % i) for i in range(300)],
                               daemon=True)
    sending.start()
    sending.join(timeout=60)
    assert not sending.is_alive(), f"send() stalled: {len(courier.sent_at)} in flight"
    report = courier.finish(wait=30)
    assert report.acknowledged == 300 and report.unacknowledged == 0, report
    assert courier.sent_at == {} and len(courier.spool) == 0
    assert sorted(link.seen) == [(1, i) for i in range(300)]


def test_quiet_sensor_resends_after_server_restart_within_backoff(tmp_path):
    """Three messages received but never acknowledged (the server dies before writing
    them); the server is back 1 s later and the sensor sends nothing new: the dropped
    connection is noticed at once, and all three are acknowledged within the backoff
    (at most 5 s), long before --ack-timeout."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    receiver, identity, logs = open_receiver(url), Identity(0xABC, 1), []
    courier = Courier(open_link(url, identity.sensor), identity, Spool(tmp_path / "spool"),
                      log=logs.append, ack_timeout=120)
    courier.start()
    for i in range(3):
        courier.send(b"quiet %d" % i)
    got = set()
    for item in receiver.messages(timeout=5):
        got.add(item.sequence)
        if len(got) == 3:
            break
    assert got == {0, 1, 2}
    receiver.stop()  # the server goes away; its connections close
    time.sleep(1.0)
    receiver, back = open_receiver(url), time.monotonic()
    acknowledged = set()
    for item in receiver.messages(timeout=10):
        item.ack(ACK_WRITTEN)
        acknowledged.add(item.sequence)
        if len(acknowledged) == 3:
            break
    while courier.report.acknowledged < 3 and time.monotonic() - back < 10:
        time.sleep(0.02)
    took = time.monotonic() - back
    report = courier.finish(wait=1)
    receiver.stop()
    assert report.acknowledged == 3 and report.unacknowledged == 0, (report, logs)
    assert took < 5.5, f"recovered {took:.1f} s after the server was back"
    assert any(line.startswith("link lost") for line in logs), logs


def _lines_of(proc):
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return lines


def _wait_lines(lines, proc, condition, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition(lines):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
        time.sleep(0.05)


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_restarted_watch_sends_nothing_twice(bundle, reference_dir, tmp_path, capsys):
    """`stream --watch`, stopped with Ctrl-C (exit 130) and started again, sends only the
    file that changed and the new one, not the one merely touched nor the others: serve
    writes each version once."""
    inbox, state, link = photos(tmp_path / "in", 4), tmp_path / "state", tmp_path / "link"
    sent = lambda lines: [line.split()[1].rstrip(":") for line in lines
                          if line.startswith("sent ")]
    runs = []
    for n in (4, 2):
        proc = sensor(bundle, "--watch", inbox, "--to", f"file://{link}", "--sensor-id",
                      "cam", state=state)
        lines = _lines_of(proc)
        _wait_lines(lines, proc, lambda lines: len(sent(lines)) >= n)
        time.sleep(2)  # four more polls: nothing else is sent
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, "".join(lines)
        runs.append(sorted(Path(p).name for p in sent(lines)))
        os.utime(inbox / "p00.png")  # touched, the same content
        photos(tmp_path / "other", 2, seed=9)
        (tmp_path / "other" / "p00.png").replace(inbox / "p01.png")  # changed
        (tmp_path / "other" / "p01.png").replace(inbox / "p04.png")  # new
    assert runs == [["p00.png", "p01.png", "p02.png", "p03.png"], ["p01.png", "p04.png"]]
    out = tmp_path / "received"
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", f"file://{link}",
                 "--out", str(out), "--device", "cpu"]) == 0
    written = sorted(output_parts(n)["source"] + ".png" for n in outputs(out))
    assert written == ["p00.png", "p01.png", "p01.png", "p02.png", "p03.png", "p04.png"]


@pytest.mark.slow  # serve in its own process, restarted
def test_quiet_watch_sensor_delivers_after_serve_restarts(bundle, reference_dir, tmp_path):
    """A `--watch` sensor with a quiet folder: what it spooled while serve was down (first
    not started, then killed) is written within 10 s of serve listening, with no new file;
    restarted, the sensor sends nothing twice."""
    port, out, inbox = free_port(), tmp_path / "received", photos(tmp_path / "in", 6)
    args = ("--watch", inbox, "--to", f"tcp://127.0.0.1:{port}", "--sensor-id", "watcher")
    proc = sensor(bundle, *args, state=tmp_path / "state")
    lines = _lines_of(proc)
    _wait_lines(lines, proc, lambda lines: sum(line.startswith("queued ") for line in lines) >= 6)
    server = Serve.reference(reference_dir, out, port)  # late: six messages wait in the spool
    server.wait_for(lambda: server.written() >= 6, 10)
    server.kill()
    photos(tmp_path / "more", 3, seed=5)
    for i in range(3):
        (tmp_path / "more" / f"p{i:02d}.png").replace(inbox / f"q{i:02d}.png")
    _wait_lines(lines, proc, lambda lines: sum(line.startswith("queued ") for line in lines) >= 9)
    time.sleep(2)
    server = Serve.reference(reference_dir, out, port)
    server.wait_for(lambda: server.written() >= 3, 10)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130, "".join(lines)
    again = sensor(bundle, *args, state=tmp_path / "state")
    lines = _lines_of(again)
    time.sleep(8)  # started, and several polls of the folder
    again.send_signal(signal.SIGINT)
    assert again.wait(timeout=30) == 130 and not any(line.startswith("queued ") for line in lines)
    server.stop()
    sensor_id = output_parts(outputs(out)[0])["sensor"]
    assert_exactly_once(out, {(sensor_id, f"{c}{i:02d}") for c, n in (("p", 6), ("q", 3))
                              for i in range(n)})


@pytest.mark.slow  # serve in its own process, restarted
def test_three_streams_on_one_device(bundle, reference_dir, tmp_path):
    """Three `stream` processes with default options on one state folder (three cameras on
    one device), 10 photos each, serve SIGKILLed mid-run and restarted: each process owns
    its boot's spool entries, so every photo comes out exactly once and every stream ends
    with its own 10 acknowledged and exit 0."""
    port, out, state = free_port(), tmp_path / "received", tmp_path / "state"
    server = Serve.reference(reference_dir, out, port)
    inputs = [named_photos(tmp_path / f"in{i}", "abc"[i], 10, 10 * i) for i in range(3)]
    procs = [sensor(bundle, folder, "--to", f"tcp://127.0.0.1:{port}", "--wait", "200",
                    state=state) for folder in inputs]  # --wait: a restart on a busy machine
    server.wait_for(lambda: server.written() >= 6, 120)
    server.kill()
    time.sleep(1)
    server = Serve.reference(reference_dir, out, port)
    logs = [p.communicate(timeout=240)[0] for p in procs]
    server.stop()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0 and "delivery: 10 acknowledged, 10 new" in log, log
        assert "error" not in log, log
    assert_each_once_with_its_content(out, inputs, bundle)
    assert not list(state.glob("spool/*/*.msg")) and not list(state.glob("spool/*/.*"))


def test_a_spool_owns_its_boot_and_takes_over_a_gone_one(tmp_path):
    """Two spools on one folder: each holds only its own boot's entries while both live; a
    boot whose owner is gone (its lock free) is taken over by the next start, or by a
    running spool when it looks again (``adopt``)."""
    first = Spool(tmp_path, boot=1)
    first.add((1, 0), b"one")
    second = Spool(tmp_path, boot=2)
    second.add((2, 0), b"two")
    assert first.keys() == [(1, 0)] and second.keys() == [(2, 0)]
    assert Spool(tmp_path, boot=3).keys() == []  # both owners live
    first.held[1].close()  # its process gone: the OS frees its lock
    first.held.clear()
    third = Spool(tmp_path, boot=4)
    assert third.keys() == [(1, 0)]  # taken over at its start
    second.held[2].close()  # the second goes too: the running third takes its entry
    second.held.clear()
    assert third.adopt() == 1 and third.keys() == [(1, 0), (2, 0)]
    assert third.adopt() == 0
    third.remove((1, 0))
    third.close()
    assert not (tmp_path / ".boot-1.lock").exists() and (tmp_path / ".boot-2.lock").exists()


@pytest.mark.slow  # serve and a sensor in their own processes
def test_serve_and_a_watching_stream_stop_on_sigterm_with_sigint_ignored(bundle, reference_dir,
                                                                          tmp_path):
    """Started as a script's background job starts them (SIGINT ignored), serve and
    `stream --watch` stop on SIGTERM within a few seconds: the stream with its report and
    exit 0 (everything acknowledged), serve with its final report and exit 0."""
    port, out = free_port(), tmp_path / "received"
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    serve = subprocess.Popen(
        [sys.executable, "-m", "walloc_edge.cli", "serve", str(reference_dir / "rgb_j3_l12.pth"),
         "--listen", f"tcp://127.0.0.1:{port}", "--out", str(out), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=ignore_sigint)
    assert serve.stdout.readline().startswith("listening")
    watched = photos(tmp_path / "in", 3)
    stream = subprocess.Popen(
        [sys.executable, "-m", "walloc_edge.cli", "stream", str(bundle), "--watch", str(watched),
         "--to", f"tcp://127.0.0.1:{port}", "--backend", "numpy", "--state", str(tmp_path / "s")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=ignore_sigint)
    deadline = time.monotonic() + 120
    while len(outputs(out)) < 3:
        assert time.monotonic() < deadline and stream.poll() is None
        time.sleep(0.1)
    logs = []
    for proc in (stream, serve):
        proc.send_signal(signal.SIGINT)  # ignored, as a background job's is
        time.sleep(0.5)
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        logs.append(proc.communicate(timeout=20)[0])
        assert time.monotonic() - started < 10, logs[-1]
        assert proc.returncode == 0 and "Traceback" not in logs[-1], logs[-1]
    assert "stopped (SIGTERM): delivery: 3 acknowledged, 3 new" in logs[0], logs[0]
    assert re.search(r"decoded 3, rejected 0", logs[1]), logs[1]


def test_an_unanswered_message_waits_longer_each_time(tmp_path):
    """A server that holds a message without answering (a long queue) gets it again after
    ack_timeout, then after twice that, four times…: not once per ack_timeout."""
    identity = Identity.start(tmp_path / "state", "cam")
    link = FakeLink()
    courier = Courier(link, identity, Spool(tmp_path / "spool"), log=lambda s: None,
                      ack_timeout=0.1, tick=0.01)
    courier.start()
    courier.send(b"message")
    time.sleep(1.4)  # at a fixed timeout: ~14 copies; doubling: sent at 0, .1, .3, .7 (1.5)
    copies = len(link.written)
    key = (identity.boot, 0)
    link.on_ack(Ack(ACK_WRITTEN, identity.sensor, *key))
    report = courier.finish(wait=1)
    assert 2 <= copies <= 5, copies
    assert report.acknowledged == 1 and courier.timeouts == {}
