"""Receivers under attack: floods of complete or incomplete messages stay within the memory
account (and the process's RSS within it plus a stated margin), and idle or trickling
connections cannot keep a sensor out. Loopback only, each case bounded in time."""
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from helpers import free_port
from walloc_edge.firmware_bridge.framing import frames_for
from walloc_edge.firmware_bridge.transports import ReceiverLimits, open_receiver


def _send(port, data, source="127.0.0.1"):
    """Connect from ``source`` and send ``data`` (bytes, or chunks made as they go), in a
    thread: the receiver may make it wait. Joined when the receiver has read it all."""
    def run():
        with socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as s:
            for chunk in [data] if isinstance(data, bytes) else data:
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_complete_flood_waits_within_the_account():
    """Eight senders flood 8 MB of complete messages at a slow handler with a 1 MB cap:
    the readers wait (backpressure), nothing is lost, the account never goes over."""
    port, cap = free_port(), 1 << 20
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", limits=ReceiverLimits(pending_bytes=cap))
    senders = [_send(port, b"".join(f for i in range(10)
                                    for f in frames_for(bytes(100000), sensor, 1, i)))
               for sensor in range(8)]
    got = set()
    for item in receiver.messages(timeout=10):
        assert receiver.held_bytes <= cap
        got.add((item.sensor, item.sequence))
        time.sleep(0.01)
        if len(got) == 80:
            break
    receiver.stop()
    for sender in senders:
        sender.join(5)
    assert len(got) == 80 and receiver.stats.lost == 0
    assert receiver.complete_bytes == 0  # each handled message gave its bytes back
    assert cap // 2 < receiver.peak_bytes <= cap  # the flood filled the account, not more


def test_incomplete_flood_gives_up_the_oldest_within_the_account():
    """First fragments of 400 never-finished messages (24 MB) against a 2 MB cap: the oldest
    are given up and counted as lost; a good sensor's message still arrives."""
    port, cap = free_port(), 2 << 20
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", limits=ReceiverLimits(pending_bytes=cap))
    halves = [frames_for(bytes(120000), 1000 + s, 1, i)[0] for s in range(8) for i in range(50)]
    floods = [_send(port, b"".join(halves[k::8]), f"127.0.0.{2 + k}") for k in range(8)]
    for flood in floods:
        flood.join(10)
    good = _send(port, b"".join(frames_for(bytes(100000), 7, 1, 0)))
    got = next(receiver.messages(timeout=5))
    receiver.stop()
    good.join(5)
    assert (got.sensor, len(got.message)) == (7, 100000)
    assert receiver.peak_bytes <= cap and receiver.stats.lost >= 300


def test_idle_and_trickling_connections_do_not_keep_a_sensor_out():
    """256 idle sockets (32 from each of 8 addresses) take every slot and 8 more trickle a
    byte a second: a sensor still gets in at once (the idlest that never completed a message
    is closed for it), tricklers are closed at the frame deadline, and a 33rd connection
    from one address closes that address's idlest one."""
    port = free_port()
    logged = []
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", log=logged.append,
                             limits=ReceiverLimits(frame=1.0))
    idle = [socket.create_connection(("127.0.0.1", port), source_address=(f"127.0.0.{2 + k}", 0))
            for k in range(8) for _ in range(32)]
    tricklers = [socket.create_connection(("127.0.0.1", port),
                                          source_address=("127.0.0.20", 0)) for _ in range(8)]
    for s in tricklers:
        s.sendall(frames_for(b"slow", 9, 1, 0)[0][:1])
    start = time.monotonic()
    good = _send(port, b"".join(frames_for(b"good", 7, 1, 0)))
    got = next(receiver.messages(timeout=5))
    assert got.message == b"good" and time.monotonic() - start < 3
    good.join(5)
    for s in tricklers:  # a byte a second: below any frame's pace
        s.settimeout(4)
        data = b"x"
        for _ in range(4):
            try:
                s.sendall(b"\x00")
                data = s.recv(1)
            except OSError:
                data = b""
            if not data:
                break
            time.sleep(1)
        assert data == b"", "a trickling connection outlived the frame deadline"
    assert any("frame unfinished" in line for line in logged), logged
    closed = sum(_closed(s) for s in idle)
    assert closed >= 9  # the sensor's slot and the tricklers' took idle ones
    extra = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
    time.sleep(0.5)
    assert _closed(idle[0]) and not _closed(extra)  # the oldest of 127.0.0.2 made room
    receiver.stop()
    for s in idle + tricklers + [extra]:
        s.close()


