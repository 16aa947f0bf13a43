"""Transports for framed messages: TCP, UDP (fragmented to an MTU), serial, MQTT, files.

URLs: ``tcp://host:port``, ``udp://host:port`` (``?mtu=1400``),
``serial:///dev/ttyUSB0?baud=921600`` (pyserial), ``mqtt://host:port/topic`` (paho-mqtt; a
receiver may use a shared subscription, ``mqtt://host:port/$share/group/topic``, so that
several servers split one topic's messages between them), ``file:///path`` or a plain path,
``-`` for stdout/stdin.

Senders (:func:`open_link`) write the frames of one message and, on TCP and MQTT, hear the
server's acknowledgements back (``on_ack``); the delivery layer (``delivery.Courier``) spools
and resends on top of them. Receivers (:func:`open_receiver`) yield ``Received`` messages
until stopped, through a bounded queue (a slow decoder stops the reading, not the memory),
keep ``stats`` and never raise on bad bytes; ``received.ack(status)`` answers the sender.
"""
import errno
import hashlib
import json
import queue
import socket
import struct
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from .framing import (FLAG_META, OVERHEAD, Ack, AckReader, FrameReader, FramingError, Keys,
                      LinkStats, Reassembler, decode_frame, encode_ack, frames_for)

__all__ = ["Received", "Sender", "open_link", "open_sender", "open_receiver", "parse_url",
           "pack_meta", "SENDER_URLS", "RECEIVER_URLS", "ReceiverLimits"]

SENDER_URLS = ("tcp://HOST:PORT, udp://HOST:PORT[?mtu=1400] (best effort: no "
               "acknowledgements), serial:///dev/ttyUSB0[?baud=921600], "
               "mqtt://[USER[:PASS]@]BROKER[:1883]/TOPIC or mqtts://...:8883/TOPIC[?ca=FILE] "
               "(TLS), file:///PATH (appends frames to a file), or - (stdout)")
RECEIVER_URLS = ("tcp://HOST:PORT, udp://HOST:PORT, serial:///dev/ttyUSB0[?baud=921600], "
                 "mqtt://[USER[:PASS]@]BROKER[:1883]/TOPIC or mqtts://... (TLS, ?ca=FILE), "
                 "with /$share/GROUP/TOPIC to share the messages between servers (give each "
                 "its own ?client=NAME), file:///PATH (a file of frames), or - (stdin)")

UDP_HEADERS = 28  # IPv4 + UDP


_META = struct.Struct("<H")


def pack_meta(message, meta):
    """``message`` with a metadata block in front (frames then carry FLAG_META)."""
    block = json.dumps(meta, separators=(",", ":")).encode()
    if len(block) > 0xFFFF:
        raise ValueError("message metadata is over 64 KB")
    return _META.pack(len(block)) + block + message


def _unpack_meta(data):
    """(meta dict, message) of a FLAG_META message; a damaged block gives {} and the rest."""
    if len(data) < _META.size:
        return {}, data
    (size,) = _META.unpack_from(data)
    try:
        meta = json.loads(data[_META.size:_META.size + size])
    except ValueError:
        return {}, data[_META.size + size:]
    return (meta if isinstance(meta, dict) else {}), data[_META.size + size:]


@dataclass(frozen=True)
class Received:
    sender: str          # where it came from (tcp://peer, mqtt:topic, file://path)
    sensor: int          # the sensor's 64-bit id
    boot: int            # the sensor's boot number
    sequence: int        # the message's number within that boot
    message: bytes
    meta: dict = field(default_factory=dict)  # source file, capture time (when sent)
    reply: object = field(default=None, repr=False, compare=False)

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
                          self.sensor)


