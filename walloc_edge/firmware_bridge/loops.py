"""The sensor's send loop and the server's receive loop (no torch here: the server passes
its decoding in as a handler).

The sensor side takes a ``sender`` with ``send(message, meta)`` (a ``delivery.Courier``,
or a plain ``transports`` sender); each message carries its source and capture time as
metadata. One input that cannot be read or encoded is skipped with one line; the batch goes
on.
"""
import queue
import threading
import time
from stat import S_ISREG
from collections import OrderedDict, deque
from pathlib import Path

from ..runtime.console import say
from ..runtime.io import read_source
from .delivery.sent import SentRecord, file_digest
from .delivery.spool import NotSpooled

__all__ = ["stream_files", "stream_inputs", "stream_frames", "watch_folder", "serve_messages",
           "Rejected"]


def _send_all(encoder, sender, items, coder, log, level=None, spooled=lambda key: None):
    """Encode and send each (what, source name, read) item, ``read()`` giving (sample,
    rate, note: how it was fitted to the model, said beside its line, or None), with
    ``coder`` at ``level``, through ``sender`` (a Sender or a Courier; a line each: "sent",
    or "queued" where a Courier's thread sends it and waits for its acknowledgement),
    ``spooled(key)`` called in one step with the spooling; one that cannot be read or
    encoded is skipped with a line. (sent, failed)."""
    sent = failed = 0
    for what, source, read in items:
        try:
            sample, rate, note = read()
            blob = encoder.encode(sample, coder=coder, sample_rate=rate, level=level)
        except (ValueError, OSError, MemoryError) as e:  # MemoryError: a header that lies
            failed += 1
            log(f"skipped {e}" if str(e).startswith(str(what)) else f"skipped {what}: {e}")
            continue
        try:
            meta = {"source": source, "time": time.time()}
            key = sender.send(blob, meta, spooled)
        except NotSpooled as e:
            failed += 1
            log(f"skipped {what}: {e}")
            continue
        sent += 1
        log(f"{'queued' if sender.spools else 'sent'} {what}: "
            f"{len(blob):,} bytes" + (f" as message {key[0]}-{key[1]}" if key else "")
            + (f"; note: {note}" if note else ""))
    return sent, failed


def stream_inputs(encoder, sender, files, record, coder="rans", log=say, level=None,
                  again=False):
    """``stream_files`` for the (path, source name) ``files`` given to a run (a folder's
    files named with their folders below it), recording each in ``record`` (a
    SentRecord, or None) once spooled and skipping those it holds as sent with the same
    size, time and content (unless ``again``): restarting an interrupted run with the same
    inputs sends what is new, never a second copy of what its spool already holds.
    Returns (sent, failed, skipped)."""
    sent = failed = skipped = 0
    for path, source in files:
        name = str(Path(path).resolve())
        try:
            stat = Path(path).stat()
            version, digest = (stat.st_size, stat.st_mtime_ns), file_digest(path)
        except OSError:
            version = digest = None  # stream_files says why it cannot be read
        if record is not None and digest and not again and record.holds(name, version, digest):
            skipped += 1
            continue
        n, f = _send_recorded(encoder, sender, (path, source), record, name, version,
                              digest, coder, log, level)
        sent, failed = sent + n, failed + f
    return sent, failed, skipped


def _send_recorded(encoder, sender, file, record, name, version, digest, coder, log, level,
                   present=None):
    """``file`` (path, source name) sent and, in one step with its spooling (no stop
    between them), kept in ``record`` (a SentRecord, or None) as ``name`` with its
    ``version`` and ``digest``; (sent, failed)."""
    def spooled(key):
        if record is not None and digest:
            record.keep(name, version, digest, present, key)

    return stream_files(encoder, sender, [file], coder, log, level, spooled)


