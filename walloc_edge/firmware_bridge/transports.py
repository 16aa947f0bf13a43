"""Transports for framed messages: TCP, UDP (fragmented to an MTU), and files / stdio.

URLs: ``tcp://host:port``, ``udp://host:port`` (``?mtu=1400``),
``serial:///dev/ttyUSB0?baud=921600`` (pyserial), ``mqtt://host:port/topic`` (paho-mqtt; a
receiver may use a shared subscription, ``mqtt://host:port/$share/group/topic``, so that
several servers split one topic's messages between them), ``file:///path`` or a plain path,
``-`` for stdout/stdin. A sender's ``send(message)`` frames and sends one message
(numbering it); a receiver yields ``Received`` messages until it is stopped, keeping
``stats`` (frames, corrupted, lost, duplicates) and never raising on bad bytes.
"""
import queue
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from .framing import (OVERHEAD, FrameReader, FramingError, LinkStats, Reassembler,
                      decode_frame, frames_for)

__all__ = ["Received", "open_sender", "open_receiver", "parse_url", "SENDER_URLS",
           "RECEIVER_URLS"]

SENDER_URLS = ("tcp://HOST:PORT, udp://HOST:PORT[?mtu=1400], serial:///dev/ttyUSB0[?baud=921600], "
               "mqtt://BROKER[:1883]/TOPIC, file:///PATH (appends frames to a file), or - "
               "(stdout)")
RECEIVER_URLS = ("tcp://HOST:PORT, udp://HOST:PORT, serial:///dev/ttyUSB0[?baud=921600], "
                 "mqtt://BROKER[:1883]/TOPIC (or /$share/GROUP/TOPIC to share the messages "
                 "between servers), file:///PATH (a file of frames), or - (stdin)")

UDP_HEADERS = 28  # IPv4 + UDP


@dataclass(frozen=True)
class Received:
    sender: str
    stream: int
    sequence: int
    message: bytes


def parse_url(url):
    """(scheme, host, port, path, options) of a transport URL; ValueError naming the fix."""
    if url == "-":
        return "stdio", None, None, None, {}
    parsed = urlparse(url)
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    for name in ("mtu", "baud"):
        if name in options and not options[name].isdigit():
            raise ValueError(f"{url}: {name}={options[name]} is not a whole number, e.g. "
                             f"?{name}={'1400' if name == 'mtu' else '921600'}")
    if parsed.scheme in ("tcp", "udp", "mqtt"):
        port = _port(url, parsed)
    if parsed.scheme in ("tcp", "udp"):
        if not parsed.hostname or not port:
            raise ValueError(f"{url}: give a host and a port, e.g. {parsed.scheme}://127.0.0.1:9000")
        return parsed.scheme, parsed.hostname, port, None, options
    if parsed.scheme == "mqtt":
        topic = parsed.path.lstrip("/")
        if not parsed.hostname or not topic:
            raise ValueError(f"{url}: give a broker and a topic, e.g. "
                             "mqtt://127.0.0.1:1883/sensors/cam1")
        return "mqtt", parsed.hostname, port or 1883, topic, options
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
                     "serial://, mqtt://, file:// or -")


def _port(url, parsed):
    """The URL's port (None if it has none); out of range or not a number is a user error."""
    try:
        return parsed.port
    except ValueError:
        raise ValueError(f"{url}: the port must be a number in 1..65535") from None


class _Sender:
    """``write`` gets each frame, or with ``whole`` all frames of a message at once (MQTT:
    one publish per message, so that a shared subscription hands a message to one server)."""

    def __init__(self, write, max_payload, stream, close=lambda: None, whole=False):
        self.write, self.max_payload, self.stream = write, max_payload, stream
        self.sequence, self.close, self.whole = 0, close, whole
        self.bytes = 0

    def send(self, message):
        frames = frames_for(message, self.stream, self.sequence, self.max_payload)
        for chunk in [b"".join(frames)] if self.whole else frames:
            self.write(chunk)
            self.bytes += len(chunk)
        self.sequence += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_sender(url, stream=0):
    """A sender for ``url``: ``send(message)``, ``close()``."""
    scheme, host, port, path, options = parse_url(url)
    if scheme == "tcp":
        try:
            sock = socket.create_connection((host, port), timeout=10)
        except OSError as e:
            raise ValueError(f"{url}: cannot connect ({e.strerror or e}); is the receiver "
                             "(walloc-edge serve) running?") from None
        return _Sender(sock.sendall, 60000, stream, sock.close)
    if scheme == "udp":
        mtu = int(options.get("mtu", 1400))
        if mtu < OVERHEAD + UDP_HEADERS + 1:
            raise ValueError(f"mtu={mtu} leaves no room for data")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return _Sender(lambda frame: sock.sendto(frame, (host, port)),
                       mtu - OVERHEAD - UDP_HEADERS, stream, sock.close)
    if scheme == "serial":
        port = _serial_port(url, path, options)
        return _Sender(port.write, 60000, stream, lambda: (port.flush(), port.close()))
    if scheme == "mqtt":
        client = _mqtt_client(url, host, port)
        topic = path

        def publish(frame):
            client.publish(topic, frame, qos=1).wait_for_publish(timeout=30)

        def close():
            client.loop_stop()
            client.disconnect()
        return _Sender(publish, 60000, stream, close, whole=True)
    if scheme == "stdio":
        return _Sender(sys.stdout.buffer.write, 60000, stream, sys.stdout.buffer.flush)
    f = open(path, "ab")
    return _Sender(f.write, 60000, stream, f.close)


