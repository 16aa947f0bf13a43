"""The C export: compiled with the system compiler, both its encoders (the runtime's core,
the default, and the fixed-memory one, --fixed) give the ONNX graph's latents (the numpy
backend's for audio), the core exactly the native backend's (--fixed-point: the
fixed-point backend's), and its .wlc is read by the Python runtime. Built with
-DWALLOC_FIXED_POINT, it has no float at all and gives the same latents within tolerance."""
import json
import platform
import shutil
import subprocess

import numpy as np
import pytest
import torch

from walloc_edge.cli import main
from walloc_edge.codec import CodecConfig, build, load
from walloc_edge.data import sample_photo, synthetic_music
from walloc_edge.export import export_bundle
from walloc_edge.export.validate import MAX_DIFF, MIN_IDENTICAL, as_channels
from walloc_edge.runtime import Encoder, read_latents


def validated(bundle):
    meta = json.loads((bundle / "encoder.json").read_text())
    assert meta["graphs"]["c"]["status"] == "validated"
    return bundle


@pytest.fixture(scope="module")
def rgb_bundle(exported, reference_dir):
    return validated(exported("c", load(reference_dir / "rgb_j3_l12.pth"), ("onnx", "c")))


@pytest.fixture(scope="module")
def stereo_bundle(exported, reference_dir):
    return validated(exported("c-audio", load(reference_dir / "stereo_j4_l8.pth"), ("c",)))


def run_c(bundle, sample, mode="--latents", *coder, rate=None, options=()):
    """The host program on an image (H, W, C) uint8 or, with a sample ``rate``, audio (L, C)."""
    shape = [str(n) for n in sample.shape] + ([] if rate is None else [str(rate)])
    raw, result = bundle / "in.raw", bundle / "out.bin"
    raw.write_bytes(np.ascontiguousarray(sample).tobytes())
    subprocess.run([str(bundle / "c" / "walloc_encode"), *options, mode, str(raw), *shape,
                    str(result), *coder], check=True)
    return result.read_bytes()


@pytest.mark.parametrize("options", [(), ("--fixed",), ("--threads", "2")])
@pytest.mark.parametrize("size", [(301, 457), (64, 64), (9, 13)])
def test_c_latents_equal_the_onnx_graph(rgb_bundle, size, options):
    photo = sample_photo("coffee")[:size[0], :size[1]]
    onnx = Encoder(rgb_bundle, "onnxruntime").latents(photo)
    c = np.frombuffer(run_c(rgb_bundle, photo, options=options), np.int8).reshape(onnx.shape)
    diff = np.abs(c.astype(int) - onnx)
    assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF
    if "--fixed" not in options:  # one core: the export's program and the native backend
        assert np.array_equal(c, Encoder(rgb_bundle, "native").latents(photo))


def test_c_wlc_is_read_by_python(rgb_bundle):
    photo = sample_photo("astronaut")[:123, :77]
    header, latents = read_latents(run_c(rgb_bundle, photo, "--wlc", "raw"))
    assert header.shape == photo.shape and header.coder == "raw"
    assert header.model_id == Encoder(rgb_bundle, "numpy").model_id
    diff = np.abs(latents.astype(int) - Encoder(rgb_bundle, "numpy").latents(photo))
    assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF


def test_info_names_the_c_program(rgb_bundle, capsys):
    main(["info", str(rgb_bundle)])
    assert "c (c/walloc_encode)" in capsys.readouterr().out


@pytest.mark.slow  # exports and compiles a second model (the rgb one stays in the inner loop)
def test_gray_model_in_c(tmp_path):
    torch.manual_seed(0)
    codec = build(CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32)).eval()
    codec.encoder[0].weight.data *= 40
    export_bundle(codec, tmp_path, ("c",), log=lambda s: None)
    gray = as_channels(sample_photo("coffee"), 1)[:50, :70]
    onnx_free = Encoder(tmp_path, "numpy").latents(gray)
    c = np.frombuffer(run_c(tmp_path, gray), np.int8).reshape(onnx_free.shape)
    assert (c == onnx_free).mean() >= MIN_IDENTICAL


