"""A sensor as sold: fresh virtual environments with only what a sensor installs (the
checkout with [runtime], with [litert], and bare), no torch, running the sensor commands end
to end on a bundle exported earlier in the run, against a real `walloc-edge serve`.

Slow (each environment is a real pip install from the package index); CI runs it."""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def make_env(folder, extra, compiler=True):
    """A new venv with ``ROOT[extra]`` installed as a user would; returns its bin folder.
    ``compiler=False``: as on a machine without a C compiler (the rans extension is not
    built, which must not fail the install)."""
    venv.create(folder, with_pip=True)
    source, env = ROOT, dict(os.environ)
    if not compiler:  # a copy without earlier build outputs, which pip would reuse
        source = folder.parent / "source"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.so", "*.egg-info", "train-runs", "demo-out"))
        env["CC"] = "/bin/false"
    target = f"{source}[{extra}]" if extra else str(source)
    result = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q",
                             "--root-user-action=ignore", target],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing for a user to read; this machine's own pip configuration may name index
    # folders it lacks ("Location 'file:...' is ignored"), which is not the package's doing.
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if line.strip() and "is ignored: it is neither a file nor a directory" not in line]
    assert not noise, "\n".join(noise)
    bin_dir = folder / "bin"
    check = subprocess.run([str(bin_dir / "python"), "-c", "import torch"],
                           capture_output=True, text=True)
    assert check.returncode != 0, "torch must not be in a sensor install"
    return bin_dir


def sensor(bin_dir, *argv, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(bin_dir / "walloc-edge"), *map(str, argv)], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"{name}.png")
    (folder / "readme.txt").write_text("not a photo")
    return folder


def serve(reference_dir, out, port, count):
    """`walloc-edge serve` from the development environment (torch), started and listening."""
    proc = subprocess.Popen([sys.executable, "-m", "walloc_edge.cli", "serve",
                             str(reference_dir / "rgb_j3_l12.pth"), "--listen",
                             f"tcp://127.0.0.1:{port}", "--out", str(out), "--device", "cpu",
                             "--count", str(count), "--idle", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening"), line + proc.stdout.read()
    return proc


@pytest.mark.parametrize("extra, backend", [("runtime", "onnxruntime"), ("litert", "litert"),
                                            ("", "numpy")])
def test_sensor_commands_in_a_fresh_environment(extra, backend, rgb_bundle, photos,
                                                reference_dir, tmp_path):
    bin_dir = make_env(tmp_path / "env", extra, compiler=bool(extra))
    for argv in (["--help"], ["--version"], ["info", rgb_bundle], ["encode", "--help"]):
        result = sensor(bin_dir, *argv)
        assert result.returncode == 0, (argv, result.stderr)
    info = sensor(bin_dir, "info", rgb_bundle).stdout
    usable = next(line for line in info.splitlines() if "usable here" in line)
    assert backend in usable
    # built with a C compiler, auto takes the C encoder; the bare install had none: numpy
    # (encoder and rans) runs, and says why
    assert f"(auto takes {'native' if extra else 'numpy'})" in usable
    assert ("C loops (native)" if extra else "numpy (the C extension was not built") in info
    assert extra or "not native: the C extension was not built" in info
    # encode a folder with the backend this environment was made for
    result = sensor(bin_dir, "encode", rgb_bundle, photos, "-o", tmp_path / "wlc",
                    "--backend", backend)
    assert result.returncode == 0, result.stderr
    assert f"encoding with {backend}" in result.stdout and "not images (.txt)" in result.stdout
    assert sorted(p.name for p in (tmp_path / "wlc").glob("*.wlc")) == \
        ["a.wlc", "b.wlc", "c.wlc"]
    # stream to a real server, which decodes every photo
    port = free_port()
    server = serve(reference_dir, tmp_path / "received", port, count=3)
    result = sensor(bin_dir, "stream", rgb_bundle, photos, "--to", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivery: 3 acknowledged, 3 new" in result.stdout, result.stdout
    log, _ = server.communicate(timeout=300)
    assert server.returncode == 0 and "decoded 3, rejected 0" in log, log
    decoded = sorted((tmp_path / "received").glob("*.png"))
    assert len(decoded) == 3 and np.asarray(Image.open(decoded[0])).shape == (48, 64, 3)
    # a server command says which extra it needs, in one line; the weights are not here
    result = sensor(bin_dir, "decode", "rgb-16x", tmp_path / "wlc" / "a.wlc", "-o",
                    tmp_path / "out")
    assert result.returncode == 2 and "pip install 'walloc-edge[server]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = sensor(bin_dir, "export", "rgb-16x", "--out", tmp_path / "b")
    assert result.returncode == 2 and "pip install 'walloc-edge[export]'" in result.stderr
    assert "weights are not installed" in sensor(bin_dir, "models").stdout
    # the bench of a bundle on the device: the backend it has measured, the others skipped
    result = sensor(bin_dir, "bench", "--bundle", rgb_bundle, "--quick", "--threads", "1")
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    assert "numpy" in result.stdout and "torch decoder" in result.stdout, result.stdout
    ort = next(line for name, line in rows.items() if name.startswith("onnxruntime, 1"))
    assert ("skipped" in ort) == (extra != "runtime"), ort


def test_latents_datasets_and_a_latents_server_without_torch(rgb_bundle, photos, tmp_path):
    """With [learning] only (no torch, no onnxruntime): a dataset from a bundle, and a server
    that keeps what a sensor streams as latents rows without decoding it."""
    bin_dir = make_env(tmp_path / "env", "learning")
    images = tmp_path / "classes"
    for name in ("a", "b"):
        (images / name).mkdir(parents=True)
        for photo in sorted(photos.glob("*.png")):
            (images / name / photo.name).write_bytes(photo.read_bytes())
    result = sensor(bin_dir, "dataset", rgb_bundle, images, "--out", tmp_path / "data",
                    "--size", "64")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "6 images of 2 classes (latents)" in result.stdout
    link = tmp_path / "link.frames"
    result = sensor(bin_dir, "stream", rgb_bundle, photos, "--to", f"file://{link}",
                    "--backend", "numpy")
    assert result.returncode == 0, result.stderr
    result = sensor(bin_dir, "serve", rgb_bundle, "--listen", link, "--out", tmp_path / "srv",
                    "--no-decode", "--latents", tmp_path / "srv" / "latents")
    assert result.returncode == 0 and "kept 3, rejected 0" in result.stdout, result.stderr
    assert len(list((tmp_path / "srv" / "latents").glob("part-*.parquet"))) == 3
    result = sensor(bin_dir, "classify", "train", tmp_path / "data", "--out", tmp_path / "c")
    assert result.returncode == 2 and "pip install 'walloc-edge[server]'" in result.stderr
