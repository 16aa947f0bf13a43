"""Running a fleet: serve --http (the dashboard in a real headless browser, Prometheus
metrics that agree with metrics.jsonl, /healthz), heartbeats (frames old receivers drop,
spool depth shown, unauthenticated ones counted and dropped) and bad --http input. Loopback
only, bounded."""
import json
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import Serve, free_port, photos, sensor, wait_for
from walloc_edge import __version__
from walloc_edge.cli import main
from walloc_edge.firmware_bridge.delivery import Identity, Spool
from walloc_edge.firmware_bridge.delivery.identity import sensor_number
from walloc_edge.firmware_bridge.framing import (FLAG_HEARTBEAT, HEADER, FrameReader, Keys,
                                                 LinkStats, decode_frame, encode_heartbeat,
                                                 frames_for, unpack_heartbeat)
from walloc_edge.firmware_bridge.reassembly import Reassembler
from walloc_edge.firmware_bridge.transports import Received, open_receiver
from walloc_edge.firmware_bridge.transports.base import Heartbeat, Receiver
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.io import read_input
from walloc_edge.server.fleet import Fleet
from walloc_edge.server.http import Dashboard

KEY = bytes(range(16))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Server(Serve):
    """``walloc-edge serve --http`` on the reference model: its pages and metrics."""

    def __init__(self, reference_dir, out, port, http, *extra):
        super().__init__(reference_dir / "rgb_j3_l12.pth", "--listen",
                         f"tcp://127.0.0.1:{port}", "--out", out, "--device", "cpu",
                         "--http", http, *extra)
        self.url = f"http://127.0.0.1:{http}/"

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.read()

    def metrics(self):
        """{(sample name, sorted labels): value} of /metrics, through the Prometheus parser."""
        text = self.get("metrics").decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}