def stream_files(encoder, sender, files, coder="rans", log=say, level=None,
                 spooled=lambda key: None):
    """Encode each file of ``files``, (path, source name) pairs or paths (named so), and
    send its .wlc with the source name (a server names its output after it), calling
    ``spooled(key)`` in one step with each spooling; returns (sent, failed)."""
    b = encoder.bundle
    files = [file if isinstance(file, tuple) else (file, Path(file).name) for file in files]
    def read(path):
        source = read_source(path, b.modality, b.channels)
        return source.sample, source.rate, source.note

    items = ((path, source, lambda path=path: read(path)) for path, source in files)
    return _send_all(encoder, sender, items, coder, log, level, spooled)


def stream_frames(encoder, sender, frames, name, coder="rans", log=say, level=None):
    """Encode each video frame and send its .wlc; returns (sent, failed). Ctrl-C ends the
    frames (the capture is released) and is passed on."""
    items = ((f"{name} frame {i}", f"{name}-{i:06d}", lambda frame=frame: (frame, 0, None))
             for i, frame in enumerate(frames))
    return _send_all(encoder, sender, items, coder, log, level)


def watch_folder(encoder, sender, folder, coder="rans", poll=0.5, log=say, stop=None,
                 settle=2, record=None, level=None):
    """Send every file that appears in ``folder`` (those there at the start too) until
    ``stop()`` is true; Ctrl-C is logged and passed on. A file is sent once it is complete:
    its size and time have not changed for ``settle`` polls (a file written in bursts
    waits); one written in place again later with other content is sent again. With
    ``record`` (a SentRecord, or its file) what was sent is remembered across restarts:
    only new or changed files are sent (a file touched, its content the same, is not).
    Subfolders are not watched. Hidden and
    temporary files (".name", "*.tmp", "*.part") are left alone, so a writer can write them
    and rename them into place; what is no regular file (a FIFO, whose reader would wait for
    good; a symlink loop) is skipped, said once, as is a file the model does not take (a
    text file beside photos); a folder that goes away (moved, deleted)
    is waited for. Returns (sent, failed): failed counts the files whose last try could not
    be read or encoded (a later try that sends it takes it off)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    suffixes = encoder.bundle.modality.inputs  # what this sensor's model encodes
    sent = record if isinstance(record, SentRecord) else SentRecord(record)
    done = {name: sent.version(name) for name in sent.files}  # name → (size, mtime) handled
    seen, sent_count, failing = {}, 0, set()  # name → the (size, mtime) last seen, and for
    # how many polls; how many sent; the names whose last try failed

    def retried(line):  # a writer may pause longer than the settling polls
        log(f"{line}; tried again when the file changes" if line.startswith("skipped ") else
            line)

    unreadable, away = set(), None  # names said to be no file to send; why the folder is

    def absent(why):  # away, said once: a folder moved or unmounted may come back
        nonlocal away
        if why != away:
            log(f"cannot read {folder} ({why}); watching for it to come back")
        away = why

    try:
        while not (stop and stop()):
            try:
                names = sorted(p.name for p in folder.iterdir())
            except OSError as e:
                absent(e.strerror or str(e))
                time.sleep(poll)
                continue
            if away is not None:
                log(f"{folder} is back")
                away = None
            for name in names:
                path = folder / name
                if name.startswith(".") or path.suffix.lower() in (".tmp", ".part"):
                    continue  # a writer's, renamed into place when whole
                if path.suffix.lower() not in suffixes:
                    if name not in unreadable:  # said once, as encode and stream count them
                        unreadable.add(name)
                        log(f"not sent: {path} (not {encoder.bundle.modality.plural} "
                            "this model takes)")
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                except OSError as e:  # a symlink loop, a dangling mount: said once
                    stat = e
                if isinstance(stat, OSError) or not S_ISREG(stat.st_mode):
                    if name not in unreadable:  # a FIFO would block its reader for good
                        unreadable.add(name)
                        log(f"skipped {path}: " + (stat.strerror or str(stat) if isinstance(
                            stat, OSError) else "not a regular file"))
                    continue
                unreadable.discard(name)
                version = (stat.st_size, stat.st_mtime_ns)
                if done.get(name) == version:
                    continue
                last, count = seen.get(name, (None, 0))
                count = count + 1 if last == version else 0
                seen[name] = (version, count)
                if count < settle - 1:  # still being written, or just appeared
                    continue
                done[name] = version
                try:
                    digest = file_digest(path)
                except OSError:
                    digest = None  # stream_files says why it cannot be read
                if digest and digest == sent.files.get(name, {}).get("sha256"):
                    sent.keep(name, version, digest, names)  # touched, not changed
                    continue
                n, failed = _send_recorded(encoder, sender, (path, name), sent, name, version,
                                           digest, coder, retried, level, present=names)
                sent_count += n
                (failing.add if failed else failing.discard)(name)
            time.sleep(poll)
    except KeyboardInterrupt:
        log("stopped watching")
        raise
    return sent_count, len(failing)


class Rejected(Exception):
    """A message refused for good (its bitstream is bad or from another model): the sender
    is told not to send it again."""


def _handle_one(handle, received, log):
    """Run ``handle`` on one message; its outcome: 0 handled, 1 rejected, 2 failed. Its
    bytes leave the receiver's memory account once it is handled."""
    try:
        handle(received)
        return 0
    except (Rejected, ValueError) as e:
        log(f"rejected message {received.key} from {received.sender}: {e}")
        return 1
    except Exception as e:  # noqa: BLE001 - serve must outlive any one message
        log(f"could not handle message {received.key} from {received.sender} "
            f"({type(e).__name__}: {e}); not acknowledged, the sensor will send "
            "it again")
        return 2
    finally:
        received.release()  # its bytes leave the receiver's memory account


