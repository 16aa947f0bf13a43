"""The sensor runtime: every backend gives the torch model's latents at any size; tiling is
exact; the .wlc bitstream round-trips and refuses bad bytes with BitstreamError only."""
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walloc_edge.cli import main
from walloc_edge.codec import CodecConfig, build, load
from walloc_edge.data import synthetic_music
from walloc_edge.data import sample_photo
from walloc_edge.export import export_bundle
from walloc_edge.export.validate import MAX_DIFF, MIN_IDENTICAL, _as_channels, torch_latents
from walloc_edge.runtime import (BitstreamError, Encoder, load_bundle, pad_reflect,
                                 read_bitstream, read_latents)
from walloc_edge.runtime.coders import CODERS

BACKENDS = ("onnxruntime", "litert", "numpy")


def _export(tmp_path_factory, name, codec, static):
    out = tmp_path_factory.mktemp(name)
    export_bundle(codec, out, ("onnx", "tflite"), static_shape=static, log=lambda s: None)
    return codec, out


def _seeded(config, seed=0):
    torch.manual_seed(seed)
    codec = build(config).eval()
    codec.encoder[0].weight.data *= 40  # latents over a wide part of the range
    return codec


@pytest.fixture(scope="module")
def rgb(tmp_path_factory, reference_dir):
    return _export(tmp_path_factory, "rgb", load(reference_dir / "rgb_j3_l12.pth"), (128, 96))


@pytest.fixture(scope="module")
def stereo(tmp_path_factory, reference_dir):
    return _export(tmp_path_factory, "stereo", load(reference_dir / "stereo_j4_l8.pth"), (1024,))


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    return _export(tmp_path_factory, "gray",
                   _seeded(CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32)), (64, 64))


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    config = CodecConfig("image", channels=31, J=1, latent_dim=16, Nd=32)
    return _export(tmp_path_factory, "cube", _seeded(config), (64, 64))


@pytest.fixture(scope="module")
def mono(tmp_path_factory):
    config = CodecConfig("audio", channels=1, J=3, latent_dim=4, Nd=8)
    return _export(tmp_path_factory, "mono", _seeded(config), (512,))


def expected(codec, sample):
    """The torch model's latents for a raw sample of any size, padded as the reference."""
    image = codec.config.modality == "image"
    if sample.ndim == (2 if image else 1):
        sample = sample[..., None]
    padded, _ = pad_reflect(sample, 2 ** codec.J, axes=(0, 1) if image else (0,))
    return torch_latents(codec, padded[None])[0]


def assert_same(latents, reference):
    assert latents.shape == reference.shape and latents.dtype == np.int8
    diff = np.abs(latents.astype(int) - reference)
    assert (diff == 0).mean() >= MIN_IDENTICAL and diff.max() <= MAX_DIFF


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [(301, 457), (128, 96), (7, 5)])
def test_rgb_photo_any_size(rgb, backend, size):
    codec, bundle = rgb
    photo = sample_photo("coffee")[:size[0], :size[1]]
    assert_same(Encoder(bundle, backend).latents(photo), expected(codec, photo))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gray_and_hyperspectral(gray, cube, backend):
    photo = sample_photo("astronaut")[:203, :150]
    for (codec, bundle), sample in [(gray, _as_channels(photo, 1)[..., 0]),
                                    (cube, _as_channels(photo, 31))]:
        assert_same(Encoder(bundle, backend).latents(sample), expected(codec, sample))


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_any_length(stereo, mono, backend):
    for (codec, bundle), channels in [(stereo, 2), (mono, 1)]:
        for n in (5000, 1024, 37):
            pcm = synthetic_music(n, channels, seed=n)
            sample = pcm[:, 0] if channels == 1 else pcm  # mono as a 1-D array
            latents = Encoder(bundle, backend).latents(sample)
            assert_same(latents, expected(codec, sample))
            floats = Encoder(bundle, backend).latents(pcm.astype(np.float32) / 32768)
            assert np.array_equal(floats, latents)  # float in [-1, 1] is PCM / 32768


def test_tiles_give_the_whole_image_latents(rgb):
    """Tiling is exact: each tile reads its receptive field from the whole padded image."""
    _, bundle = rgb
    photo = sample_photo("astronaut")[:250, :333]
    whole = Encoder(bundle, "onnxruntime", tile=4096).latents(photo)
    for backend, tile in [("onnxruntime", 40), ("numpy", 16), ("litert", None)]:
        assert np.array_equal(Encoder(bundle, backend, tile=tile).latents(photo), whole)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12), st.sampled_from([-1, 1, 3])),
                min_size=1, max_size=6))