@pytest.mark.slow  # exports and builds with -DWALLOC_FIXED_POINT
def test_a_model_of_small_weights_exports_its_fixed_point_build(tmp_path):
    """A freshly made (or briefly trained) model's 1x1 is small, so the fixed-memory
    encoder's integers take a large scale and its outermost thresholds did not fit int64:
    the export ended in an OverflowError. They are clamped where no pre-activation reaches,
    and the bias bounds the scale: the build gives the float encoder's latents."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc here")
    torch.manual_seed(0)
    codec = build(CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32)).eval()
    said = []
    export_bundle(codec, tmp_path / "small", ("c",), log=said.append)
    assert "its fixed-memory encoder (--fixed): validated" in "\n".join(said)  # each check
    built = _fixed_point_build(validated(tmp_path / "small"), tmp_path / "built")
    gray = as_channels(sample_photo("coffee"), 1)[:50, :70]
    numpy = Encoder(tmp_path / "small", "numpy").latents(gray)
    c = np.frombuffer(run_c(built, gray, options=("--fixed",)), np.int8)
    diff = np.abs(c.reshape(numpy.shape).astype(int) - numpy)
    assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF


def test_c_refuses_wrong_input(rgb_bundle, tmp_path):
    """Each mistake one line: the channels, a file of another size than H x W x C (other
    dimensions), a file that is not there, two encoders, an unknown coder, a bad --boot."""
    program = str(rgb_bundle / "c" / "walloc_encode")
    raw = tmp_path / "in.raw"
    raw.write_bytes(bytes(40 * 56 * 3))
    for argv, code, needle in (
            (["--latents", "x", "4", "4", "1", "y"], 2, "C = 3"),
            (["--wlc", raw, "40", "50", "3", "y"], 2, "holds more than the 6000 bytes H x W x C"),
            (["--wlc", raw, "40", "60", "3", "y"], 2, "holds fewer than the 7200 bytes"),
            (["--wlc", tmp_path / "nope.raw", "40", "56", "3", "y"], 1, "No such file"),
            (["--fixed", "--fixed-point", "--wlc", raw, "40", "56", "3", "y"], 2, "choose one"),
            (["--wlc", raw, "40", "56", "3", "y", "zstd"], 2, "unknown coder zstd"),
            (["--boot", "-1", "--frames", raw, "40", "56", "3", "y"], 2, "--boot needs a number"),
            (["--wlc", raw, "40abc", "56", "3", "y"], 2, "need H, W >= 1"),
            (["--threads", "2x", "--wlc", raw, "40", "56", "3", "y"], 2, "--threads needs"),
            (["--rans-tile", raw, "-1", "5", "y"], 2, "--rans-tile needs ROWS, WIDTH >= 1"),
            (["--wlc", raw, "40", "56", "3", "y", "--level", "fast"], 2,
             "(options before the mode)")):
        result = subprocess.run([program, *map(str, argv)], capture_output=True, text=True)
        assert result.returncode == code and needle in result.stderr, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_c_audio_refuses_a_rate_the_bitstream_cannot_hold(stereo_bundle, tmp_path):
    """A rate past the .wlc's field (1,048,575) was written (wrapped past 2^32) and exit 0:
    a file every reader refuses."""
    raw = tmp_path / "in.raw"
    raw.write_bytes(bytes(4000 * 2 * 2))
    for rate in ("2000000", "5000000000", "-1", "44.1k"):
        result = subprocess.run([str(stereo_bundle / "c" / "walloc_encode"), "--wlc", str(raw),
                                 "4000", "2", rate, str(tmp_path / "y.wlc")],
                                capture_output=True, text=True)
        assert result.returncode == 2 and "RATE from 0 to 1048575" in result.stderr, rate
        assert not (tmp_path / "y.wlc").exists()


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_c_frames_are_served(rgb_bundle, reference_dir, tmp_path, capsys):
    """Firmware path: the C program frames its .wlc; walloc-edge serve reads and decodes it.
    A third capture numbered as the second is a collision: not written, and with no way
    back to the device nothing sends it again, so serve's status says so (it said 0)."""
    photo = sample_photo("coffee")[:40, :56]
    link = tmp_path / "link.frames"
    link.write_bytes(run_c(rgb_bundle, photo, "--frames") +  # two captures, numbered apart
                     run_c(rgb_bundle, photo[:32], "--frames", options=("--sequence", "1")))
    out = tmp_path / "received"
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(link),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "decoded 2, rejected 0" in capsys.readouterr().out
    again = tmp_path / "again.frames"
    again.write_bytes(run_c(rgb_bundle, photo[:24], "--frames", options=("--sequence", "1")))
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(again),
                 "--out", str(out), "--device", "cpu"]) == 1
    assert "decoded 0, rejected 0" in capsys.readouterr().out
    cut = tmp_path / "cut.frames"  # a capture cut short: its message never came out
    cut.write_bytes(run_c(rgb_bundle, photo, "--frames", options=("--sequence", "2"))[:-10])
    assert main(["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(cut),
                 "--out", str(out), "--device", "cpu"]) == 1
    assert "decoded 0, rejected 0" in capsys.readouterr().out
    from PIL import Image
    assert np.asarray(Image.open(out / "0000000000000000-0-000000.png")).shape == photo.shape
    assert np.asarray(Image.open(out / "0000000000000000-0-000001.png")).shape == (32, 56, 3)


