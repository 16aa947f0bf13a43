"""Shared fixtures: the reference checkpoints and golden outputs in tests/reference/, and the
bundles of small models that many test files encode with (exported once per run), and real
MQTT brokers. Helpers that tests call by name are in helpers.py."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

# Under ``pytest -n N`` each of the N processes (and what it starts) gets its share of the
# cores for torch's and OpenMP's thread pools: N pools of every core thrash (the inner loop
# took 69 s so on this 2-core machine, 53 s with shares). Set before torch is imported.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import free_port  # noqa: E402

REFERENCE = Path(__file__).parent / "reference"
ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    """Refuse to test C that is not the sources': an in-place extension older than a C
    source or header it is built from (an edit since the build) would be tested instead."""
    runtime = ROOT / "walloc_edge" / "runtime"
    extensions = {runtime / "coders" / "rans" / "_native": [
                      runtime / "coders" / "rans" / "_native.c", runtime / "native_parallel.h"],
                  runtime / "_native_encoder": [*runtime.glob("*.[ch]")]}
    for stem, sources in extensions.items():
        for built in stem.parent.glob(f"{stem.name}.*.so"):
            newest = max(sources, key=lambda p: p.stat().st_mtime)
            if newest.stat().st_mtime > built.stat().st_mtime:
                pytest.exit(f"{newest.relative_to(ROOT)} changed since {built.name} was "
                            "built: run make ext (or .venv/bin/python setup.py build_ext "
                            "--inplace); where it ran, read its compiler's errors: a build "
                            "that fails keeps the old extension", returncode=4)


@pytest.fixture(scope="session")
def reference_dir():
    return REFERENCE


@pytest.fixture(scope="session")
def rgb_golden():
    return dict(np.load(REFERENCE / "rgb_j3_l12.npz"))


@pytest.fixture(scope="session")
def stereo_golden():
    return dict(np.load(REFERENCE / "stereo_j4_l8.npz"))


# Exported bundles of small models, once per run. An export is kept in pytest's cache
# (.pytest_cache/) under a key of everything it depends on: the model, the formats and
# options, the code that writes and validates bundles, and the versions of the exporting
# packages; so the inner loop re-exports only what changed, and a fresh clone (CI) exports
# everything.

EXPORT_CODE = [ROOT / "walloc_edge" / "export", ROOT / "walloc_edge" / "codec",
               ROOT / "walloc_edge" / "runtime", ROOT / "walloc_edge" / "decoder"]


def _code_digest():
    """A hash of the code that exports and of the exporting packages' versions."""
    import hashlib
    from importlib.metadata import version

    h = hashlib.sha256()
    for folder in EXPORT_CODE:
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".py", ".c", ".h"):
                h.update(path.read_bytes())
    for package in ("torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert"):
        h.update(version(package).encode())
    return h.hexdigest()


def _export_key(codec, formats, options):
    import hashlib

    from walloc_edge.codec.sensor import model_id

    key = f"{model_id(codec)} {sorted(formats)} {sorted(options.items())} {_code_digest()}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def kept_cache(pytestconfig, tmp_path_factory):
    """A user cache folder (for ``XDG_CACHE_HOME``: the decoder engines' exported graphs)
    kept in pytest's cache per code change, like the ``exported`` bundles."""
    if getattr(pytestconfig, "cache", None) is None:  # pytest -p no:cacheprovider
        return tmp_path_factory.mktemp("cache")
    return pytestconfig.cache.mkdir(f"user-cache-{_code_digest()[:16]}")


@pytest.fixture(scope="session")
def exported(pytestconfig, tmp_path_factory):
    """``exported(name, codec, formats, **options)``: a fresh copy of the bundle that
    ``export_bundle`` writes (tests may write beside it), exported once per code change."""
    from walloc_edge.export import export_bundle

    def export(name, codec, formats=("onnx", "litert"), **options):
        out = tmp_path_factory.mktemp(name)
        if getattr(pytestconfig, "cache", None) is None:  # pytest -p no:cacheprovider
            export_bundle(codec, out, formats, log=lambda s: None, **options)
            return out
        kept = pytestconfig.cache.mkdir("bundles") / \
            f"{name}-{_export_key(codec, formats, options)}"
        if not (kept / "encoder.json").is_file():
            # Each process exports to its own folder (pytest -n runs several at once); the
            # first to finish keeps its export, the others drop theirs.
            part = kept.with_name(f"{kept.name}.part-{os.getpid()}")
            shutil.rmtree(part, ignore_errors=True)
            export_bundle(codec, part, formats, log=lambda s: None, **options)
            try:
                part.rename(kept)
            except OSError:  # another process kept its export first
                shutil.rmtree(part)
        shutil.copytree(kept, out, dirs_exist_ok=True)
        return out

    return export


def _seeded(config, seed=0):
    import torch

    from walloc_edge.codec import build

    torch.manual_seed(seed)
    codec = build(config).eval()
    codec.encoder[0].weight.data *= 40  # latents over a wide part of the range
    return codec


