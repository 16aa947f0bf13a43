"""tcp://HOST:PORT: a connection per sensor, with the server's acknowledgements coming back
on it; the receiver listens, with a thread per connection."""
import errno
import socket
import threading
import time

from ...runtime.console import say
from ..framing import GARBAGE_LIMIT, AckReader, FrameReader
from .base import Address, Link, Receiver, Scheme, url_port


def parse(url, parsed, options):
    port = url_port(url, parsed)
    if not parsed.hostname or not port:
        raise ValueError(f"{url}: give a host and a port, e.g. {parsed.scheme}://127.0.0.1:9000")
    return Address("tcp", parsed.hostname, port, None, options)


class TcpLink(Link):
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
        _keepalive(sock)
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
                return self._down(sock)
            try:
                for ack in reader.feed(data):
                    if self.on_ack:
                        self.on_ack(ack)
            except Exception:  # noqa: BLE001 - an acknowledgement not taken: the link goes down,
                return self._down(sock)  # and the courier sends again what is unacknowledged

    def _down(self, sock):
        """``sock`` found closed or broken: drop it, if still the current one, and say so."""
        with self.lock:
            current = self.sock is sock
            if current:
                self._drop()
        if current and self.on_down:
            self.on_down()

    @property
    def alive(self):
        """False from the moment the connection is found closed or broken."""
        return self.sock is not None

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


def _keepalive(sock):
    """Probe an idle connection so that a peer gone without a word (a power cut, a cable)
    is noticed in about 25 s."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):  # Linux has them all; other systems some
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class _Connection:
    """What the accept loop knows of one open connection, to choose whom to close."""

    def __init__(self, sock, host):
        self.sock, self.host = sock, host
        self.heard = time.monotonic()  # its last byte (or its opening)
        self.delivered = False  # the server wrote a new message of it (a replay, or frames
        # that complete nothing, do not count)
        self.busy, self.counting = 0, threading.Lock()  # its messages the server holds

    def taken(self):
        with self.counting:
            self.busy += 1

    def written(self):
        self.delivered = True

    def finished(self):
        with self.counting:
            self.busy -= 1

    @property
    def holds_slot(self):
        """Whether closing it could lose an answer due (a message the server holds) or
        turn away a sensor that delivers."""
        return self.delivered or self.busy > 0

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class TcpReceiver(Receiver):
    """Listens; a thread per connection reads frames and writes acknowledgements back.

    Slow clients cannot hold the door: a frame must arrive whole within ``limits.frame``
    seconds of its first byte and a connection may stay silent ``limits.idle`` seconds; one
    source address may hold ``limits.per_host`` connections; and when the slots are all taken
    (in all or of that address), the connection silent the longest that never delivered a
    message is closed to let the new one in: one whose message the server wrote as new
    (``Received.written``; a frame, heartbeats, a bitstream refused or a replay of one
    written before are not enough to hold a slot; with ``keys`` only an authenticated
    sensor delivers one).
    """

    def __init__(self, host, port, keys=None, limits=None, log=say):
        super().__init__(keys, limits)
        self.log = log
        self.server = socket.create_server((host, port), reuse_port=False)
        self.server.settimeout(0.2)
        self.address = self.server.getsockname()
        self.open = {}  # _Connection → None, in opening order
        self.connections_lock = threading.Lock()
        self._start(self._accept)

    @property
    def connections(self):
        return len(self.open)

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
            connection = self._admit(conn, peer[0])
            if connection is None:
                conn.close()
                continue
            try:  # a thread a connection, not kept: connections come and go
                threading.Thread(target=self._read, daemon=True,
                                 args=(connection, f"tcp://{peer[0]}:{peer[1]}")).start()
            except RuntimeError as e:  # no thread to be had (a pids limit, memory): this
                with self.connections_lock:  # connection closed, the door kept open
                    self.open.pop(connection, None)
                connection.close()
                conn.close()
                self.log(f"cannot take tcp://{peer[0]}:{peer[1]} ({e}); retrying in 1 s")
                time.sleep(1)
        self.server.close()

    def _admit(self, conn, host):
        """Take a slot for a new connection from ``host``, closing the most silent one that
        never delivered a message if the slots are full; None (logged) if none can be
        freed."""
        with self.connections_lock:
            for limit, whose in ((self.limits.per_host, f"from {host} "),
                                 (self.limits.connections, "")):
                held = [c for c in self.open if not whose or c.host == host]
                if len(held) < limit:
                    continue
                idle = [c for c in held if not c.holds_slot]
                if not idle:
                    self.log(f"refused tcp://{host}: {limit} connections {whose}already open")
                    return None
                victim = min(idle, key=lambda c: c.heard)
                del self.open[victim]
                victim.close()
            connection = _Connection(conn, host)
            self.open[connection] = None
        return connection

    def _read(self, connection, sender):
        conn = connection.sock
        reader = FrameReader(self.stats, self.keys, give_up_after=GARBAGE_LIMIT,
                             budget=self.garbage_budget)
        write_lock = threading.Lock()

        def reply(data, received):  # this connection is the way back
            with write_lock:
                try:
                    conn.sendall(data)
                    return True
                except OSError:
                    return False

        conn.settimeout(0.2)
        started = None  # when the frame now arriving began
        try:
            while not self.stopped.is_set():
                try:
                    data = conn.recv(1 << 16)
                except socket.timeout:
                    data = None
                except OSError:
                    return
                if data == b"":
                    return
                now = time.monotonic()
                if data:
                    frames = reader.feed(data)
                    if not reader.buffer:
                        started = None
                    elif started is None or frames:
                        started = now
                    self._frames(sender, frames, reply, connection)
                    if reader.given_up:
                        self._gave_up(f"closed {sender}", reader)
                        return
                    after = time.monotonic()  # time spent waiting for room is not its doing
                    if started is not None:
                        started += after - now
                    now = connection.heard = after
                elif now - connection.heard > self.limits.idle:
                    self.log(f"closed {sender}: silent for {self.limits.idle:g} s")
                    return
                if started is not None and now - started > self.limits.frame:
                    self.log(f"closed {sender}: a frame unfinished after "
                             f"{self.limits.frame:g} s")
                    return
        finally:
            with self.connections_lock:
                self.open.pop(connection, None)
            conn.close()
            self._closed(sender)


def open_link(url, address, sensor, ack_key):
    """Connected at its first ``reconnect()``."""
    return TcpLink(url, address.host, address.port, ack_key)


def open_receiver(url, address, keys, limits, log):
    try:
        return TcpReceiver(address.host, address.port, keys, limits, log)
    except OSError as e:
        raise ValueError(f"{url}: cannot listen ({e.strerror or e})") from None


SCHEME = Scheme(names=("tcp",), parse=parse, receiver=open_receiver, link=open_link,
                send_help="tcp://HOST:PORT", receive_help="tcp://HOST:PORT")
