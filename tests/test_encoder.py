"""The sensor encoder: every backend gives the torch model's latents at any size, tiling is
exact, bad input is named; the encode command."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walloc_edge.cli import main
from walloc_edge.data import sample_photo, synthetic_music
from walloc_edge.export.validate import MAX_DIFF, MIN_IDENTICAL, as_channels, torch_latents
from walloc_edge.runtime import Encoder, pad_reflect, read_latents
from walloc_edge.runtime.modality import IMAGE

BACKENDS = ("native", "onnxruntime", "litert", "numpy")


def expected(codec, sample):
    """The torch model's latents for a raw sample of any size, padded as the reference."""
    image = codec.config.modality is IMAGE
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
    for (codec, bundle), sample in [(gray, as_channels(photo, 1)[..., 0]),
                                    (cube, as_channels(photo, 31))]:
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
    for backend, tile in [("onnxruntime", 40), ("numpy", 16), ("litert", None), ("native", 24)]:
        assert np.array_equal(Encoder(bundle, backend, tile=tile).latents(photo), whole)


def test_a_bundle_that_keys_its_litert_graph_tflite_still_runs(rgb, tmp_path):
    """encoder.json of earlier exports names the LiteRT graph "tflite": read as "litert"."""
    import json
    import shutil

    from walloc_edge.runtime import load_bundle

    _, bundle = rgb
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    meta = json.loads((old / "encoder.json").read_text())
    meta["graphs"] = {"tflite" if fmt == "litert" else fmt: info
                      for fmt, info in meta["graphs"].items()}
    (old / "encoder.json").write_text(json.dumps(meta))
    assert "tflite" in json.loads((old / "encoder.json").read_text())["graphs"]
    assert list(load_bundle(old).meta["graphs"]) == list(load_bundle(bundle).meta["graphs"])
    photo = sample_photo("coffee")[:150, :201]
    encoder = Encoder(old, "litert")
    assert encoder.backend.name == "litert"
    assert np.array_equal(encoder.latents(photo), Encoder(bundle, "litert").latents(photo))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12), st.sampled_from([-1, 1, 3])),
                min_size=1, max_size=6))
def test_gathering_by_runs_equals_fancy_indexing(pieces):
    """Tiles are copied as runs of consecutive indices (rising, falling, or single ones):
    the same as indexing with the whole index array, for any mix of runs and jumps."""
    from walloc_edge.runtime.encoder import gather

    index = np.concatenate([np.clip(a + d * np.arange(n), 0, 49) for a, n, d in pieces])
    signal = np.arange(50 * 2).reshape(50, 2)
    assert np.array_equal(gather(signal, [index]), signal[index])
    image = np.arange(50 * 50).reshape(50, 50, 1)
    assert np.array_equal(gather(image, [index, index[::-1]]), image[np.ix_(index, index[::-1])])


def test_bad_input_is_named(rgb, stereo):
    encoder = Encoder(rgb[1], "numpy")
    for bad, words in [(np.zeros((8, 8, 3), np.float32), r"floats in \[0, 1\]: scale by 255"),
                       (np.zeros((8, 8, 4), np.uint8), "3 channel"),
                       (np.zeros((0, 8, 3), np.uint8), "empty"),
                       (np.zeros((2, 8, 8, 3), np.uint8), "H x W")]:
        with pytest.raises(ValueError, match=words):
            encoder.latents(bad)
    with pytest.raises(ValueError, match="NaN"):
        Encoder(stereo[1], "numpy").latents(np.full((100, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="export"):
        Encoder(rgb[1].parent / "nothing-here")


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