def dump_dom(url, profile):
    """The page's DOM after its script ran, as headless chromium sees it."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def received(sensor_id, size=10, sequence=0):
    return Received("tcp://test", sensor_id, 1, sequence, b"x" * size)


# Heartbeat frames --------------------------------------------------------------------------

def test_a_heartbeat_is_a_frame_of_no_fragments_that_old_receivers_drop():
    """A heartbeat reads back through both receivers and never enters a message; without its
    flag (what a receiver older than heartbeats sees: a count of 0) it is a damaged frame,
    counted and dropped, and the messages around it arrive whole."""
    assert encode_heartbeat(0x0123456789ABCDEF, 3, 7, {"spool": 3}).hex() == (  # docs/framing.md
        "a5574c46" "02" "04" "efcdab8967452301" "03000000" "07000000" "0000" "0000" "0b00"
        "fe93e71a" "7b2273706f6f6c223a337d" "bbadd4b9")
    status = {"spool": 3, "version": "0.1.0"}
    beat = encode_heartbeat(0x0123456789ABCDEF, 3, 7, status, KEY)
    frame = decode_frame(beat, Keys({0x0123456789ABCDEF: KEY}))
    assert (frame.flags & FLAG_HEARTBEAT, frame.count, frame.sequence) == (FLAG_HEARTBEAT, 0, 7)
    assert unpack_heartbeat(frame.payload) == status
    assert Reassembler().add(frame) is None
    message = b"".join(frames_for(b"hello", 0x0123456789ABCDEF, 3, 0))
    frames = FrameReader().feed(beat + message)
    assert [f.count for f in frames] == [0, 1]

    header = bytearray(beat[:HEADER.size])
    header[5] &= ~FLAG_HEARTBEAT  # as an old receiver reads it: a fragment count of 0
    old = bytes(header) + struct.pack("<I", zlib.crc32(header)) + beat[HEADER.size + 4:]
    stats = LinkStats()
    frames = FrameReader(stats).feed(old + message + old)
    assert [f.payload for f in frames] == [b"hello"] and stats.corrupted == 2
    with pytest.raises(ValueError):
        decode_frame(old)
    assert unpack_heartbeat(b"\x00not json") == {} and unpack_heartbeat(b"[1]") == {}


def test_the_receiver_passes_heartbeats_up_and_drops_unauthenticated_ones():
    port, sensor_id = free_port(), 0xA1
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", Keys({sensor_id: KEY}))
    beats = []
    receiver.on_heartbeat = beats.append
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(encode_heartbeat(sensor_id, 1, 0, {"spool": 2}, KEY) +
                         encode_heartbeat(sensor_id, 1, 1, {"spool": 9}) +        # no MAC
                         encode_heartbeat(sensor_id, 1, 2, {"spool": 9}, b"k" * 16))  # wrong
            deadline = time.monotonic() + 10
            while receiver.stats.unauthenticated < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        receiver.stop()
    assert [(b.sensor, b.number, b.status) for b in beats] == [(sensor_id, 0, {"spool": 2})]
    assert (receiver.stats.heartbeats, receiver.stats.unauthenticated) == (1, 2)
    assert receiver.queue.empty() and receiver.stats.messages == 0  # not a message


# The Fleet and its HTTP side, in this process ---------------------------------------------

def test_fleet_caps_the_sensors_it_tracks(tmp_path):
    fleet = Fleet(tmp_path, max_sensors=2)
    for sensor_id in (1, 2, 3, 4, 2):
        fleet.message("written", received(sensor_id), seconds=0.01, fields={"file": None})
    rows = {row["id"]: row for row in fleet.snapshot()["sensors"]}
    assert list(rows) == [f"{1:016x}", f"{2:016x}", "other"]
    assert rows["other"]["messages"]["written"] == 2 and rows[f"{2:016x}"]["bytes"] == 20


def test_a_heartbeat_shows_in_metrics_and_fleet_json(tmp_path):
    """A sensor's last heartbeat: its spool depth as a gauge, its version, backend and name
    as the info metric's labels, and unknown fields left out."""
    fleet = Fleet(tmp_path)
    status = {"spool": 3, "spool_bytes": 1200, "version": "1.0", "backend": "native",
              "name": "gate-cam", "secret": "not kept"}
    fleet.heartbeat(Heartbeat("tcp 127.0.0.1", 0xA1, 1, 0, status))
    with Dashboard(fleet, "127.0.0.1", 0) as dashboard:
        dashboard.start()
        with urllib.request.urlopen(dashboard.url + "metrics", timeout=10) as r:
            text = r.read().decode()
        with urllib.request.urlopen(dashboard.url + "fleet.json", timeout=10) as r:
            [row] = json.loads(r.read())["sensors"]
    metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    sensor = f"{0xA1:016x}"
    assert metrics[("walloc_edge_sensor_spool_messages", (("sensor", sensor),))] == 3
    assert metrics[("walloc_edge_sensor_info", (("backend", "native"), ("name", "gate-cam"),
                                                ("sensor", sensor), ("version", "1.0")))] == 1
    assert row["heartbeat"]["name"] == "gate-cam" and "secret" not in row["heartbeat"]