def parse_url(url: str) -> tuple:
    """(scheme, host, port, path, options) of a transport URL; ValueError naming the fix."""
    if url == "-":
        return "stdio", None, None, None, {}
    parsed = urlparse(url)
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    for name in ("mtu", "baud"):
        if name in options and not options[name].isdigit():
            raise ValueError(f"{url}: {name}={options[name]} is not a whole number, e.g. "
                             f"?{name}={'1400' if name == 'mtu' else '921600'}")
    if parsed.scheme in ("tcp", "udp", "mqtt", "mqtts"):
        port = _port(url, parsed)
    if parsed.scheme in ("tcp", "udp"):
        if not parsed.hostname or not port:
            raise ValueError(f"{url}: give a host and a port, e.g. {parsed.scheme}://127.0.0.1:9000")
        return parsed.scheme, parsed.hostname, port, None, options
    if parsed.scheme in ("mqtt", "mqtts"):
        topic = parsed.path.lstrip("/")
        if not parsed.hostname or not topic:
            raise ValueError(f"{url}: give a broker and a topic, e.g. "
                             "mqtt://127.0.0.1:1883/sensors/cam1")
        tls = parsed.scheme == "mqtts"
        options.update(tls=tls, username=parsed.username, password=parsed.password)
        return "mqtt", parsed.hostname, port or (8883 if tls else 1883), topic, options
    if parsed.scheme == "serial":
        if not parsed.path:
            raise ValueError(f"{url}: give a device, e.g. serial:///dev/ttyUSB0?baud=921600")
        return "serial", None, None, parsed.path, options
    if parsed.scheme in ("file", ""):
        path = parsed.path or url
        if path.endswith("/") or Path(path).is_dir():
            raise ValueError(f"{url} names a folder; name a file in it, e.g. "
                             f"file://{path.rstrip('/')}/frames.bin")
        return "file", None, None, path, options
    raise ValueError(f"{url}: unknown transport {parsed.scheme!r}; use tcp://, udp://, "
                     "serial://, mqtt://, mqtts://, file:// or -")


def _port(url, parsed):
    """The URL's port (None if it has none); out of range or not a number is a user error."""
    try:
        return parsed.port
    except ValueError:
        raise ValueError(f"{url}: the port must be a number in 1..65535") from None


class Link:
    """One way to a receiver: ``write(frames)`` sends the frames of one message (raising
    OSError when the link is down), ``acks`` says whether acknowledgements come back (they
    are passed to ``on_ack``), ``reconnect()`` tries once to bring a broken link back."""

    acks = False
    max_payload = 60000

    def __init__(self, url):
        self.url, self.on_ack = url, None

    def reconnect(self):
        pass

    def close(self):
        pass


