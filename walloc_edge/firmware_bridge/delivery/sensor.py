"""Delivery, the sensor's side: at least once, across restarts of either end; no torch.

An ``Identity`` (``identity.py``: a 64-bit sensor id, a boot number, a nonce per start)
names every message; a ``Spool`` (``spool.py``) keeps each message on disk until the server
acknowledges it; a :class:`Courier` sends, reconnects with backoff, resends what is
unacknowledged after its own restart or the server's, and sends a message again under a new
boot when the server holds other content under its key (a collision). The server's side
(``server.py``) acknowledges only once its outputs are durably written.
"""
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..framing import ACK_COLLISION, ACK_REJECTED, ACK_WRITTEN
from ..transports import Sender
from .spool import SpoolFull

__all__ = ["Courier", "Report", "read_key"]


@dataclass
class Report:
    """What a sensor run delivered (counts of messages)."""
    sent: int = 0           # new messages of this run put on the link
    resent: int = 0         # transmissions of earlier messages (after a restart or timeout)
    acknowledged: int = 0   # written by the server (this run's and earlier runs' messages)
    rejected: int = 0       # refused for good by the server (bad bitstream, wrong model)
    dropped: int = 0        # given up because the spool was full (policy drop-oldest)
    collisions: int = 0     # keys the server holds other content under: sent under a new boot
    unacknowledged: int = 0  # still in the spool at the end: sent again at the next start
    best_effort: bool = False  # a link with no way back (UDP, serial, file): nothing is known

    def line(self):
        if self.best_effort:
            return f"sent {self.sent} message(s) best-effort (this link has no acknowledgements)"
        parts = [f"{self.acknowledged} acknowledged", f"{self.sent} new",
                 f"{self.resent} resent"]
        if self.rejected:
            parts.append(f"{self.rejected} rejected by the server")
        if self.dropped:
            parts.append(f"{self.dropped} dropped (spool full)")
        if self.collisions:
            parts.append(f"{self.collisions} collision(s) (another start sent under the same "
                         "keys; sent again under a new boot)")
        if self.unacknowledged:
            parts.append(f"{self.unacknowledged} unacknowledged, kept in the spool")
        return "delivery: " + ", ".join(parts)

    @property
    def complete(self):
        return self.best_effort or not (self.unacknowledged or self.dropped or self.rejected)


