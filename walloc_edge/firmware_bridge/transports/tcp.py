"""tcp://HOST:PORT: a connection per sensor, with the server's acknowledgements coming back
on it; the receiver listens, with a thread per connection."""
import errno
import socket
import threading
import time

from ..framing import AckReader, FrameReader
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
                with self.lock:
                    current = self.sock is sock
                    if current:
                        self._drop()
                if current and self.on_down:
                    self.on_down()
                return
            for ack in reader.feed(data):
                if self.on_ack:
                    self.on_ack(ack)

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


class TcpReceiver(Receiver):
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
