"""The native backend (the C encoder): the numpy backend's latents (its float sums run in
another order, so a latent on a quantisation threshold may differ by one: within the
exporters' tolerance), the same whatever the thread count or tiling, for images (RGB, gray,
hyperspectral) and audio (stereo, mono); the next backend where the extension is off. The
fixed-point backend (the same encoder in integers) within the same tolerance, overflowing on no
input."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from walloc_edge.data import sample_photo, synthetic_music
from walloc_edge.export.validate import MAX_DIFF, MIN_IDENTICAL, as_channels
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.backends import fixed_point as fixed_backend
from walloc_edge.runtime.backends import native as native_backend
from walloc_edge.runtime.bundle import load_bundle
from walloc_edge.runtime.backends.numpy import quantizer_thresholds

pytestmark = pytest.mark.skipif(native_backend._LIB is None,
                                reason=f"the C encoder is not built here: "
                                       f"{native_backend._REASON}")


def check(bundle, sample, runs=({"threads": 1}, {"threads": 2}, {"threads": 3},
                                 {"tile": 128}), backend="native"):
    """Native latents within tolerance of the numpy backend's, identical over ``runs``."""
    native = Encoder(bundle, backend, threads=1).latents(sample)
    reference = Encoder(bundle, "numpy").latents(sample)
    assert native.shape == reference.shape and native.dtype == np.int8
    diff = np.abs(native.astype(int) - reference)
    assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF
    for kw in runs:
        assert np.array_equal(Encoder(bundle, backend, **kw).latents(sample), native), kw


def test_photos(rgb):
    for name, size in [("astronaut", (512, 512)), ("coffee", (400, 600)), ("coffee", (33, 71))]:
        check(rgb[1], sample_photo(name)[:size[0], :size[1]])


def test_gray_and_hyperspectral(gray, cube):
    photo = sample_photo("astronaut")[:203, :150]
    check(gray[1], as_channels(photo, 1)[..., 0])
    check(cube[1], as_channels(photo, 31))


def test_audio(stereo, mono):
    for (_, bundle), channels in [(stereo, 2), (mono, 1)]:
        for n in (100_000, 5000, 37):
            pcm = synthetic_music(n, channels, seed=n)
            check(bundle, pcm[:, 0] if channels == 1 else pcm,
                  runs=({"threads": 2}, {"tile": 4096}))


