"""What every transport shares: a scheme's table entry, the link a sensor writes frames to,
the plain sender, and the receiver base (a bounded queue and a memory account, under the
limits of ``limits.py``).

A scheme module (``tcp.py``, ``mqtt.py``, ...) holds its links and receiver and one
:class:`Scheme`; ``transports/__init__.py`` lists the schemes in ``SCHEMES``.
"""
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from ..framing import (FLAG_HEARTBEAT, FLAG_META, GARBAGE_LIMIT, Ack, FrameReader, Keys,
                       LinkStats, encode_ack, encode_heartbeat, frames_for, pack_meta,
                       unpack_heartbeat, unpack_meta)
from ..reassembly import FRAGMENT_OVERHEAD, MESSAGE_OVERHEAD, Reassembler
from .limits import GARBAGE_RATE, ByteBudget, RateLimit, ReceiverLimits


class Address(NamedTuple):
    """A transport URL, parsed: which scheme, and what it names."""
    scheme: str          # the SCHEMES key ("mqtt" for mqtts:// too, "file" for a plain path)
    host: "str | None"
    port: "int | None"
    path: "str | None"   # a file, a device or an MQTT topic
    options: dict        # the query (?mtu=1400), and what a scheme adds (MQTT: tls, username)


@dataclass(frozen=True)
class Scheme:
    """One transport's entry in ``SCHEMES``: everything else about it is derived."""
    names: tuple         # what a URL starts with: "tcp" for tcp://, "-" for the URL "-"
    parse: Callable      # (url, urlparse result, query options) -> Address; ValueError
    receiver: Callable   # (url, Address, keys, limits, log) -> Receiver
    link: "Callable | None"  # (url, Address, sensor, ack_key) -> Link; None: receive only
    send_help: str       # its URL form in `stream --to` help ("" with no link)
    receive_help: str    # its URL form in `serve --listen` help
    library: "Callable | None" = None  # (url) -> its library; ValueError naming the extra


def url_port(url, parsed):
    """The URL's port (None if it has none); out of range or not a number is a user error."""
    try:
        return parsed.port
    except ValueError:
        raise ValueError(f"{url}: the port must be a number in 1..65535") from None


def whole_number(url, options, name, example):
    """Check that option ``name`` (when given) is a whole number; ValueError with an example."""
    if name in options and not options[name].isdigit():
        raise ValueError(f"{url}: {name}={options[name]} is not a whole number, e.g. "
                         f"?{name}={example}")


@dataclass(frozen=True)
class Received:
    """One complete message as a receiver hands it to the server."""
    sender: str          # where it came from (tcp://peer, mqtt:topic, file://path)
    sensor: int          # the sensor's 64-bit id
    boot: int            # the sensor's boot number
    sequence: int        # the message's number within that boot
    message: bytes
    meta: dict = field(default_factory=dict)  # source file, capture time (when sent)
    reply: object = field(default=None, repr=False, compare=False)
    # Takes the message's bytes off its receiver's memory account (later calls do nothing);
    # with ``Receiver.messages(hold=True)`` the consumer calls it once done with the message.
    release: object = field(default=lambda: None, repr=False, compare=False)
    # Called by the server once it has written this message, new (not one it held before):
    # a TCP connection that has delivered so holds its slot.
    written: object = field(default=lambda: None, repr=False, compare=False)

    @property
    def key(self):
        """What names this message everywhere: sensor-boot-sequence."""
        return f"{self.sensor:016x}-{self.boot}-{self.sequence}"

    def ack(self, status, key=None):
        """Tell the sender (where the link has a way back) that the message is written or
        refused; True if an answer went out."""
        if self.reply is None:
            return False
        return self.reply(encode_ack(Ack(status, self.sensor, self.boot, self.sequence), key),
                          self)


@dataclass(frozen=True)
class Heartbeat:
    """A sensor's status as a receiver hands it to the server: not a message, so never
    acknowledged nor recorded in the ledger."""
    sender: str
    sensor: int
    boot: int
    number: int          # counts the heartbeats of one start of the sensor
    status: dict         # what the sensor says (delivery.Courier: spool, dropped, uptime...)


class Link:
    """One way to a receiver: ``write(frames)`` sends the frames of one message (raising
    OSError when the link is down), ``acks`` says whether acknowledgements come back (they
    are passed to ``on_ack``), ``reconnect()`` tries once to bring a broken link back.
    A link that notices by itself that it broke says so in ``alive`` and calls ``on_down``.
    ``reply_meta`` goes with each message sent over it, so that the answer reaches this link
    and no other (MQTT: the reply topic of this process alone)."""

    acks = False
    alive = True
    max_payload = 60000
    reply_meta: dict = {}

    def __init__(self, url):
        self.url, self.on_ack, self.on_down = url, None, None

    def reconnect(self):
        pass

    def close(self):
        pass


