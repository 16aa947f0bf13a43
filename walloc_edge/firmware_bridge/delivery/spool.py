"""A sensor's spool: each message kept on disk until the server acknowledges it. Several
processes may share one (two cameras on one device): message files are named by their boot
(each process has its own), a process owns its boot's entries under an OS lock and takes
over those of a boot whose process is gone (its lock is free), a start removes only the
unfinished writes of processes that are gone, and a message that another process took off
is forgotten. No torch."""
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import threading
from pathlib import Path

from ...runtime.io import write_atomic

__all__ = ["Spool", "SpoolFull", "SpoolDamaged", "NotSpooled", "signals_deferred"]

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


_deferring = False  # a signals_deferred block is open (in the main thread)


@contextlib.contextmanager
def signals_deferred():
    """A block a stop (Ctrl-C, SIGTERM, SIGHUP) must not cut in two, e.g. a message spooled
    and counted, or spooled and recorded as sent: a stop that comes meanwhile takes effect
    as the block ends. Python runs signal handlers in the main thread whichever thread the
    kernel hands a signal to (the courier's, a BLAS pool's), so the handlers are what is
    held back: each replaced for the block's length by one that notes the signal, which is
    raised again at its end. A block must be short and never wait (a Ctrl-C held back could
    not interrupt it). Reentrant; outside the main thread, where handlers cannot be set,
    it does nothing."""
    global _deferring
    if threading.current_thread() is not threading.main_thread() or _deferring:
        yield
        return
    pending, before = [], {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler not in (signal.SIG_IGN, None):  # None: set outside Python; let be
            before[signum] = handler
            signal.signal(signum, lambda number, frame: pending.append(number))
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        for signum, handler in before.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


class _Refused:
    """A refusal of the spool's that may have given messages up trying: ``dropped``."""

    def __init__(self, message, dropped=()):
        super().__init__(message)
        self.dropped = list(dropped)


class SpoolFull(_Refused, Exception):
    """The spool cannot take another message now (policy "block", or what it holds is in
    flight): the caller waits for acknowledgements."""


class NotSpooled(_Refused, ValueError):
    """A message this spool cannot take at all (larger than the whole spool; a disk full
    that giving up every message would not make room on): that input cannot be sent, the
    others can (``dropped``: none but where the disk misled)."""


class SpoolDamaged(Exception):
    """A spool file that is not one (its header line no JSON object: a card's corruption, a
    hand edit): set aside in DAMAGED, not sent, so that it does not hold up the others."""


REFUSED = "refused"  # the spool's messages a server refused for good
DAMAGED = "damaged"  # spool files that could not be read as messages
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class Spool:
    """Unacknowledged messages on disk, oldest first, at most ``max_bytes`` together.

    Each is one file ``BOOT-SEQUENCE.msg`` (written atomically: a crash leaves it whole or
    absent) holding a small JSON header line and the message. When a new message does not
    fit, or the disk is full, ``policy`` "drop-oldest" gives up the oldest ones (counted and
    returned, never silently) and "block" raises SpoolFull, for the caller to wait for
    acknowledgements.
    """

    def __init__(self, folder, max_bytes=256 << 20, policy="drop-oldest", boot=None):
        """``boot``: this process's boot; it then holds only the entries of boots it owns
        (its own, and those of processes that are gone). None: every entry is its own."""
        if policy not in ("drop-oldest", "block"):
            raise ValueError(f"unknown spool policy {policy!r}; use drop-oldest or block")
        self.folder, self.max_bytes, self.policy = Path(folder), max_bytes, policy
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.held = {}  # boot → its open lock file: this process owns the boot's entries
        if boot is not None:
            self.own(boot)
        self.sizes, self.total = {}, 0  # the entries held, and their bytes
        self.shared = boot is not None
        self.adopt()
        for stale in self.folder.glob(".*.tmp-*"):  # a write its process did not finish
            name, _, writer = stale.name[1:].partition(".tmp-")
            key = self._key(Path(name))
            if key is not None and boot is not None:  # its boot's owner is gone: ours now
                gone = self.own(key[0], wait=False)  # (a pid may be another container's)
            else:
                gone = not _alive(writer.split("-")[0])
            if gone:
                stale.unlink(missing_ok=True)  # (another live process's write is its own)

    def adopt(self) -> int:
        """Take in the entries of boots this spool owns or can own now (their process is
        gone: at the start, and whenever asked, so that a stream that outlives another one
        on this device sends what that one left); returns how many were new."""
        found = 0
        for path in self.folder.glob("*.msg"):
            key = self._key(path)
            if key is None or key in self.sizes or \
                    (self.shared and not self.own(key[0], wait=False)):
                continue
            with self.lock:
                try:
                    self.sizes[key] = path.stat().st_size
                except FileNotFoundError:
                    continue  # acknowledged meanwhile (another process on this spool)
                self.total += self.sizes[key]
                found += 1
        return found

    @classmethod
    def of(cls, state, identity, max_bytes=256 << 20, policy="drop-oldest"):
        """The spool of ``identity`` in the state folder ``state`` (STATE/spool/SENSOR),
        owning the identity's boot."""
        return cls(Path(state) / "spool" / identity.name, max_bytes, policy, identity.boot)

    def own(self, boot, wait=True):
        """Own ``boot``'s entries, under an OS lock held until :meth:`close` (or the process
        ends: a killed process's boots are free at once); False where another live process
        holds it (``wait`` False)."""
        if boot in self.held:
            return True
        lock = open(self.folder / f".boot-{boot}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            lock.close()
            return False
        self.held[boot] = lock
        return True

    def close(self):
        """Give up the boots owned; the lock files of those left empty are removed."""
        with self.lock:
            kept = {boot for boot, _ in self.sizes}
            for boot, lock in self.held.items():
                if boot not in kept:
                    Path(lock.name).unlink(missing_ok=True)
                lock.close()
            self.held.clear()

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

    def add(self, key: "tuple[int, int]", message: bytes, meta: dict | None = None,
            spare=frozenset()) -> "list[tuple[int, int]]":
        """Keep ``message`` under ``key`` (boot, sequence); returns the keys given up, never
        one of ``spare`` (messages in flight, which the server is likely writing now: with
        only those to give up, SpoolFull, for the caller to wait for their answers)."""
        data = self.entry(message, meta)
        self.check_size(len(data))
        dropped = []
        with signals_deferred(), self.lock:
            while self.sizes and self.total + len(data) > self.max_bytes:
                self._give_up_oldest(f"the spool holds {len(self.sizes)} unacknowledged "
                                     f"message(s), {self.total:,} bytes", spare, dropped)
            while True:
                try:
                    write_atomic(self._path(key), data)
                    break
                except OSError as e:  # the disk is full before the spool is
                    if e.errno not in DISK_FULL:
                        raise
                    why = f"the disk is full ({e.strerror})"
                    if self.policy == "block" and self.sizes:  # acknowledgements make room
                        raise SpoolFull(f"{why}; the spool holds {len(self.sizes)} "
                                        "unacknowledged message(s)", dropped) from None
                    if not self.sizes or \
                            shutil.disk_usage(self.folder).free + self.total < len(data):
                        raise NotSpooled(f"{why}, and giving up what the spool holds would "
                                         "not make room for it (what else fills the disk?)",
                                         dropped) from None  # the rest of the spool kept
                    self._give_up_oldest(why, spare, dropped)
            self.total += len(data) - self.sizes.get(key, 0)
            self.sizes[key] = len(data)
        return dropped

    @staticmethod
    def entry(message, meta):
        """The bytes a message and its ``meta`` take in the spool."""
        return json.dumps(meta or {}).encode() + b"\n" + message

    @staticmethod
    def entry_size(message, meta):
        """``len(entry(message, meta))``, without copying the message."""
        return len(json.dumps(meta or {}).encode()) + 1 + len(message)

    def check_size(self, size):
        """NotSpooled for an entry of ``size`` bytes that could never fit."""
        if size > self.max_bytes:
            raise NotSpooled(f"its {size:,}-byte message is larger than the whole spool "
                             f"({self.max_bytes:,} bytes; --spool-mb)")

    def _give_up_oldest(self, why, spare, dropped):
        """Make room (called with ``lock`` held): under "drop-oldest" the oldest message not
        in ``spare`` given up, its key added to ``dropped``; SpoolFull(``why``) under
        "block", or where only ``spare`` ones are left."""
        if self.policy == "block":
            raise SpoolFull(why, dropped)
        candidates = [k for k in self.sizes if k not in spare]
        if not candidates:
            raise SpoolFull(f"{why}, all in flight", dropped)
        oldest = min(candidates)
        self._path(oldest).unlink(missing_ok=True)
        self.total -= self.sizes.pop(oldest)
        dropped.append(oldest)

    def get(self, key):
        """(message, meta) kept under ``key``; FileNotFoundError (and the key forgotten) when
        another process on this spool took it off (acknowledged, or sent under a new key)."""
        try:
            head, _, message = self._path(key).read_bytes().partition(b"\n")
        except FileNotFoundError:
            self.remove(key)
            raise
        try:
            meta = json.loads(head or b"{}")
        except ValueError as e:
            meta = e
        if not isinstance(meta, dict):
            with self.lock:
                where, _ = self._set_aside(key, DAMAGED)
            raise SpoolDamaged(f"spool file {self._path(key).name} is damaged (its header is "
                               "no JSON object); "
                               + (f"set aside in {where.parent}, not sent" if where else
                                  "deleted: it could not be set aside (the card is full?)"))
        return message, meta

    def move(self, old, new, meta):
        """Keep the message held under ``old`` under ``new`` instead, ``meta`` added to its
        metadata; returns (message, metadata). Renamed first, so that a crash leaves it
        under one key or the other, never both or neither."""
        self.own(new[0])
        with self.lock:
            try:
                os.rename(self._path(old), self._path(new))
            except FileNotFoundError:
                self.total -= self.sizes.pop(old, 0)
                raise
            self.total -= self.sizes.pop(old)  # under its new key from here on, whatever
            self.sizes[new] = self._path(new).stat().st_size  # happens to the rewrite
            self.total += self.sizes[new]
            head, _, message = self._path(new).read_bytes().partition(b"\n")
            meta = {**json.loads(head or b"{}"), **meta}
            data = json.dumps(meta).encode() + b"\n" + message
            write_atomic(self._path(new), data)
            self.total += len(data) - self.sizes[new]
            self.sizes[new] = len(data)
        return message, meta

    def remove(self, key):
        with self.lock:
            size = self.sizes.pop(key, None)
            if size is not None:
                self.total -= size
                self._path(key).unlink(missing_ok=True)

    def refuse(self, key):
        """Set aside a message the server refused for good (another model's, over its
        decode limit): moved to REFUSED (``refused/`` in the spool), out of the queue but
        kept, since a server's setting may be the cause; moved back into the spool folder,
        it is sent again at the next start. REFUSED keeps at most ``max_bytes``, its oldest
        refusals given up first (never this one). Returns (where it went, how many old
        ones were given up), or (None, 0) and the message deleted as before where it could
        not be set aside (a full card)."""
        with self.lock:
            return self._set_aside(key, REFUSED)

    def _set_aside(self, key, folder):
        """``refuse``'s work, into the spool's subfolder ``folder`` (``lock`` held)."""
        if key not in self.sizes:
            return None, 0
        self.total -= self.sizes.pop(key)  # out of the queue, kept or not
        aside = self.folder / folder
        target = aside / self._path(key).name
        try:
            aside.mkdir(exist_ok=True)
            os.replace(self._path(key), target)
            os.utime(target)  # set aside now: the newest of the folder
        except OSError:
            self._path(key).unlink(missing_ok=True)
            return None, 0
        kept = []
        for path in aside.glob("*.msg"):
            try:
                kept.append((path.stat().st_mtime, path.stat().st_size, path))
            except FileNotFoundError:
                continue  # taken meanwhile (moved back by hand)
        kept.sort()
        total, dropped = sum(size for _, size, _ in kept), 0
        for _, size, path in kept:
            if total <= self.max_bytes or path == target:
                break
            path.unlink(missing_ok=True)
            total -= size
            dropped += 1
        return target, dropped

    def release(self, boot):
        """Give up owning ``boot`` (one this process no longer sends under: a boot left
        behind by a collision) where it holds no entries: its lock file closed and removed,
        so that a sensor answered with collisions again and again does not hold a file open
        for each boot it went through."""
        with self.lock:
            lock = self.held.get(boot)
            if lock is None or any(b == boot for b, _ in self.sizes):
                return
            Path(lock.name).unlink(missing_ok=True)
            lock.close()
            del self.held[boot]


def _alive(pid):
    """Whether the process ``pid`` (a number as text) is running."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, OverflowError):
        return False  # not a writer's pid: nobody's file
    except PermissionError:
        pass  # another user's process
    return True