class _TcpLink(Link):
    acks = True

    def __init__(self, url, host, port, ack_key=None, timeout=10):
        super().__init__(url)
        self.address, self.ack_key, self.timeout = (host, port), ack_key, timeout
        self.sock = None
        self.lock = threading.Lock()

    def connect(self):
        """Connect (once); OSError if the receiver is not there."""
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.settimeout(None)
        with self.lock:
            self._drop()
            self.sock = sock
        threading.Thread(target=self._read_acks, args=(sock,), daemon=True).start()

    reconnect = connect

    def _read_acks(self, sock):
        reader = AckReader(self.ack_key)
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                with self.lock:
                    if self.sock is sock:
                        self._drop()
                return
            for ack in reader.feed(data):
                if self.on_ack:
                    self.on_ack(ack)

    def write(self, frames):
        with self.lock:
            sock = self.sock
        if sock is None:
            raise ConnectionError(f"{self.url}: not connected")
        try:
            sock.sendall(b"".join(frames))
        except OSError:
            with self.lock:
                if self.sock is sock:
                    self._drop()
            raise

    def _drop(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def close(self):
        with self.lock:
            self._drop()


class _MqttLink(Link):
    """One QoS-1 publish per message (so that a shared subscription hands whole messages to
    servers); acknowledgements come back on TOPIC/ack/SENSOR from the server."""

    acks = True

    def __init__(self, url, host, port, topic, options, sensor, ack_key=None):
        super().__init__(url)
        self.topic = topic
        self.ack_topic = f"{topic}/ack/{sensor:016x}"
        self.reader_key = ack_key
        self.client = _mqtt_client(url, host, port, options,
                                   client_id=f"walloc-edge-sensor-{sensor:016x}")
        self.refused = None
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.subscribe(self.ack_topic, qos=1)

    def _on_connect(self, client, userdata, flags, reason, properties):
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)  # e.g. "Not authorized": retrying will not help
            return
        self.refused = None
        client.subscribe(self.ack_topic, qos=1)

    def _on_message(self, client, userdata, message):
        for ack in AckReader(self.reader_key).feed(message.payload):
            if self.on_ack:
                self.on_ack(ack)

    def reconnect(self):
        """paho reconnects by itself; this says whether it is connected now."""
        if not self.client.is_connected():
            deadline = time.monotonic() + 2
            while not self.client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
        if not self.client.is_connected():
            why = f"the broker refused the connection: {self.refused}" if self.refused else \
                "the broker is not connected"
            raise ConnectionError(f"{self.url}: {why}")

    def write(self, frames):
        if not self.client.is_connected():
            raise ConnectionError(f"{self.url}: the broker is not connected")
        info = self.client.publish(self.topic, b"".join(frames), qos=1)
        try:
            info.wait_for_publish(timeout=10)
        except (RuntimeError, ValueError) as e:  # paho: not connected, or queue full
            raise ConnectionError(f"{self.url}: the broker did not take the message "
                                  f"({e})") from None
        if not info.is_published():
            raise ConnectionError(f"{self.url}: the broker did not take the message")

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class _OneWayLink(Link):
    """UDP, serial, files and stdout: frames go out, nothing comes back (best effort)."""

    def __init__(self, url, write, max_payload, close=lambda: None):
        super().__init__(url)
        self.max_payload, self._write, self._close = max_payload, write, close

    def write(self, frames):
        for frame in frames:
            self._write(frame)

    def close(self):
        self._close()


def open_link(url: str, sensor: int = 0, ack_key: bytes | None = None) -> Link:
    """The Link for ``url``. TCP and MQTT links connect at the first ``reconnect()``."""
    scheme, host, port, path, options = parse_url(url)
    if scheme == "tcp":
        return _TcpLink(url, host, port, ack_key)
    if scheme == "mqtt":
        return _MqttLink(url, host, port, path, options, sensor, ack_key)
    if scheme == "udp":
        mtu = int(options.get("mtu", 1400))
        if mtu < OVERHEAD + UDP_HEADERS + 1:
            raise ValueError(f"mtu={mtu} leaves no room for data")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return _OneWayLink(url, lambda frame: sock.sendto(frame, (host, port)),
                           mtu - OVERHEAD - UDP_HEADERS, sock.close)
    if scheme == "serial":
        port = _serial_port(url, path, options)
        return _OneWayLink(url, port.write, 60000, lambda: (port.flush(), port.close()))
    if scheme == "stdio":
        return _OneWayLink(url, sys.stdout.buffer.write, 60000, sys.stdout.buffer.flush)
    try:
        f = open(path, "ab")
    except OSError as e:
        raise ValueError(f"{url}: cannot write ({e.strerror or e})") from None
    return _OneWayLink(url, f.write, 60000, f.close)


