"""Log lines to stdout whole. Serve's workers, a receiver's connections and a courier log
from threads of their own, and ``print`` writes a line and its newline in two writes, so two
threads' lines could run together (and a reader counting lines would miss one)."""
import sys
import threading

__all__ = ["say"]

_LOCK = threading.Lock()


def say(line: str) -> None:
    """``line`` and its newline in one write, flushed (stdout looked up at each call)."""
    with _LOCK:
        sys.stdout.write(f"{line}\n")
        sys.stdout.flush()
