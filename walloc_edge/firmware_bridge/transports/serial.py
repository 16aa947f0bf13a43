"""serial:///dev/ttyUSB0[?baud=921600]: frames over a serial port (pyserial); best effort,
the receiver finds frames in the byte stream by their sync word."""
from ..framing import FrameReader
from .base import Address, OneWayLink, Receiver, Scheme, whole_number


def _pyserial(url):
    """pyserial; a ValueError naming the extra where it is not installed."""
    try:
        import serial
    except ImportError:
        raise ValueError(f"{url}: serial links need pyserial: pip install "
                         "'walloc-edge[bridge]'") from None
    return serial


def parse(url, parsed, options):
    whole_number(url, options, "baud", 921600)
    if not parsed.path:
        raise ValueError(f"{url}: give a device, e.g. serial:///dev/ttyUSB0?baud=921600")
    return Address("serial", None, None, parsed.path, options)


def _serial_port(url, path, options):
    serial = _pyserial(url)
    try:
        return serial.Serial(path, int(options.get("baud", 921600)), timeout=0.2)
    except (serial.SerialException, OSError) as e:
        raise ValueError(f"{url}: cannot open ({e})") from None


def open_link(url, address, sensor, ack_key):
    port = _serial_port(url, address.path, address.options)
    return OneWayLink(url, port.write, 60000, lambda: (port.flush(), port.close()))


class SerialReceiver(Receiver):
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


def open_receiver(url, address, keys, limits, log):
    return SerialReceiver(_serial_port(url, address.path, address.options), url, keys, limits)


SERIAL_URL = "serial:///dev/ttyUSB0[?baud=921600]"
SCHEME = Scheme(names=("serial",), parse=parse, receiver=open_receiver, link=open_link,
                send_help=SERIAL_URL, receive_help=SERIAL_URL, library=_pyserial)
