"""Framing survives corruption, truncation, duplication and reordering; transports carry
messages over loopback; stream → serve works end to end and serve survives bad input."""
import io
import json
import os
import re
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import free_port
from walloc_edge.cli import main
from walloc_edge.firmware_bridge.framing import (SYNC, Frame, FrameReader, FramingError,
                                                 LinkStats, decode_frame, encode_frame,
                                                 frames_for)
from walloc_edge.firmware_bridge.reassembly import Reassembler
from walloc_edge.firmware_bridge.transports import open_receiver, open_sender, parse_url

# encode_frame(Frame(sensor=0x0123456789abcdef, boot=3, sequence=258, index=1, count=3, b"wlc"))
GOLDEN = bytes.fromhex(
    "a5574c460200efcdab89674523010300000002010000010003000300291bd9fa776c638eb30cb3")
GOLDEN_KEY = bytes(range(16))  # the same frame authenticated with this key:
GOLDEN_MAC = bytes.fromhex(
    "a5574c460201efcdab89674523010300000002010000010003000300fdf1aa61776c638eb30cb3"
    "07dc356019c534dd4a233e77ec6d45a2")


def messages(n=12, seed=0, largest=30000):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, rng.integers(0, largest), dtype=np.uint8).tobytes()
            for _ in range(n)]


def collect(receiver, count, timeout=3):
    """sequence → message of the first ``count`` messages a receiver yields; stops it."""
    got = {}
    for item in receiver.messages(timeout=timeout):
        got[item.sequence] = item.message
        if len(got) == count:
            break
    receiver.stop()
    return got


def deliver(byte_chunks):
    stats = LinkStats()
    reader, joiner = FrameReader(stats), Reassembler(stats)
    out = {}
    for chunk in byte_chunks:
        for frame in reader.feed(chunk):
            done = joiner.add(frame)
            if done and not done.repeat:
                out[done.sequence] = done.data
    joiner.finish()
    return out, stats


def test_golden_frame():
    frame = Frame(sensor=0x0123456789abcdef, boot=3, sequence=258, index=1, count=3,
                  payload=b"wlc")
    assert encode_frame(frame) == GOLDEN
    assert decode_frame(GOLDEN) == frame
    assert GOLDEN.startswith(SYNC)
    assert encode_frame(frame, key=GOLDEN_KEY) == GOLDEN_MAC
    assert decode_frame(GOLDEN_MAC).payload == b"wlc"  # a receiver without keys ignores MACs


def test_clean_stream_in_odd_chunks():
    msgs = messages()
    data = b"".join(f for i, m in enumerate(msgs) for f in frames_for(m, 1, 0, i, 1000))
    out, stats = deliver(data[i:i + 333] for i in range(0, len(data), 333))
    assert out == dict(enumerate(msgs)) and stats.lost == 0 and stats.corrupted == 0


def test_a_capture_cut_short_is_counted(tmp_path):
    """A file of frames whose last frame was cut short (a capture copied while written):
    the whole messages are delivered and the cut frame counted as corrupted, its bytes as
    skipped, not dropped unseen."""
    msgs = messages(3)
    data = b"".join(f for i, m in enumerate(msgs) for f in frames_for(m, 5, 0, i, 60000))
    last = frames_for(msgs[-1], 5, 0, len(msgs) - 1, 60000)[-1]
    capture = tmp_path / "frames.bin"
    cut = len(last) // 2
    capture.write_bytes(data[:len(data) - cut])
    receiver = open_receiver(f"file://{capture}")
    got = {item.sequence: item.message for item in receiver.messages(timeout=10)}
    assert got == {0: msgs[0], 1: msgs[1]}
    assert receiver.stats.corrupted == 1
    assert receiver.stats.skipped_bytes == len(last) - cut
    # a frame cut short in the middle, the frames after it shorter than what it lacks:
    # read once the stream has ended
    msgs = [bytes(20000), bytes(range(256)) * 80, b"a" * 300, b"b" * 300]
    frames = [frames_for(m, 5, 0, i, 60000)[0] for i, m in enumerate(msgs)]
    capture.write_bytes(frames[0] + frames[1][:len(frames[1]) // 2] + frames[2] + frames[3])
    receiver = open_receiver(f"file://{capture}")
    got = {item.sequence: item.message for item in receiver.messages(timeout=10)}
    assert got == {0: msgs[0], 2: msgs[2], 3: msgs[3]} and receiver.stats.corrupted == 1


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10 ** 6), flips=st.integers(1, 20), cut=st.floats(0, 1),
       noise=st.binary(max_size=200))
