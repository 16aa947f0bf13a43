"""The sensor under failures of its own side: a damaged spool file, a message larger than
the spool, a full disk (the spool's and the state folder's), a server that answers every
message with a collision. Each once stopped delivery or the sensor itself."""
import errno
import os
import threading

import numpy as np
import pytest
from PIL import Image

from helpers import FakeLink, wait_for
from walloc_edge.firmware_bridge.delivery import Courier, Identity, Spool
from walloc_edge.firmware_bridge.delivery import identity as identity_module
from walloc_edge.firmware_bridge.delivery import spool as spool_module
from walloc_edge.firmware_bridge.delivery.spool import NotSpooled, SpoolFull
from walloc_edge.firmware_bridge.framing import ACK_COLLISION, ACK_WRITTEN, Ack, decode_frame
from walloc_edge.firmware_bridge.loops import stream_files


def keys_written(link):
    """(boot, sequence) of each message the link was given, in order."""
    return [(f.boot, f.sequence) for frames in link.written
            for f in [decode_frame(frames[0])]]


def test_a_damaged_spool_file_is_set_aside_and_the_rest_delivered(tmp_path):
    """A spool file whose header is no JSON (a card's corruption) was read first at every
    step and stopped every send after it, new captures included."""
    identity = Identity.start(tmp_path / "state", "cam")
    spool = Spool(tmp_path / "spool")
    for sequence in range(3):
        spool.add((identity.boot, sequence), b"message %d" % sequence, {"nonce": "n"})
    (tmp_path / "spool" / f"{identity.boot}-0.msg").write_bytes(b"\xff\xfe garbage")
    link, lines = FakeLink(), []
    courier = Courier(link, identity, spool, log=lines.append)
    courier.start()
    wait_for(lambda: len(link.written) == 2, explain=lambda: lines)
    assert keys_written(link) == [(identity.boot, 1), (identity.boot, 2)]
    damaged = tmp_path / "spool" / "damaged" / f"{identity.boot}-0.msg"
    assert damaged.read_bytes() == b"\xff\xfe garbage"
    assert any("is damaged" in line and "set aside" in line for line in lines), lines
    for sequence in (1, 2):
        link.on_ack(Ack(ACK_WRITTEN, identity.sensor, identity.boot, sequence))
    report = courier.finish(wait=2)  # a message not delivered: no complete run
    assert report.acknowledged == 2 and report.damaged == 1 and not report.complete
    assert "1 damaged in the spool" in report.line()


def photo(size, seed):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_a_message_larger_than_the_spool_skips_that_input_only(rgb_weights_bundle, tmp_path):
    """Such a message ended the whole run (and, under --watch, every run after it)."""
    from walloc_edge.runtime import Encoder

    for name, size in (("a", 32), ("b", 256), ("c", 32)):
        Image.fromarray(photo(size, len(name) + size)).save(tmp_path / f"{name}.png")
    identity = Identity.start(tmp_path / "state", "cam")
    link, lines = FakeLink(), []
    courier = Courier(link, identity, Spool(tmp_path / "spool", max_bytes=8000),
                      log=lambda line: None)
    paths = [tmp_path / f"{name}.png" for name in "abc"]
    sent, failed = stream_files(Encoder(rgb_weights_bundle, "numpy"), courier, paths,
                                log=lines.append)
    assert (sent, failed) == (2, 1), lines
    assert any("b.png" in line and "larger than the whole spool" in line
               and "--spool-mb" in line for line in lines), lines
    courier.finish(wait=0)


def full_after(n):
    """A write_atomic for the spool whose disk holds ``n`` messages, then is full."""
    real = spool_module.write_atomic

    def write(path, data):
        if len(list(path.parent.glob("*.msg"))) >= n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)
    return write


