"""The firmware encoder is portable: cross-compiled for aarch64 and armhf (Debian's cross
compilers) and run under qemu-user, it writes the same latents and the same .wlc bytes
(rans included) as on this machine. `make cross` installs the tools; without them the test
says so and skips."""
import shutil
import subprocess

import numpy as np
import pytest

from walloc_edge.codec import load
from walloc_edge.data import sample_photo, synthetic_music
from walloc_edge.export import export_bundle

pytestmark = pytest.mark.slow
TARGETS = {"aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64"),
           "armhf": ("arm-linux-gnueabihf-gcc", "qemu-arm")}


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
    compiler, emulator = TARGETS[target]
    missing = [tool for tool in (compiler, emulator) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (make cross installs them)")
    photo = np.ascontiguousarray(sample_photo("coffee")[:301, :457])
    music = synthetic_music(20000, 2, seed=3)
    (tmp_path / "photo.raw").write_bytes(photo.tobytes())
    (tmp_path / "music.raw").write_bytes(music.tobytes())
    runs = {"image": [["--latents", "photo.raw", "301", "457", "3"],
                      ["--wlc", "photo.raw", "301", "457", "3", None, "rans"]],
            "audio": [["--wlc", "music.raw", "20000", "2", "44100", None, "rans"]]}
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
