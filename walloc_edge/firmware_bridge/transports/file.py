"""file:///PATH or a plain path: the sender appends frames to a file, the receiver reads a
file of frames to its end (a capture, or frames carried by hand)."""
from pathlib import Path

from .base import Address, OneWayLink, Scheme, StreamReceiver


def parse(url, parsed, options):
    if url.startswith("file://") and parsed.netloc not in ("", "localhost"):  # file://x.bin
        raise ValueError(f"{url}: a file:// URL takes an absolute path (file:///{parsed.netloc}"
                         f"{parsed.path} is /{parsed.netloc}{parsed.path}); for a path "
                         f"relative to here, give it plainly ({parsed.netloc}{parsed.path})")
    path = parsed.path or url
    if path.endswith("/") or Path(path).is_dir():
        raise ValueError(f"{url} names a folder; name a file in it, e.g. "
                         f"file://{path.rstrip('/')}/frames.bin")
    return Address("file", None, None, path, options)


def open_link(url, address, sensor, ack_key):
    try:
        f = open(address.path, "ab")
    except OSError as e:
        raise ValueError(f"{url}: cannot write ({e.strerror or e})") from None
    return OneWayLink(url, f.write, 60000, f.close)


def open_receiver(url, address, keys, limits, log):
    try:
        return StreamReceiver(open(address.path, "rb"), f"file://{address.path}", keys, limits)
    except OSError as e:
        raise ValueError(f"{address.path}: cannot read ({e.strerror or e})") from None


SCHEME = Scheme(names=("file", ""), parse=parse, receiver=open_receiver, link=open_link,
                send_help="file:///PATH (appends frames to a file)",
                receive_help="file:///PATH (a file of frames)")
