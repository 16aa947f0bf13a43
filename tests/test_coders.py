"""Entropy coders: each round-trips exactly; rans is smaller than the WebP mosaic, keeps
every latent's causal context, sends constant channels as their value, and refuses older
model versions."""
import numpy as np
import pytest

from walloc_edge.data import sample_photo
from walloc_edge.runtime import BitstreamError, Encoder
from walloc_edge.runtime.coders import CODERS


def _latent_cases():
    rng = np.random.default_rng(0)
    for shape in [(12, 38, 58), (8, 300), (1, 1, 1), (3, 1), (5, 1, 7), (2, 9, 1), (12, 0, 4)]:
        for spread in (0.3, 8, 300):  # near-constant, typical, saturated at ±127
            yield np.clip(np.round(rng.normal(0, spread, shape)), -127, 127).astype(np.int8)
    yield np.full((4, 6, 6), 127, np.int8)
    yield np.full((4, 6, 6), -127, np.int8)


@pytest.mark.parametrize("coder", ["rans", "webp", "png", "raw"])
def test_coders_round_trip_exactly(coder, rgb):
    c = CODERS[coder]
    real = Encoder(rgb[1], "numpy").latents(sample_photo("astronaut"))
    for latents in [real, *_latent_cases()]:
        payload = c.encode(latents, 8)
        assert np.array_equal(c.decode(payload, latents.shape, 8, c.params(8)), latents)


@pytest.mark.parametrize("coder", ["png", "webp"])
def test_a_mosaic_gives_latents_only_in_their_range(coder):
    """A picture whose values fall past the latents' range (a forged one, or a lossy WebP's
    noise) gives latents clipped to it (-128 at 8 bits, or anything at fewer bits, reached
    the decoder as a latent no encoder makes)."""
    from io import BytesIO

    from PIL import Image

    from walloc_edge.runtime.coders.mosaic import mosaic_size

    c = CODERS[coder]
    shape = (4, 6, 6)
    width, height, mode = mosaic_size(shape)
    for bits, value in ((8, 0), (4, 255), (4, 0)):
        picture = BytesIO()
        Image.new("RGB" if coder == "webp" else mode, (width, height), (value,) * 3
                  if coder == "webp" else value).save(picture, coder.upper(), lossless=True)
        latents = c.decode(picture.getvalue(), shape, bits, c.params(bits))
        top = 2 ** (bits - 1) - 1
        assert latents.min() >= -top and latents.max() <= top, (bits, value)


def test_rans_constant_channels_send_only_their_value(stereo):
    """A channel whose latents are all one value (silence; a flat sky) costs its taps byte and
    the value; the other channels are coded as before, predicted from it; silence is then
    smaller than the WebP mosaic."""
    rans = CODERS["rans"]
    rng = np.random.default_rng(3)
    flat = np.repeat(rng.integers(-100, 100, (20, 1)), 3000, axis=1).astype(np.int8)
    assert len(rans.encode(flat, 8)) == 1 + 5 + 2 * 20  # mode, region, reach; taps, value
    mixed = flat.copy()
    mixed[::3] = rng.integers(-5, 6, mixed[::3].shape)
    assert np.array_equal(rans.decode(rans.encode(mixed, 8), mixed.shape, 8, rans.params(8)),
                          mixed)
    encoder = Encoder(stereo[1], "numpy")
    silence = np.zeros((44100, 2), np.int16)
    assert len(encoder.encode(silence, "rans")) < len(encoder.encode(silence, "webp"))


@pytest.mark.parametrize("bits", [2, 3, 6])
def test_rans_and_raw_other_bit_depths(bits):
    clip = 2 ** (bits - 1) - 1
    latents = np.random.default_rng(bits).integers(-clip, clip + 1, (3, 17, 29)).astype(np.int8)
    for name in ("rans", "raw"):
        c = CODERS[name]
        assert np.array_equal(c.decode(c.encode(latents, bits), latents.shape, bits,
                                       c.params(bits)), latents)


def test_rans_is_smaller_than_webp_on_real_latents(rgb):
    """Not the benchmark (benchmarks/coders.py), but a guard that the model earns its keep."""
    latents = Encoder(rgb[1], "numpy").latents(sample_photo("astronaut"))
    assert len(CODERS["rans"].encode(latents, 8)) < len(CODERS["webp"].encode(latents, 8))