def test_gathering_by_runs_equals_fancy_indexing(pieces):
    """Tiles are copied as runs of consecutive indices (rising, falling, or single ones):
    the same as indexing with the whole index array, for any mix of runs and jumps."""
    from walloc_edge.runtime.encoder import _gather

    index = np.concatenate([np.clip(a + d * np.arange(n), 0, 49) for a, n, d in pieces])
    signal = np.arange(50 * 2).reshape(50, 2)
    assert np.array_equal(_gather(signal, [index]), signal[index])
    image = np.arange(50 * 50).reshape(50, 50, 1)
    assert np.array_equal(_gather(image, [index, index[::-1]]), image[np.ix_(index, index[::-1])])


def test_bad_input_is_named(rgb, stereo):
    encoder = Encoder(rgb[1], "numpy")
    for bad, words in [(np.zeros((8, 8, 3), np.float32), "uint8"),
                       (np.zeros((8, 8, 4), np.uint8), "3 channel"),
                       (np.zeros((0, 8, 3), np.uint8), "empty"),
                       (np.zeros((2, 8, 8, 3), np.uint8), "H x W")]:
        with pytest.raises(ValueError, match=words):
            encoder.latents(bad)
    with pytest.raises(ValueError, match="NaN"):
        Encoder(stereo[1], "numpy").latents(np.full((100, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="export"):
        Encoder(rgb[1].parent / "nothing-here")


@pytest.mark.parametrize("coder", ["rans", "webp", "png", "raw"])
def test_bitstream_round_trip(rgb, stereo, coder):
    photo = sample_photo("coffee")[:95, :131]
    encoder = Encoder(rgb[1], "numpy")
    header, latents = read_latents(encoder.encode(photo, coder=coder, tile=(5, 7)))
    assert header.shape == photo.shape and header.dtype == np.uint8
    assert header.model_id == load_bundle(rgb[1]).model_id and header.coder == coder
    assert np.array_equal(latents, encoder.latents(photo))
    audio = synthetic_music(4001, 2).astype(np.float32) / 32768
    encoder = Encoder(stereo[1], "numpy")
    header, latents = read_latents(encoder.encode(audio, coder=coder))
    assert header.shape == (4001, 2) and header.dtype == np.float32
    assert np.array_equal(latents, encoder.latents(audio))


def test_gray_without_channel_axis_is_recorded(gray):
    image = _as_channels(sample_photo("coffee"), 1)[:33, :47, 0]
    header, _ = read_latents(Encoder(gray[1], "numpy").encode(image))
    assert header.shape == (33, 47) and header.channels == 1


# --- coders -------------------------------------------------------------------------------

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


def test_rans_constant_channels_send_only_their_value(stereo):
    """A channel whose latents are all one value (silence; a flat sky) costs its taps byte and
    the value; the other channels are coded as before, predicted from it; silence is then
    smaller than the WebP mosaic."""
    rans = CODERS["rans"]
    rng = np.random.default_rng(3)
    flat = np.repeat(rng.integers(-100, 100, (20, 1)), 3000, axis=1).astype(np.int8)
    assert len(rans.encode(flat, 8)) == 5 + 2 * 20
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


# --- malformed bitstreams -----------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_streams(rgb, stereo):
    photo = sample_photo("coffee")[:45, :61]
    streams = [Encoder(rgb[1], "numpy").encode(photo, coder=c, tile=(3, 4))
               for c in ("rans", "webp", "png", "raw")]
    audio = synthetic_music(2001, 2)
    streams += [Encoder(stereo[1], "numpy").encode(audio, coder=c) for c in ("rans", "raw")]
    return streams


def _with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body))


def _expect_bitstream_error(data):
    try:
        read_latents(data)
    except BitstreamError:
        pass


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(which=st.integers(0, 5), cut=st.floats(0, 1))
def test_truncation(valid_streams, which, cut):
    data = valid_streams[which]
    with pytest.raises(BitstreamError):
        read_latents(data[:int(cut * (len(data) - 1))])


@FUZZ
@given(which=st.integers(0, 5), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                                  min_size=1, max_size=4), fix_crc=st.booleans())
def test_bit_flips(valid_streams, which, flips, fix_crc):
    """Without a fixed CRC every flip is caught; with one, the field checks and the coders
    must still only ever raise BitstreamError (or decode something)."""
    data = bytearray(valid_streams[which])
    for where, bit in flips:
        data[int(where * (len(data) - 5))] ^= 1 << bit
    if fix_crc:
        _expect_bitstream_error(_with_crc(bytes(data[:-4])))
    elif bytes(data) != valid_streams[which]:
        with pytest.raises(BitstreamError):
            read_latents(bytes(data))


