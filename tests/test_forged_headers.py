"""What a header claims is held to the model before any work: a forged header (its CRC made
good) whose shape fields differ from its model id's cost a latents server gigabytes and
seconds for a hundred bytes; a rate FLAC cannot hold crashed `decode --format flac` and
made serve refuse a valid recording for good; and the numpy rANS decoder built a whole
tile's schedule (steps x lanes), gigabytes for a thin tile a header can claim."""
import dataclasses
import tracemalloc

import numpy as np
import pytest
import soundfile

from walloc_edge.cli import main
from walloc_edge.firmware_bridge.loops import Rejected
from walloc_edge.runtime import BitstreamError, Encoder, read_bitstream
from walloc_edge.runtime.coders.rans import RansCoder, native
from walloc_edge.runtime.io import signal_path
from walloc_edge.server import Outputs, ServedModel


@pytest.fixture(scope="module")
def header(rgb_weights_bundle):
    blob = Encoder(rgb_weights_bundle, "numpy").encode(np.zeros((32, 32, 3), np.uint8))
    return read_bitstream(blob).header


@pytest.mark.parametrize("field, value", [("latent_dim", 16384), ("J", 1), ("latent_bits", 4),
                                          ("shape", (32, 32, 1))])
def test_a_server_without_a_decoder_refuses_shape_fields_not_its_models(
        rgb_weights_bundle, header, field, value):
    served = ServedModel(str(rgb_weights_bundle), decode=False)
    served.check(header)  # its own: taken
    with pytest.raises(Rejected, match="shape fields do not match"):
        served.check(dataclasses.replace(header, **{field: value}))


def test_a_decoder_refuses_latent_bits_not_its_models(reference_dir, header):
    from walloc_edge.decoder import Decoder

    decoder = Decoder(reference_dir / "rgb_j3_l12.pth", "cpu")
    decoder.check(header)
    with pytest.raises(BitstreamError, match="shape fields do not match"):
        decoder.check(dataclasses.replace(header, latent_bits=4))


@pytest.fixture(scope="module")
def audio_header(stereo):
    """A header of the stereo model's with another sample rate."""
    blob = Encoder(stereo[1], "numpy").encode(np.zeros((256, 2), np.int16), sample_rate=44100)
    base = read_bitstream(blob).header
    return lambda rate: dataclasses.replace(base, sample_rate=rate)


@pytest.mark.parametrize("rate, holds", [(44100, True), (65535, True), (96000, True),
                                         (655350, True), (65537, False), (768000, False)])
def test_flac_takes_only_the_rates_it_can_say(audio_header, tmp_path, rate, holds):
    if holds:
        assert signal_path(audio_header(rate), tmp_path / "x", "flac").suffix == ".flac"
    else:
        with pytest.raises(ValueError, match=f"FLAC cannot hold a sample rate of {rate:,} Hz; "
                                             "write it as wav"):
            signal_path(audio_header(rate), tmp_path / "x", "flac")


def test_a_server_writing_flac_writes_a_rate_flac_cannot_hold_as_wav(stereo, audio_header,
                                                                     tmp_path):
    (tmp_path / "out").mkdir()
    outputs = Outputs(tmp_path / "out", ServedModel(str(stereo[1]), decode=False), fmt="flac")
    signal = (np.arange(512).reshape(256, 2) % 100).astype(np.int16)
    try:
        high = outputs.write_signal(signal, audio_header(768000), outputs.store.stem("high"))
        usual = outputs.write_signal(signal, audio_header(48000), outputs.store.stem("usual"))
    finally:
        outputs.close()
    assert high.suffix == ".wav" and usual.suffix == ".flac"
    samples, rate = soundfile.read(high, dtype="int16")
    assert rate == 768000 and np.array_equal(samples, signal)


def test_decode_as_flac_skips_a_rate_flac_cannot_hold_and_goes_on(stereo, reference_dir,
                                                                  tmp_path, capsys):
    for name, rate in (("high", 768000), ("usual", 48000)):
        soundfile.write(tmp_path / f"{name}.wav", np.zeros((4096, 2), np.int16), rate)
    assert main(["encode", str(stereo[1]), str(tmp_path / "high.wav"),
                 str(tmp_path / "usual.wav"), "-o", str(tmp_path / "wlc")]) == 0
    capsys.readouterr()
    status = main(["decode", str(reference_dir / "stereo_j4_l8.pth"), str(tmp_path / "wlc"),
                   "-o", str(tmp_path / "out"), "--format", "flac", "--device", "cpu"])
    said = "".join(capsys.readouterr())
    assert status == 1 and "Traceback" not in said
    assert "FLAC cannot hold a sample rate of 768,000 Hz; write it as wav" in said
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["usual.flac"]


def test_the_numpy_decoder_does_not_hold_a_thin_tiles_whole_schedule():
    """12 x 1 x 16,384 latents: a schedule of 16,395 steps x 192 lanes (75 MB in three
    arrays) that the decoder once built at once; it takes a step at a time."""
    latents = np.random.default_rng(0).integers(-3, 4, (12, 1, 16384)).astype(np.int8)
    coder = RansCoder(level="fastest")
    payload = coder.encode(latents, 8)  # (in C where built: no schedule made or kept)
    with native.turned_off():
        tracemalloc.start()
        try:
            decoded = coder.decode(payload, latents.shape, 8, coder.params(8))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert np.array_equal(decoded, latents)
    assert peak < 30e6, f"{peak / 1e6:.0f} MB"
