"""Transports for framed messages, one module per URL scheme: TCP, UDP (fragmented to an
MTU), serial, MQTT, files, and ``-`` for stdout/stdin.

``SCHEMES`` lists them; :func:`parse_url`, :func:`check_url`, :func:`open_link`,
:func:`open_sender`, :func:`open_receiver` and the URL help (``SENDER_URLS``,
``RECEIVER_URLS``) are read off it, so a new transport is a module with a
:class:`~.base.Scheme` and one line here.

Senders (:func:`open_link`) write the frames of one message and, on TCP and MQTT, hear the
server's acknowledgements back (``on_ack``); the delivery layer (``delivery.Courier``) spools
and resends on top of them. Receivers (:func:`open_receiver`) yield ``Received`` messages
until stopped, through a bounded queue (a slow decoder stops the reading, not the memory),
keep ``stats`` and never raise on bad bytes; ``received.ack(status)`` answers the sender.
"""
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ...runtime.console import say
from ..framing import Keys
from . import file, mqtt, serial, stdio, tcp, udp
from .base import Address, Link, Received, Receiver, Scheme, Sender
from .limits import ReceiverLimits

__all__ = ["SCHEMES", "Scheme", "Address", "Link", "Received", "Receiver", "Sender",
           "ReceiverLimits", "parse_url", "check_url", "open_link", "open_sender",
           "open_receiver", "SENDER_URLS", "RECEIVER_URLS"]

SCHEMES = {"tcp": tcp.SCHEME, "udp": udp.SCHEME, "serial": serial.SCHEME, "mqtt": mqtt.SCHEME,
           "file": file.SCHEME, "stdio": stdio.SCHEME}


def _listing(forms):
    return ", ".join(forms[:-1]) + ", or " + forms[-1]


SENDER_URLS = _listing([s.send_help for s in SCHEMES.values() if s.link])
RECEIVER_URLS = _listing([s.receive_help for s in SCHEMES.values()])


def _resolve(url):
    """(SCHEMES entry, Address) of ``url``; ValueError naming the fix."""
    if re.fullmatch(r"[\w.-]+:\d+", url):  # the usual slip (even where such a file exists:
        # an earlier slip may have made it)
        raise ValueError(f"{url} looks like HOST:PORT: give tcp://{url} (or udp://{url}); "
                         f"a file of that name is file://{Path(url).absolute()}")
    parsed = urlparse(url)
    name = "-" if url == "-" else parsed.scheme
    for scheme in SCHEMES.values():
        if name in scheme.names:
            options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            return scheme, scheme.parse(url, parsed, options)
    forms = [n if n == "-" else f"{n}://" for s in SCHEMES.values() for n in s.names if n]
    raise ValueError(f"{url}: unknown transport {parsed.scheme!r}; use "
                     f"{', '.join(forms[:-1])} or {forms[-1]}")


def parse_url(url: str) -> Address:
    """(scheme, host, port, path, options) of a transport URL; ValueError naming the fix."""
    return _resolve(url)[1]


def check_url(url: str) -> Address:
    """``parse_url``, and a ValueError naming the extra to install where the transport's
    library is missing: what a sensor or server asks before it makes any state."""
    scheme, address = _resolve(url)
    if scheme.library is not None:
        scheme.library(url)
    return address


def open_link(url: str, sensor: int = 0, ack_key: bytes | None = None) -> Link:
    """The Link for ``url``. A TCP link connects at its first ``reconnect()``."""
    scheme, address = _resolve(url)
    if scheme.link is None:
        raise ValueError(f"{url}: {address.scheme} only receives; send with {SENDER_URLS}")
    return scheme.link(url, address, sensor, ack_key)


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


def open_receiver(url: str, keys: Keys | None = None, limits: ReceiverLimits | None = None,
                  log=say) -> Receiver:
    """A receiver listening on / reading from ``url``; ``keys`` (a framing.Keys) makes it
    take only authenticated frames."""
    scheme, address = _resolve(url)
    return scheme.receiver(url, address, keys, limits, log)