class _Workers:
    """``n`` threads handling messages at once for ``serve_messages``. At most ``n`` are in
    flight (the receive loop waits for a free worker, so the bounded queue and the
    receiver's memory account push back as with one), and never two copies of one key: a
    copy that arrives while its first is in flight is dropped unacknowledged (the first's
    acknowledgement answers the sensor; were it lost, the sensor sends it again), or, on a
    link with no way back (nothing would send it again), waits for the first. Handlers
    finish, and acknowledge, in any order."""

    def __init__(self, handle, n, log, start=None):
        self.handle, self.log = handle, log
        self.free = threading.Semaphore(n)
        self.todo = queue.Queue()
        self.done = threading.Condition()
        self.busy = set()  # keys in flight
        self.counts = [0, 0, 0]  # handled, rejected, failed
        self.threads = [threading.Thread(target=self._work, args=(start,), daemon=True,
                                         name=f"serve-worker-{i}") for i in range(n)]
        for thread in self.threads:
            thread.start()

    def submit(self, received):
        self.free.acquire()  # backpressure: wait for a free worker
        with self.done:
            while received.key in self.busy and received.reply is None:
                self.done.wait(0.2)  # no way back, so nothing sends it again: after the first
                # (a true copy is acknowledged again, other content found a collision)
            if received.key in self.busy:
                self.free.release()
                received.release()
                self.log(f"message {received.key} from {received.sender} is being handled "
                         "already; this copy is not acknowledged")
                return
            self.busy.add(received.key)
        self.todo.put(received)

    def settled(self):
        """Messages handled or rejected, and those in flight."""
        with self.done:
            return self.counts[0] + self.counts[1], len(self.busy)

    def wait(self):
        """Until a message in flight is settled."""
        with self.done:
            if self.busy:
                self.done.wait(0.2)

    def _work(self, start):
        if start is not None:
            start()
        while (received := self.todo.get()) is not None:
            outcome = _handle_one(self.handle, received, self.log)
            with self.done:
                self.counts[outcome] += 1
                self.busy.discard(received.key)
                self.done.notify_all()
            self.free.release()

    def close(self):
        """Let every message in flight finish."""
        for _ in self.threads:
            self.todo.put(None)
        for thread in self.threads:
            thread.join()


TROUBLE_EVERY = 10.0  # seconds between lines on what the link threw away