@pytest.mark.parametrize("shape,strip", [((3, 40, 57), 4), ((2, 5, 9), 2), ((12, 30, 64), 16)])
def test_rans_wavefront_keeps_the_whole_causal_context(shape, strip):
    """Lanes advance together, so every neighbour a latent is predicted from (west,
    north-west, north, north-east, and the earlier channels at its position) must be coded
    at an earlier step; the strips' wavefront guarantees it."""
    from walloc_edge.runtime.coders.rans.layout import Layout
    layout = Layout(shape, strip)
    position, _, valid = layout.schedule()
    steps, lanes = np.nonzero(valid)
    step = np.full(shape, -1).reshape(shape[0], -1)
    step[layout.lane_channel[lanes], position[steps, lanes]] = steps
    assert len(steps) == step.size and (step >= 0).all()  # each latent once
    s = step.reshape(shape)
    assert (s[:, :, 1:] > s[:, :, :-1]).all()     # west
    assert (s[:, 1:, 1:] > s[:, :-1, :-1]).all()  # north-west
    assert (s[:, 1:, :] > s[:, :-1, :]).all()     # north
    assert (s[:, 1:, :-1] > s[:, :-1, 1:]).all()  # north-east
    assert (s[1:] > s[:-1]).all()                 # earlier channels


def test_rans_refuses_an_older_model_version():
    latents = np.zeros((2, 4, 4), np.int8)
    payload = CODERS["rans"].encode(latents, 8)
    with pytest.raises(BitstreamError, match="not ones this reader knows"):
        CODERS["rans"].decode(payload, latents.shape, 8, bytes([15, 2]))




def test_rans_copies_a_pure_tone_with_lzma(stereo):
    """A tone's latents repeat with its period; version 5 sends such an audio tile as LZMA
    (mode byte 1) when that is smaller, and the tile is then smaller than the WebP mosaic."""
    from walloc_edge.runtime.coders.rans.payload import MODE_LZMA, MODE_RANS
    rans, webp = CODERS["rans"], CODERS["webp"]
    t = np.arange(5 * 44100) / 44100
    sine = np.round(16000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    latents = Encoder(stereo[1], "numpy").latents(np.stack([sine, sine], axis=1))
    payload = rans.encode(latents, 8)
    assert payload[0] == MODE_LZMA and len(payload) < len(webp.encode(latents, 8))
    assert np.array_equal(rans.decode(payload, latents.shape, 8, rans.params(8)), latents)
    noise = np.random.default_rng(0).integers(-9, 10, latents.shape).astype(np.int8)
    assert rans.encode(noise, 8)[0] == MODE_RANS  # nothing repeats: rANS is smaller


def test_rans_lzma_tiles_that_are_broken_are_refused(monkeypatch):
    from walloc_edge.runtime.coders.rans import lzma_mode
    rans = CODERS["rans"]
    latents = np.tile(np.arange(-60, 60, dtype=np.int8), (4, 40))  # (4, 4800), repeating
    payload = rans.encode(latents, 8)
    assert payload[0] == 1

    def decode(data, shape=latents.shape, bits=8):
        return rans.decode(data, shape, bits, rans.params(bits))

    for broken, why in [(payload[:-3], "exactly"), (payload + b"\0", "exactly"),
                        (payload[:1] + b"\xff" * 20, "corrupted"), (bytes([7]) + payload[1:], "mode"),
                        (b"", "mode")]:
        with pytest.raises(BitstreamError, match=why):
            decode(broken)
    with pytest.raises(BitstreamError, match="exactly"):
        decode(payload, shape=(4, 4801))
    with pytest.raises(BitstreamError, match="outside"):  # 60 does not fit 6-bit latents
        decode(payload, bits=6)
    monkeypatch.setattr(lzma_mode, "lzma", None)  # a Python without liblzma
    with pytest.raises(BitstreamError, match="no lzma module"):
        decode(payload)
    assert rans.encode(latents, 8)[0] == 0  # …and its encoder does not try the mode
