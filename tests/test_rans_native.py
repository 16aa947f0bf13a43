"""The rans coder's C loops: byte-identical bitstreams and identical latents to the numpy
reference, malformed payloads refused the same way, and the numpy fallback when the
extension is off or missing."""
import os
import subprocess
import sys

import numpy as np
import pytest

from walloc_edge.runtime import BitstreamError
from walloc_edge.runtime.coders.rans import RansCoder, native

pytestmark = pytest.mark.skipif(not native.available(),
                                reason=f"the C extension is not here: {native.reason()}")


@pytest.fixture
def numpy_only(monkeypatch):
    monkeypatch.setattr(native, "_LIB", None)


def latent_cases():
    rng = np.random.default_rng(7)
    walk = lambda shape, s=0.5: np.clip(np.round(rng.standard_normal(shape).cumsum(-1) * s),  # noqa: E731
                                        -127, 127).astype(np.int8)
    yield walk((12, 37, 41))                     # an image tile, several strips
    yield walk((12, 96, 100), 1)                 # 9 strips a channel: the rANS pass's 8
    yield walk((4, 64, 300))                     # lanes at once and the rest (18 strips)
    yield walk((48, 28, 28), 2)                  # many channels, wide residuals
    yield walk((108, 1725))                      # stereo-5x audio, earlier-channel taps
    yield walk((2, 9000))                        # audio, several runs
    flat = walk((16, 3000))
    flat[::4] = 5                                 # constant channels among coded ones
    yield flat
    yield np.full((12, 1, 1), -127, np.int8)     # one latent, all constant
    yield rng.integers(-127, 128, (3, 17, 29)).astype(np.int8)  # noise, the full range


@pytest.mark.parametrize("predictor", ["fitted", "planar"])
def test_native_bytes_and_latents_equal_numpy(predictor, monkeypatch):
    coder = RansCoder(predictor)
    for latents in latent_cases():
        fast = coder.encode(latents, 8)
        assert np.array_equal(coder.decode(fast, latents.shape, 8, coder.params(8)), latents)
        with monkeypatch.context() as m:
            m.setattr(native, "_LIB", None)
            assert coder.encode(latents, 8) == fast, latents.shape
            assert np.array_equal(coder.decode(fast, latents.shape, 8, coder.params(8)),
                                  latents)


@pytest.mark.parametrize("threads", [2, 3, 16])
def test_native_bytes_do_not_depend_on_threads(threads):
    """Channels coded on several threads (more threads than channels too) merge into the
    bytes one thread writes."""
    coder = RansCoder()
    for latents in latent_cases():
        assert coder.encode(latents, 8, threads) == coder.encode(latents, 8), latents.shape


@pytest.mark.parametrize("bits", [2, 3, 6])
def test_native_other_bit_depths(bits, monkeypatch):
    clip = 2 ** (bits - 1) - 1
    latents = np.random.default_rng(bits).integers(-clip, clip + 1, (5, 19, 23)).astype(np.int8)
    coder = RansCoder()
    fast = coder.encode(latents, bits)
    monkeypatch.setattr(native, "_LIB", None)
    assert coder.encode(latents, bits) == fast
    assert np.array_equal(coder.decode(fast, latents.shape, bits, coder.params(bits)), latents)


def test_malformed_payloads_are_refused_alike(monkeypatch):
    """Truncated and bit-flipped payloads: the C decoder raises the numpy decoder's errors
    (or, for a flip that still decodes, returns the same latents)."""
    coder = RansCoder()
    latents = next(latent_cases())
    payload = coder.encode(latents, 8)
    rng = np.random.default_rng(0)
    broken = [payload[:cut] for cut in (len(payload) - 2, len(payload) // 2)]
    for _ in range(30):
        flipped = bytearray(payload)
        flipped[rng.integers(len(payload))] ^= 1 << rng.integers(8)
        broken.append(bytes(flipped))

    def outcome(data):
        try:
            return coder.decode(data, latents.shape, 8, coder.params(8)).tobytes()
        except BitstreamError as e:
            return str(e)

    fast = [outcome(b) for b in broken]
    monkeypatch.setattr(native, "_LIB", None)
    assert fast == [outcome(b) for b in broken]


def test_a_constant_outside_the_latent_range_is_refused():
    coder = RansCoder()
    payload = bytearray(coder.encode(np.full((2, 4, 4), 1, np.int8), 2))  # clip 1
    payload[-1] = 0x80  # the second channel's constant: -128
    with pytest.raises(BitstreamError, match="outside"):
        coder.decode(bytes(payload), (2, 4, 4), 2, coder.params(2))


def test_turned_off_the_numpy_coder_runs():
    code = ("from walloc_edge.runtime.coders.rans import native, RansCoder; import numpy as np;"
            "print(native.available(), native.reason());"
            "print(RansCoder().encode(np.arange(96, dtype=np.int8).reshape(2, 6, 8) % 7, 8).hex())")
    env = {**os.environ, "WALLOC_EDGE_NATIVE": "0"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert off.stdout.splitlines()[0] == "False turned off by WALLOC_EDGE_NATIVE=0"
    assert on.stdout.splitlines()[0] == "True None"
    assert off.stdout.splitlines()[1] == on.stdout.splitlines()[1]
