"""udp://HOST:PORT[?mtu=1400]: one frame per datagram, messages cut to fit the MTU; best
effort (nothing comes back)."""
import socket

from ..framing import OVERHEAD, FramingError, decode_frame
from .base import Address, OneWayLink, Receiver, Scheme, url_port, whole_number

UDP_HEADERS = 28  # IPv4 + UDP


def parse(url, parsed, options):
    whole_number(url, options, "mtu", 1400)
    port = url_port(url, parsed)
    if not parsed.hostname or not port:
        raise ValueError(f"{url}: give a host and a port, e.g. {parsed.scheme}://127.0.0.1:9000")
    return Address("udp", parsed.hostname, port, None, options)


def open_link(url, address, sensor, ack_key):
    mtu = int(address.options.get("mtu", 1400))
    if mtu < OVERHEAD + UDP_HEADERS + 1:
        raise ValueError(f"mtu={mtu} leaves no room for data")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return OneWayLink(url, lambda frame: sock.sendto(frame, (address.host, address.port)),
                      mtu - OVERHEAD - UDP_HEADERS, sock.close)


class UdpReceiver(Receiver):
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
            self._frames(f"udp://{peer[0]}", [frame])  # by host: fragments join whatever
            # port each left from (no connection to keep them apart; a NAT may change it)
        self.sock.close()


def open_receiver(url, address, keys, limits, log):
    try:
        return UdpReceiver(address.host, address.port, keys, limits)
    except OSError as e:
        raise ValueError(f"{url}: cannot listen ({e.strerror or e})") from None


SCHEME = Scheme(names=("udp",), parse=parse, receiver=open_receiver, link=open_link,
                send_help="udp://HOST:PORT[?mtu=1400] (best effort: no acknowledgements)",
                receive_help="udp://HOST:PORT")