def test_corruption_is_contained(seed, flips, cut, noise):
    """Corrupted bytes, a truncation and inserted noise lose only the messages they touch:
    everything delivered is exact, and delivered + lost accounts for every message."""
    msgs = messages(seed=seed)
    frames = [f for i, m in enumerate(msgs) for f in frames_for(m, 2, 0, i, 2000)]
    data = bytearray(b"".join(frames))
    rng = np.random.default_rng(seed)
    for _ in range(flips):
        data[rng.integers(len(data))] ^= 1 << rng.integers(8)
    at = int(cut * len(data))
    data = data[:at] + noise + data[at:]
    out, stats = deliver([bytes(data)])
    assert all(out[k] == msgs[k] for k in out)
    assert len(out) >= len(msgs) - flips - 1
    assert stats.messages == len(out)
    if 0 in out and len(msgs) - 1 in out:  # every message in between: delivered or lost
        assert stats.lost == len(msgs) - len(out)


def test_duplicates_and_reordering():
    msgs = messages(8)
    frames = [f for i, m in enumerate(msgs) for f in frames_for(m, 3, 0, i, 700)]
    rng = np.random.default_rng(1)
    shuffled = [frames[i] for i in rng.permutation(len(frames))] + frames[:5]  # 5 repeats
    stats = LinkStats()
    joiner = Reassembler(stats)
    out = {}
    for datagram in shuffled:
        done = joiner.add(decode_frame(datagram))
        if done and not done.repeat:
            out[done.sequence] = done.data
    assert out == dict(enumerate(msgs)) and stats.duplicates == 5 and stats.lost == 0


def test_one_key_over_two_connections_stays_two_messages():
    """Two devices under one key (a shared sensor id, a copied state folder) send different
    messages over two connections, their fragments interleaved: each comes out whole, the
    second as a repeat (for the server's collision check), never one made of both."""
    first, second = bytes(range(256)) * 7, bytes(range(255, -1, -1)) * 7
    a, b = (frames_for(m, 5, 1, 0, 700) for m in (first, second))
    assert len(a) == len(b) == 3
    joiner = Reassembler(LinkStats())
    order = [("b", b[0]), ("a", a[0]), ("a", a[1]), ("b", b[1]), ("b", b[2]), ("a", a[2])]
    done = [joiner.add(decode_frame(frame), source) for source, frame in order]
    done = [d for d in done if d is not None]
    assert [(d.data, d.repeat) for d in done] == [(second, False), (first, True)]
    assert joiner.count_lost() == 0 and joiner.pending_bytes == 0


def test_a_message_resent_over_a_new_connection_counts_once():
    """A link cut mid-message: the courier sends it whole again over a new connection. It
    is delivered once; what the old connection left is a repeat (never counted as lost, even
    once the sequence leaves the window of recent ones) and is given up when that
    connection closes."""
    joiner = Reassembler(LinkStats(), window=4)
    first = frames_for(bytes(range(256)) * 7, 5, 1, 0, 700)
    assert joiner.add(decode_frame(first[0]), "old") is None
    done = [joiner.add(decode_frame(f), "new") for f in first]
    assert done[-1] is not None and not done[-1].repeat
    for sequence in range(1, 10):  # sequence 0 leaves the window of 4
        assert joiner.add(decode_frame(frames_for(b"x", 5, 1, sequence)[0]), "new")
    assert joiner.count_lost() == 0 and joiner.lost_by_sensor() == {5: 0}
    assert joiner.pending_bytes > 0
    joiner.forget_source("old")
    assert joiner.pending_bytes == 0 and joiner.count_lost() == 0


def test_lost_frames_are_counted():
    msgs = messages(10)
    frames = [f for i, m in enumerate(msgs) for f in frames_for(m, 4, 0, i, 100000)]
    kept = [f for i, f in enumerate(frames) if i not in (3, 6)]  # one frame per message
    out, stats = deliver(kept)
    assert sorted(out) == [0, 1, 2, 4, 5, 7, 8, 9] and stats.lost == 2


