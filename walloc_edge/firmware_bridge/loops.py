"""The sensor's send loop and the server's receive loop (no torch here: the server passes
its decoding in as a handler).

The sensor side takes a ``sender`` with ``send(message, meta)`` (a ``delivery.Courier``,
or a plain ``transports`` sender); each message carries its source and capture time as
metadata. One input that cannot be read or encoded is skipped with one line; the batch goes
on.
"""
import time
from collections import OrderedDict, deque
from pathlib import Path

from ..runtime.io import AUDIO_SUFFIXES, IMAGE_SUFFIXES, read_input

__all__ = ["stream_files", "stream_frames", "watch_folder", "serve_messages", "Rejected"]


def _send_all(encoder, sender, items, coder, log):
    """Encode and send each (what, source name, read) item, ``read()`` giving (sample,
    rate); one that cannot be read or encoded is skipped with a line. (sent, failed)."""
    sent = failed = 0
    for what, source, read in items:
        try:
            sample, rate = read()
            blob = encoder.encode(sample, coder=coder, sample_rate=rate)
        except (ValueError, OSError, MemoryError) as e:  # MemoryError: a header that lies
            failed += 1
            log(f"skipped {e}" if str(e).startswith(str(what)) else f"skipped {what}: {e}")
            continue
        key = sender.send(blob, {"source": source, "time": time.time()})
        sent += 1
        log(f"sent {what}: {len(blob):,} bytes" + (f" as message {key[0]}-{key[1]}"
                                                   if key else ""))
    return sent, failed


def stream_files(encoder, sender, paths, coder="rans", log=print):
    """Encode each file and send its .wlc; returns (sent, failed)."""
    b = encoder.bundle
    items = ((path, Path(path).name,
              lambda path=path: read_input(path, b.modality, b.channels)) for path in paths)
    return _send_all(encoder, sender, items, coder, log)


def stream_frames(encoder, sender, frames, name, coder="rans", log=print):
    """Encode each video frame and send its .wlc; returns (sent, failed). Ctrl-C ends the
    frames (the capture is released) and is passed on."""
    items = ((f"{name} frame {i}", f"{name}-{i:06d}", lambda frame=frame: (frame, 0))
             for i, frame in enumerate(frames))
    return _send_all(encoder, sender, items, coder, log)


def watch_folder(encoder, sender, folder, coder="rans", poll=0.5, log=print, stop=None,
                 settle=2):
    """Send every file that appears in ``folder`` (those there at the start too) until
    ``stop()`` is true or Ctrl-C. A file is sent once it is complete: its size and time have
    not changed for ``settle`` polls (a file written in bursts waits); one written in place
    again later is sent again. Hidden and temporary files (".name", "*.tmp", "*.part") are
    left alone, so a writer can write them and rename them into place."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    suffixes = IMAGE_SUFFIXES | AUDIO_SUFFIXES | {".npy"}
    sent_as, seen, totals = {}, {}, [0, 0]  # path → the (size, mtime) sent, last seen + count
    try:
        while not (stop and stop()):
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") or path.suffix.lower() not in suffixes:
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                version = (stat.st_size, stat.st_mtime_ns)
                if sent_as.get(path) == version:
                    continue
                last, count = seen.get(path, (None, 0))
                count = count + 1 if last == version else 0
                seen[path] = (version, count)
                if count < settle - 1:  # still being written, or just appeared
                    continue
                sent_as[path] = version
                sent, failed = stream_files(encoder, sender, [path], coder, log)
                totals[0] += sent
                totals[1] += failed
            time.sleep(poll)
    except KeyboardInterrupt:
        log("stopped watching")
    return tuple(totals)


class Rejected(Exception):
    """A message refused for good (its bitstream is bad or from another model): the sender
    is told not to send it again."""


def serve_messages(receiver, handle, count=None, idle=None, log=print, backlog=64):
    """Pass each received message to ``handle(received)`` until ``count`` messages, ``idle``
    seconds without one, or Ctrl-C. No single message stops the loop: a handler's
    ``Rejected`` or ValueError is logged with the sender and refused; any other failure
    (a full disk, a bug) is logged and the message left unacknowledged, so that the sender
    keeps it and sends it again. Sensors take turns: what has arrived (up to ``backlog``
    messages) waits in a queue per sensor, and each turn handles the oldest message of the
    next sensor, so one sensor's flood delays another's message by at most one message of
    each sensor ahead of it; a sensor's own messages keep their order. Returns (handled,
    rejected, failed)."""
    handled = rejected = failed = 0
    waiting = OrderedDict()  # sensor → its messages in arrival order; the next turn first
    held = 0
    last = time.monotonic()
    try:
        while count is None or handled + rejected < count:
            for received in receiver.messages(timeout=0 if held else 0.2):
                waiting.setdefault(received.sensor, deque()).append(received)
                held += 1
                last = time.monotonic()
                if held >= backlog:
                    break
            if not held:
                if receiver.stopped.is_set() or \
                        (idle is not None and time.monotonic() - last > idle):
                    break
                continue
            sensor, queue = next(iter(waiting.items()))
            received = queue.popleft()
            held -= 1
            del waiting[sensor]
            if queue:
                waiting[sensor] = queue  # its next message waits for the others' turns
            try:
                handle(received)
                handled += 1
            except (Rejected, ValueError) as e:
                rejected += 1
                log(f"rejected message {received.key} from {received.sender}: {e}")
            except Exception as e:  # noqa: BLE001 - serve must outlive any one message
                failed += 1
                log(f"could not handle message {received.key} from {received.sender} "
                    f"({type(e).__name__}: {e}); not acknowledged, the sensor will send "
                    "it again")
    except KeyboardInterrupt:
        log("stopping")
    finally:
        receiver.stop()
    return handled, rejected, failed
