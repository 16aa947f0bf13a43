"""Every audio sample layout is read at its own scale and survives the codec: float, 24- and
32-bit files once came out as silence (read through an int16 conversion that does not
scale floats)."""
import sys
import wave

import numpy as np
import pytest
import soundfile

from walloc_edge.cli import main
from walloc_edge.data import synthetic_music
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.evaluation.evaluate import runtime_encoder
from walloc_edge.runtime.io import read_input, read_source
from walloc_edge.runtime.modality import AUDIO

RATE = 44100
# soundfile subtype → (what read_input returns, the format's own step)
FORMATS = {"PCM_16": (np.int16, 1 / 32768), "PCM_24": (np.float32, 2.0 ** -23),
           "PCM_32": (np.float32, 2.0 ** -23), "FLOAT": (np.float32, 1e-7),
           "DOUBLE": (np.float64, 1e-15)}


@pytest.fixture(scope="module")
def music():
    """1 s of stereo music as floats in [-1, 1] (peak about 0.5)."""
    return synthetic_music(RATE, 2, seed=3).astype(np.float64) / 32768


@pytest.fixture(scope="module")
def stereo5x():
    decoder = Decoder("stereo-5x", "cpu")
    return decoder, runtime_encoder(decoder.codec)


# FLAC holds 8-24-bit PCM only.
LAYOUTS = [(".wav", subtype) for subtype in FORMATS] + [(".flac", "PCM_16"), (".flac", "PCM_24")]


@pytest.mark.parametrize("suffix, subtype", LAYOUTS)
def test_each_layout_reads_at_its_scale_and_round_trips(subtype, suffix, music, stereo5x,
                                                        tmp_path):
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, music, RATE, subtype=subtype)
    sample, rate = read_input(path, AUDIO, 2)
    dtype, step = FORMATS[subtype]
    assert rate == RATE and sample.dtype == dtype and sample.shape == music.shape
    scale = 32768 if dtype == np.int16 else 1
    assert np.abs(sample / scale - music).max() <= max(step, 1 / 32768)
    decoder, encoder = stereo5x
    decoded = decoder.decode(encoder.encode(sample, sample_rate=rate))
    assert decoded.dtype == dtype
    quality = psnr(music, decoded / scale, peak=1.0)
    assert quality > 25, quality  # silence would score ~9 dB against this clip