def test_connections_that_send_a_first_fragment_do_not_keep_a_sensor_out():
    """256 connections (32 from each of 8 addresses) each send the first frame of a message
    they never finish: they hold no slot against a sensor, which gets in and is heard."""
    port = free_port()
    receiver = open_receiver(f"tcp://127.0.0.1:{port}")
    holders = []
    for k in range(256):
        s = socket.create_connection(("127.0.0.1", port),
                                     source_address=(f"127.0.0.{2 + k // 32}", 0))
        s.sendall(frames_for(bytes(3000), 100 + k, 1, 0, 1400)[0])
        holders.append(s)
    time.sleep(0.5)  # every holder's frame read
    good = _send(port, b"".join(frames_for(b"good", 7, 1, 0)))
    got = next(receiver.messages(timeout=5))
    assert got.message == b"good"
    good.join(5)
    receiver.stop()
    assert sum(map(_closed, holders)) >= 1  # one made room
    for s in holders:
        s.close()


def test_a_host_whose_connections_all_send_refuses_more():
    """Connections whose messages the server wrote keep their slots: a third from an
    address allowed two is refused (and logged), not let in by closing one that sends."""
    port = free_port()
    logged = []
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", log=logged.append,
                             limits=ReceiverLimits(per_host=2))
    senders = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    for i, s in enumerate(senders):
        s.sendall(frames_for(b"hi", 7, 1, i)[0])
    for received in [next(receiver.messages(timeout=5)) for _ in senders]:
        received.written()  # as serve says of a message it wrote
    third = socket.create_connection(("127.0.0.1", port))
    third.settimeout(5)
    assert third.recv(1) == b"" and not any(map(_closed, senders))
    assert any("2 connections from 127.0.0.1 already open" in line for line in logged)
    receiver.stop()
    for s in senders + [third]:
        s.close()


def test_connections_that_complete_messages_not_written_do_not_hold_slots():
    """With --keys, a recorded message replayed (the server holds it already, and says so)
    counted as delivered: replays on every slot kept the real sensor out. A connection holds
    its slot while the server holds its message (its answer is due) and once the server
    has written one new; done with the replays, one of those connections makes room."""
    port = free_port()
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", limits=ReceiverLimits(per_host=2))
    replays = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    for s in replays:
        s.sendall(frames_for(b"recorded", 7, 1, 0)[0])
    held = [next(receiver.messages(timeout=5, hold=True)) for _ in replays]
    time.sleep(0.3)
    waiting = _send(port, b"".join(frames_for(b"new", 8, 1, 0)))  # both held by the server:
    assert next(receiver.messages(timeout=2), None) is None  # no slot to be had
    waiting.join(5)
    for received in held:  # answered (held already), not written again: done with
        received.release()
    time.sleep(0.3)
    good = _send(port, b"".join(frames_for(b"new", 8, 1, 0)))
    got = next(receiver.messages(timeout=5))
    assert got.message == b"new"
    good.join(5)
    assert sum(map(_closed, replays)) == 1
    receiver.stop()
    for s in replays:
        s.close()


