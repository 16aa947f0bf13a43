"""The C is portable: cross-compiled for aarch64 and armhf (Debian's cross compilers) and run
under qemu-user, the firmware encoder writes the same latents and the same .wlc bytes (rans
included) as on this machine, and the native backend's core and the fixed backend's (with a
small test program) the same latents as the extension here. `make cross` installs the tools;
without them the test says so and skips."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from walloc_edge.codec import load
from walloc_edge.data import sample_photo, synthetic_music
from walloc_edge.export import export_bundle
from walloc_edge.runtime import load_bundle
from walloc_edge.runtime.backends import FixedPointBackend, NativeBackend

pytestmark = pytest.mark.slow
TARGETS = {"aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64"),
           "armhf": ("arm-linux-gnueabihf-gcc", "qemu-arm")}


ROOT = Path(__file__).parent.parent


def tools(target):
    compiler, emulator = TARGETS[target]
    missing = [tool for tool in (compiler, emulator) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (make cross installs them)")
    return compiler, emulator


def build(source, folder, compiler):
    shutil.copytree(source, folder)
    subprocess.run(["make", "-s", "-B", "-C", str(folder), f"CC={compiler}",
                    "CFLAGS=-O2 -std=c99 -static"], check=True, capture_output=True)
    return folder / "walloc_encode"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, reference_dir):
    out = tmp_path_factory.mktemp("cross")
    for name, model in (("image", "rgb_j3_l12"), ("audio", "stereo_j4_l8")):
        export_bundle(load(reference_dir / f"{model}.pth"), out / name, ("c",),
                      log=lambda s: None)
    return out


@pytest.mark.parametrize("target", list(TARGETS))
def test_cross_compiled_encoder_writes_the_same_bytes(target, bundles, tmp_path):
    compiler, emulator = tools(target)
    photo = np.ascontiguousarray(sample_photo("coffee")[:301, :457])
    music = synthetic_music(20000, 2, seed=3)
    (tmp_path / "photo.raw").write_bytes(photo.tobytes())
    (tmp_path / "music.raw").write_bytes(music.tobytes())
    runs = {"image": [["--latents", "photo.raw", "301", "457", "3"],
                      ["--fixed", "--latents", "photo.raw", "301", "457", "3"],
                      ["--wlc", "photo.raw", "301", "457", "3", None, "rans"]],
            "audio": [["--wlc", "music.raw", "20000", "2", "44100", None, "rans"],
                      ["--fixed", "--wlc", "music.raw", "20000", "2", "44100", None, "rans"]]}
    for modality, commands in runs.items():
        here = bundles / modality / "c" / "walloc_encode"
        there = build(bundles / modality / "c", tmp_path / f"{target}-{modality}", compiler)
        for argv in commands:
            outputs = []
            for program, prefix in ((here, []), (there, [emulator])):
                out = tmp_path / f"out-{len(outputs)}"
                args = [str(out) if a is None else a for a in argv]
                if "--latents" in argv:
                    args.append(str(out))
                subprocess.run(prefix + [str(program), *args], check=True, cwd=tmp_path)
                outputs.append(out.read_bytes())
            assert outputs[0] == outputs[1], (target, modality, argv[0])


def write_params(backend, path):
    """The folded model as encoder_main.c reads it."""
    head = np.array([backend.J, backend.latent_dim, backend.weight.shape[0],
                     len(backend.thresholds), backend.clip], "<i8")
    path.write_bytes(head.tobytes() + backend.lifting.astype("<f4").tobytes()
                     + backend.weight.astype("<f4").tobytes()
                     + backend.bias.astype("<f4").tobytes()
                     + backend.thresholds.astype("<f8").tobytes())


def write_fixed_params(backend, path):
    """The fixed core's integers as encoder_main.c reads them."""
    mo = backend.model
    head = np.array([backend.J, backend.latent_dim, len(mo["shifts"]), len(mo["thresholds"]),
                     backend.clip], "<i8")
    arrays = [mo["scaling"].astype("<i4"), mo["weight"].astype("<i2"),
              *(mo[k].astype("<i4") for k in ("shifts", "bias", "thresholds"))]
    path.write_bytes(head.tobytes() + b"".join(a.tobytes() for a in arrays))


def build_encoder_main(compiler, program):
    runtime = ROOT / "walloc_edge" / "runtime"
    subprocess.run([compiler, "-O3", "-std=c99", "-static", "-pthread", "-o", str(program),
                    "-I", str(runtime), str(ROOT / "tests" / "native" / "encoder_main.c"),
                    str(runtime / "native_encoder.c"), str(runtime / "native_fixed.c")],
                   check=True, capture_output=True)


@pytest.mark.parametrize("target", list(TARGETS))
def test_cross_compiled_fixed_core_gives_the_same_latents(target, rgb, stereo, mono, tmp_path):
    """The integer core computes the same integers everywhere: the same latents as here on
    aarch64 and armhf, photos, music and mono."""
    compiler, emulator = tools(target)
    program = tmp_path / "encoder_main"
    build_encoder_main(compiler, program)
    photo = np.ascontiguousarray(sample_photo("coffee")[:304, :456])
    music = synthetic_music(20480, 2, seed=3)
    for (_, bundle), sample, dims in [(rgb, photo, ["304", "456", "3"]),
                                      (stereo, music, ["20480", "2"]),
                                      (mono, np.ascontiguousarray(music[:, :1]), ["20480", "1"])]:
        backend = FixedPointBackend(load_bundle(bundle), threads=2)
        here = backend.run(sample[None])[0]
        write_fixed_params(backend, tmp_path / "params.bin")
        (tmp_path / "raw.bin").write_bytes(sample.tobytes())
        kind = ("image" if sample.ndim == 3 else "audio") + "-fixed"
        subprocess.run([emulator, str(program), kind, "params.bin", "raw.bin", *dims,
                        "out.bin", "2"], check=True, cwd=tmp_path)
        there = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8)
        assert np.array_equal(there.reshape(here.shape), here), (target, kind)


@pytest.mark.parametrize("target", list(TARGETS))
def test_cross_compiled_native_core_gives_the_same_latents(target, bundles, rgb, stereo,
                                                           tmp_path):
    compiler, emulator = tools(target)
    program = tmp_path / "encoder_main"
    build_encoder_main(compiler, program)
    photo = np.ascontiguousarray(sample_photo("coffee")[:304, :456])  # multiples of 8
    music = synthetic_music(20480, 2, seed=3)
    for (_, bundle), sample, dims in [(rgb, photo, ["304", "456", "3"]),
                                      (stereo, music, ["20480", "2"])]:
        backend = NativeBackend(load_bundle(bundle), threads=2)
        here = backend.run(sample[None])[0]
        write_params(backend, tmp_path / "params.bin")
        (tmp_path / "raw.bin").write_bytes(sample.tobytes())
        kind = "image" if sample.ndim == 3 else "audio"
        subprocess.run([emulator, str(program), kind, "params.bin", "raw.bin", *dims,
                        "out.bin", "2"], check=True, cwd=tmp_path)
        there = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8)
        assert np.array_equal(there.reshape(here.shape), here), (target, kind)