def test_a_full_disk_under_the_spool_follows_its_policy(tmp_path, monkeypatch):
    """The disk filling before the spool's own limit ended the sensor with ENOSPC; now it
    is the spool being full: the oldest given up (drop-oldest) or SpoolFull (block)."""
    monkeypatch.setattr(spool_module, "write_atomic", full_after(2))
    spool = Spool(tmp_path / "drop")
    assert spool.add((1, 0), b"a") == [] and spool.add((1, 1), b"b") == []
    assert spool.add((1, 2), b"c") == [(1, 0)]
    assert spool.keys() == [(1, 1), (1, 2)] and spool.get((1, 2))[0] == b"c"
    blocking = Spool(tmp_path / "block", policy="block")
    blocking.add((1, 0), b"a")
    blocking.add((1, 1), b"b")
    with pytest.raises(SpoolFull, match="the disk is full"):
        blocking.add((1, 2), b"c")
    assert blocking.keys() == [(1, 0), (1, 1)]


def test_a_disk_full_of_something_else_skips_the_input_and_keeps_the_spool(tmp_path,
                                                                           monkeypatch):
    """A disk filled by something else, so full that giving up the spool's messages cannot
    make room for the new one. It emptied the whole spool without a word (not counted, not
    said), reported the run complete, then waited forever for acknowledgements. Now nothing
    is given up, that one input is not sent, and its sequence number is used by the next
    message (a gap would count as a message lost on the server)."""
    from collections import namedtuple

    identity = Identity.start(tmp_path / "state", "cam")
    spool = Spool(tmp_path / "spool")
    lines = []
    courier = Courier(FakeLink(), identity, spool, log=lines.append)
    kept = [courier.send(b"a" * 100), courier.send(b"b" * 100)]
    real = spool_module.write_atomic

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spool_module, "write_atomic", full)
    monkeypatch.setattr(spool_module.shutil, "disk_usage",
                        lambda path: namedtuple("Usage", "total used free")(10**9, 10**9, 0))
    with pytest.raises(NotSpooled, match="would not make room"):
        courier.send(b"c" * 1000)  # more than giving up both would free
    assert spool.keys() == kept and courier.report.dropped == 0
    monkeypatch.setattr(spool_module, "write_atomic", real)
    assert courier.send(b"d") == (kept[1][0], kept[1][1] + 1)
    courier.finish(wait=0)


def test_a_full_disk_still_lets_a_sensor_start(tmp_path, monkeypatch):
    """A sensor must count up its boot to start, and the disk its spool filled had no room
    for that: it could never start again to deliver what fills it. The state folder keeps
    a reserve for it; with none left it says what to do in one line."""
    state = tmp_path / "state"
    first = Identity.start(state, "cam")
    assert (state / ".reserve").stat().st_size == identity_module.RESERVE_BYTES
    real = identity_module.write_atomic

    def full_while_reserved(path, data):  # the reserve's room is all there is
        if (state / ".reserve").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(identity_module, "write_atomic", full_while_reserved)
    second = Identity.start(state, "cam")  # saved once the reserve was given up
    assert second.boot == first.boot + 1

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(identity_module, "write_atomic", full)
    with pytest.raises(ValueError, match="the disk is full .*Free some room"):
        Identity.start(state, "cam")


class CollidingLink(FakeLink):
    """A server that answers every message with a collision (from its own thread, a moment
    later, as a server's answers come; none once closed)."""

    def __init__(self):
        super().__init__()
        self.answers = []

    def write(self, frames):
        super().write(frames)
        frame = decode_frame(frames[0])
        answer = threading.Timer(0.01, self.on_ack, [Ack(ACK_COLLISION, frame.sensor,
                                                         frame.boot, frame.sequence)])
        self.answers.append(answer)
        answer.start()

    def close(self):
        for answer in self.answers:
            answer.cancel()
            answer.join()


def test_collisions_again_and_again_back_off_and_hold_no_file_per_boot(tmp_path):
    """Answered with collisions only, a sensor took a new boot (writing and syncing its
    identity) thousands of times a second and held a lock file open for each, until it ran
    out of file descriptors. Now each collision waits twice as long as the one before."""
    identity = Identity.start(tmp_path / "state", "cam")
    link = CollidingLink()
    courier = Courier(link, identity, Spool(tmp_path / "spool", boot=identity.boot),
                      log=lambda line: None, backoff=0.1, max_backoff=5.0)
    courier.start()
    courier.send(b"message")
    threading.Event().wait(2.0)
    sends = len(link.written)  # at 0, then 0.1, 0.3, 0.7, 1.5 s later: five or six
    assert 3 <= sends <= 7, sends
    locks = list((tmp_path / "spool").glob(".boot-*.lock"))
    assert len(locks) <= 2, locks
    courier.finish(wait=0)