def test_c_rans_bytes_equal_the_python_coder(rgb_bundle, tmp_path):
    """Shared test vectors: the C rans coder writes exactly RansCoder("planar")'s bytes."""
    from walloc_edge.runtime.coders.rans import RansCoder

    rng = np.random.default_rng(0)
    real = Encoder(rgb_bundle, "numpy").latents(sample_photo("astronaut"))[:, :64, :64]
    vectors = [np.ascontiguousarray(real),
               np.clip(np.round(rng.normal(0, 30, (12, 17, 23))), -127, 127).astype(np.int8),
               np.full((12, 3, 5), -127, np.int8), np.zeros((12, 1, 1), np.int8)]
    python = RansCoder("planar")
    for latents in vectors:
        _, h, w = latents.shape
        src, dst = tmp_path / "tile.lat", tmp_path / "tile.rans"
        src.write_bytes(latents.tobytes())
        subprocess.run([str(rgb_bundle / "c" / "walloc_encode"), "--rans-tile", str(src),
                        str(h), str(w), str(dst)], check=True)
        assert dst.read_bytes() == python.encode(latents, 8)
        assert np.array_equal(python.decode(dst.read_bytes(), latents.shape, 8,
                                            python.params(8)), latents)


LEVELS = ("best", "fast", "fastest")


def rans_tiles(program, vectors, tmp_path):
    """For each level, the C host program's rans payload of each tile of ``vectors``,
    against RansCoder(level=...)'s."""
    from walloc_edge.runtime.coders.rans import RansCoder

    for level in LEVELS:
        python = RansCoder(level=level)
        for latents in vectors:
            src, dst = tmp_path / "tile.lat", tmp_path / "tile.rans"
            src.write_bytes(latents.tobytes())
            subprocess.run([str(program), "--level", level, "--rans-tile", str(src),
                            *map(str, latents.shape[1:]), str(dst)], check=True)
            assert dst.read_bytes() == python.encode(latents, 8), (level, latents.shape)


def test_c_rans_levels_write_the_python_coders_bytes(rgb_bundle, tmp_path):
    rng = np.random.default_rng(0)
    real = Encoder(rgb_bundle, "numpy").latents(sample_photo("astronaut"))[:, :64, :64]
    flat = rng.integers(-3, 4, (12, 20, 30)).astype(np.int8)
    flat[2] = 5  # a constant channel among coded ones
    rans_tiles(rgb_bundle / "c" / "walloc_encode",
               [np.ascontiguousarray(real), flat, np.zeros((12, 1, 1), np.int8),
                np.clip(np.round(rng.normal(0, 30, (12, 17, 23))), -127, 127).astype(np.int8)],
               tmp_path)


@pytest.mark.parametrize("level", LEVELS)
def test_c_wlc_at_each_level_is_the_python_runtimes(rgb_bundle, stereo_bundle, level):
    """Byte for byte, image and audio: the C core's latents (the native backend's) coded
    at the level in the C-written tiles."""
    photo = sample_photo("coffee")[:150, :201]
    assert run_c(rgb_bundle, photo, "--wlc", options=("--level", level)) == \
        Encoder(rgb_bundle, "native").encode(photo, tile=(64, 64), level=level)
    pcm = synthetic_music(9000, 2, seed=5)
    assert run_c(stereo_bundle, pcm, "--wlc", rate=16000, options=("--level", level)) == \
        Encoder(stereo_bundle, "native").encode(pcm, tile=(1024,), sample_rate=16000,
                                                level=level)


