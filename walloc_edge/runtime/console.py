"""Log lines to stdout whole, and around progress bars. Serve's workers, a receiver's
connections and a courier log from threads of their own, and ``print`` writes a line and
its newline in two writes, so two threads' lines could run together (and a reader counting
lines would miss one); and a line printed under a tqdm bar would be broken by it."""
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
    tqdm = sys.modules.get("tqdm")  # bars exist only where it was imported
    with _LOCK:
        if tqdm is not None and tqdm.tqdm._instances:
            tqdm.tqdm.write(line, file=stream)  # clears the bars, writes, redraws them
        else:
            stream.write(f"{line}\n")
        stream.flush()