def test_a_stop_taken_by_another_thread_waits_for_the_deferred_step(tmp_path):
    """A message spooled and its file recorded as sent are one step: a Ctrl-C between them
    sends that file again at the next run. The stop signals were blocked in the main thread
    only, so a signal the kernel handed to another thread (the courier's, a BLAS pool's)
    still cut the step. Now the step holds back Python's handlers, whichever thread takes
    the signal, and the stop comes as the step ends."""
    import signal
    import time

    from walloc_edge.firmware_bridge.delivery.spool import signals_deferred

    steps = []
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)  # a CLI run in this
    try:  # process may have left its own
        with pytest.raises(KeyboardInterrupt):
            with signals_deferred():
                steps.append("spooled")
                stopper = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
                stopper.start()
                stopper.join()
                time.sleep(0.2)  # the handler would have run by now
                steps.append("recorded")
            steps.append("after the step")
        assert steps == ["spooled", "recorded"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, earlier)


class DownLink(FakeLink):
    """A server that cannot be reached: nothing is ever in flight."""

    def reconnect(self):
        raise ConnectionRefusedError(111, "Connection refused")


def test_an_input_whose_message_the_spool_gave_up_is_sent_by_a_run_again(
        rgb_weights_bundle, tmp_path):
    """A full spool gave up the oldest messages, and their files stayed recorded as sent:
    running the same command again skipped them, said "sent before", and ended 0. Now the
    record forgets them, and the run again sends them."""
    from walloc_edge.firmware_bridge.delivery import SentRecord
    from walloc_edge.firmware_bridge.loops import stream_inputs
    from walloc_edge.runtime import Encoder

    paths = []
    for i in range(4):
        Image.fromarray(photo(32, i)).save(tmp_path / f"p{i}.png")
        paths.append((tmp_path / f"p{i}.png", f"p{i}.png"))
    encoder = Encoder(rgb_weights_bundle, "numpy")
    size = len(encoder.encode(photo(32, 0)))
    identity = Identity.start(tmp_path / "state", "cam")
    record = SentRecord(tmp_path / "record.jsonl")
    courier = Courier(DownLink(), identity, Spool(tmp_path / "spool", max_bytes=2 * size + 400),
                      log=lambda line: None, on_dropped=record.forget)
    assert stream_inputs(encoder, courier, paths, record) == (4, 0, 0)
    assert courier.report.dropped == 2
    assert sorted(SentRecord(tmp_path / "record.jsonl").files) == \
        sorted(str(p.resolve()) for p, _ in paths[2:])  # on disk too
    courier.finish(wait=0)
    again = Courier(DownLink(), Identity.start(tmp_path / "state", "cam"),
                    Spool(tmp_path / "spool2"), log=lambda line: None)
    assert stream_inputs(encoder, again, paths, SentRecord(tmp_path / "record.jsonl")) == \
        (2, 0, 2)  # the two given up are sent; the two spooled are not again
    again.finish(wait=0)


def test_a_full_spool_waits_for_the_answers_to_messages_in_flight(tmp_path):
    """A server that is up but busy: drop-oldest gave up messages it was writing (the
    sensor said "dropped", the server wrote them all). Messages in flight are given up
    last: with only those left the sensor waits for their answers."""
    identity = Identity.start(tmp_path / "state", "cam")
    link = FakeLink()
    courier = Courier(link, identity, Spool(tmp_path / "spool", max_bytes=300),
                      log=lambda line: None, ack_timeout=60)
    first, second = courier.send(b"a" * 100), courier.send(b"b" * 100)
    wait_for(lambda: len(link.written) == 2)  # both in flight
    threading.Timer(0.5, link.on_ack, [Ack(ACK_WRITTEN, identity.sensor, *first)]).start()
    third = courier.send(b"c" * 100)  # waits for the first's answer
    assert courier.report.dropped == 0 and courier.spool.keys() == [second, third]
    courier.finish(wait=0)


