"""The URL ``-``: frames to stdout (a sensor piping into another program) or from stdin."""
import sys

from .base import Address, OneWayLink, Scheme, StreamReceiver


def parse(url, parsed, options):
    return Address("stdio", None, None, None, {})


def open_link(url, address, sensor, ack_key):
    return OneWayLink(url, sys.stdout.buffer.write, 60000, sys.stdout.buffer.flush)


def open_receiver(url, address, keys, limits, log):
    return StreamReceiver(sys.stdin.buffer, "stdin", keys, limits)


SCHEME = Scheme(names=("-",), parse=parse, receiver=open_receiver, link=open_link,
                send_help="- (stdout)", receive_help="- (stdin)")