@pytest.fixture(scope="session")
def rgb(exported, reference_dir):
    from walloc_edge.codec import load

    codec = load(reference_dir / "rgb_j3_l12.pth")
    return codec, exported("rgb", codec, static_shape=(128, 96))


@pytest.fixture(scope="session")
def rgb_bundle(rgb):
    """The reference RGB checkpoint's bundle folder (ONNX + LiteRT at 128x96)."""
    return rgb[1]


@pytest.fixture(scope="session")
def rgb_weights_bundle(tmp_path_factory, reference_dir):
    """The reference RGB checkpoint's bundle without graphs (the numpy backend's weights)."""
    from walloc_edge.codec import load
    from walloc_edge.codec.sensor import write_bundle

    out = tmp_path_factory.mktemp("rgb-weights")
    write_bundle(load(reference_dir / "rgb_j3_l12.pth"), out)
    return out


@pytest.fixture(scope="session")
def stereo(exported, reference_dir):
    from walloc_edge.codec import load

    codec = load(reference_dir / "stereo_j4_l8.pth")
    return codec, exported("stereo", codec, static_shape=(1024,))


@pytest.fixture(scope="session")
def gray(exported):
    from walloc_edge.codec import CodecConfig

    codec = _seeded(CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32))
    return codec, exported("gray", codec, static_shape=(64, 64))


@pytest.fixture(scope="session")
def cube(exported):
    from walloc_edge.codec import CodecConfig

    codec = _seeded(CodecConfig("image", channels=31, J=1, latent_dim=16, Nd=32))
    return codec, exported("cube", codec, static_shape=(64, 64))


@pytest.fixture(scope="session")
def mono(exported):
    from walloc_edge.codec import CodecConfig

    codec = _seeded(CodecConfig("audio", channels=1, J=3, latent_dim=4, Nd=8))
    return codec, exported("mono", codec, static_shape=(512,))


@pytest.fixture(scope="session", autouse=True)
def interruptible_children():
    """Tests stop serve and stream with Ctrl-C's signal. Run from a script's background job
    (or nohup) pytest starts with SIGINT ignored, which its children would inherit (and
    then, rightly, not stop on it): they get Python's default handling back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def sensor_state(tmp_path_factory, monkeypatch):
    """Sensors in tests keep their identity and spool in a temporary folder, not in HOME."""
    folder = tmp_path_factory.mktemp("sensor-state")
    monkeypatch.setenv("WALLOC_EDGE_STATE", str(folder))
    return folder


@pytest.fixture(scope="session", autouse=True)
def golden_files():
    """WALLOC_EDGE_GENERATE_GOLDEN=1 rewrites the golden .wlc files before the tests (only
    when the bitstream format changes on purpose; the tests then pin the new bytes)."""
    if os.environ.get("WALLOC_EDGE_GENERATE_GOLDEN") == "1":
        import runpy

        runpy.run_path(str(Path(__file__).parent / "golden" / "make_golden.py"),
                       run_name="__main__")


# MQTT: real mosquitto brokers on loopback (Debian's package; make broker installs it),
# all started by Mosquitto below.

class Mosquitto:
    """A mosquitto on a free loopback port, configured by ``settings`` (mosquitto.conf lines
    beside the listener), ready once it accepts connections. ``persistent`` keeps its
    sessions in its folder, so that a restart loses no queued message."""

    def __init__(self, binary, folder, settings, persistent=False):
        self.binary, self.folder, self.port = binary, Path(folder), free_port()
        kept = f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n" \
            if persistent else ""
        # mosquitto started by root drops to its own user, which cannot read the test's files.
        as_root = "user root\n" if os.geteuid() == 0 else ""
        (self.folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n{settings}{kept}{as_root}")
        self.start()

    def start(self):
        log = self.folder / "mosquitto.log"
        with open(log, "wb") as f:  # this start's output, for the error below
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.folder / "mosquitto.conf")],
                stdout=subprocess.DEVNULL, stderr=f)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port}: "
                           f"{log.read_text(errors='replace').strip()}")

    def restart(self):
        self.stop()
        self.start()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=10)


def _mosquitto_binary():
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).is_file():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto, or make broker): "
                    "the MQTT tests need a real broker")
    return binary


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """The port of a plain broker (anonymous, nothing kept), shared by the tests that only
    publish and subscribe."""
    server = Mosquitto(_mosquitto_binary(), tmp_path_factory.mktemp("mosquitto"),
                       "allow_anonymous true\n")
    yield server.port
    server.stop()


@pytest.fixture
def mosquitto(tmp_path_factory):
    """Starts a broker of its own for a test that restarts it or configures it:
    ``mosquitto(settings, persistent=False)`` → a running Mosquitto, stopped after the test."""
    binary, started = _mosquitto_binary(), []

    def start(settings="allow_anonymous true\n", persistent=False):
        started.append(Mosquitto(binary, tmp_path_factory.mktemp("mosquitto"), settings,
                                 persistent))
        return started[-1]

    yield start
    for server in started:
        server.stop()
