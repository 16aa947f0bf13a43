"""The paper's evaluation protocol beside the default one, for audio and images."""
import math

import numpy as np
import pytest

from walloc_edge.data import synthetic_music
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.evaluation.evaluate import (evaluate_sample, paper_audio, runtime_encoder,
                                             summarise)


def test_paper_audio_is_mean_removed_and_peak_normalised():
    clip = (synthetic_music(5000, 2, seed=1) // 3 + 1000).astype(np.int16)  # quiet, offset
    x = paper_audio(clip)
    assert abs(x.mean()) < 1e-12 and math.isclose(np.abs(x).max(), 0.5)
    assert np.corrcoef(x[:, 0], clip[:, 0])[0, 1] > 0.999  # the same signal, rescaled


@pytest.fixture(scope="module")
def stereo(reference_dir):
    decoder = Decoder(reference_dir / "stereo_j4_l8.pth", "cpu")
    return decoder, runtime_encoder(decoder.codec)


def test_paper_audio_row_and_ratio_of_means(stereo):
    decoder, encoder = stereo
    clips = [synthetic_music(n, 2, seed=s) for s, n in ((1, 4000), (2, 9000))]
    rows = [evaluate_sample(decoder, encoder, c, 44100, protocol="paper") for c in clips]
    for clip, row in zip(clips, rows):
        x = paper_audio(clip)
        y = decoder.decode(encoder.encode((2 * x).astype(np.float32))).astype(float) / 2
        assert math.isclose(row["paper_psnr"], psnr(x, y, peak=1.0), abs_tol=1e-9)
        assert math.isclose(row["paper_bits"], 8 * row["bytes"] / clip.size)  # per channel
    summary = summarise([{"file": str(i), **r} for i, r in enumerate(rows)], decoder.codec.config)
    mean_bits = np.mean([r["paper_bits"] for r in rows])
    assert math.isclose(summary["paper_compression_ratio"], 16 / mean_bits)
    assert not math.isclose(summary["paper_compression_ratio"],
                            np.mean([16 / r["paper_bits"] for r in rows]))  # not a mean of ratios


def test_paper_image_ratio_is_24_over_mean_bpp(reference_dir):
    decoder = Decoder(reference_dir / "rgb_j3_l12.pth", "cpu")
    encoder = runtime_encoder(decoder.codec)
    rng = np.random.default_rng(0)
    rows = [{"file": str(i), **evaluate_sample(decoder, encoder, rng.integers(
        0, 256, (32 + 16 * i, 48, 3), dtype=np.uint8), protocol="paper")} for i in range(2)]
    summary = summarise(rows, decoder.codec.config)
    assert math.isclose(summary["paper_compression_ratio"],
                        24 / np.mean([r["bits_per_pixel"] for r in rows]))
    assert rows[0]["paper_psnr"] == rows[0]["psnr"]  # images: the usual 8-bit PSNR


def test_unknown_protocol(stereo):
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_sample(*stereo, synthetic_music(100, 2), protocol="mine")


def test_audio_metrics():
    """SI-SDR ignores gain and falls with noise; the mel distance is 0 for identical signals
    and grows when the highs are removed, which PSNR barely sees."""
    from walloc_edge.decoder.metrics import mel_distance, si_sdr

    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    clean = np.stack([0.5 * np.sin(2 * np.pi * 220 * t) + 0.02 * np.sin(2 * np.pi * 9000 * t),
                      0.4 * np.sin(2 * np.pi * 330 * t)], axis=1)
    noisy = clean + rng.normal(0, 0.01, clean.shape)
    assert si_sdr(clean, 0.5 * clean) > 100  # a change of gain is no distortion
    assert 25 < si_sdr(clean, noisy) < 35
    assert mel_distance(clean, clean) == 0
    dull = clean.copy()
    dull[:, 0] = 0.5 * np.sin(2 * np.pi * 220 * t)  # the 9 kHz partial gone
    assert psnr(clean, dull, peak=1.0) > 36  # PSNR: a small change
    assert mel_distance(clean, dull) > 5 * mel_distance(clean, clean + 1e-4 *
                                                        rng.normal(size=clean.shape))


@pytest.mark.parametrize("protocol", ["default", pytest.param("paper", marks=pytest.mark.slow)])
def test_opus_and_flac_baselines_at_the_model_size(stereo, protocol):
    """``baselines``: Opus is coded at a size near the .wlc's and scored on the same scale as
    the model's row; FLAC's ratio is that of the lossless 16-bit file."""
    import io

    import soundfile

    from walloc_edge.evaluation.baselines import opus_at

    decoder, encoder = stereo
    clip = synthetic_music(44100 * 2, 2, seed=4)
    row = evaluate_sample(decoder, encoder, clip, 44100, protocol=protocol, baselines=True)
    assert abs(row["opus_bytes"] - row["bytes"]) < 0.5 * row["bytes"]
    key = "opus_paper_psnr" if protocol == "paper" else "opus_psnr"
    assert 15 < row[key] < 80 and row["opus_mel_distance"] >= 0
    flac = io.BytesIO()
    soundfile.write(flac, clip, 44100, format="FLAC", subtype="PCM_16")
    if protocol == "default":
        assert math.isclose(row["flac_compression_ratio"], clip.nbytes / len(flac.getvalue()))
        data, decoded, _ = opus_at(clip / 32768, 44100, row["bytes"])
        assert decoded.shape == clip.shape and len(data) == row["opus_bytes"]  # one search


def test_baselines_are_for_audio_models(reference_dir, tmp_path, capsys):
    from walloc_edge.cli import main

    assert main(["eval", str(reference_dir / "rgb_j3_l12.pth"), str(tmp_path),
                 "--baselines"]) == 2
    assert "--baselines is for audio models" in capsys.readouterr().err