class Courier:
    """Sends messages over a ``transports.Link`` so that each arrives at least once.

    Every message goes to the ``spool`` before it is sent and leaves it only when the server
    acknowledges it. When the link breaks, the courier reconnects with backoff (``backoff``
    seconds, doubling to ``max_backoff``) and sends again everything unacknowledged, oldest
    first; so does a new courier over the same spool after a reboot. A message unanswered
    for ``ack_timeout`` seconds is sent again (the server may have been unable to write it).
    On a link without acknowledgements (UDP, serial, files) messages are sent once and not
    spooled, and the report says so. Over a link with acknowledgements every message carries
    the start's nonce; when the server answers that other content holds its key (a
    collision), the message is kept and sent again under a new boot (``identity.renew``).
    """

    def __init__(self, link, identity, spool, key=None, log=print, ack_timeout=30.0,
                 backoff=0.2, max_backoff=5.0, window=64):
        self.link, self.identity, self.spool, self.log = link, identity, spool, log
        self.ack_timeout, self.backoff, self.max_backoff = ack_timeout, backoff, max_backoff
        self.window = window
        self.sender = Sender(link, identity.sensor, identity.boot, key)
        self.report = Report(best_effort=not link.acks)
        self.sent_at = {}   # key → when last transmitted (this run)
        self.sequence = 0
        self.connected = False
        self.delay, self.next_attempt = backoff, 0.0
        self.down_since = None  # when the link was last found down (logged once an outage)
        self.changed = threading.Condition()
        link.on_ack = self._on_ack

    def _on_ack(self, ack):
        if ack.sensor != self.identity.sensor:
            return
        key = (ack.boot, ack.sequence)
        with self.changed:  # taking it off the spool and counting it are one step
            if key not in self.spool.sizes:
                self.sent_at.pop(key, None)
                return  # a repeated acknowledgement
            if ack.status == ACK_COLLISION:
                self._rekey(key)
            elif ack.status in (ACK_WRITTEN, ACK_REJECTED):
                self.spool.remove(key)
                self.sent_at.pop(key, None)
                if ack.status == ACK_WRITTEN:
                    self.report.acknowledged += 1
                else:
                    self.report.rejected += 1
                    self.log(f"the server refused message {key[0]}-{key[1]} for good")
            else:  # a status this sensor does not know: keep the message
                self.log(f"the server answered message {key[0]}-{key[1]} with unknown "
                         f"status {ack.status}; it stays in the spool")
                return
            self.changed.notify_all()

    def _next_key(self):
        """The key (boot, sequence) of the next message and its boot's nonce, as one step
        (a collision may move this courier to a new boot meanwhile)."""
        with self.changed:
            key = (self.identity.boot, self.sequence)
            self.sequence += 1
            return key, self.identity.nonce

    def _rekey(self, old):
        """The server holds other content under ``old``: keep the message under a new key,
        of a new boot if ``old`` is of the current one, and mark it due at once (called with
        ``changed`` held; the next pump sends it, not this acknowledgement's thread)."""
        if old[0] == self.identity.boot:
            self.identity = self.identity.renew()
            self.sequence = 0
        new = (self.identity.boot, self.sequence)
        self.sequence += 1
        try:
            self.spool.move(old, new, {"nonce": self.identity.nonce})
        except FileNotFoundError:
            return  # another process on this spool took it over
        self.report.collisions += 1
        self.sent_at.pop(old, None)
        self.sent_at[new] = float("-inf")  # due: past any ack_timeout
        self.log(f"COLLISION: the server holds another message under {old[0]}-{old[1]} "
                 f"(another start of sensor {self.identity.name} took boot {old[0]}: a shared "
                 f"id, a copied or restored state folder); kept, and sent again as "
                 f"{new[0]}-{new[1]} (boot {new[0]})")

    def start(self):
        """Connect, and send what an earlier run left unacknowledged."""
        if not self.link.acks:
            return
        self._ensure_link(wait=False)
        left = self.spool.keys()
        if left:
            self.log(f"resending {len(left)} message(s) left unacknowledged by an earlier run")
        self._resend(left)

    def send(self, message: bytes, meta: dict | None = None) -> "tuple[int, int]":
        """Spool and send one new message; returns its key (boot, sequence)."""
        key, nonce = self._next_key()
        if not self.link.acks:
            self.sender.send_as(key[1], message, meta, boot=key[0])
            self.report.sent += 1
            return key
        meta = {**(meta or {}), "nonce": nonce}
        self._maybe_reconnect()
        self._wait_for_window()
        while True:
            try:
                dropped = self.spool.add(key, message, meta)
                break
            except SpoolFull as e:
                self.log(f"{e}: waiting for the server before taking more input")
                self._pump(timeout=self.max_backoff)
        for old in dropped:
            self.report.dropped += 1
            self.sent_at.pop(old, None)
            self.log(f"spool full: gave up message {old[0]}-{old[1]} (never acknowledged)")
        self.report.sent += 1
        self._transmit(key, message, meta)
        return key

    def _maybe_reconnect(self):
        """While the link is down, try it again now and then (backoff doubling up to
        ``max_backoff``); once back, send everything the spool holds."""
        if self.connected or time.monotonic() < self.next_attempt:
            return
        if self._ensure_link(wait=False):
            self.delay = self.backoff
            self.log("link back; resending what is unacknowledged")
            self._resend(self.spool.keys())
        else:
            self.next_attempt = time.monotonic() + self.delay
            self.delay = min(2 * self.delay, self.max_backoff)

    def _wait_for_window(self):
        """At most ``window`` messages in flight: beyond that, wait for acknowledgements (and
        resend or reconnect as needed) so that a dead link is noticed early."""
        while len(self.sent_at) >= self.window:
            self._pump(timeout=self.max_backoff)

    def _transmit(self, key, message, meta):
        if not self.connected:
            return  # it stays in the spool; sent again once the link is back
        try:
            self.sender.send_as(key[1], message, meta, boot=key[0])
            self.sent_at[key] = time.monotonic()
        except OSError as e:
            self.connected = False
            self.next_attempt = 0.0
            self.log(f"link lost ({e.strerror or e}); reconnecting, the spool keeps the messages")

    def _resend(self, keys):
        for key in keys:
            if not self.connected:
                return
            try:
                message, meta = self.spool.get(key)
            except FileNotFoundError:
                continue  # acknowledged meanwhile
            self.report.resent += 1
            self._transmit(key, message, meta)

    def _ensure_link(self, wait=True):
        """Connect if disconnected (one attempt, or with ``wait`` until ``max_backoff``)."""
        delay = self.backoff
        while not self.connected:
            try:
                self.link.reconnect()
                self.connected, self.down_since = True, None
                return True
            except OSError as e:
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    self.log(f"cannot reach {self.link.url} ({e.strerror or e}); spooling and "
                             "retrying")
                if not wait:
                    return False
                time.sleep(delay)
                delay = min(2 * delay, self.max_backoff)
                if delay >= self.max_backoff:
                    return False
        return True

    def _pump(self, timeout):
        """Wait up to ``timeout`` s for acknowledgements, reconnecting and resending what is
        due: everything after a reconnection, and what has waited over ``ack_timeout``."""
        was_connected = self.connected
        if not self._ensure_link():
            time.sleep(min(timeout, self.max_backoff))
            return
        due = self.spool.keys() if not was_connected else \
            [k for k, t in list(self.sent_at.items())
             if time.monotonic() - t > self.ack_timeout]
        if not was_connected:
            self.log("link back; resending what is unacknowledged")
        self._resend(due)
        with self.changed:
            self.changed.wait(timeout=min(timeout, 0.5))

    def finish(self, wait: float = 60.0) -> Report:
        """Wait up to ``wait`` seconds for every spooled message to be acknowledged; returns
        the Report (unacknowledged ones stay in the spool for the next start)."""
        deadline = time.monotonic() + wait
        while self.link.acks and self._left() and time.monotonic() < deadline:
            self._pump(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
        self.link.close()
        with self.changed:
            self.report.unacknowledged = len(self.spool) if self.link.acks else 0
        return self.report

    def _left(self):
        with self.changed:
            return len(self.spool)


def read_key(path):
    """A sensor's key file: the key as hex (at least 16 bytes), on one line."""
    try:
        text = Path(path).read_text().strip()
        key = bytes.fromhex(text)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError:
        raise ValueError(f"{path}: not a hex key; make one with: python -c 'import "
                         "secrets; print(secrets.token_hex(32))'") from None
    if len(key) < 16:
        raise ValueError(f"{path}: {len(key)} bytes is too short; use at least 16")
    return key