def test_lengths_are_not_trusted():
    with pytest.raises(FramingError):
        decode_frame(GOLDEN[:-1])
    forged = bytearray(GOLDEN)
    forged[26:28] = b"\xff\xff"  # a huge length, without a matching header CRC
    out, stats = deliver([bytes(forged) + b"".join(frames_for(b"after", 0, 0, 0))])
    assert out == {0: b"after"}  # resynchronised at the next frame
    with pytest.raises(ValueError):
        encode_frame(Frame(0, 0, 0, 0, 1, bytes(70000)))


def test_urls():
    assert parse_url("tcp://127.0.0.1:9000")[:3] == ("tcp", "127.0.0.1", 9000)
    assert parse_url("udp://h:1?mtu=900")[4] == {"mtu": "900"}
    for bad in ("tcp://nohost", "mqtt2://x:1"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_a_transport_is_one_entry_in_schemes(monkeypatch, tmp_path):
    """parse_url, open_link, open_receiver and the URL help are read off SCHEMES: a new
    scheme (here one that only receives files of frames) needs nothing else."""
    from walloc_edge.firmware_bridge import transports
    from walloc_edge.firmware_bridge.transports import file
    from walloc_edge.firmware_bridge.transports.base import Address, Scheme

    for scheme in transports.SCHEMES.values():
        assert scheme.receive_help in transports.RECEIVER_URLS
        assert scheme.send_help in transports.SENDER_URLS
    capture = Scheme(names=("capture",), receiver=file.open_receiver, link=None,
                     parse=lambda url, parsed, options: Address("capture", None, None,
                                                                parsed.path, options),
                     send_help="", receive_help="capture:///PATH")
    monkeypatch.setitem(transports.SCHEMES, "capture", capture)
    path = tmp_path / "link.frames"
    with open_sender(str(path), sensor=9) as sender:
        sender.send(b"captured")
    assert parse_url(f"capture://{path}")[:4] == ("capture", None, None, str(path))
    assert collect(open_receiver(f"capture://{path}"), 1) == {0: b"captured"}
    with pytest.raises(ValueError, match="only receives"):
        open_sender(f"capture://{path}")


@pytest.mark.parametrize("scheme", ["tcp", "udp", "file"])
def test_transport_loopback(scheme, tmp_path):
    url = str(tmp_path / "link.frames") if scheme == "file" else \
        f"{scheme}://127.0.0.1:{free_port()}"
    msgs = messages(15, largest=20000)
    receiver = open_receiver(url) if scheme != "file" else None
    with open_sender(url + ("?mtu=1200" if scheme == "udp" else ""), sensor=9) as sender:
        for m in msgs:
            sender.send(m)
            if scheme == "udp":
                time.sleep(0.002)  # loopback UDP drops bursts beyond the socket buffer
    receiver = receiver or open_receiver(url)
    assert collect(receiver, len(msgs)) == dict(enumerate(msgs))


def start_sensors(url, payloads):
    """One thread per sensor s sending payloads[s] to ``url`` as sensor s; the threads."""
    def sensor(s):
        with open_sender(url, sensor=s) as sender:
            for m in payloads[s]:
                sender.send(m)

    threads = [threading.Thread(target=sensor, args=(s,)) for s in payloads]
    for t in threads:
        t.start()
    return threads


def test_load_tcp_many_sensors():
    """Several concurrent sensors × tens of messages over loopback TCP: all arrive."""
    url = f"tcp://127.0.0.1:{free_port()}"
    receiver = open_receiver(url)
    sensors, each = 6, 30
    payloads = {s: messages(each, seed=s, largest=8000) for s in range(sensors)}
    start = time.perf_counter()
    threads = start_sensors(url, payloads)
    got = {}
    for item in receiver.messages(timeout=5):
        got[(item.sensor, item.sequence)] = item.message
        if len(got) == sensors * each:
            break
    seconds = time.perf_counter() - start
    receiver.stop()
    for t in threads:
        t.join()
    assert got == {(s, i): m for s in payloads for i, m in enumerate(payloads[s])}
    assert receiver.stats.lost == 0
    print(f"{sensors * each} messages from {sensors} sensors in {seconds:.2f} s")


def test_stream_to_serve(tmp_path, rgb_weights_bundle, reference_dir, capsys):
    """A sensor streams two photos and a bad message; serve decodes the photos, logs the
    bad one with its sender, and goes on."""
    from PIL import Image

    from walloc_edge.data import sample_photo

    bundle = rgb_weights_bundle
    for name in ("coffee", "astronaut"):
        Image.fromarray(sample_photo(name)[:64, :96]).save(tmp_path / f"{name}.png")
    link = tmp_path / "link.frames"
    with open_sender(str(link), sensor=3) as sender:
        sender.send(b"not a bitstream")
    assert main(["stream", str(bundle), str(tmp_path / "coffee.png"),
                 str(tmp_path / "astronaut.png"), "--to", f"file://{link}",
                 "--backend", "numpy", "--sensor-id", "0000000000000004",
                 "--state", str(tmp_path / "state")]) == 0
    out = tmp_path / "received"
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(link),
                 "--out", str(out), "--device", "cpu"]) == 1  # a file's refused: gone
    text = capsys.readouterr().out
    assert "rejected message 0000000000000003-0-0" in text and "decoded 2, rejected 1" in text
    names = sorted(p.name for p in out.glob("*.png"))  # sensor, boot, message, time, source
    assert [re.sub(r"-\d{8}T\d{6}Z-", "-T-", n) for n in names] == [
        "0000000000000004-1-000000-T-coffee.png", "0000000000000004-1-000001-T-astronaut.png"]
    assert np.asarray(Image.open(out / names[0])).shape == (64, 96, 3)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["source"] for line in lines] == ["coffee.png", "astronaut.png"]


