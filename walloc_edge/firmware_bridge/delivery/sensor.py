"""Delivery, the sensor's side: at least once, across restarts of either end; no torch.

An ``Identity`` (``identity.py``: a 64-bit sensor id, a boot number, a nonce per start)
names every message; a ``Spool`` (``spool.py``) keeps each message on disk until the server
acknowledges it; a :class:`Courier` sends, reconnects with backoff, resends what is
unacknowledged after its own restart or the server's, and sends a message again under a new
boot when the server holds other content under its key (a collision). The server's side
(``walloc_edge.server.delivery``) acknowledges only once its outputs are durably written.
"""
import threading
import time

from ...runtime.console import say
from ..framing import ACK_COLLISION, ACK_REJECTED, ACK_WRITTEN
from ..transports import Sender
from .report import Report
from .spool import NotSpooled, SpoolDamaged, SpoolFull, signals_deferred

__all__ = ["Courier"]

ADOPT_EVERY = 30  # seconds between looks for spool entries of streams that are gone
MAX_TIMEOUT_FACTOR = 8  # a message sent again waits up to this many ack timeouts


class Courier:
    """Sends messages over a ``transports.Link`` so that each arrives at least once.

    Every message goes to the ``spool`` before it is sent and leaves it only when the server
    acknowledges it. From ``start()`` to ``finish()`` a thread of the courier's own owns the
    link, so that nothing waits for new input: it sends what ``send()`` spooled, notices a
    broken link (at once where the link reports it, as TCP does), reconnects with backoff
    (``backoff`` seconds, doubling to ``max_backoff``) and then sends again everything
    unacknowledged, oldest first, as a new courier over the same spool does after a reboot;
    a message unanswered for ``ack_timeout`` seconds is sent again (the server may have been
    unable to write it), and each time it is sent again it waits twice as long (to 8
    ``ack_timeout``), so that a server with a long queue is not flooded with copies of what
    it holds. On a link without acknowledgements (UDP, serial, files) messages are sent once
    by ``send()`` and not spooled, and the report says so. Over a link with acknowledgements
    every message carries the start's nonce; when the server answers that other content
    holds its key (a collision), the message is kept and sent again under a new boot
    (``identity.renew``; ``on_moved`` told). Every ``heartbeat`` seconds (0: never) while it
    can reach the server, the thread also sends a heartbeat: the spool's depth and bytes,
    what was dropped, the boot, the uptime and ``status`` (e.g. version and backend), never
    spooled, so that a server sees a spool filling before anything is dropped; the last
    says "state": "stopped" (a dashboard tells it from one gone quiet). A "name" in
    ``status`` (the --sensor-id a sensor was given) goes with each message too."""

    def __init__(self, link, identity, spool, key=None, log=say, ack_timeout=30.0,
                 backoff=0.2, max_backoff=5.0, window=64, tick=0.2, heartbeat=0.0,
                 status=None, on_dropped=lambda keys: None, on_moved=lambda old, new: None):
        self.link, self.identity, self.spool, self.log = link, identity, spool, log
        self.ack_timeout, self.backoff, self.max_backoff = ack_timeout, backoff, max_backoff
        self.window, self.tick = window, tick
        self.sender = Sender(link, identity.sensor, identity.boot, key)
        self.report = Report(best_effort=not link.acks)
        # Under ``changed``: which spooled messages are in flight, and the counts. A key is
        # registered before its message goes out, so an acknowledgement never comes too early.
        self.sent_at = {}   # key → when last transmitted on this connection
        self.timeouts = {}  # key → how many times its acknowledgement did not come in time
        self.fresh = set()  # spooled by send(), not transmitted yet (its first sending)
        self.hold = {}  # key → not sent before then: moved after a collision, backing off
        self.taken = set()  # keys send() took and has not spooled yet
        self.collision_delay = backoff  # doubling with each collision, to ``max_backoff``
        self.sequence = 0
        self.changed = threading.Condition()
        # The courier's thread alone uses these, and the link.
        self.connected, self.outage = False, False
        self.delay, self.next_attempt = backoff, 0.0
        self.wake, self.stopping, self.worker = threading.Event(), threading.Event(), None
        self.heartbeat, self.status, self.beats = heartbeat, dict(status or {}), 0
        # Told the keys the spool gave up (their files unsent), and (old, new) of a moved one.
        self.on_dropped, self.on_moved = on_dropped, on_moved
        self.started = self.next_beat = time.monotonic()
        self.next_adopt = self.started + ADOPT_EVERY  # the spool adopted at its start
        link.on_ack = self._on_ack
        link.on_down = self.wake.set

    def _on_ack(self, ack):
        if ack.sensor != self.identity.sensor:
            return
        key, moved = (ack.boot, ack.sequence), None
        with self.changed:  # taking it off the spool and counting it are one step
            if key not in self.spool.sizes:
                self._settled(key)
                return  # a repeated acknowledgement
            if ack.status == ACK_COLLISION:
                try:
                    moved = self._rekey(key)
                except OSError as e:  # a full card: it stays under its key, sent again later
                    self.log(f"COLLISION on {key[0]}-{key[1]}, and the message could not be "
                             f"moved to a new boot ({e.strerror or e}); kept, tried again")
                    self.sent_at.pop(key, None)
                    return
            elif ack.status in (ACK_WRITTEN, ACK_REJECTED):
                kept, dropped = (None, 0) if ack.status == ACK_WRITTEN else \
                    self.spool.refuse(key)
                self.spool.remove(key)
                self._settled(key)
                self.delay = self.backoff  # the link works
                if ack.status == ACK_WRITTEN:
                    self.collision_delay = self.backoff
                    self.report.acknowledged += 1
                else:
                    self.report.rejected += 1
                    self.log(f"the server refused message {key[0]}-{key[1]} for good (the "
                             "server's log says why: e.g. a bitstream of another model, or "
                             "over its decode limit)"
                             + (f"; kept in {kept.parent} (move it back into {self.spool.folder}"
                                " to send it again)" if kept else
                                "; it could not be kept (the card is full?)")
                             + (f"; {dropped} older refused message(s) given up to stay "
                                "under the spool's size" if dropped else ""))
            else:  # a status this sensor does not know: keep the message
                self.log(f"the server answered message {key[0]}-{key[1]} with unknown "
                         f"status {ack.status}; it stays in the spool")
                return
            self.changed.notify_all()
        if moved:  # outside ``changed``: it may write a record
            self.on_moved(key, moved)

    def _next_key(self):
        """The key (boot, sequence) of the next message and its boot's nonce, as one step
        (a collision may move this courier to a new boot meanwhile); the key counts as
        taken, not spooled, until ``send`` says otherwise."""
        with self.changed:
            key = (self.identity.boot, self.sequence)
            self.sequence += 1
            self.taken.add(key)
            return key, self.identity.nonce

    def _rekey(self, old):
        """The server holds other content under ``old``: the message kept under a new key
        (of a new boot if ``old`` is of the current one), which is returned (None: another
        process took it over); called with ``changed`` held, the courier's thread sends it."""
        if old[0] == self.identity.boot:
            self.identity = self.identity.renew()
            self.sequence = 0
        new = (self.identity.boot, self.sequence)
        self.sequence += 1
        try:
            self.spool.move(old, new, {"nonce": self.identity.nonce})
        except FileNotFoundError:
            return None  # another process on this spool took it over
        self.report.collisions += 1
        self._settled(old)  # the new key after a pause, doubling with each collision in a row:
        self.hold[new] = time.monotonic() + self.collision_delay  # no flood, no worn card
        self.collision_delay = min(2 * self.collision_delay, self.max_backoff)
        self.wake.set()
        self.log(f"COLLISION: the server holds another message under {old[0]}-{old[1]} "
                 f"(another start of sensor {self.identity.name} took boot {old[0]}: a shared "
                 f"id, a copied or restored state folder); kept, and sent again as "
                 f"{new[0]}-{new[1]} (boot {new[0]})")
        return new

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

    @property
    def spools(self) -> bool:
        """Whether ``send`` queues a message in the spool for the courier's thread (a link
        with acknowledgements) rather than sending it at once."""
        return self.link.acks

    def send(self, message: bytes, meta: dict | None = None,
             spooled=lambda key: None) -> "tuple[int, int]":
        """Spool one new message for the courier's thread to send; returns its key (boot,
        sequence). With ``window`` messages in flight it first waits for acknowledgements,
        so that a dead link is noticed early. ``spooled(key)`` is called in one step with
        the spooling (a stop does not fall between them: e.g. the file recorded as sent);
        on a link without acknowledgements, once the message is sent."""
        if "name" in self.status:  # the --sensor-id given, a server names outputs by it
            meta = {**(meta or {}), "name": self.status["name"]}
        if not self.link.acks:
            key, _ = self._next_key()
            self.taken.discard(key)  # nothing to own: never spooled
            self.sender.send_as(key[1], message, meta, boot=key[0])
            self.report.sent += 1
            spooled(key)
            return key
        self.spool.check_size(self.spool.entry_size(message, {  # NotSpooled before a key
            **(meta or {}), "nonce": self.identity.nonce}))  # is used up (a gap: "lost")
        self.start()
        with self.changed:
            while len(self.sent_at) >= self.window:
                self.changed.wait(timeout=self.tick)
        key, nonce = self._next_key()
        meta = {**(meta or {}), "nonce": nonce}
        while True:
            try:
                with self.changed:  # answers due: given up last (spare), or waited for
                    now = time.monotonic()
                    spare = {k for k, at in self.sent_at.items() if now - at <= self._patience(k)}
                with signals_deferred():  # never waits: the waits are outside; a stop comes
                    try:  # after the bookkeeping of what the spool gave up
                        dropped = self.spool.add(key, message, meta, spare)
                        spooled(key)
                    except (SpoolFull, NotSpooled) as e:
                        self._given_up(e.dropped)
                        raise
                    self._given_up(dropped)
                    with self.changed:
                        self.taken.discard(key)
                        self.fresh.add(key)
                        self.report.sent += 1
                break
            except SpoolFull as e:
                self.log(f"{e}: waiting for the server before taking more input")
                with self.changed:
                    self.changed.wait(timeout=self.max_backoff)
            except NotSpooled:  # a disk full of something else
                with self.changed:
                    self.taken.discard(key)
                    if self.sequence == key[1] + 1 and self.identity.boot == key[0]:
                        self.sequence -= 1  # the key given back: no gap
                raise
        self.wake.set()
        return key

    def _settled(self, key):
        """``key`` neither in flight nor waiting to be sent (called with ``changed`` held)."""
        self.sent_at.pop(key, None)
        self.timeouts.pop(key, None)
        self.hold.pop(key, None)
        self.fresh.discard(key)

    def _patience(self, key):
        """How long after its last sending an answer to ``key`` is waited for (called with
        ``changed`` held)."""
        return self.ack_timeout * min(2 ** self.timeouts.get(key, 0), MAX_TIMEOUT_FACTOR)

    def _given_up(self, keys):
        """The spool gave up ``keys`` to make room: counted, said, and their files taken out
        of the record of what was sent (``on_dropped``, outside ``changed``: it may rewrite
        a record)."""
        if not keys:
            return
        with self.changed:
            for old in keys:
                self.report.dropped += 1
                self._settled(old)
                self.log(f"spool full: gave up message {old[0]}-{old[1]} (never "
                         "acknowledged)")
        self.on_dropped(keys)

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
        if self.heartbeat and self.connected:
            self._beat()  # the last status (what stays in the spool), not a stale one; here,
            # so that finish's join bounds it like any send of this thread

    def _step(self):
        """Notice a lost link, reconnect when due, and send what is due: everything after a
        reconnection, what is new, and what has waited over ``ack_timeout``."""
        if self.connected and not self.link.alive:
            self._lost("closed by the other end")
        if time.monotonic() >= self.next_adopt:  # what another stream here left behind
            self.next_adopt = time.monotonic() + ADOPT_EVERY
            if self.spool.adopt():
                self.log("took over message(s) a stream that is gone left in the spool")
        self._release_boots()
        beat = self.heartbeat and time.monotonic() >= self.next_beat
        if not self.connected:
            if not (len(self.spool) or beat) or time.monotonic() < self.next_attempt or \
                    not self._connect():
                return
        if self.stopping.is_set():
            return  # connected while finish() gave up waiting: finish closes the link
        if beat and not self._beat():
            return
        keys, now = self.spool.keys(), time.monotonic()
        with self.changed:
            due = [k for k in keys if self.hold.get(k, now) <= now and (
                k not in self.sent_at or now - self.sent_at[k] > self._patience(k))]
        for key in due:
            if self.stopping.is_set() or not self._transmit(key):
                return

    def _release_boots(self):
        """Give up owning the boots this courier no longer sends under and holds nothing of
        (left behind by collisions, or adopted and delivered), so that collisions again and
        again do not keep a lock file open for each boot they went through."""
        if len(self.spool.held) < 2:  # its own boot alone: the common case, nothing to do
            return
        with self.changed:
            busy = {boot for boot, _ in self.spool.keys()} | \
                {boot for boot, _ in self.taken} | {self.identity.boot}
            for boot in set(self.spool.held) - busy:
                self.spool.release(boot)

    def _beat(self):
        """Send a heartbeat now (the next is due ``heartbeat`` seconds on); False when the
        link broke."""
        self.next_beat = time.monotonic() + self.heartbeat
        with self.changed:
            status = {**self.status, "spool": len(self.spool), "spool_bytes": self.spool.bytes,
                      "in_flight": len(self.sent_at), "dropped": self.report.dropped,
                      "boot": self.identity.boot,
                      "uptime": round(time.monotonic() - self.started, 1),
                      **({"state": "stopped"} if self.stopping.is_set() else {})}
            boot = self.identity.boot
        try:
            self.sender.beat(self.beats, status, boot)
        except OSError as e:
            self._lost(e.strerror or str(e))
            return False
        self.beats += 1
        return True

    def _transmit(self, key):
        try:
            message, meta = self.spool.get(key)
        except FileNotFoundError:
            return True  # acknowledged (or given up) meanwhile
        except SpoolDamaged as e:
            self.log(str(e))
            with self.changed:
                self.report.damaged += 1
            return True
        with self.changed:
            if key not in self.spool.sizes:
                return True
            if key in self.sent_at:  # unanswered on this connection: wait longer next time
                self.timeouts[key] = self.timeouts.get(key, 0) + 1
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
        # The next attempt after ``delay``, doubling until an acknowledgement shows the link
        # works: a server that accepts and closes at once is not hammered.
        self.next_attempt = time.monotonic() + self.delay
        self.delay = min(2 * self.delay, self.max_backoff)
        if len(self.spool) and not self.stopping.is_set() and not self.outage:
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
        self.outage = False
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
            self.worker.join(timeout=15)  # a stalled connect or write: its timeout, or close()
        self.link.close()
        with self.changed:
            self.report.unacknowledged = len(self.spool) if self.link.acks else 0
        return self.report