def test_a_record_that_cannot_be_written_leaves_its_journal_whole(tmp_path, monkeypatch):
    """A full card while the journal of sent files is appended to ended the stream with a
    raw errno, and left a line cut short that the next line was joined to. Now the line is
    taken back, the file counted as not recorded (said at the end), and the next one is
    recorded whole."""
    from walloc_edge.firmware_bridge.delivery import SentRecord
    from walloc_edge.firmware_bridge.delivery import sent as sent_module

    record = SentRecord(tmp_path / "record.jsonl")
    record.keep("a", (1, 1), "aa")
    real = os.write
    monkeypatch.setattr(sent_module.os, "write", lambda fd, data: real(fd, data[:10]))
    record.keep("b", (2, 2), "bb")  # a short write: the disk is full
    monkeypatch.setattr(sent_module.os, "write", real)
    record.keep("c", (3, 3), "cc")
    assert len(record.unsaved) == 1 and record.unsaved[0].startswith("b (")
    assert sorted(SentRecord(tmp_path / "record.jsonl").files) == ["a", "c"]


@pytest.mark.parametrize("argv, said", [
    (["--to", "tcp://127.0.0.1:9", "--state", "{tmp}/nowhere"],
     "no sensor state there (no identity.json)"),
    (["{tmp}", "--to", "tcp://127.0.0.1:9", "--sensor-id", " "],
     "--sensor-id: give a name or 16 hex digits"),
    (["{tmp}", "--to", "tcp://127.0.0.1:9", "--state", "{tmp}/afile"],
     "--state {tmp}/afile: cannot keep a sensor's state there"),
    (["--watch", "{tmp}/afile", "--to", "tcp://127.0.0.1:9"], "a file, not a folder"),
    (["{tmp}", "--to", "file://frames.bin"], "a file:// URL takes an absolute path"),
    (["{tmp}", "--to", "tcp://127.0.0.1:9", "--fps", "2"], "--fps is for --video frames"),
])
def test_bad_stream_arguments_are_one_line(argv, said, rgb_weights_bundle, tmp_path, capsys):
    from walloc_edge.cli import main

    (tmp_path / "afile").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(["stream", str(rgb_weights_bundle), *argv])
    except SystemExit as e:  # argparse's
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and said.replace("{tmp}", str(tmp_path)) in err, \
        err


def test_a_stop_while_the_spool_gives_up_messages_still_forgets_their_files(tmp_path):
    """A stop held back over the spooling was raised before what the spool had given up
    was counted and forgotten: their files stayed recorded as sent, and nothing said they
    were lost. Now the bookkeeping is in the step the stop waits for."""
    import signal

    from walloc_edge.firmware_bridge.delivery import SentRecord

    identity = Identity.start(tmp_path / "state", "cam")
    record = SentRecord(tmp_path / "record.jsonl")
    spool = Spool(tmp_path / "spool", max_bytes=300)
    courier = Courier(DownLink(), identity, spool, log=lambda line: None,
                      on_dropped=record.forget)
    for i in range(2):
        courier.send(b"m" * 100, spooled=lambda key, i=i: record.keep(f"f{i}", (i, i), "d",
                                                                      key=key))
    real = spool.add

    def interrupted_add(*args, **kwargs):  # a Ctrl-C arrives while the spool makes room
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    spool.add = interrupted_add
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            courier.send(b"m" * 100, spooled=lambda key: record.keep("f2", (2, 2), "d",
                                                                      key=key))
    finally:
        signal.signal(signal.SIGINT, earlier)
    assert courier.report.dropped == 1 and courier.report.sent == 3
    assert sorted(SentRecord(tmp_path / "record.jsonl").files) == ["f1", "f2"]
    courier.finish(wait=0)