class Sender:
    """Frames and writes messages over a link, numbering them: the plain, unacknowledged
    sender (``delivery.Courier`` adds spooling, acknowledgements and resending)."""

    def __init__(self, link, sensor=0, boot=0, key=None):
        self.link, self.sensor, self.boot, self.key = link, sensor, boot, key
        self.sequence = self.bytes = 0

    def send(self, message, meta=None):
        self.send_as(self.sequence, message, meta)
        self.sequence += 1

    def send_as(self, sequence, message, meta=None, boot=None):
        """Send ``message`` as message ``sequence`` of ``boot`` (default: this one)."""
        data = pack_meta(message, meta) if meta else message
        frames = frames_for(data, self.sensor, self.boot if boot is None else boot, sequence,
                            self.link.max_payload, self.key, FLAG_META if meta else 0)
        self.link.write(frames)
        self.bytes += sum(map(len, frames))

    def close(self):
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_sender(url: str, sensor: int = 0, boot: int = 0, key: bytes | None = None) -> Sender:
    """A plain sender for ``url`` (``send(message)``, ``close()``): frames go out once, and
    a TCP or MQTT link is connected first (ValueError naming the fix if it cannot)."""
    link = open_link(url, sensor)
    if link.acks:
        try:
            link.reconnect()
        except OSError as e:
            raise ValueError(f"{url}: cannot connect ({e.strerror or e}); is the receiver "
                             "(walloc-edge serve, or the broker) running?") from None
    return Sender(link, sensor, boot, key)


def _serial_port(url, path, options):
    try:
        import serial
    except ImportError:
        raise ValueError("serial links need pyserial: pip install 'walloc-edge[bridge]'") from None
    try:
        return serial.Serial(path, int(options.get("baud", 921600)), timeout=0.2)
    except (serial.SerialException, OSError) as e:
        raise ValueError(f"{url}: cannot open ({e})") from None