def test_outputs_are_named_by_the_sensor_name_and_the_folders_of_its_files(rgb_weights_bundle,
                                                                          reference_dir, tmp_path):
    """A --sensor-id given as a name, and a file's folders below the folder streamed, are
    in the server's output names (beside the id, which alone keeps sensors apart)."""
    from PIL import Image
    from walloc_edge.data import sample_photo
    from walloc_edge.firmware_bridge.delivery.identity import sensor_number

    inputs = tmp_path / "in"
    for folder in ("garden", "gate"):
        (inputs / folder).mkdir(parents=True)
        Image.fromarray(sample_photo("coffee")[:32, :48]).save(inputs / folder / "shot.png")
    link = tmp_path / "link.frames"
    assert main(["stream", str(rgb_weights_bundle), str(inputs), "--to", f"file://{link}",
                 "--backend", "numpy", "--sensor-id", "cam 1",
                 "--state", str(tmp_path / "state")]) == 0
    out = tmp_path / "received"
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(link),
                 "--out", str(out), "--device", "cpu"]) == 0
    sensor = f"{sensor_number('cam 1'):016x}"
    names = sorted(re.sub(r"-\d{8}T\d{6}Z-", "-T-", p.name) for p in out.glob("*.png"))
    assert names == [f"cam_1-{sensor}-1-000000-T-garden_shot.png",
                     f"cam_1-{sensor}-1-000001-T-gate_shot.png"], names


def test_one_key_twice_in_a_capture(tmp_path, rgb_weights_bundle, reference_dir, capsys):
    """A capture holding one message twice (a resend) writes it once; one holding two
    different messages under one key (two captures numbered alike, appended) says COLLISION
    and counts it, instead of dropping the second as a duplicate, with one worker or two
    (the second copy waits for the first: nothing would send it again)."""
    from walloc_edge.data import sample_photo
    from walloc_edge.runtime import Encoder

    encoder = Encoder(rgb_weights_bundle, "numpy")
    one, other = (encoder.encode(sample_photo(name)[:64, :96]) for name in ("coffee", "astronaut"))
    model = str(reference_dir / "rgb_j3_l12.pth")
    for case, second, written, collisions, workers in (
            ("resend", one, 1, 0, "1"), ("clash", other, 1, 1, "1"), ("clash2", other, 1, 1, "2")):
        capture = tmp_path / f"{case}.frames"
        capture.write_bytes(b"".join(frames_for(one, 9, 0, 0) + frames_for(second, 9, 0, 0)))
        assert main(["serve", model, "--listen", str(capture), "--out", str(tmp_path / case),
                     "--device", "cpu", "--workers", workers]) == (1 if collisions else 0)
        text = capsys.readouterr().out
        assert len(list((tmp_path / case).glob("*.png"))) == written
        assert f"collisions {collisions}" in text and ("COLLISION" in text) == bool(collisions)


