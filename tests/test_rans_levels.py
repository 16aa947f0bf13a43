"""The rans levels: each level's bytes the same from the C loops and the numpy reference,
every level decoded by the one decoder, the level recorded in the coder parameters, golden
files per level, and the mistakes (an unknown level, a level from a newer version) said in
one line."""
import struct
import zlib

import numpy as np
import pytest

from walloc_edge.cli import main
from walloc_edge.data import synthetic_music
from walloc_edge.runtime import BitstreamError, Encoder, read_bitstream, read_latents
from walloc_edge.runtime.coders import CODERS
from walloc_edge.runtime.coders.rans import RansCoder, native
from walloc_edge.runtime.coders.rans.levels import LEVELS

OTHER_LEVELS = LEVELS[1:]


def latent_cases():
    rng = np.random.default_rng(11)
    walk = lambda shape, s=0.5: np.clip(np.round(rng.standard_normal(shape).cumsum(-1) * s),  # noqa: E731
                                        -127, 127).astype(np.int8)
    yield walk((12, 37, 41))                     # an image tile, several strips
    yield walk((20, 9, 13), 2)                   # more than 16 earlier channels
    yield walk((108, 1725))                      # stereo-5x audio
    flat = walk((16, 3000))
    flat[::4] = 5                                # constant channels among coded ones
    yield flat
    yield np.full((3, 1, 1), 7, np.int8)         # one latent a channel, all constant
    yield rng.integers(-127, 128, (3, 17, 29)).astype(np.int8)  # noise, the full range


def test_levels_are_listed_and_best_is_the_default():
    assert CODERS["rans"].levels == ("best", "fast", "fastest")
    assert CODERS["rans"].level == "best"
    assert CODERS["rans"].at_level(None) is CODERS["rans"]
    assert CODERS["rans"].at_level("best") is CODERS["rans"]
    fast = CODERS["rans"].at_level("fast")
    assert (fast.name, fast.wire_id, fast.level) == ("rans", CODERS["rans"].wire_id, "fast")


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_decodes_with_the_one_decoder(level):
    coder = RansCoder(level=level)
    for latents in latent_cases():
        payload = coder.encode(latents, 8)
        # the parameters say the level; a decoder of any level reads the payload
        for reader in (coder, CODERS["rans"]):
            assert np.array_equal(reader.decode(payload, latents.shape, 8, coder.params(8)),
                                  latents), latents.shape


@pytest.mark.skipif(not native.available(), reason="the C extension is not built here")
@pytest.mark.parametrize("level", OTHER_LEVELS)
def test_c_and_numpy_write_the_same_bytes_at_each_level(level, monkeypatch):
    coder = RansCoder(level=level)
    for latents in latent_cases():
        fast = coder.encode(latents, 8)
        assert coder.encode(latents, 8, 2) == fast, latents.shape  # threads change nothing
        with monkeypatch.context() as m:
            m.setattr(native, "_LIB", None)
            assert coder.encode(latents, 8) == fast, latents.shape
            assert np.array_equal(coder.decode(fast, latents.shape, 8, coder.params(8)),
                                  latents)


def test_the_level_is_in_the_coder_parameters():
    assert [RansCoder(level=level).params(8).hex() for level in LEVELS] == \
        ["0f05", "0f0501", "0f0502"]