def _mqtt_client(url, host, port, options, client_id):
    """A connected paho client with a persistent session: the broker keeps this client's
    subscriptions and queued QoS-1 messages while it is away."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ValueError("MQTT links need paho-mqtt: pip install 'walloc-edge[bridge]'") from None
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=options.get(
        "client", client_id), clean_session=False)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    _mqtt_security(client, url, options)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise ValueError(f"{url}: cannot reach the broker ({e.strerror or e})") from None
    client.loop_start()
    return client


def _mqtt_security(client, url, options):
    """mqtts:// (TLS, ``?ca=FILE`` to trust a private CA, ``?cert=FILE&key=FILE`` for a
    client certificate) and USER[:PASSWORD]@ (or ``?password_file=FILE``)."""
    if options.get("tls"):
        import ssl

        for name in ("ca", "cert", "key"):
            if options.get(name) and not Path(options[name]).is_file():
                raise ValueError(f"{url}: {name}={options[name]}: no such file")
        try:
            client.tls_set(ca_certs=options.get("ca"), certfile=options.get("cert"),
                           keyfile=options.get("key"), cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"{url}: TLS set-up failed ({e})") from None
    password = options.get("password")
    if options.get("password_file"):
        try:
            password = Path(options["password_file"]).read_text().strip()
        except OSError as e:
            raise ValueError(f"{url}: password_file: {e.strerror or e}") from None
    if options.get("username"):
        client.username_pw_set(options["username"], password)


@dataclass
class ReceiverLimits:
    """What one receiver lets senders hold (checked before the work is done)."""
    queue: int = 16                 # complete messages waiting for the handler
    connections: int = 256          # open TCP connections at once
    idle: float = 300.0             # seconds a TCP connection may stay silent
    pending_bytes: int = 512 << 20  # bytes held by incomplete messages, all senders together
    message_bytes: int = 256 << 20  # the largest message
    rate: float = 0.0               # messages a second one sensor may send (0: no limit)
    burst: int = 20                 # ... in bursts of up to this many


class _RateLimit:
    """A token bucket per sensor: a sensor over its rate has its messages dropped unheard
    (not acknowledged, so an honest sensor sends them again later), and cannot crowd the
    others out of the decoder."""

    def __init__(self, rate, burst):
        self.rate, self.burst, self.buckets = rate, burst, OrderedDict()

    def allows(self, sensor):
        if not self.rate:
            return True
        now = time.monotonic()
        tokens, last = self.buckets.pop(sensor, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        self.buckets[sensor] = (tokens - 1, now) if tokens >= 1 else (tokens, now)
        while len(self.buckets) > 65536:
            self.buckets.popitem(last=False)
        return tokens >= 1


class _Receiver:
    """Messages from one or more links through a bounded queue; ``stop()`` ends
    ``messages()``. With ``keys``, only authenticated frames are taken."""

    def __init__(self, keys=None, limits=None):
        self.limits = limits or ReceiverLimits()
        self.keys = keys or Keys()
        self.stats = LinkStats()
        self.reassembler = Reassembler(self.stats, max_message=self.limits.message_bytes,
                                       max_pending_bytes=self.limits.pending_bytes)
        self.lock = threading.Lock()
        self.queue = queue.Queue(maxsize=self.limits.queue)
        self.rate = _RateLimit(self.limits.rate, self.limits.burst)
        self.stopped = threading.Event()
        self.threads = []
        self.address = None

    def _frames(self, sender, frames, reply=None):
        """Reassemble ``frames``; complete messages go to the queue, blocking while it is
        full (the link is then not read: backpressure) until stopped."""
        with self.lock:
            done = [d for d in map(self.reassembler.add, frames) if d]
            allowed = [self.rate.allows(d[0]) for d in done]
            self.stats.rate_limited += allowed.count(False)
        for (sensor, boot, sequence, flags, data, repeat), ok in zip(done, allowed):
            if not ok or repeat and reply is None:
                continue  # over its rate; or a repeat with no way back: nothing to answer
            meta, data = _unpack_meta(data) if flags & FLAG_META else ({}, data)
            item = Received(sender, sensor, boot, sequence, data, meta, reply)
            while not self.stopped.is_set():
                try:
                    self.queue.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def messages(self, timeout=None):
        """Received messages as they complete; ends after ``stop()`` (or ``timeout`` seconds
        without a message)."""
        while not (self.stopped.is_set() and self.queue.empty()):
            try:
                yield self.queue.get(timeout=0.1 if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None:
                    return

    def stop(self):
        self.stopped.set()
        with self.lock:
            self.reassembler.finish()


class _TcpReceiver(_Receiver):
    """Listens; a thread per connection reads frames and writes acknowledgements back."""

    def __init__(self, host, port, keys=None, limits=None, log=print):
        super().__init__(keys, limits)
        self.log = log
        self.server = socket.create_server((host, port), reuse_port=False)
        self.server.settimeout(0.2)
        self.address = self.server.getsockname()
        self.connections = 0
        self.connections_lock = threading.Lock()
        self._start(self._accept)

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, peer = self.server.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log(f"cannot accept a connection ({e.strerror}); retrying in 1 s")
                    time.sleep(1)
                    continue
                if self.stopped.is_set():
                    break
                self.log(f"accept failed ({e}); retrying")
                time.sleep(0.2)
                continue
            with self.connections_lock:
                full = self.connections >= self.limits.connections
                self.connections += not full
            if full:
                self.log(f"refused tcp://{peer[0]}:{peer[1]}: {self.limits.connections} "
                         "connections already open")
                conn.close()
                continue
            self._start(self._read, conn, f"tcp://{peer[0]}:{peer[1]}")
        self.server.close()

    def _read(self, conn, sender):
        reader = FrameReader(self.stats, self.keys)
        write_lock = threading.Lock()

        def reply(data, sensor):
            with write_lock:
                try:
                    conn.sendall(data)
                    return True
                except OSError:
                    return False

        conn.settimeout(0.2)
        last = time.monotonic()
        try:
            while not self.stopped.is_set():
                try:
                    data = conn.recv(1 << 16)
                except socket.timeout:
                    if time.monotonic() - last > self.limits.idle:
                        self.log(f"closed {sender}: silent for {self.limits.idle:g} s")
                        return
                    continue
                except OSError:
                    return
                if not data:
                    return
                last = time.monotonic()
                self._frames(sender, reader.feed(data), reply)
        finally:
            with self.connections_lock:
                self.connections -= 1
            conn.close()


class _UdpReceiver(_Receiver):
    def __init__(self, host, port, keys=None, limits=None):
        super().__init__(keys, limits)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self._start(self._read)

    def _read(self):
        while not self.stopped.is_set():
            try:
                datagram, peer = self.sock.recvfrom(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                frame = decode_frame(datagram, self.keys)
            except FramingError as e:
                with self.lock:
                    setattr(self.stats, e.counter, getattr(self.stats, e.counter) + 1)
                continue
            with self.lock:
                self.stats.frames += 1
            self._frames(f"udp://{peer[0]}:{peer[1]}", [frame])
        self.sock.close()


class _StreamReceiver(_Receiver):
    """Frames from a file or stdin, read to the end."""

    def __init__(self, source, name, keys=None, limits=None):
        super().__init__(keys, limits)
        self._start(self._read, source, name)

    def _read(self, source, name):
        reader = FrameReader(self.stats, self.keys)
        with source:
            while not self.stopped.is_set():
                data = source.read(1 << 16)
                if not data:
                    break
                self._frames(name, reader.feed(data))
        self.stop()


class _SerialReceiver(_Receiver):
    def __init__(self, port, name, keys=None, limits=None):
        super().__init__(keys, limits)
        self.port = port
        self._start(self._read, name)

    def _read(self, name):
        reader = FrameReader(self.stats, self.keys)
        while not self.stopped.is_set():
            try:
                data = self.port.read(1 << 12)
            except OSError:
                return
            if data:
                self._frames(name, reader.feed(data))
        self.port.close()


class _MqttReceiver(_Receiver):
    """Each MQTT message holds the frames of one message; acknowledgements go to
    TOPIC/ack/SENSOR. The session is persistent: messages published while this server is
    away wait at the broker."""

    def __init__(self, url, host, port, topic, options, keys=None, limits=None):
        super().__init__(keys, limits)
        self.topic = topic
        base = topic.split("/", 2)[2] if topic.startswith("$share/") else topic
        self.ack_base = base
        default_id = "walloc-edge-serve-" + hashlib.sha1(
            f"{socket.gethostname()}:{topic}".encode()).hexdigest()[:12]
        self.client = _mqtt_client(url, host, port, options, client_id=default_id)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.subscribe(topic, qos=1)

    def _reply(self, data, sensor):
        info = self.client.publish(f"{self.ack_base}/ack/{sensor:016x}", data, qos=1)
        return info.rc == 0

    def _on_message(self, client, userdata, message):
        frames = FrameReader(self.stats, self.keys).feed(message.payload)
        self._frames(f"mqtt:{message.topic}", frames, self._reply)

    def stop(self):
        super().stop()
        self.client.loop_stop()
        self.client.disconnect()


def open_receiver(url: str, keys: "Keys | None" = None, limits: "ReceiverLimits | None" = None,
                  log=print) -> _Receiver:
    """A receiver listening on / reading from ``url``; ``keys`` (a framing.Keys) makes it
    take only authenticated frames."""
    scheme, host, port, path, options = parse_url(url)
    try:
        if scheme == "tcp":
            return _TcpReceiver(host, port, keys, limits, log)
        if scheme == "udp":
            return _UdpReceiver(host, port, keys, limits)
    except OSError as e:
        raise ValueError(f"{url}: cannot listen ({e.strerror or e})") from None
    if scheme == "serial":
        return _SerialReceiver(_serial_port(url, path, options), url, keys, limits)
    if scheme == "mqtt":
        return _MqttReceiver(url, host, port, path, options, keys, limits)
    if scheme == "stdio":
        return _StreamReceiver(sys.stdin.buffer, "stdin", keys, limits)
    try:
        return _StreamReceiver(open(path, "rb"), f"file://{path}", keys, limits)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