def test_healthz_says_503_when_the_output_cannot_be_written(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fleet = Fleet(out)
    with Dashboard(fleet, "127.0.0.1", 0) as dashboard:
        dashboard.start()

        def health():
            try:
                with urllib.request.urlopen(dashboard.url + "healthz", timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert health() == (200, "ok\n")
        out.rename(tmp_path / "gone")  # the volume went away: the write probe fails
        time.sleep(1.1)  # probed at most once a second
        status, why = health()
        assert status == 503 and "cannot write the output folder" in why
        (tmp_path / "gone").rename(out)
        time.sleep(1.1)
        assert health()[0] == 200
        fleet.message("not_written", received(5), error=OSError(28, "No space left on device"))
        assert health() == (503, "the last message could not be written (No space left on "
                                 "device)\n")
        fleet.message("written", received(5), seconds=0.1, fields={"file": None})
        assert health()[0] == 200
        link = Receiver()  # an MQTT server whose broker is gone
        fleet.watch(link)
        link.down = "the MQTT broker is unreachable (connection lost); reconnecting"
        assert health() == (503, link.down + "\n")
        link.down = None
        assert health()[0] == 200


def test_a_token_guards_everything_but_healthz(tmp_path):
    with Dashboard(Fleet(tmp_path), "127.0.0.1", 0, token="s3cret") as dashboard:
        dashboard.start()

        def status(path, headers=None):
            request = urllib.request.Request(dashboard.url + path, headers=headers or {})
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert [status(p) for p in ("", "metrics", "fleet.json", "frame/x.jpg")] == [401] * 4
        assert status("dashboard.js") == status("dashboard.css") == 200  # code, no data
        assert status("metrics", {"Authorization": "Bearer s3cret"}) == 200
        assert status("metrics", {"Authorization": "Bearer wrong"}) == 401
        assert status("?token=s3cret") == 200 and status("fleet.json?token=s3cret") == 200
        assert status("healthz") == 200
        assert status(f"frame/{1:016x}.jpg?token=s3cret") == 404  # no frame yet


def test_the_dashboard_behind_a_token_works_in_a_browser(tmp_path):
    """The address docs/fleet.md gives, http://server:9100/?token=TOKEN, showed a blank page:
    the browser asked for the page's script and style without the token, and got 401s. A
    sensor whose last heartbeat said it stopped is shown so, not as quiet (a crash)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make browser installs it)")
    fleet = Fleet(tmp_path)
    fleet.message("written", received(0xA1), seconds=0.01, fields={"file": None})
    fleet.heartbeat(Heartbeat("tcp 127.0.0.1", 0xB2, 1, 0, {"spool": 0, "state": "stopped",
                                                            "dropped": 3}))
    with Dashboard(fleet, "127.0.0.1", 0, token="s3cret") as dashboard:
        dashboard.start()
        dom = dump_dom(dashboard.url + "?token=s3cret", tmp_path / "chromium")
    assert f'data-sensor="{0xA1:016x}"' in dom and "<polyline" in dom, dom
    rows = {row.split('data-sensor="')[1][:16]: row.split(">")[0]
            for row in dom.split("<tr")[1:] if 'data-sensor="' in row}
    assert 'class="stopped dropping"' in rows[f"{0xB2:016x}"], rows  # its last word:
    # stopped, having given up messages
    assert "stopped" not in rows[f"{0xA1:016x}"], rows


# serve --http with sensors ------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(rgb_weights_bundle):
    return rgb_weights_bundle


def jsonl(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_dashboard_and_metrics_while_three_sensors_stream(bundle, reference_dir, tmp_path):
    """Three sensors (keys set) stream 4 photos each, and a fourth starts with 3 messages in
    its spool: /metrics parses and its counters equal metrics.jsonl; the fourth's heartbeat
    shows spool depth 3 in /metrics and /fleet.json; heartbeats without a valid MAC are
    counted and dropped; the dashboard, in headless chromium, shows every sensor and its
    latest frame, which loads as a JPEG."""
    port, http, out = free_port(), free_port(), tmp_path / "received"
    given = ["00000000000000a1", "00000000000000b2", "gate-cam", "00000000000000d4"]
    names = [f"{sensor_number(s):016x}" for s in given]  # the third: a name, hashed
    key_file = tmp_path / "sensor.key"
    key_file.write_text(KEY.hex())
    (tmp_path / "keys.json").write_text(json.dumps({n: KEY.hex() for n in names}))
    spooled = tmp_path / "state3"  # the fourth: 3 messages of an earlier start, spooled
    identity = Identity.start(spooled, names[3])
    spool = Spool(spooled / "spool" / identity.name)
    encoder = Encoder(bundle, "numpy")
    for i, path in enumerate(sorted(photos(tmp_path / "in3", 3, seed=3).iterdir())):
        sample, rate = read_input(path, encoder.bundle.modality, encoder.bundle.channels)
        blob = encoder.encode(sample, coder="rans", sample_rate=rate)
        spool.add((identity.boot, i), blob, {"source": path.name, "time": time.time(),
                                             "nonce": identity.nonce})

    server = Server(reference_dir, out, port, http, "--keys", tmp_path / "keys.json")
    procs = [sensor(bundle, photos(tmp_path / f"in{i}", 4, seed=i), "--to",
                    f"tcp://127.0.0.1:{port}", "--sensor-id", name, "--key", key_file,
                    state=tmp_path / f"state{i}") for i, name in enumerate(given[:3])]
    procs.append(sensor(bundle, "--to", f"tcp://127.0.0.1:{port}", "--sensor-id", names[3],
                        "--key", key_file, state=spooled))
    with socket.create_connection(("127.0.0.1", port)) as conn:  # not authenticated
        conn.sendall(encode_heartbeat(0xBAD, 1, 0, {"spool": 1}) +
                     encode_heartbeat(0xA1, 1, 0, {"spool": 99}, b"k" * 16))
    server.metrics()  # parses while they stream
    logs = [p.communicate(timeout=180)[0] for p in procs]
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log
    lines = jsonl(out)
    assert len(lines) == 15
    spool_of = ("walloc_edge_sensor_spool_messages", (("sensor", names[3]),))
    server.wait_for(lambda: server.metrics()[("walloc_edge_heartbeats_total", ())] >= 4 and
                    server.metrics().get(spool_of) == 0, 10)  # its last heartbeat is read

    metrics = server.metrics()
    assert metrics[("walloc_edge_messages_total", (("outcome", "written"),))] == len(lines)
    assert metrics[("walloc_edge_message_bytes_total", ())] == sum(r["bytes"] for r in lines)
    assert metrics[("walloc_edge_decode_seconds_count", ())] == len(lines)
    assert metrics[("walloc_edge_decode_seconds_sum", ())] == pytest.approx(
        sum(r["decode_s"] for r in lines))
    for name in names:
        mine = [r for r in lines if r["sensor"] == name]
        assert metrics[("walloc_edge_sensor_messages_total",
                        (("outcome", "written"), ("sensor", name)))] == len(mine)
        assert metrics[("walloc_edge_sensor_message_bytes_total", (("sensor", name),))] == \
            sum(r["bytes"] for r in mine)
    for outcome in ("rejected", "not_written", "duplicate", "collision"):
        assert metrics[("walloc_edge_messages_total", (("outcome", outcome),))] == 0
    assert metrics[("walloc_edge_unauthenticated_frames_total", ())] == 2
    # the fourth's heartbeats: 3 spooled as it started, none once all were acknowledged
    assert metrics[spool_of] == 0
    assert metrics[("walloc_edge_healthy", ())] == 1
    assert ("walloc_edge_connections", ()) in metrics

    fleet = json.loads(server.get("fleet.json"))
    rows = {row["id"]: row for row in fleet["sensors"]}
    assert set(rows) == set(names)  # 0xbad's heartbeat was dropped
    assert rows[names[3]]["heartbeat"]["spool"] == 0 and rows[names[3]]["heartbeat"]["number"] >= 1
    assert rows[names[0]]["heartbeat"]["spool"] != 99  # the forged one was dropped
    assert all(rows[n]["heartbeat"]["backend"] == "numpy" for n in names)
    assert rows[names[2]]["heartbeat"]["name"] == "gate-cam"  # shown beside its id
    assert "name" not in rows[names[0]]["heartbeat"]  # an id given as hex is no name
    info = (("backend", "numpy"), ("name", "gate-cam"), ("sensor", names[2]),
            ("version", __version__))
    assert metrics[("walloc_edge_sensor_info", info)] == 1
    assert server.get("healthz") == b"ok\n"
    for name in names:
        assert server.get(f"frame/{name}.jpg")[:2] == b"\xff\xd8"  # a JPEG

    if CHROMIUM is None:
        server.stop()
        pytest.skip("chromium is not installed (make browser installs it): the dashboard "
                    "was not loaded in a browser")
    dom = dump_dom(server.url, tmp_path / "chromium")
    server.stop()
    for name in names:
        assert f'data-sensor="{name}"' in dom, dom
        assert f'src="frame/{name}.jpg?n=' in dom, dom
    assert dom.count('data-loaded="true"') == len(names), dom
    assert 'data-name="gate-cam"' in dom, dom
    assert "healthy" in dom and "<polyline" in dom


# Bad --http input --------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "127.0.0.1:99999", "::1:9100", ":9100"])
def test_a_malformed_http_address_is_one_line(value, reference_dir, tmp_path, capsys):
    code = main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen",
                 f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path), "--http", value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--http {value}: not PORT" in err, err


def test_http_beyond_loopback_needs_a_token(reference_dir, tmp_path, capsys):
    code = main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen",
                 f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path), "--http",
                 "0.0.0.0:9100"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--http-token" in err, err


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_http_on_a_port_in_use_is_one_line(reference_dir, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "walloc_edge.cli", "serve",
             str(reference_dir / "rgb_j3_l12.pth"), "--listen",
             f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path), "--device", "cpu",
             "--http", str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr.count("\n") == 1 and "cannot listen" in done.stderr, done.stderr
    assert f"--http 127.0.0.1:{port}" in done.stderr


def test_the_dashboard_bounds_its_connections_and_their_time(tmp_path):
    """A client trickling a request a byte at a time, on a thousand connections, held a
    thread and a file each until the server had none left for its sensors; capped, the
    same client could keep every /healthz probe out. Now the slots are bounded, a request
    must arrive in request_deadline seconds, and a new connection takes the slot of the
    oldest one whose request is still arriving."""
    import socket
    import time

    def closed(s):
        try:
            return s.recv(1) == b""
        except ConnectionResetError:
            return True

    lines = []
    with Dashboard(Fleet(tmp_path), "127.0.0.1", 0, log=lines.append) as dashboard:
        server = dashboard.server
        server.max_connections, server.request_deadline = 4, 2.0
        dashboard.start()
        host, port = server.server_address[:2]
        trickling = []
        for _ in range(4):
            trickling.append(socket.create_connection((host, port)))
            trickling[-1].sendall(b"G")
            trickling[-1].settimeout(5)
            time.sleep(0.05)
        time.sleep(0.3)
        with urllib.request.urlopen(dashboard.url + "healthz", timeout=10) as r:
            assert r.status == 200  # answered: the oldest trickler made room
        assert closed(trickling[0])
        for s in trickling[1:]:
            s.sendall(b"E")  # still held, still arriving
        assert all(closed(s) for s in trickling[1:])  # ended past the request deadline
        wait_for(lambda: not server.active)
        assert not lines  # connections it closed itself are no failures to log
        for s in trickling:
            s.close()


def test_health_probes_again_after_the_clock_is_set_back(tmp_path, monkeypatch):
    """The write probe was kept by wall-clock time: set back an hour (NTP, a hand), the
    clock kept an old "ok" that long while the output folder was gone."""
    import shutil
    import time

    from walloc_edge.server import fleet as fleet_module

    out = tmp_path / "out"
    out.mkdir()
    fleet = Fleet(out)
    assert fleet.health() == (True, "ok")
    shutil.rmtree(out)
    wall = time.time() - 3600
    monkeypatch.setattr(fleet_module.time, "time", lambda: wall)
    time.sleep(1.1)
    healthy, why = fleet.health()
    assert not healthy and "cannot write the output folder" in why, why