def test_faster_levels_cost_little_size_on_smooth_latents():
    """A guard, not the benchmark (benchmarks/rans_levels.py): on correlated channels the
    fast fit is within a few percent of best, the fixed predictors behind both."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((64, 64)).cumsum(0).cumsum(1) / 6
    latents = np.clip(np.round(np.stack([base * (1 + c / 8) + rng.standard_normal((64, 64))
                                         for c in range(12)])), -127, 127).astype(np.int8)
    sizes = {level: len(RansCoder(level=level).encode(latents, 8)) for level in LEVELS}
    assert sizes["fast"] <= 1.05 * sizes["best"]
    assert sizes["fastest"] > sizes["fast"]


@pytest.mark.parametrize("name,bundle_fixture", [("rgb_j3_l12", "rgb"),
                                                 ("stereo_j4_l8", "stereo")])
@pytest.mark.parametrize("level", OTHER_LEVELS)
def test_golden_files_of_each_level(request, reference_dir, name, bundle_fixture, level,
                                    monkeypatch):
    golden = reference_dir.parent / "golden"
    data = np.load(golden / f"{name}.npz")
    blob = (golden / f"rans-{level}" / f"{name}.rans.wlc").read_bytes()
    header, latents = read_latents(blob)
    assert header.coder_params == bytes([15, 5, LEVELS.index(level)])
    assert np.array_equal(latents, data["latents"])
    _, bundle = request.getfixturevalue(bundle_fixture)
    encoder = Encoder(bundle, "numpy")
    again = lambda: encoder.encode(data["input"], sample_rate=header.sample_rate,  # noqa: E731
                                   level=level)
    assert again() == blob
    monkeypatch.setattr(native, "_LIB", None)
    assert again() == blob


def with_params(blob, params):
    """.wlc bytes ``blob`` with other coder parameters, the CRC made valid again."""
    fixed = struct.calcsize("<4sBBBB16sBBBHHBB")  # the header through the parameter length
    body = blob[:-4]
    n = body[fixed - 1]
    body = body[:fixed - 1] + bytes([len(params)]) + params + body[fixed + n:]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("params,newer", [(bytes([15, 5, 3]), True), (bytes([15, 6]), True),
                                          (bytes([15, 4, 1]), False), (bytes([14, 5]), False)])
def test_parameters_a_reader_does_not_know(rgb_bundle, params, newer):
    blob = Encoder(rgb_bundle, "numpy").encode(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(BitstreamError) as error:
        read_bitstream(with_params(blob, params))
    message = str(error.value)
    assert ("made by a newer walloc-edge" in message) == newer, message
    assert "\n" not in message


def test_an_unknown_level_names_the_choices(rgb_bundle):
    with pytest.raises(ValueError, match="unknown rans level 'quick'; choose from best, fast, "
                                         "fastest"):
        Encoder(rgb_bundle, "numpy").encode(np.zeros((16, 16, 3), np.uint8), level="quick")
    with pytest.raises(ValueError, match="the png coder has no levels"):
        Encoder(rgb_bundle, "numpy").encode(np.zeros((16, 16, 3), np.uint8), coder="png",
                                            level="fast")


def one_line_usage_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", [["encode", "b", "x.png", "-o", "out"],
                                     ["stream", "b", "x.png", "--to", "-"], ["bench"]])
def test_level_on_the_command_line_is_checked(command, capsys):
    err = one_line_usage_error(capsys, command + ["--level", "quick"])
    assert "--level" in err and "'best', 'fast', 'fastest'" in err


def test_encode_at_a_level(rgb_bundle, tmp_path, capsys):
    photo = tmp_path / "a.png"
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)).save(photo)
    assert main(["encode", str(rgb_bundle), str(photo), "-o", str(tmp_path / "out"),
                 "--level", "fastest"]) == 0
    assert "(level fastest)" in capsys.readouterr().out
    header = read_bitstream((tmp_path / "out" / "a.wlc").read_bytes()).header
    assert header.coder_params == bytes([15, 5, 2])
    assert main(["encode", str(rgb_bundle), str(photo), "-o", str(tmp_path / "png"),
                 "--coder", "png", "--level", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--level applies to the rans coder, not --coder png"), err
    assert len(err.splitlines()) == 1


def test_fastest_on_audio_says_what_it_costs(stereo, tmp_path, capsys):
    """--level fastest is taken for audio, with a note of what it costs in size."""
    import soundfile

    clip = tmp_path / "clip.wav"
    soundfile.write(clip, synthetic_music(4096, 2, seed=1), 44100, subtype="PCM_16")
    for level, noted in (("fastest", True), ("fast", False)):
        assert main(["encode", str(stereo[1]), str(clip), "-o", str(tmp_path / level),
                     "--level", level]) == 0
        out = capsys.readouterr().out
        assert ("note: --level fastest makes audio 1.5-1.7 times the size" in out) == noted
