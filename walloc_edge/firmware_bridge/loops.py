"""The sensor's send loop and the server's receive loop (no torch here: the server passes
its decoding in as a handler)."""
import time
from pathlib import Path

from ..runtime.io import AUDIO_SUFFIXES, IMAGE_SUFFIXES, read_input

__all__ = ["stream_files", "stream_frames", "watch_folder", "serve_messages"]


def stream_files(encoder, sender, paths, coder="rans", log=print):
    """Encode each file and send its .wlc; returns (sent, failed)."""
    b = encoder.bundle
    sent = failed = 0
    for path in paths:
        try:
            sample, rate = read_input(path, b.modality, b.channels)
            blob = encoder.encode(sample, coder=coder, sample_rate=rate)
        except ValueError as e:
            failed += 1
            log(f"skipped {path}: {e}")
            continue
        sender.send(blob)
        sent += 1
        log(f"sent {path}: {len(blob):,} bytes as message {sender.sequence - 1}")
    return sent, failed


def stream_frames(encoder, sender, frames, name, coder="rans", log=print):
    """Encode each video frame and send its .wlc; returns (sent, failed). Ctrl-C ends the
    frames (the capture is released) and is passed on."""
    sent = failed = 0
    for index, frame in enumerate(frames):
        try:
            blob = encoder.encode(frame, coder=coder)
        except ValueError as e:
            failed += 1
            log(f"skipped {name} frame {index}: {e}")
            continue
        sender.send(blob)
        sent += 1
        log(f"sent {name} frame {index}: {len(blob):,} bytes as message {sender.sequence - 1}")
    return sent, failed


def watch_folder(encoder, sender, folder, coder="rans", poll=0.5, log=print, stop=None):
    """Send every file that appears in ``folder`` (those there at the start too) until
    ``stop()`` is true or Ctrl-C; a file is sent once its size has stopped changing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--watch {folder}: no such folder")
    suffixes = IMAGE_SUFFIXES | AUDIO_SUFFIXES | {".npy"}
    seen, sizes, totals = set(), {}, [0, 0]
    try:
        while not (stop and stop()):
            for path in sorted(folder.iterdir()):
                if path in seen or path.suffix.lower() not in suffixes:
                    continue
                size = path.stat().st_size
                if sizes.get(path) != size:  # still being written: look again next time
                    sizes[path] = size
                    continue
                seen.add(path)
                sent, failed = stream_files(encoder, sender, [path], coder, log)
                totals[0] += sent
                totals[1] += failed
            time.sleep(poll)
    except KeyboardInterrupt:
        log("stopped watching")
    return tuple(totals)


def serve_messages(receiver, handle, count=None, idle=None, log=print):
    """Pass each received message to ``handle(received)`` until ``count`` messages, ``idle``
    seconds without one, or Ctrl-C. A handler's ValueError (bad bitstream, wrong model) is
    logged with the sender and the loop goes on. Returns (handled, rejected)."""
    handled = rejected = 0
    last = time.monotonic()
    try:
        while count is None or handled + rejected < count:
            got = False
            for received in receiver.messages(timeout=0.2):
                got, last = True, time.monotonic()
                try:
                    handle(received)
                    handled += 1
                except ValueError as e:
                    rejected += 1
                    log(f"rejected message {received.sequence} of stream {received.stream} "
                        f"from {received.sender}: {e}")
                break
            if not got and (receiver.stopped.is_set() or
                            (idle is not None and time.monotonic() - last > idle)):
                break
    except KeyboardInterrupt:
        log("stopping")
    finally:
        receiver.stop()
    return handled, rejected