def test_serial_over_a_pseudo_terminal():
    """Both directions over a pty pair: our serial receiver on the terminal side fed from
    the controller side, and our serial sender read back on the controller side."""
    import os
    import pty
    import tty

    controller, terminal = pty.openpty()
    tty.setraw(controller)
    tty.setraw(terminal)
    device = os.ttyname(terminal)
    msgs = messages(6, largest=20000)
    receiver = open_receiver(f"serial://{device}?baud=115200")
    for i, m in enumerate(msgs):
        for frame in frames_for(m, 1, 0, i):
            os.write(controller, frame)
    assert collect(receiver, len(msgs)) == dict(enumerate(msgs))

    expected = b"".join(frames_for(msgs[0], 5, 0, 0))
    received = bytearray()

    def drain():  # the controller side reads while the sender writes (a pty buffers ~4 KB)
        while len(received) < len(expected):
            received.extend(os.read(controller, 1 << 16))

    reading = threading.Thread(target=drain, daemon=True)
    reading.start()
    with open_sender(f"serial://{device}?baud=115200", sensor=5) as sender:
        sender.send(msgs[0])
    reading.join(timeout=10)
    frames = FrameReader().feed(bytes(received))
    assert b"".join(f.payload for f in frames) == msgs[0]
    os.close(controller)


def test_mqtt_shared_subscription_splits_the_load(broker):
    """Sensors publish to one topic; two servers share it ($share/group/topic): every
    message arrives exactly once, and both servers get some."""
    sensors, each = 4, 15
    payloads = {s: messages(each, seed=10 + s, largest=90000) for s in range(sensors)}
    servers = [open_receiver(f"mqtt://127.0.0.1:{broker}/$share/decoders/site/cams"
                             f"?client=server{i}") for i in range(2)]
    time.sleep(0.3)  # subscriptions in place
    start = time.perf_counter()
    threads = start_sensors(f"mqtt://127.0.0.1:{broker}/site/cams", payloads)
    got, per_server = {}, [0, 0]
    deadline = time.monotonic() + 20
    while len(got) < sensors * each and time.monotonic() < deadline:
        for i, server in enumerate(servers):
            for item in server.messages(timeout=0.05):
                assert (item.sensor, item.sequence) not in got
                got[(item.sensor, item.sequence)] = item.message
                per_server[i] += 1
    seconds = time.perf_counter() - start
    for t in threads:
        t.join()
    for server in servers:
        server.stop()
    assert got == {(s, i): m for s in payloads for i, m in enumerate(payloads[s])}
    assert min(per_server) > 0
    print(f"{len(got)} messages over MQTT in {seconds:.2f} s, split {per_server}")