def test_a_record_that_cannot_forget_says_so_and_the_stream_goes_on(tmp_path, monkeypatch):
    """Forgetting rewrites the record, which can fail on the very full card that makes the
    spool give messages up: that ended the stream with a raw errno. Now it is said at the
    end (a run again skips those files; --again sends them)."""
    from walloc_edge.firmware_bridge.delivery import SentRecord
    from walloc_edge.firmware_bridge.delivery import sent as sent_module

    record = SentRecord(tmp_path / "record.jsonl")
    record.keep("f0", (0, 0), "d", key=(1, 0))

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sent_module, "write_atomic", full)
    record.forget([(1, 0)])
    assert record.unforgotten == ["f0 (No space left on device)"]


def test_a_message_a_collision_moved_and_the_spool_gave_up_is_forgotten(tmp_path):
    """A collision moves a message to a new boot; the record of its file kept the old key,
    so when the full spool later gave the message up under its new key, nothing was
    forgotten: a run again skipped the file ("sent before") though the server never had
    it. Now the record follows the move, on disk too."""
    from walloc_edge.firmware_bridge.delivery import SentRecord

    identity = Identity.start(tmp_path / "state", "cam")
    record = SentRecord(tmp_path / "record.jsonl")
    spool = Spool(tmp_path / "spool", max_bytes=300)
    link = DownLink()
    courier = Courier(link, identity, spool, log=lambda line: None, backoff=5.0,
                      on_dropped=record.forget, on_moved=record.move)
    first = courier.send(b"m" * 100, spooled=lambda key: record.keep("f0", (0, 0), "d",
                                                                      key=key))
    link.on_ack(Ack(ACK_COLLISION, identity.sensor, *first))  # moved to a new boot
    assert first not in spool.sizes and courier.report.collisions == 1
    for i in (1, 2):  # the second of these fills the spool: the moved message goes
        courier.send(b"m" * 100, spooled=lambda key, i=i: record.keep(f"f{i}", (i, i), "d",
                                                                      key=key))
    assert courier.report.dropped == 1
    assert sorted(record.files) == ["f1", "f2"]
    assert sorted(SentRecord(tmp_path / "record.jsonl").files) == ["f1", "f2"]
    courier.finish(wait=0)


def test_a_move_the_full_card_cannot_record_is_said(tmp_path, monkeypatch):
    """The record follows a moved message in memory; where the card cannot take the line,
    ``unmoved`` says so (stream prints it at the end) instead of a later run skipping the
    file without a word."""
    from walloc_edge.firmware_bridge.delivery import SentRecord

    record = SentRecord(tmp_path / "record.jsonl")
    record.keep("f0", (0, 0), "d", key=(1, 0))

    def full(line):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(record, "_append", full)
    record.move((1, 0), (2, 0))
    assert record.files["f0"]["key"] == "2-0"
    assert record.unmoved == ["f0 (No space left on device)"]
    assert SentRecord(tmp_path / "record.jsonl").files["f0"]["key"] == "1-0"


def test_a_move_answered_before_the_record_and_moves_beside_keeps(tmp_path):
    """The acknowledgement thread moves entries while the main thread keeps them: a dict
    changed while iterated ended the link (and, over MQTT, paho's thread). And a collision
    can be answered before the file is recorded at all: the record then takes the new key."""
    import sys

    from walloc_edge.firmware_bridge.delivery import SentRecord

    record = SentRecord(tmp_path / "record.jsonl")
    record.move((1, 0), (2, 0))  # answered first
    record.keep("early", (0, 0), "d", key=(1, 0))
    assert record.files["early"]["key"] == "2-0"
    assert SentRecord(tmp_path / "record.jsonl").files["early"]["key"] == "2-0"
    memory = SentRecord()
    errors, switch = [], sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def moves():
        try:
            for i in range(300):
                memory.move((3, i), (4, i))
        except Exception as e:  # noqa: BLE001 - what the race raised
            errors.append(e)

    try:
        mover = threading.Thread(target=moves)
        mover.start()
        for i in range(3000):
            memory.keep(f"f{i}", (i, i), "d", key=(3, i))
        mover.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors[:1]
    assert all(e["key"] == f"4-{i}" for i, e in enumerate(list(memory.files.values())[:300]))