class _LinkTrouble:
    """What the receiver threw away since the last line (frames that failed
    authentication or their CRC, bytes that were no frames, messages over a sensor's rate),
    said in one line at most every TROUBLE_EVERY seconds, so that garbage on the port or a
    sensor with the wrong key shows in the log, not only in the counters."""

    WHAT = (("unauthenticated", "frame(s) failed authentication (a sensor without the key, "
                                "or with another)"),
            ("corrupted", "corrupted frame(s)"),
            ("skipped_bytes", "byte(s) that were no frames (noise, or another protocol)"),
            ("old_version", "frame(s) of the old version 1"),
            ("rate_limited", "message(s) over --rate-limit"))

    def __init__(self, stats, log):
        self.stats, self.log, self.next = stats, log, 0.0  # stats None: nothing to say
        self.seen = dict.fromkeys((name for name, _ in self.WHAT), 0)  # since it opened

    def check(self, now, last=False):
        if self.stats is None or (now < self.next and not last):
            return
        news = []
        for name, what in self.WHAT:
            count = getattr(self.stats, name) - self.seen[name]
            if count > 0:
                news.append(f"{count:,} {what}")
                self.seen[name] += count
        if news:
            self.log("the link threw away " + "; ".join(news))
            self.next = now + TROUBLE_EVERY


def serve_messages(receiver, handle, count=None, idle=None, log=say, backlog=64, workers=1,
                   start_worker=None):
    """Pass each received message to ``handle(received)`` until ``count`` messages, ``idle``
    seconds without one, or Ctrl-C. No single message stops the loop: a handler's
    ``Rejected`` or ValueError is logged with the sender and refused; any other failure
    (a full disk, a bug) is logged and the message left unacknowledged, so that the sender
    keeps it and sends it again. Sensors take turns: what has arrived (up to ``backlog``
    messages) waits in a queue per sensor, and each turn handles the oldest message of the
    next sensor, so one sensor's flood delays another's message by at most one message of
    each sensor ahead of it; a sensor's own messages keep their order. Messages waiting their turn
    stay in the receiver's memory account (``--max-pending-mb``) until handled. With
    ``workers`` > 1 that many threads handle messages at once (``handle`` must be
    thread-safe; ``start_worker()`` runs first in each), and a sensor's messages are taken
    in order but may finish in any order; stopping lets those in flight finish. Returns
    (handled, rejected, failed)."""
    counts = [0, 0, 0]  # handled, rejected, failed
    pool = _Workers(handle, workers, log, start_worker) if workers > 1 else None
    waiting = OrderedDict()  # sensor → its messages in arrival order; the next turn first
    held = 0
    last = time.monotonic()
    trouble = _LinkTrouble(getattr(receiver, "stats", None), log)  # (a test's stand-in)
    try:
        while True:
            trouble.check(time.monotonic())
            settled, flying = pool.settled() if pool else (counts[0] + counts[1], 0)
            if count is not None and settled >= count:
                break
            if count is not None and settled + flying >= count:
                pool.wait()  # enough in flight: one may yet fail and need another
                continue
            for received in receiver.messages(timeout=0 if held else 0.2, hold=True):
                waiting.setdefault(received.sensor, deque()).append(received)
                held += 1
                last = time.monotonic()
                if held >= backlog:
                    break
            if not held:
                if receiver.stopped.is_set() or \
                        (idle is not None and time.monotonic() - last > idle and not flying):
                    break
                continue
            sensor, pending = next(iter(waiting.items()))
            received = pending.popleft()
            held -= 1
            del waiting[sensor]
            if pending:
                waiting[sensor] = pending  # its next message waits for the others' turns
            if pool:
                pool.submit(received)
            else:
                counts[_handle_one(handle, received, log)] += 1
    except KeyboardInterrupt:
        log("stopping")
    finally:
        try:
            if pool:
                pool.close()  # acknowledgements go out through the receiver: before it stops
                counts = pool.counts
        except KeyboardInterrupt:  # a stop while the workers finish: they finish all the same
            pool.close()
            counts = pool.counts
        finally:
            receiver.stop()
            trouble.check(time.monotonic(), last=True)
    return tuple(counts)