@FUZZ
@given(which=st.integers(0, 5), where=st.floats(0, 1), value=st.integers(0, 2 ** 32 - 1))
def test_huge_length_fields(valid_streams, which, where, value):
    data = bytearray(valid_streams[which][:-4])
    at = int(where * (len(data) - 4))
    data[at:at + 4] = struct.pack("<I", value)
    _expect_bitstream_error(_with_crc(bytes(data)))


@FUZZ
@given(data=st.binary(max_size=300), magic=st.booleans())
def test_random_bytes(data, magic):
    if magic:
        data = _with_crc(b"\x89WLC\x01" + data)
    with pytest.raises(BitstreamError):
        read_latents(data)


def test_claims_beyond_the_limit_are_refused(valid_streams):
    with pytest.raises(BitstreamError, match="limit"):
        read_bitstream(valid_streams[0], max_latents=100)


# --- golden files -------------------------------------------------------------------------

@pytest.mark.parametrize("name,bundle_fixture", [("rgb_j3_l12", "rgb"),
                                                 ("stereo_j4_l8", "stereo")])
def test_golden_files(request, reference_dir, name, bundle_fixture):
    golden = reference_dir.parent / "golden"
    _, bundle = request.getfixturevalue(bundle_fixture)
    data = np.load(golden / f"{name}.npz")
    encoder = Encoder(bundle, "numpy")
    assert np.array_equal(encoder.latents(data["input"]), data["latents"])
    files = sorted(golden.glob(f"{name}.*.wlc"))
    assert files
    for path in files:
        header, latents = read_latents(path.read_bytes())
        assert header.model_id == encoder.model_id
        assert header.sample_rate == (44100 if name.startswith("stereo") else 0)
        assert header.shape == data["input"].shape and header.dtype == data["input"].dtype
        assert np.array_equal(latents, data["latents"])
        if header.coder in ("rans", "raw"):  # pure numpy: byte-identical on every platform
            again = encoder.encode(data["input"], coder=header.coder,
                                   sample_rate=header.sample_rate)
            assert again == path.read_bytes()


@pytest.mark.parametrize("name,bundle_fixture", [("rgb_j3_l12", "rgb"),
                                                 ("stereo_j4_l8", "stereo")])
def test_rans_model_version_3_files_still_read(request, reference_dir, name, bundle_fixture):
    """Files written before constant channels (model version 3, what the C encoder still
    writes) decode to the same latents."""
    golden = reference_dir.parent / "golden"
    data = np.load(golden / f"{name}.npz")
    header, latents = read_latents((golden / "rans-v3" / f"{name}.rans.wlc").read_bytes())
    assert header.coder_params == bytes([15, 3])
    assert np.array_equal(latents, data["latents"])


# --- command line -------------------------------------------------------------------------

def test_encode_command(rgb, tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    from PIL import Image
    Image.fromarray(sample_photo("coffee")[:100, :120]).save(photos / "a.png")
    Image.fromarray(sample_photo("astronaut")[:64, :64]).save(photos / "b.jpg")
    (photos / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    status = main(["encode", str(rgb[1]), str(photos / "a.png"), str(photos / "b.jpg"),
                   str(photos / "broken.png"), "-o", str(out), "--backend", "numpy"])
    assert status == 1  # one input failed, the others were still encoded
    assert sorted(p.name for p in out.iterdir()) == ["a.wlc", "b.wlc"]
    header, _ = read_latents((out / "a.wlc").read_bytes())
    assert header.shape == (100, 120, 3)
    assert "broken.png" in capsys.readouterr().out


def test_encode_command_audio(stereo, tmp_path):
    import soundfile

    wav = tmp_path / "clip.wav"
    pcm = synthetic_music(3000, 2)
    soundfile.write(wav, pcm, 16000, subtype="PCM_16")
    assert main(["encode", str(stereo[1]), str(wav), "-o", str(tmp_path)]) == 0
    header, latents = read_latents((tmp_path / "clip.wlc").read_bytes())
    assert header.shape == (3000, 2) and header.dtype == np.int16
    assert header.sample_rate == 16000
    assert np.array_equal(latents, Encoder(stereo[1]).latents(pcm))