def test_c_unknown_level_is_one_line(rgb_bundle):
    result = subprocess.run([str(rgb_bundle / "c" / "walloc_encode"), "--level", "quick",
                             "--wlc", "in.raw", "1", "1", "3", "out.wlc"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "unknown --level quick; choose from best, fast, fastest"


def test_c_rans_wlc_and_frames_decode_in_python(rgb_bundle):
    photo = sample_photo("coffee")[:301, :457]
    header, latents = read_latents(run_c(rgb_bundle, photo, "--wlc"))
    assert header.coder == "rans"
    assert (latents == Encoder(rgb_bundle, "numpy").latents(photo)).mean() >= MIN_IDENTICAL


@pytest.mark.parametrize("length", [1000, 37, 5])
def test_c_audio_latents_equal_the_numpy_encoder(stereo_bundle, length):
    """Lengths that need reflect padding, down to shorter than one block: the level-by-level
    C transform gives the runtime's latents."""
    pcm = synthetic_music(length, 2, seed=3)
    expected = Encoder(stereo_bundle, "numpy").latents(pcm)
    c = np.frombuffer(run_c(stereo_bundle, pcm, rate=16000), np.int8)
    diff = np.abs(c.reshape(expected.shape).astype(int) - expected)
    assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF


def test_c_audio_rans_bytes_equal_the_python_coder(stereo_bundle, tmp_path):
    """Built with a larger WALLOC_TILE than the default 1024, so that a tile has several runs."""
    import shutil

    from walloc_edge.runtime.coders.rans import RansCoder

    build = shutil.copytree(stereo_bundle / "c", tmp_path / "c")
    (build / "walloc_encode").unlink()
    subprocess.run(["make", "-s", "-C", str(build), "CFLAGS=-O2 -std=c99 -DWALLOC_TILE=8192"],
                   check=True)
    rng = np.random.default_rng(1)
    real = Encoder(stereo_bundle, "numpy").latents(synthetic_music(40000, 2))  # 2 runs
    vectors = [real, np.ascontiguousarray(real[:, :300]),
               np.clip(np.round(rng.normal(0, 30, (8, 5000))), -127, 127).astype(np.int8),
               np.full((8, 2), 127, np.int8), np.zeros((8, 1), np.int8)]
    python = RansCoder("planar")
    for latents in vectors:
        src, dst = tmp_path / "tile.lat", tmp_path / "tile.rans"
        src.write_bytes(latents.tobytes())
        subprocess.run([str(build / "walloc_encode"), "--rans-tile", str(src),
                        str(latents.shape[1]), str(dst)], check=True)
        assert dst.read_bytes() == python.encode(latents, 8)
        assert np.array_equal(python.decode(dst.read_bytes(), latents.shape, 8,
                                            python.params(8)), latents)
    tone = np.tile(real[:, :441], (1, 6))  # repeats: "best" codes it by LZMA where built in
    rans_tiles(build / "walloc_encode", [real, vectors[2], vectors[4], tone], tmp_path)


@pytest.mark.parametrize("coder", ["rans", "raw"])
def test_c_audio_wlc_decodes_to_wav(stereo_bundle, reference_dir, tmp_path, coder):
    """Several tiles (1024 latents each in C): the Python decoder writes the clip back."""
    pcm = synthetic_music(20000, 2, seed=4)
    wlc = tmp_path / "clip.wlc"
    wlc.write_bytes(run_c(stereo_bundle, pcm, "--wlc", coder, rate=22050))
    header, latents = read_latents(wlc.read_bytes())
    assert (header.coder, header.sample_rate, header.shape) == (coder, 22050, pcm.shape)
    assert (latents == Encoder(stereo_bundle, "numpy").latents(pcm)).mean() >= MIN_IDENTICAL
    assert main(["decode", str(reference_dir / "stereo_j4_l8.pth"), str(wlc),
                 "--out", str(tmp_path), "--device", "cpu"]) == 0
    import wave
    with wave.open(str(tmp_path / "clip.wav")) as w:
        assert (w.getframerate(), w.getnframes(), w.getnchannels()) == (22050, 20000, 2)


def test_c_fixed_point_core_is_the_fixed_point_backend(rgb_bundle, stereo_bundle):
    """--fixed-point: the runtime's integer core, the fixed-point backend's latents exactly."""
    photo = sample_photo("coffee")[:301, :457]
    expected = Encoder(rgb_bundle, "fixed-point").latents(photo)
    for options in (("--fixed-point",), ("--fixed-point", "--threads", "2")):
        c = np.frombuffer(run_c(rgb_bundle, photo, options=options), np.int8)
        assert np.array_equal(c.reshape(expected.shape), expected), options
    pcm = synthetic_music(1000, 2, seed=3)
    expected = Encoder(stereo_bundle, "fixed-point").latents(pcm)
    c = np.frombuffer(run_c(stereo_bundle, pcm, rate=16000, options=("--fixed-point",)), np.int8)
    assert np.array_equal(c.reshape(expected.shape), expected)


def _fixed_point_build(bundle, tmp_path):
    """The bundle's C folder built with -DWALLOC_FIXED_POINT (and on x86-64 gcc with
    -mgeneral-regs-only, which refuses any float operation)."""
    folder = tmp_path / bundle.name
    shutil.copytree(bundle, folder)
    flags = "-O2 -std=c99 -Wall -Wextra -DWALLOC_FIXED_POINT"
    if platform.machine() == "x86_64" and shutil.which("gcc"):
        flags += " -mgeneral-regs-only"
    built = subprocess.run(["make", "-s", "-B", "-C", str(folder / "c"), "CC=gcc",
                            f"CFLAGS={flags}"], check=True, capture_output=True, text=True)
    assert "warning" not in built.stderr, built.stderr  # (firmware builds use -Werror)
    return folder


@pytest.mark.slow  # cross-compiles for a Cortex-M0 (make cross)
def test_c_fixed_point_build_has_no_float(rgb_bundle, stereo_bundle, tmp_path):
    """-DWALLOC_FIXED_POINT: both integer encoders, within tolerance of the float ones."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc here")
    photo = sample_photo("astronaut")[:203, :150]
    pcm = synthetic_music(5000, 2, seed=4)
    for bundle, sample, rate in ((rgb_bundle, photo, None), (stereo_bundle, pcm, 16000)):
        built = _fixed_point_build(bundle, tmp_path)
        numpy = Encoder(bundle, "numpy").latents(sample)
        for options in ((), ("--fixed",), ("--fixed-point",)):
            c = np.frombuffer(run_c(built, sample, rate=rate, options=options), np.int8)
            diff = np.abs(c.reshape(numpy.shape).astype(int) - numpy)
            assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF, options


def test_c_fixed_point_encoder_builds_for_a_core_without_fpu(rgb_bundle, tmp_path):
    """The fixed-memory encoder for a Cortex-M0 (soft float, compiled only): no call to the
    float emulation (__aeabi_f*, __aeabi_d*), where the float build has them."""
    gcc, nm = "arm-linux-gnueabihf-gcc", "arm-linux-gnueabihf-nm"
    if shutil.which(gcc) is None or shutil.which(nm) is None:
        pytest.skip(f"{gcc} not installed (make cross installs it)")
    (tmp_path / "gnu").mkdir()
    (tmp_path / "gnu" / "stubs-soft.h").write_text("")  # glibc's headers for a soft ABI
    calls = {}
    for variant, define in (("fixed", ["-DWALLOC_FIXED_POINT"]), ("float", [])):
        obj = tmp_path / f"{variant}.o"
        subprocess.run([gcc, "-Os", "-std=c99", "-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft",
                        "-DWALLOC_MAX_WIDTH=64", "-isystem", str(tmp_path), *define, "-c",
                        str(rgb_bundle / "c" / "walloc_encoder.c"), "-o", str(obj)],
                       check=True, capture_output=True)
        undefined = subprocess.run([nm, "-u", str(obj)], check=True, capture_output=True,
                                   text=True).stdout.split()
        calls[variant] = {u for u in undefined if u.startswith(("__aeabi_f", "__aeabi_d"))}
    assert calls["fixed"] == set() and calls["float"]


def test_an_installed_package_ships_what_the_export_copies():
    """The runtime's C files that the export copies are package data (a wheel has them)."""
    import tomllib
    from pathlib import Path

    from walloc_edge.export.c_export import CORE

    root = Path(__file__).parent.parent
    shipped = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["walloc_edge.runtime"]
    assert {path.name for path in CORE} <= set(shipped)
