"""Helpers that several test files call by name (fixtures live in conftest.py): one copy,
so that no test file imports another."""
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
from PIL import Image

# Prepended to the code of a subprocess (python -c) that must run as on a sensor without
# torch: every import of torch fails there, lazy ones included.
def blocking(module):
    """Python code that makes importing ``module`` (or its submodules) fail as if it were
    not installed."""
    return textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r} or name.startswith({module + "."!r}):
                    raise ModuleNotFoundError({module + " is blocked in this test"!r},
                                              name={module!r})
        sys.meta_path.insert(0, Block())
    """)


BLOCK_TORCH = blocking("torch")


OUTPUT_NAME = re.compile(r"(?:(?P<name>.+?)-)?(?P<sensor>[0-9a-f]{16})-(?P<boot>\d+)-"
                         r"(?P<sequence>\d{6})(?:-(?P<captured>\d{8}T\d{6}Z))?"
                         r"(?:-(?P<source>.+?))?(?P<suffix>\.[a-z]+)?")


def output_parts(name):
    """The fields of a server's output name, [NAME-]SENSOR-BOOT-SEQUENCE[-CAPTURED][-SOURCE]
    (.EXT), as a dict; AssertionError for a name not so made."""
    match = OUTPUT_NAME.fullmatch(name)
    assert match, f"{name} is not an output name"
    return match.groupdict()


class FakeLink:
    """A link with acknowledgements that keeps what is written (the test plays the server)."""
    reply_meta = {}
    acks, alive, max_payload, url = True, True, 60000, "fake://"

    def __init__(self):
        self.on_ack, self.written = None, []

    def reconnect(self):
        pass

    def write(self, frames):
        self.written.append(frames)

    def close(self):
        pass


def free_port():
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=10.0, explain=lambda: ""):
    """Poll ``condition`` until it holds; fail with ``explain()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, explain()
        time.sleep(0.01)


def photos(folder, n, seed=0, size=(32, 40)):
    """``n`` noise photos ``p00.png``, ``p01.png``… of ``size`` in ``folder`` (made)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            folder / f"p{i:02d}.png")
    return folder


def sensor(bundle, *argv, state):
    """``walloc-edge stream BUNDLE ARGV…`` with the numpy backend, in its own process."""
    return subprocess.Popen([sys.executable, "-m", "walloc_edge.cli", "stream", str(bundle),
                             *map(str, argv), "--backend", "numpy", "--state", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Serve:
    """``walloc-edge serve ARGV…`` in its own process, its output lines collected; ready once
    it printed "listening"."""

    def __init__(self, *argv, ready=90, **popen):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "walloc_edge.cli", "serve", *map(str, argv)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
        self.lines = []
        self.reading = threading.Thread(target=self._read, daemon=True)
        self.reading.start()
        self.wait_for(lambda: any(line.startswith("listening") for line in self.lines), ready)

    @classmethod
    def reference(cls, reference_dir, out, listen, *extra, **options):
        """The small reference RGB model on CPU, listening on ``listen`` (a URL, or a port
        on loopback for TCP), writing to ``out``."""
        if isinstance(listen, int):
            listen = f"tcp://127.0.0.1:{listen}"
        return cls(reference_dir / "rgb_j3_l12.pth", "--listen", listen, "--out", out,
                   "--device", "cpu", *extra, **options)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def written(self):
        """How many messages it wrote so far."""
        return sum(" -> " in line for line in self.lines)

    def wait_for(self, condition, timeout):
        """Poll ``condition``; fail with serve's output after ``timeout`` s, or if it exited."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline and self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM, as a service manager stops it; returns everything it printed."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.reading.join(timeout=5)
        return "".join(self.lines)