def test_an_mqtt_publish_of_garbage_is_dropped_and_said(broker):
    """A publish of sync words, no frame, was parsed to its end a header at a time (a 25 MB
    one held paho's thread for seconds); it is given up past the limit, said, and the
    message after it is heard."""
    import paho.mqtt.client as paho

    from walloc_edge.firmware_bridge.framing import GARBAGE_LIMIT, SYNC
    from walloc_edge.firmware_bridge.transports import open_sender

    lines = []
    server = open_receiver(f"mqtt://127.0.0.1:{broker}/site/garbage", log=lines.append)
    time.sleep(0.3)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker)
    client.loop_start()
    client.publish("site/garbage", SYNC * 250_000, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    with open_sender(f"mqtt://127.0.0.1:{broker}/site/garbage", sensor=5) as sender:
        sender.send(b"after the garbage")
    got = next(server.messages(timeout=10))
    server.stop()
    assert got.message == b"after the garbage"
    assert server.stats.skipped_bytes <= GARBAGE_LIMIT + 1  # of its 1,000,000 bytes
    assert any("bytes that were no frame" in line for line in lines), lines


class Sink:
    """A sender that keeps what it is given, (message, meta) pairs, and says each spooled."""
    spools = False

    def __init__(self):
        self.sent = []

    def send(self, message, meta, spooled=lambda key: None):
        self.sent.append((message, meta))
        spooled(None)

    def sources(self):
        return [meta["source"] for _, meta in self.sent]


def test_watch_sends_new_files_once_complete(tmp_path, rgb_weights_bundle):
    """--watch: files already there and files that appear later are each sent once."""
    from PIL import Image

    from walloc_edge.data import sample_photo
    from walloc_edge.firmware_bridge.loops import watch_folder
    from walloc_edge.runtime import Encoder, read_bitstream

    bundle = rgb_weights_bundle
    folder = tmp_path / "camera"
    folder.mkdir()
    Image.fromarray(sample_photo("coffee")[:32, :40]).save(folder / "first.png")
    sink = Sink()
    polls = []

    def stop():  # a new photo appears after two polls; stop after eight
        polls.append(1)
        if len(polls) == 2:
            Image.fromarray(sample_photo("astronaut")[:48, :48]).save(folder / "second.png")
            (folder / "notes.txt").write_text("not a photo")
        return len(polls) > 8

    lines = []
    totals = watch_folder(Encoder(bundle, "numpy"), sink, folder, poll=0.01,
                          log=lines.append, stop=stop)
    assert totals == (2, 0)
    assert [read_bitstream(m).header.shape for m, _ in sink.sent] == [(32, 40, 3),
                                                                        (48, 48, 3)]
    assert [line for line in lines if "notes.txt" in line] == [  # said, once
        f"not sent: {folder / 'notes.txt'} (not images this model takes)"]


def test_watch_waits_for_bursts_and_resends_files_overwritten(tmp_path, rgb_weights_bundle):
    """A file written in two bursts is sent once, whole; the same name written again later
    is sent again; hidden temporary files are left alone."""
    from PIL import Image

    from walloc_edge.data import sample_photo
    from walloc_edge.firmware_bridge.loops import watch_folder
    from walloc_edge.runtime import Encoder, read_bitstream

    bundle = rgb_weights_bundle
    folder = tmp_path / "camera"
    folder.mkdir()
    png = io.BytesIO()
    Image.fromarray(sample_photo("coffee")[:32, :40]).save(png, format="PNG")
    data = png.getvalue()
    sink = Sink()
    polls = []

    def stop():
        polls.append(1)
        n = len(polls)
        if n == 1:
            (folder / "shot.png").write_bytes(data[:len(data) // 2])  # first burst
            (folder / ".shot2.png.tmp").write_bytes(b"partial")
        elif n == 2:
            with open(folder / "shot.png", "ab") as f:  # second burst, one poll later
                f.write(data[len(data) // 2:])
        elif n == 8:  # overwritten in place with another picture
            Image.fromarray(sample_photo("astronaut")[:48, :48]).save(folder / "shot.png")
            os.utime(folder / "shot.png", ns=(time.time_ns(), time.time_ns() + 10 ** 9))
        return n > 14

    totals = watch_folder(Encoder(bundle, "numpy"), sink, folder, poll=0.01,
                          log=lambda s: None, stop=stop)
    assert totals == (2, 0)
    assert [(meta["source"], read_bitstream(m).header.shape) for m, meta in sink.sent] \
        == [("shot.png", (32, 40, 3)), ("shot.png", (48, 48, 3))]


def test_watch_says_a_file_cut_short_is_tried_again(tmp_path, rgb_weights_bundle):
    """A writer that pauses longer than the settling polls: the half-written file cannot be
    read and is said to be tried again when it changes, and the whole file is then sent."""
    from PIL import Image

    from walloc_edge.data import sample_photo
    from walloc_edge.firmware_bridge.loops import watch_folder
    from walloc_edge.runtime import Encoder

    folder = tmp_path / "camera"
    folder.mkdir()
    png = io.BytesIO()
    Image.fromarray(sample_photo("coffee")[:32, :40]).save(png, format="PNG")
    data, sink, lines, polls = png.getvalue(), Sink(), [], []

    def stop():
        polls.append(1)
        if len(polls) == 1:
            (folder / "shot.png").write_bytes(data[:len(data) // 2])
        elif len(polls) == 8:  # long after the settling polls
            (folder / "shot.png").write_bytes(data)
        return len(polls) > 14

    totals = watch_folder(Encoder(rgb_weights_bundle, "numpy"), sink, folder, poll=0.01,
                          log=lines.append, stop=stop)
    assert sink.sources() == ["shot.png"] and totals == (1, 0)  # its last try sent it
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 1 and skipped[0].endswith("; tried again when the file changes")


def test_watch_outlives_fifos_symlink_loops_and_its_folder_moving(tmp_path,
                                                                   rgb_weights_bundle):
    """A FIFO named like a photo blocked the watcher for good (its reader waits for a
    writer); a symlink loop, or the folder moved away, ended the stream. Each is now said
    once and the photos around them are sent, the folder's when it is back."""
    from PIL import Image

    from walloc_edge.data import sample_photo
    from walloc_edge.firmware_bridge.loops import watch_folder
    from walloc_edge.runtime import Encoder

    folder = tmp_path / "camera"
    folder.mkdir()
    os.mkfifo(folder / "a_fifo.png")
    os.symlink("loop.png", folder / "loop.png")
    Image.fromarray(sample_photo("coffee")[:32, :40]).save(folder / "b.png")
    sink, lines, polls = Sink(), [], []

    def stop():
        polls.append(1)
        if len(polls) == 5:
            folder.rename(tmp_path / "away")
        elif len(polls) == 9:
            (tmp_path / "away").rename(folder)
            Image.fromarray(sample_photo("astronaut")[:32, :40]).save(folder / "c.png")
        return len(polls) > 16

    totals = watch_folder(Encoder(rgb_weights_bundle, "numpy"), sink, folder, poll=0.01,
                          log=lines.append, stop=stop)
    assert sink.sources() == ["b.png", "c.png"] and totals == (2, 0), lines
    said = "\n".join(lines)
    assert said.count("a_fifo.png: not a regular file") == 1, said
    assert said.count("loop.png: Too many levels of symbolic links") == 1, said
    assert said.count("watching for it to come back") == 1 and f"{folder} is back" in said


def test_one_stream_a_watched_folder_and_sensor(rgb_weights_bundle, tmp_path, capsys):
    """Two streams of one sensor watching one folder each sent every file (each read the
    record before the other wrote it): the second is refused, naming the first."""
    from walloc_edge.firmware_bridge.delivery import SentRecord
    from walloc_edge.firmware_bridge.delivery.identity import sensor_number
    from walloc_edge.firmware_bridge.delivery.sent import claim_watch

    (tmp_path / "camera").mkdir()
    record = SentRecord.path_in(tmp_path / "state", f"{sensor_number('cam'):016x}",
                                tmp_path / "camera")
    first = claim_watch(record)
    try:
        code = main(["stream", str(rgb_weights_bundle), "--watch", str(tmp_path / "camera"),
                     "--to", f"file://{tmp_path / 'link'}", "--sensor-id", "cam",
                     "--state", str(tmp_path / "state")])
        err = capsys.readouterr().err
        assert code == 2 and f"already watches that folder (pid {os.getpid()})" in err, err
    finally:
        first.close()
    claim_watch(record).close()  # free once the first is gone


def test_the_sent_record_survives_crashes_formats_and_a_second_writer(tmp_path):
    """The journal of what a sensor sent: a last line cut short by a crash (or without its
    newline) costs that file only, never the record; the earlier one-object format is read;
    two streams on one state folder keep each other's lines through a rewrite; entries of
    files gone are dropped where names are paths."""
    import json

    from walloc_edge.firmware_bridge.delivery import SentRecord

    path = tmp_path / "sent.jsonl"
    first = SentRecord(path)
    first.keep("/a", (1, 2), "x")
    with open(path, "a") as f:
        f.write('{"name": "/b", "si')  # a crash mid-line
    again = SentRecord(path)
    assert set(again.files) == {"/a"}
    again.keep("/c", (3, 4), "y")
    with open(path, "a") as f:
        f.write(json.dumps({"name": "/d", "size": 5, "mtime_ns": 6, "sha256": "z"}))  # no \n
    third = SentRecord(path)
    third.keep("/e", (7, 8), "w")
    assert set(SentRecord(path).files) == {"/a", "/c", "/d", "/e"}

    other = SentRecord(path)  # a second stream, loaded before the first rewrites
    for i in range(200):  # enough lines for a rewrite
        third.keep("/e", (7, i), "w")
    other.keep("/f", (9, 9), "v")
    for i in range(200):
        third.keep("/e", (8, i), "w")
    assert set(SentRecord(path).files) == {"/a", "/c", "/d", "/e", "/f"}
    assert SentRecord(path).holds("/e", (8, 199), "w") and not SentRecord(path).holds(
        "/e", (8, 199), "other content")

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"files": {"a.png": {"size": 1, "mtime_ns": 2,
                                                   "sha256": "x"}}}, indent=0))
    assert SentRecord(old).version("a.png") == (1, 2)
    assert json.loads(old.read_text().splitlines()[0])["name"] == "a.png"  # a journal now

    kept = tmp_path / "there.png"
    kept.write_bytes(b"")
    inputs = tmp_path / "inputs.jsonl"
    record = SentRecord(inputs)
    record.keep(str(kept), (0, 0), "x")
    record.keep(str(tmp_path / "gone.png"), (0, 0), "y")
    assert set(SentRecord(inputs, prune_missing=True).files) == {str(kept)}
