"""Silence converters' chatter (Python prints and native logs) unless they fail."""
import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_output():
    """Send fds 1 and 2 to a temporary file; replay it to stderr if the block raises."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        else:
            _restore(saved)


def _restore(saved):
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in saved:
        os.close(fd)