def _serial_port(url, path, options):
    try:
        import serial
    except ImportError:
        raise ValueError("serial links need pyserial: pip install 'walloc-edge[bridge]'") from None
    try:
        return serial.Serial(path, int(options.get("baud", 921600)), timeout=0.2)
    except (serial.SerialException, OSError) as e:
        raise ValueError(f"{url}: cannot open ({e})") from None


def _mqtt_client(url, host, port):
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ValueError("MQTT links need paho-mqtt: pip install 'walloc-edge[bridge]'") from None
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise ValueError(f"{url}: cannot reach the broker ({e.strerror or e})") from None
    client.loop_start()
    return client


class _Receiver:
    """Messages from one or more links through a queue; ``stop()`` ends ``messages()``."""

    def __init__(self):
        self.stats = LinkStats()
        self.reassembler = Reassembler(self.stats)
        self.lock = threading.Lock()
        self.queue = queue.Queue()
        self.stopped = threading.Event()
        self.threads = []
        self.address = None

    def _frames(self, sender, frames):
        with self.lock:
            for frame in frames:
                done = self.reassembler.add(frame)
                if done:
                    self.queue.put(Received(sender, *done))

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
    def __init__(self, host, port):
        super().__init__()
        self.server = socket.create_server((host, port), reuse_port=False)
        self.server.settimeout(0.2)
        self.address = self.server.getsockname()
        self._start(self._accept)

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, peer = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._start(self._read, conn, f"tcp://{peer[0]}:{peer[1]}")
        self.server.close()

    def _read(self, conn, sender):
        reader = FrameReader(self.stats)
        conn.settimeout(0.2)
        with conn:
            while not self.stopped.is_set():
                try:
                    data = conn.recv(1 << 16)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self._frames(sender, reader.feed(data))


class _UdpReceiver(_Receiver):
    def __init__(self, host, port):
        super().__init__()
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
                frame = decode_frame(datagram)
            except FramingError:
                with self.lock:
                    self.stats.corrupted += 1
                continue
            with self.lock:
                self.stats.frames += 1
            self._frames(f"udp://{peer[0]}:{peer[1]}", [frame])
        self.sock.close()


class _StreamReceiver(_Receiver):
    """Frames from a file or stdin, read to the end."""

    def __init__(self, source, name):
        super().__init__()
        self._start(self._read, source, name)

    def _read(self, source, name):
        reader = FrameReader(self.stats)
        with source:
            while not self.stopped.is_set():
                data = source.read(1 << 16)
                if not data:
                    break
                self._frames(name, reader.feed(data))
        self.stop()


class _SerialReceiver(_Receiver):
    def __init__(self, port, name):
        super().__init__()
        self.port = port
        self._start(self._read, name)

    def _read(self, name):
        reader = FrameReader(self.stats)
        while not self.stopped.is_set():
            try:
                data = self.port.read(1 << 12)
            except OSError:
                return
            if data:
                self._frames(name, reader.feed(data))
        self.port.close()


class _MqttReceiver(_Receiver):
    """Each MQTT message holds the frames of one message; the sender is its topic."""

    def __init__(self, client, topic):
        super().__init__()
        self.client = client
        client.on_message = self._on_message
        client.on_connect = lambda c, userdata, flags, reason, properties: c.subscribe(topic, qos=1)
        client.subscribe(topic, qos=1)

    def _on_message(self, client, userdata, message):
        frames = FrameReader(self.stats).feed(message.payload)
        self._frames(f"mqtt:{message.topic}", frames)

    def stop(self):
        super().stop()
        self.client.loop_stop()
        self.client.disconnect()


def open_receiver(url):
    """A receiver listening on / reading from ``url``."""
    scheme, host, port, path, options = parse_url(url)
    try:
        if scheme == "tcp":
            return _TcpReceiver(host, port)
        if scheme == "udp":
            return _UdpReceiver(host, port)
    except OSError as e:
        raise ValueError(f"{url}: cannot listen ({e.strerror or e})") from None
    if scheme == "serial":
        return _SerialReceiver(_serial_port(url, path, options), url)
    if scheme == "mqtt":
        return _MqttReceiver(_mqtt_client(url, host, port), path)
    if scheme == "stdio":
        return _StreamReceiver(sys.stdin.buffer, "stdin")
    try:
        return _StreamReceiver(open(path, "rb"), f"file://{path}")
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
