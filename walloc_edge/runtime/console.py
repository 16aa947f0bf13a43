"""Log lines to stdout whole. Serve's workers, a receiver's connections and a courier log
from threads of their own, and ``print`` writes a line and its newline in two writes, so two
threads' lines could run together (and a reader counting lines would miss one)."""
import sys
import threading

__all__ = ["say"]

_LOCK = threading.Lock()


def say(line: str, stream=None) -> None:
    """``line`` and its newline in one write to ``stream`` (default: stdout, looked up at each
    call), flushed; nothing where there is no stream (pythonw, a closed stdout)."""
    stream = stream or sys.stdout
    if stream is None:
        return
    with _LOCK:
        stream.write(f"{line}\n")
        stream.flush()