class OneWayLink(Link):
    """UDP, serial, files and stdout: frames go out, nothing comes back (best effort)."""

    def __init__(self, url, write, max_payload, close=lambda: None):
        super().__init__(url)
        self.max_payload, self._write, self._close = max_payload, write, close

    def write(self, frames):
        for frame in frames:
            self._write(frame)

    def close(self):
        self._close()


class Sender:
    """Frames and writes messages over a link, numbering them: the plain, unacknowledged
    sender (``delivery.Courier`` adds spooling, acknowledgements and resending)."""

    spools = False  # whether send() only queues the message (a Courier: its thread sends it)

    def __init__(self, link, sensor=0, boot=0, key=None):
        self.link, self.sensor, self.boot, self.key = link, sensor, boot, key
        self.sequence = self.bytes = 0

    def send(self, message, meta=None, spooled=lambda key: None):
        """Send ``message`` as the next of this boot; ``spooled(key)`` is told it went out
        (as a Courier tells it that it was spooled)."""
        self.send_as(self.sequence, message, meta)
        spooled((self.boot, self.sequence))
        self.sequence += 1

    def send_as(self, sequence, message, meta=None, boot=None):
        """Send ``message`` as message ``sequence`` of ``boot`` (default: this one)."""
        meta = {**(meta or {}), **self.link.reply_meta}  # this link's, not the spool's
        data = pack_meta(message, meta) if meta else message
        frames = frames_for(data, self.sensor, self.boot if boot is None else boot, sequence,
                            self.link.max_payload, self.key, FLAG_META if meta else 0)
        self.link.write(frames)
        self.bytes += sum(map(len, frames))

    def beat(self, number, status, boot=None):
        """Send heartbeat ``number`` with ``status`` (a dict); best effort, never spooled."""
        frame = encode_heartbeat(self.sensor, self.boot if boot is None else boot, number,
                                 status, self.key)
        self.link.write([frame])
        self.bytes += len(frame)

    def close(self):
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Receiver:
    """Messages from one or more links through a bounded queue; ``stop()`` ends
    ``messages()``. With ``keys``, only authenticated frames are taken.

    One memory account covers a message from its first fragment until the consumer of
    ``messages()`` asks for the next one: fragments being put together, complete messages
    queued, and those held by readers waiting for room in the queue. Together they stay
    within ``limits.pending_bytes``: a reader whose fragment would not fit waits while
    complete messages are there to be handled (a TCP sender is then not read: backpressure);
    with none, incomplete messages are given up, oldest first, to make room (counted as
    lost). Heartbeats skip all this: each goes to ``on_heartbeat`` (when set) on the thread
    that read it.
    """

    def __init__(self, keys=None, limits=None):
        self.limits = limits or ReceiverLimits()
        self.keys = keys or Keys()
        self.stats = LinkStats()
        self.reassembler = Reassembler(self.stats, max_message=self.limits.message_bytes,
                                       max_pending_bytes=self.limits.pending_bytes)
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # notified when complete messages go
        self.complete_bytes = 0  # complete messages not yet handled (queued or waiting)
        self.peak_bytes = 0      # the most the account held at once
        self.queue = queue.Queue(maxsize=self.limits.queue)
        self.rate = RateLimit(self.limits.rate, self.limits.burst)
        self.garbage_budget = ByteBudget(GARBAGE_RATE, 4 * GARBAGE_LIMIT)  # readers share it
        self.garbage_given_up, self.garbage_said = 0, 0.0  # since said; when next said
        self.stopped = threading.Event()
        self.down = None  # why messages cannot reach it now (a broker gone), or None
        self.failed = None  # why it receives nothing any more (its thread failed), or None
        self.threads = []
        self.address = None
        self.on_heartbeat = None

    @property
    def connections(self):
        """Connections open now; None where the link has none (UDP, serial, files, MQTT)."""
        return None

    @property
    def held_bytes(self):
        """What the memory account holds now: incomplete and complete messages."""
        return self.reassembler.pending_bytes + self.complete_bytes

    def _frames(self, sender, frames, reply=None, holder=None):
        """Reassemble ``frames``; complete messages go to the queue, blocking while it is
        full (the link is then not read: backpressure) until stopped. ``holder`` (a TCP
        connection) is told of each message it completes (``taken``), of the server having
        written it new (``written``) and of the server being done with it (``finished``)."""
        for frame in frames:
            if frame.flags & FLAG_HEARTBEAT:
                self._heartbeat(sender, frame)
                continue
            item = self._take(sender, frame, reply, holder)
            if item is None:
                continue
            if not self._put(item):
                item[0].release()

    def _closed(self, sender):
        """``sender``'s connection closed: what it had under way cannot complete."""
        with self.room:
            self.reassembler.forget_source(sender)
            self.room.notify_all()

    def _heartbeat(self, sender, frame):
        with self.lock:
            self.stats.heartbeats += 1
        if self.on_heartbeat is not None:
            self.on_heartbeat(Heartbeat(sender, frame.sensor, frame.boot, frame.sequence,
                                        unpack_heartbeat(frame.payload)))

    def _put(self, item):
        """Queue ``item``, waiting while the queue is full; False if stopped first."""
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _take(self, sender, frame, reply, holder=None):
        """Add one frame, waiting for room in the account; (Received, its bytes) when it
        completes a message to hand on, else None."""
        need = MESSAGE_OVERHEAD + FRAGMENT_OVERHEAD + len(frame.payload)
        with self.room:
            while (self.held_bytes + need > self.limits.pending_bytes and
                   self.complete_bytes and not self.stopped.is_set()):
                self.room.wait(0.2)  # the handler makes room; with none to make, give up some
            if self.stopped.is_set():
                return None
            self.reassembler.max_pending_bytes = self.limits.pending_bytes - self.complete_bytes
            message = self.reassembler.add(frame, sender)  # joined per connection
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
            if message is None:
                return None
            if not self.rate.allows(message.sensor):
                self.stats.rate_limited += 1
                return None
            meta, data = unpack_meta(message.data) if message.flags & FLAG_META else \
                ({}, message.data)
            size = MESSAGE_OVERHEAD + len(data)
            self.complete_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        holder = holder or _NoHolder
        holder.taken()
        return Received(sender, message.sensor, message.boot, message.sequence, data, meta,
                        reply, _once(lambda: (self._release(size), holder.finished())),
                        holder.written), size

    def _release(self, size):
        with self.room:
            self.complete_bytes -= size
            self.room.notify_all()

    def _gave_up(self, what, reader):
        """A reader given up on garbage (``what``: "closed tcp://...", "dropped the rest of
        a message on TOPIC"), said with the receiver's ``log`` at most once a minute, with
        how many more since: a flood of them is not a flood of lines."""
        with self.lock:
            self.garbage_given_up += 1
            now, count = time.monotonic(), self.garbage_given_up
            if now < self.garbage_said:
                return
            self.garbage_said, self.garbage_given_up = now + 60, 0
        self.log(f"{what}: {reader.garbage:,} bytes that were no frame this server takes (not "
                 "a walloc-edge sensor, a sensor with a wrong key, or an older walloc-edge)"
                 + (f"; {count - 1} more given up so since this was last said" if count > 1
                    else "") + " (said at most once a minute)")

    def _start(self, target, *args):
        """``target(*args)`` on a thread of its own; should it end by an error, ``failed``
        says so (serve's /healthz: not receiving) rather than the server going deaf unseen."""
        def run():
            try:
                target(*args)
            except BaseException as e:
                self.failed = f"receiving failed ({type(e).__name__}: {e}); restart the server"
                raise

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def messages(self, timeout=None, hold=False):
        """Received messages as they complete; ends after ``stop()`` (or ``timeout`` seconds
        without a message). A message's bytes stay in the memory account until the next one
        is asked for or the iteration ends: the consumer is done with it by then. With
        ``hold`` they stay until the consumer calls ``received.release()``: a consumer that
        keeps messages waiting (serve's turns) keeps them in the account."""
        while not (self.stopped.is_set() and self.queue.empty()):
            try:
                received, _ = self.queue.get(timeout=0.1 if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None:
                    return
                continue
            if hold:
                yield received
                continue
            try:
                yield received
            finally:
                received.release()

    def stop(self):
        self.stopped.set()
        with self.room:
            self.reassembler.finish()
            self.room.notify_all()


class StreamReceiver(Receiver):
    """Frames from a file or stdin, read to the end."""

    def __init__(self, source, name, keys=None, limits=None):
        super().__init__(keys, limits)
        self._start(self._read, source, name)

    def _read(self, source, name):
        reader = FrameReader(self.stats, self.keys)
        with source:
            while not self.stopped.is_set():
                data = source.read(1 << 16)
                if not data:  # a frame cut short is counted, and what follows it read
                    self._frames(name, reader.finish())
                    break
                self._frames(name, reader.feed(data))
        self.stop()


class _NoHolder:
    """The holder of a message no connection holds a slot for (every link but TCP)."""
    taken = written = finished = staticmethod(lambda: None)


def _once(fn):
    """``fn`` that runs on its first call only."""
    done = threading.Lock()

    def once():
        if done.acquire(blocking=False):
            fn()
    return once
