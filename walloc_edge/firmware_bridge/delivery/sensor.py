"""Delivery, the sensor's side: at least once, across restarts of either end; no torch.

An :class:`Identity` (a 64-bit sensor id made once and kept in a state folder, and a boot
number counted up at every start) names every message; a :class:`Spool` keeps each message
on disk until the server acknowledges it; a :class:`Courier` sends, reconnects with backoff,
and resends what is unacknowledged after its own restart or the server's. The server's side
(``server.py``) acknowledges only once its outputs are durably written.
"""
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...runtime.io import write_atomic
from ..framing import ACK_REJECTED, ACK_WRITTEN
from ..transports import Sender

__all__ = ["Identity", "Spool", "SpoolFull", "Courier", "Report", "state_folder",
           "sensor_number", "read_key"]


def state_folder():
    """Where a sensor keeps its identity and spool: $WALLOC_EDGE_STATE, else
    $XDG_STATE_HOME/walloc-edge, else ~/.local/state/walloc-edge."""
    if os.environ.get("WALLOC_EDGE_STATE"):
        return Path(os.environ["WALLOC_EDGE_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "walloc-edge"


def sensor_number(text):
    """A sensor id from the command line: 16 hex digits as they are, any other name hashed."""
    text = str(text).strip()
    if len(text) == 16 and all(c in "0123456789abcdefABCDEF" for c in text):
        return int(text, 16)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Identity:
    sensor: int   # 64-bit id, unique per device
    boot: int     # counts the starts of this sensor: messages of two boots never collide

    @property
    def name(self):
        return f"{self.sensor:016x}"

    @classmethod
    def start(cls, folder: "str | Path", sensor: "str | None" = None) -> "Identity":
        """This start's identity: the id kept in ``folder``/identity.json (made at the first
        start, random), or ``sensor`` (a name or 16 hex digits) when given, with the boot
        number counted up and saved before anything is sent."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "identity.json"
        saved = {}
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
            except ValueError:
                raise ValueError(f"{path} is damaged; remove it to make a new identity (the "
                                 "server will see a new sensor)") from None
        number = sensor_number(sensor) if sensor is not None else \
            int(saved["sensor"], 16) if "sensor" in saved else secrets.randbits(64)
        boots = saved.get("boots", {})
        boot = int(boots.get(f"{number:016x}", 0)) + 1
        boots[f"{number:016x}"] = boot
        saved = {"sensor": saved.get("sensor", f"{number:016x}"), "boots": boots}
        write_atomic(path, json.dumps(saved, indent=1).encode())
        return cls(number, boot)


class SpoolFull(Exception):
    """The spool cannot take another message (policy "block" and nothing acknowledged)."""


class Spool:
    """Unacknowledged messages on disk, oldest first, at most ``max_bytes`` together.

    Each is one file ``BOOT-SEQUENCE.msg`` (written atomically: a crash leaves it whole or
    absent) holding a small JSON header line and the message. When a new message does not
    fit, ``policy`` "drop-oldest" gives up the oldest ones (counted and returned, never
    silently) and "block" raises SpoolFull, for the caller to wait for acknowledgements.
    """

    def __init__(self, folder, max_bytes=256 << 20, policy="drop-oldest"):
        if policy not in ("drop-oldest", "block"):
            raise ValueError(f"unknown spool policy {policy!r}; use drop-oldest or block")
        self.folder, self.max_bytes, self.policy = Path(folder), max_bytes, policy
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.sizes = {}
        for path in self.folder.glob("*.msg"):
            key = self._key(path)
            if key is not None:
                self.sizes[key] = path.stat().st_size
        for stale in self.folder.glob(".*.tmp-*"):  # a write a crash interrupted
            stale.unlink()
        self.total = sum(self.sizes.values())  # bytes held, kept up to date

    @staticmethod
    def _key(path):
        try:
            boot, sequence = path.stem.split("-")
            return int(boot), int(sequence)
        except ValueError:
            return None

    def _path(self, key):
        return self.folder / f"{key[0]}-{key[1]}.msg"

    @property
    def bytes(self):
        return self.total

    def __len__(self):
        return len(self.sizes)

    def keys(self):
        with self.lock:
            return sorted(self.sizes)

    def add(self, key: "tuple[int, int]", message: bytes, meta: dict | None = None
            ) -> "list[tuple[int, int]]":
        """Keep ``message`` under ``key`` (boot, sequence); returns the keys given up."""
        data = json.dumps(meta or {}).encode() + b"\n" + message
        if len(data) > self.max_bytes:
            raise ValueError(f"a {len(data):,}-byte message is larger than the whole spool "
                             f"({self.max_bytes:,} bytes); give the spool more room")
        dropped = []
        with self.lock:
            while self.sizes and self.total + len(data) > self.max_bytes:
                if self.policy == "block":
                    raise SpoolFull(f"the spool holds {len(self.sizes)} unacknowledged "
                                    f"message(s), {self.total:,} bytes")
                oldest = min(self.sizes)
                self._path(oldest).unlink(missing_ok=True)
                self.total -= self.sizes.pop(oldest)
                dropped.append(oldest)
            write_atomic(self._path(key), data)
            self.total += len(data) - self.sizes.get(key, 0)
            self.sizes[key] = len(data)
        return dropped

    def get(self, key):
        """(message, meta) kept under ``key``."""
        head, _, message = self._path(key).read_bytes().partition(b"\n")
        return message, json.loads(head or b"{}")

    def remove(self, key):
        with self.lock:
            size = self.sizes.pop(key, None)
            if size is not None:
                self.total -= size
                self._path(key).unlink(missing_ok=True)


@dataclass
class Report:
    """What a sensor run delivered (counts of messages)."""
    sent: int = 0           # new messages of this run put on the link
    resent: int = 0         # transmissions of earlier messages (after a restart or timeout)
    acknowledged: int = 0   # written by the server (this run's and earlier runs' messages)
    rejected: int = 0       # refused for good by the server (bad bitstream, wrong model)
    dropped: int = 0        # given up because the spool was full (policy drop-oldest)
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
        if self.unacknowledged:
            parts.append(f"{self.unacknowledged} unacknowledged, kept in the spool")
        return "delivery: " + ", ".join(parts)

    @property
    def complete(self):
        return self.best_effort or not (self.unacknowledged or self.dropped or self.rejected)


class Courier:
    """Sends messages over a ``transports.Link`` so that each arrives at least once.

    Every message goes to the ``spool`` before it is sent and leaves it only when the server
    acknowledges it. From ``start()`` to ``finish()`` a thread of the courier's own owns the
    link, so that nothing waits for new input: it sends what ``send()`` spooled, notices a
    broken link (at once where the link reports it, as TCP does), reconnects with backoff
    (``backoff`` seconds, doubling to ``max_backoff``) and then sends again everything
    unacknowledged, oldest first, as a new courier over the same spool does after a reboot;
    a message unanswered for ``ack_timeout`` seconds is sent again (the server may have been
    unable to write it). On a link without acknowledgements (UDP, serial, files) messages are
    sent once by ``send()`` and not spooled, and the report says so.
    """

    def __init__(self, link, identity, spool, key=None, log=print, ack_timeout=30.0,
                 backoff=0.2, max_backoff=5.0, window=64, tick=0.2):
        self.link, self.identity, self.spool, self.log = link, identity, spool, log
        self.ack_timeout, self.backoff, self.max_backoff = ack_timeout, backoff, max_backoff
        self.window, self.tick = window, tick
        self.sender = Sender(link, identity.sensor, identity.boot, key)
        self.report = Report(best_effort=not link.acks)
        # Under ``changed``: which spooled messages are in flight, and the counts. A key is
        # registered before its message goes out, so an acknowledgement never comes too early.
        self.sent_at = {}   # key → when last transmitted on this connection
        self.fresh = set()  # spooled by send(), not transmitted yet (its first sending)
        self.sequence = 0
        self.changed = threading.Condition()
        # The courier's thread alone uses these, and the link.
        self.connected, self.outage = False, False
        self.delay, self.next_attempt = backoff, 0.0
        self.wake, self.stopping, self.worker = threading.Event(), threading.Event(), None
        link.on_ack = self._on_ack
        link.on_down = self.wake.set

    def _on_ack(self, ack):
        if ack.sensor != self.identity.sensor:
            return
        key = (ack.boot, ack.sequence)
        with self.changed:  # taking it off the spool and counting it are one step
            if key not in self.spool.sizes:
                return  # a repeated acknowledgement
            self.spool.remove(key)
            self.sent_at.pop(key, None)
            if ack.status == ACK_WRITTEN:
                self.report.acknowledged += 1
            elif ack.status == ACK_REJECTED:
                self.report.rejected += 1
                self.log(f"the server refused message {key[0]}-{key[1]} for good")
            self.changed.notify_all()

    def start(self):
        """Start the courier's thread: it connects, and sends what an earlier run left
        unacknowledged."""
        if not self.link.acks or self.worker is not None:
            return
        if len(self.spool):
            self.log(f"resending {len(self.spool)} message(s) left unacknowledged by an "
                     "earlier run")
        self.worker = threading.Thread(target=self._run, name="courier", daemon=True)
        self.worker.start()

    def send(self, message: bytes, meta: dict | None = None) -> "tuple[int, int]":
        """Spool one new message for the courier's thread to send; returns its key (boot,
        sequence). With ``window`` messages in flight it first waits for acknowledgements,
        so that a dead link is noticed early."""
        key = (self.identity.boot, self.sequence)
        self.sequence += 1
        if not self.link.acks:
            self.sender.send_as(key[1], message, meta)
            self.report.sent += 1
            return key
        self.start()
        with self.changed:
            while len(self.sent_at) >= self.window:
                self.changed.wait(timeout=self.tick)
        while True:
            try:
                dropped = self.spool.add(key, message, meta)
                break
            except SpoolFull as e:
                self.log(f"{e}: waiting for the server before taking more input")
                with self.changed:
                    self.changed.wait(timeout=self.max_backoff)
        with self.changed:
            for old in dropped:
                self.report.dropped += 1
                self.sent_at.pop(old, None)
                self.fresh.discard(old)
                self.log(f"spool full: gave up message {old[0]}-{old[1]} (never acknowledged)")
            self.fresh.add(key)
            self.report.sent += 1
        self.wake.set()
        return key

    def _run(self):
        while not self.stopping.is_set():
            self.wake.wait(timeout=self.tick)
            self.wake.clear()
            try:
                self._step()
            except Exception as e:  # noqa: BLE001 - the spool keeps the messages; go on
                self.log(f"sending failed ({type(e).__name__}: {e}); the spool keeps the "
                         "messages, trying again")
                self.stopping.wait(self.max_backoff)

    def _step(self):
        """Notice a lost link, reconnect when due, and send what is due: everything after a
        reconnection, what is new, and what has waited over ``ack_timeout``."""
        if self.connected and not self.link.alive:
            self._lost("closed by the other end")
        if not self.connected:
            if not len(self.spool) or time.monotonic() < self.next_attempt or \
                    not self._connect():
                return
        keys, now = self.spool.keys(), time.monotonic()
        with self.changed:
            due = [k for k in keys if k not in self.sent_at or
                   now - self.sent_at[k] > self.ack_timeout]
        for key in due:
            if self.stopping.is_set() or not self._transmit(key):
                return

    def _transmit(self, key):
        try:
            message, meta = self.spool.get(key)
        except FileNotFoundError:
            return True  # acknowledged (or given up) meanwhile
        with self.changed:
            if key not in self.spool.sizes:
                return True
            self.sent_at[key] = time.monotonic()
            self.report.resent += key not in self.fresh
            self.fresh.discard(key)
        try:
            self.sender.send_as(key[1], message, meta, boot=key[0])
            return True
        except OSError as e:
            self._lost(e.strerror or str(e))
            return False

    def _lost(self, why):
        with self.changed:
            self.connected = False
            self.sent_at.clear()
            self.changed.notify_all()
        self.delay, self.next_attempt = self.backoff, 0.0
        if len(self.spool) and not self.stopping.is_set():
            self.outage = True
            self.log(f"link lost ({why}); reconnecting, the spool keeps the messages")

    def _connect(self):
        """One attempt; on failure the next waits ``delay`` seconds, doubling to
        ``max_backoff``."""
        try:
            self.link.reconnect()
        except OSError as e:
            if not self.outage:
                self.outage = True
                self.log(f"cannot reach {self.link.url} ({e.strerror or e}); spooling and "
                         "retrying")
            self.next_attempt = time.monotonic() + self.delay
            self.delay = min(2 * self.delay, self.max_backoff)
            return False
        with self.changed:
            self.connected = True
            self.sent_at.clear()
        if self.outage:
            self.log("link back; resending what is unacknowledged")
        self.outage, self.delay = False, self.backoff
        return True

    def finish(self, wait: float = 60.0) -> Report:
        """Wait up to ``wait`` seconds for every spooled message to be acknowledged, then stop
        the courier's thread; returns the Report (unacknowledged ones stay in the spool for
        the next start)."""
        deadline = time.monotonic() + wait
        if self.link.acks:
            self.start()
            with self.changed:
                while len(self.spool) and time.monotonic() < deadline:
                    self.changed.wait(timeout=min(self.tick, deadline - time.monotonic()))
            self.stopping.set()
            self.wake.set()
            self.worker.join(timeout=1)  # a write blocked on a stalled link ends at close()
        self.link.close()
        with self.changed:
            self.report.unacknowledged = len(self.spool) if self.link.acks else 0
        return self.report


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