@pytest.mark.slow  # exports and decodes a model end to end
def test_decoded_float_audio_is_written_as_float(music, tmp_path, capsys):
    soundfile.write(tmp_path / "clip.wav", music, RATE, subtype="FLOAT")
    from walloc_edge.export import export_bundle
    from walloc_edge.codec import load

    export_bundle(load("stereo-5x"), tmp_path / "bundle", ("onnx",), log=lambda s: None)
    assert main(["encode", str(tmp_path / "bundle"), str(tmp_path / "clip.wav"), "-o",
                 str(tmp_path / "wlc")]) == 0
    assert main(["decode", "stereo-5x", str(tmp_path / "wlc" / "clip.wlc"), "-o",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    info = soundfile.info(tmp_path / "out" / "clip.wav")
    assert info.subtype == "FLOAT" and info.channels == 2 and info.samplerate == RATE
    decoded, _ = soundfile.read(tmp_path / "out" / "clip.wav")
    assert psnr(music, decoded, peak=1.0) > 25
    capsys.readouterr()
    assert main(["decode", "stereo-5x", str(tmp_path / "wlc" / "clip.wlc"), "-o",
                 str(tmp_path / "out"), "--device", "cpu", "--format", "flac"]) == 0
    assert soundfile.info(tmp_path / "out" / "clip.flac").subtype == "PCM_24"
    assert "24-bit PCM" in capsys.readouterr().out  # it said float32


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_standard_library_wav_reader(width, music, tmp_path, monkeypatch):
    """Without soundfile (a bare install), PCM WAV of every width reads at its scale."""
    full = 2 ** (8 * width - 1)
    ints = np.clip(np.round(music * full), -full, full - 1).astype(np.int64)
    raw = (ints + 128 if width == 1 else ints).astype("<i8").view(np.uint8)
    raw = raw.reshape(-1, 8)[:, :width]  # little-endian: the low bytes
    path = tmp_path / "clip.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(width)
        w.setframerate(RATE)
        w.writeframes(raw.tobytes())
    monkeypatch.setitem(sys.modules, "soundfile", None)  # a bare install: no soundfile
    sample, rate = read_input(path, AUDIO, 2)
    scale = 32768 if sample.dtype == np.int16 else 1
    assert sample.dtype == (np.int16 if width <= 2 else np.float32) and rate == RATE
    assert np.abs(sample / scale - music).max() <= (1 / 128 if width == 1 else 1 / 32768)


def test_unreadable_audio_is_an_error_not_silence(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match="bad.wav"):
        read_input(tmp_path / "bad.wav", AUDIO, 2)
    soundfile.write(tmp_path / "empty.wav", np.zeros((0, 2)), RATE, subtype="FLOAT")
    with pytest.raises(ValueError, match="no samples"):
        read_input(tmp_path / "empty.wav", AUDIO, 2)


def test_channels_are_matched_to_the_model(music, tmp_path):
    """A mono model takes the downmix of a stereo file, a stereo model a mono file on both
    channels; 2 channels into a 6-channel model is an error naming both counts."""
    soundfile.write(tmp_path / "stereo.wav", music, RATE, subtype="PCM_16")
    soundfile.write(tmp_path / "mono.wav", music[:, :1], RATE, subtype="PCM_16")
    mono, _ = read_input(tmp_path / "stereo.wav", AUDIO, 1)
    stereo, _ = read_input(tmp_path / "stereo.wav", AUDIO, 2)
    assert mono.shape == (RATE, 1) and mono.dtype == np.int16
    assert np.abs(mono[:, 0] - stereo.astype(float).mean(axis=1)).max() <= 0.5
    both, _ = read_input(tmp_path / "mono.wav", AUDIO, 2)
    assert both.shape == (RATE, 2) and np.array_equal(both[:, 0], both[:, 1])
    with pytest.raises(ValueError, match="2 audio channels, and this model takes 6"):
        read_input(tmp_path / "stereo.wav", AUDIO, 6)
    source = read_source(tmp_path / "mono.wav", AUDIO, 2)  # what encode reports of it
    assert source.raw_bytes == RATE * 2 and source.sample.shape == (RATE, 2)
    assert source.note == "mono, put on all 2 channels: it decodes as 2 channels"
    assert read_source(tmp_path / "stereo.wav", AUDIO, 1).note == "2 channel(s) mixed to mono"
    assert read_source(tmp_path / "stereo.wav", AUDIO, 2).note is None


def test_float_audio_beyond_full_scale_is_clipped_and_said(tmp_path):
    """A float file above full scale is clipped to it (as 16-bit PCM would be), and the note
    says how much of it and its peak, rather than losing it without a word."""
    import soundfile

    x = np.zeros((RATE, 2), np.float32)
    x[:100] = 1.4
    soundfile.write(tmp_path / "loud.wav", x, RATE, subtype="FLOAT")
    source = read_source(tmp_path / "loud.wav", AUDIO, 2)
    assert source.note == ("0.23% of its samples are beyond full scale (peak 1.40): clipped "
                           "to it, as 16-bit PCM would be")
    soundfile.write(tmp_path / "fine.wav", x / 2, RATE, subtype="FLOAT")
    assert read_source(tmp_path / "fine.wav", AUDIO, 2).note is None


def test_a_wav_whose_data_chunk_lies_is_refused(reference_dir, tmp_path, capsys):
    """A WAV whose data chunk claims 4 GB but holds 1,000 bytes is not encoded as what it
    holds: encode names the file and fails."""
    import struct

    from walloc_edge.codec import load
    from walloc_edge.codec.sensor import write_bundle

    fmt = struct.pack("<HHIIHH", 1, 2, RATE, RATE * 4, 4, 16)
    body = (b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", 0xFFFFFFF0) + bytes(1000))
    (tmp_path / "liar.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(ValueError, match=r"liar.wav: its data chunk claims 4,294,967,280 "
                                         r"bytes but the file holds 1,000"):
        read_input(tmp_path / "liar.wav", AUDIO, 2)
    write_bundle(load(reference_dir / "stereo_j4_l8.pth"), tmp_path / "bundle")
    assert main(["encode", str(tmp_path / "bundle"), str(tmp_path / "liar.wav"), "-o",
                 str(tmp_path / "wlc"), "--backend", "numpy"]) != 0
    captured = capsys.readouterr()
    assert "liar.wav: its data chunk claims" in captured.out + captured.err
    assert not list((tmp_path / "wlc").glob("*.wlc"))