def _closed(sock):
    """Whether the other side closed ``sock`` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _peak_rss_growth(flood, cap_mb):
    """MB the peak RSS of a receiver process (a slow handler, --max-pending-mb ``cap_mb``) grows
    by while ``flood(port)`` runs; the process runs under an address-space limit so that a
    regression fails the test, not the machine."""
    port = free_port()
    code = textwrap.dedent(f"""
        import re, sys, threading, time
        from walloc_edge.firmware_bridge.transports import ReceiverLimits, open_receiver
        def rss():
            return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])
        receiver = open_receiver("tcp://127.0.0.1:{port}",
                                 limits=ReceiverLimits(pending_bytes={cap_mb} << 20))
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
        base = rss()
        print("ready", flush=True)
        while not done.is_set():
            for item in receiver.messages(timeout=0.2):
                time.sleep(0.005)
        print("growth", (rss() - base) // 1024, receiver.peak_bytes >> 20, flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(["prlimit", f"--as={4 << 30}", sys.executable, "-c", code],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        flood(port)
        out, _ = proc.communicate("stop\n", timeout=60)
    finally:
        proc.kill()
    growth, peak = map(int, out.split()[1:])
    assert peak <= cap_mb
    return growth


def _margin_mb(connections):
    """RSS beyond the account: the interpreter's and allocator's slack, and per connection
    its thread and its reader's buffers (a 64 KB read and up to a frame and a half)."""
    return 32 + 0.75 * connections


def test_flood_keeps_rss_within_the_cap_and_margin():
    """64 connections send 256 MB of complete 1 MB messages at a handler that takes 5 ms each;
    then, with the cap at 16 MB, 16 send the first 200-byte fragments of 131,072
    never-finished messages from 4096 sensors: the receiver's peak RSS grows by at most
    --max-pending-mb plus the stated margin."""
    message = bytes(1 << 20)

    def complete(port):
        senders = [_send(port, (b"".join(frames_for(message, s, 1, i)) for i in range(4)),
                         f"127.0.0.{2 + s % 16}") for s in range(64)]
        for sender in senders:
            sender.join(60)

    def incomplete(port):
        floods = [_send(port, (frames_for(bytes(400), s, 1, i, max_payload=200)[0]
                               for s in range(k, 4096, 16) for i in range(32)),
                        f"127.0.0.{2 + k}") for k in range(16)]
        for flood in floods:
            flood.join(60)

    for flood, cap, connections in ((complete, 32, 64), (incomplete, 16, 16)):
        growth = _peak_rss_growth(flood, cap)
        assert growth <= cap + _margin_mb(connections), flood.__name__


def test_messages_waiting_their_turn_stay_in_the_account():
    """Serve's turns keep messages waiting (``hold``): their bytes stay in the receiver's
    memory account until each is handled, and leave it then."""
    from walloc_edge.firmware_bridge.loops import serve_messages

    receiver = open_receiver(f"tcp://127.0.0.1:{free_port()}")
    host, port = receiver.address
    with socket.create_connection((host, port)) as conn:
        for sensor in (1, 2):
            for sequence in range(3):
                conn.sendall(b"".join(frames_for(bytes(10_000), sensor, 1, sequence)))
        deadline = time.monotonic() + 10
        while receiver.queue.qsize() < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        accounted = []

        def handle(received):
            accounted.append(receiver.complete_bytes)

        serve_messages(receiver, handle, count=6, log=lambda line: None)
    assert accounted[0] >= 6 * 10_000  # all six held while the first is handled
    assert accounted == sorted(accounted, reverse=True) and receiver.complete_bytes == 0


def test_metadata_nested_thousands_deep_is_dropped_not_raised():
    """JSON nested past Python's recursion limit in a message's metadata or a heartbeat is
    damaged metadata ({}), not an error that kills a receiving thread (paho's loop)."""
    from walloc_edge.firmware_bridge.framing import pack_meta, unpack_heartbeat, unpack_meta

    deep = b"[" * 3000 + b"]" * 3000
    packed = pack_meta(b"message", {})
    size = len(deep).to_bytes(2, "little")
    assert unpack_meta(size + deep + b"message") == ({}, b"message")
    assert unpack_heartbeat(deep[:500] + deep[-500:]) == {}
    assert unpack_meta(packed) == ({}, b"message")


def test_a_server_that_accepts_and_closes_is_not_hammered():
    """A link that connects and is found closed at once (a full server shedding the
    connection): the courier waits, doubling its delay, instead of reconnecting in a loop."""
    from walloc_edge.firmware_bridge.delivery import Courier, Identity, Spool
    from walloc_edge.firmware_bridge.transports import Link

    class Shedding(Link):
        acks, alive = True, False

        def __init__(self):
            super().__init__("shed:")
            self.attempts = 0

        def reconnect(self):
            self.attempts += 1

        def write(self, frames):
            raise OSError("closed")

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        link = Shedding()
        courier = Courier(link, Identity(1, 1), Spool(folder), log=lambda line: None,
                          backoff=0.05, max_backoff=0.8, tick=0.01)
        courier.send(b"message")
        time.sleep(2)
        courier.finish(wait=0)
    assert 3 <= link.attempts <= 10, link.attempts  # 0.05, 0.1, 0.2, 0.4, 0.8, 0.8 …


def test_a_connection_without_a_thread_to_be_had_leaves_the_door_open(monkeypatch):
    """Under a pids limit (systemd's TasksMax, a container's) a connection whose thread
    could not start killed the thread that accepts: the port still listened, no sensor was
    taken again, and /healthz said "ok". Now that connection is closed and the next taken;
    a receiving thread that does fail is said by health (not receiving)."""
    from walloc_edge.firmware_bridge.transports import tcp

    real, refused = threading.Thread.start, []

    def start(thread):
        if thread._target.__name__ == "_read" and not refused:
            refused.append(thread)
            raise RuntimeError("can't start new thread")
        return real(thread)

    monkeypatch.setattr(tcp.threading.Thread, "start", start)
    port, logged = free_port(), []
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", log=logged.append)
    with socket.create_connection(("127.0.0.1", port)) as first:
        first.settimeout(5)
        assert first.recv(1) == b""  # closed by the server, not left hanging
    time.sleep(1.2)  # its pause before taking more
    good = _send(port, b"".join(frames_for(b"good", 7, 1, 0)))
    assert next(receiver.messages(timeout=5)).message == b"good"
    good.join(5)
    assert any("cannot take tcp://127.0.0.1:" in line for line in logged), logged
    receiver.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_receiving_thread_that_fails_makes_health_say_so(tmp_path):
    from walloc_edge.firmware_bridge.transports.base import Receiver
    from walloc_edge.server.fleet import Fleet

    receiver = Receiver()

    def broken():
        raise RuntimeError("boom")

    receiver._start(broken)
    receiver.threads[0].join(5)
    fleet = Fleet(tmp_path)
    fleet.watch(receiver)
    healthy, why = fleet.health()
    assert not healthy and "receiving failed (RuntimeError: boom)" in why, why


def test_a_reader_gives_up_a_sender_of_garbage_but_not_one_of_frames():
    """Every sync word is a header to check in Python: a sender repeating it made a server
    core read 3.4 MB/s and starved the sensors. A reader that may give up stops past its
    limit of bytes that are no frame; frames reset the count, so a sensor never hits it."""
    from walloc_edge.firmware_bridge.framing import GARBAGE_LIMIT, SYNC, FrameReader

    reader = FrameReader(give_up_after=GARBAGE_LIMIT)
    frame = b"".join(frames_for(b"hi", 7, 1, 0))
    for _ in range(8):  # garbage beside frames, each time under the limit
        assert len(reader.feed(SYNC * (GARBAGE_LIMIT // 8) + frame)) == 1
    assert not reader.given_up
    assert reader.feed(SYNC * (GARBAGE_LIMIT // 8)) == [] and not reader.given_up
    assert reader.feed(SYNC * (GARBAGE_LIMIT // 4)) == [] and reader.given_up
    assert reader.feed(frame) == [] and not reader.buffer  # read no more
    assert FrameReader().feed(SYNC * GARBAGE_LIMIT * 2 + frame)  # a noisy link: never


def test_garbage_is_parsed_within_a_budget_whatever_the_connections():
    """A TCP client sending sync words and no frame is closed past the limit, and said; and
    all connections together parse no more than the receiver's budget: connections anew, or
    from other addresses, do not get round it. A sensor is heard meanwhile."""
    from walloc_edge.firmware_bridge.framing import GARBAGE_LIMIT, SYNC
    from walloc_edge.firmware_bridge.transports.limits import ByteBudget

    def spam(data):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(5)
            try:
                s.sendall(data)
                return s.recv(1) == b""
            except (ConnectionResetError, BrokenPipeError):  # closed, what it sent unread
                return True

    port, logged = free_port(), []
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", log=logged.append)
    assert spam(SYNC * (GARBAGE_LIMIT // 2))  # past the limit of one connection
    assert any("bytes that were no frame" in line for line in logged), logged
    receiver.garbage_budget = ByteBudget(rate=0, burst=4096)  # a budget all but spent
    skipped = receiver.stats.skipped_bytes
    for _ in range(4):  # each well under a connection's limit
        assert spam(SYNC * 4096)
    assert receiver.stats.skipped_bytes - skipped < 4 * 4096 * 4 // 2
    good = _send(port, b"".join(frames_for(b"good", 7, 1, 0)))  # the same address
    assert next(receiver.messages(timeout=5)).message == b"good"
    good.join(5)
    receiver.stop()


def test_headers_whose_payloads_fail_count_what_checking_them_cost():
    """A valid header claiming 65,000 bytes costs a CRC of all of them when its payload then
    fails, and skips one byte: headers back to back (30 bytes each) made every 30 bytes sent
    cost a CRC of 65 KB, some 2,000 of them before the garbage counted reached the limit.
    The cost counts now, so such a sender is given up at the second."""
    import zlib

    from walloc_edge.firmware_bridge.framing import (GARBAGE_LIMIT, HEADER, SYNC, VERSION,
                                                     FrameReader)

    def header(sequence):
        head = HEADER.pack(SYNC, VERSION, 0, 7, 1, sequence, 0, 1, 65000)
        return head + zlib.crc32(head).to_bytes(4, "little")

    reader = FrameReader(give_up_after=GARBAGE_LIMIT)
    assert reader.feed(b"".join(header(i) for i in range(4000))) == [] and reader.given_up
    assert reader.stats.corrupted <= 2, reader.stats.corrupted


def test_a_sensor_with_a_wrong_key_is_closed_but_its_address_not_refused():
    """With --keys, a sensor with a stale key sent frames of no known key, and its address
    was refused: every sensor behind the same NAT with it. Its connection is closed (said),
    but its address stays open to the others."""
    from walloc_edge.firmware_bridge.framing import Keys

    key = bytes(range(16))
    port, logged = free_port(), []
    receiver = open_receiver(f"tcp://127.0.0.1:{port}", keys=Keys({7: key}),
                             log=logged.append)
    with socket.create_connection(("127.0.0.1", port)) as stale:
        stale.settimeout(5)
        try:
            stale.sendall(b"".join(f for i in range(3) for f in frames_for(
                bytes(60000), 7, 1, i, key=b"stale key 16byte")))
        except OSError:
            pass
        try:
            assert stale.recv(1) == b""
        except ConnectionResetError:  # closed with what it sent unread
            pass
    assert any("a sensor with a wrong key" in line for line in logged), logged
    good = _send(port, b"".join(frames_for(b"good", 7, 1, 0, key=key)))  # the same address
    assert next(receiver.messages(timeout=5)).message == b"good"
    good.join(5)
    receiver.stop()