def test_turned_off_auto_takes_the_next_backend(rgb_bundle):
    code = ("import sys; from walloc_edge.runtime import Encoder; "
            "from walloc_edge.runtime.backends import NativeBackend, make_backend; "
            f"b = Encoder({str(rgb_bundle)!r}); print(b.backend.name); "
            "print(NativeBackend.usable(b.bundle))")
    env = {**os.environ, "WALLOC_EDGE_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0] == "onnxruntime" and "WALLOC_EDGE_NATIVE=0" in out[1]


@pytest.mark.parametrize("thresholds", [
    quantizer_thresholds(8, 127.5), quantizer_thresholds(8, 200.0), quantizer_thresholds(4, 7.5),
    np.sort(np.random.default_rng(1).standard_normal(40)),  # uneven gaps
    np.array([-1.0, 0.0, 1e-7, 1.0]),  # a gap too small for a table: the binary search
    np.linspace(1000, 1001, 50),  # far from 0 for their gaps
    np.array([0.5])])
def test_the_compander_counts_thresholds_as_numpy_does(thresholds):
    """The C compander (a table lookup and two comparisons where the thresholds allow)
    gives numpy's count of thresholds <= y, less clip, exactly: on every threshold as a
    float, one float either side, far outside, at ±inf, and at random."""
    clip = len(thresholds) // 2
    at = thresholds.astype(np.float32)
    y = np.concatenate([at, np.nextafter(at, np.float32(np.inf)),
                        np.nextafter(at, np.float32(-np.inf)), [-1e30, 1e30, np.inf, -np.inf],
                        np.random.default_rng(0).uniform(-4, 4, 10_000)]).astype(np.float32)
    out = np.empty(len(y), np.int8)
    t = np.ascontiguousarray(thresholds, np.float64)
    assert native_backend._LIB.walloc_native_quantize(y, len(y), t, len(t), clip, out) == 0
    assert np.array_equal(out, np.searchsorted(t, y.astype(np.float64), "right") - clip)


def test_asking_for_the_native_backend_where_it_is_off_says_why(rgb_bundle):
    """--backend native where it cannot run: one error naming the reason and what can run,
    not a failure at the first frame."""
    code = ("from walloc_edge.runtime import Encoder; from walloc_edge.runtime.backends "
            "import BackendError\n"
            f"try: Encoder({str(rgb_bundle)!r}, 'native')\n"
            "except BackendError as e: print(e)")
    env = {**os.environ, "WALLOC_EDGE_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "native backend cannot run" in out and "WALLOC_EDGE_NATIVE=0" in out
    assert "usable here: onnxruntime" in out


def test_images_of_more_levels_than_the_cascade_go_to_another_backend(rgb_bundle):
    """The column cascade holds up to MAX_IMAGE_J levels: a deeper image model is refused
    with its reason (auto then takes the next backend), not run."""
    bundle = load_bundle(rgb_bundle)
    assert native_backend.NativeBackend.usable(bundle) is None
    bundle.config["J"] = native_backend.MAX_IMAGE_J + 1
    assert "J = 1 .. 6" in native_backend.NativeBackend.usable(bundle)


def test_only_filters_that_lift_as_cdf_9_7_are_taken():
    """The C encoder lifts; filters of another wavelet are refused at load, not run."""
    r = 2 ** -0.5
    assert native_backend._lifting_scales(np.array([r, r]), np.array([-r, r])) is None  # Haar
    lo, hi = (np.array(f)[::-1] for f in (_BIOR44_LO, _BIOR44_HI))  # torch's kernels
    low, high = native_backend._lifting_scales(lo, hi)
    assert abs(low - 1.1496043988) < 1e-8 and abs(high + 0.8698644516) < 1e-8


# pywt.Wavelet("bior4.4").dec_lo / dec_hi (the reference checkpoints' filters)
_BIOR44_LO = [0.0, 0.03782845550726404, -0.023849465019556843, -0.11062440441843718,
              0.37740285561283066, 0.8526986790088938, 0.37740285561283066,
              -0.11062440441843718, -0.023849465019556843, 0.03782845550726404]
_BIOR44_HI = [0.0, -0.06453888262869706, 0.04068941760916406, 0.41809227322161724,
              -0.7884856164055829, 0.41809227322161724, 0.04068941760916406,
              -0.06453888262869706, 0.0, 0.0]


def _extremes(shape, dtype, seed):
    """Inputs at the ends of their range: noise, and squares of both extremes at periods
    1 .. 2^5 along the first axis (the patterns that drive high bands to their largest)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    yield rng.integers(info.min, info.max + 1, shape, dtype=dtype)
    for period in (1, 2, 4, 8, 32):
        square = (np.arange(shape[0]) // period) % 2 == 1
        yield np.where(square.reshape(-1, *[1] * (len(shape) - 1)), info.max,
                       info.min).astype(dtype) + np.zeros(shape, dtype)


def test_fixed_point_core_images(rgb, gray, cube):
    """The integer core: within tolerance of numpy on photos and on inputs at the ends of
    the range (where an overflow would show), the same whatever the threads or tiles."""
    for name, size in [("astronaut", (512, 512)), ("coffee", (33, 71))]:
        check(rgb[1], sample_photo(name)[:size[0], :size[1]], backend="fixed-point")
    for x in _extremes((96, 80, 3), np.uint8, 0):
        check(rgb[1], x, runs=({"threads": 2},), backend="fixed-point")
    photo = sample_photo("astronaut")[:203, :150]
    check(gray[1], as_channels(photo, 1)[..., 0], runs=({"tile": 64},), backend="fixed-point")
    check(cube[1], as_channels(photo, 31), runs=({"threads": 2},), backend="fixed-point")


def test_fixed_point_core_audio(stereo, mono):
    for (_, bundle), channels in [(stereo, 2), (mono, 1)]:
        for n in (100_000, 37):
            pcm = synthetic_music(n, channels, seed=n)
            check(bundle, pcm[:, 0] if channels == 1 else pcm,
                  runs=({"threads": 2}, {"tile": 4096}), backend="fixed-point")
        for x in _extremes((5000, channels), np.int16, 1):
            check(bundle, x[:, 0] if channels == 1 else x, runs=(), backend="fixed-point")


def test_the_fixed_compander_counts_thresholds_exactly():
    """The integer compander (a table and two comparisons, or a binary search where the
    thresholds are too close) counts the int32 thresholds <= acc, less clip: on each
    threshold, one either side, the ends of its range and at random."""
    rng = np.random.default_rng(2)
    for t in (np.round(quantizer_thresholds(8, 127.5) * 2 ** 29),
              np.sort(rng.choice(2 ** 31 - 3, 40, replace=False) - 2 ** 30),
              np.array([-5, 0, 1, 9]), np.array([7])):
        t = np.ascontiguousarray(t, np.int32)
        clip = len(t) // 2
        acc = np.concatenate([t, t - 1, t + 1, [-(2 ** 31 - 3), 2 ** 31 - 4, 0],
                              rng.integers(-2 ** 31 + 3, 2 ** 31 - 3, 10_000)])
        acc = np.ascontiguousarray(np.clip(acc, -(2 ** 31 - 3), 2 ** 31 - 4), np.int32)
        out = np.empty(len(acc), np.int8)
        assert native_backend._LIB.walloc_fixed_quantize(acc, len(acc), t, len(t), clip,
                                                         out) == 0
        assert np.array_equal(out, np.searchsorted(t, acc, "right") - clip)


def test_the_fixed_backend_is_never_auto(rgb_bundle):
    """auto takes the float core (or the next backend); the fixed-point one only when named."""
    assert Encoder(rgb_bundle).backend.name != "fixed-point"
    assert isinstance(Encoder(rgb_bundle, "fixed-point").backend, fixed_backend.FixedPointBackend)


def test_the_one_pass_width_lifting_is_the_four_passes_bit_for_bit(tmp_path):
    """split_lift_row_avx512 computes split_lift_passes' floats on every row it takes,
    checked in C on this CPU (it runs only where the CPU has AVX-512)."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc here to build the check")
    runtime = Path(native_backend.__file__).parents[1]
    program = tmp_path / "width_lifting"
    subprocess.run(["gcc", "-O3", "-std=c99", "-pthread", "-I", str(runtime),
                    str(Path(__file__).parent / "native" / "width_lifting.c"), "-o",
                    str(program), "-lm"], check=True)
    out = subprocess.run([str(program)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    if out.stdout.strip() == "unavailable":
        pytest.skip("this CPU has no AVX-512: the one-pass width lifting does not run here")
    assert out.stdout.strip() == f"{2 * (2112 - 16 + 1)} rows identical"
