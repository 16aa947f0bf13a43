"""Server decoder: .wlc → signal of the encoded shape and dtype; wrong-model and corrupted
bitstreams refused; tiled decode close to whole; decode/eval/demo commands."""
import json

import numpy as np
import pytest
import torch

from walloc_edge.cli import main
from walloc_edge.codec import CodecConfig, build, save
from walloc_edge.data import synthetic_music
from walloc_edge.data import sample_photo
from walloc_edge.decoder import Decoder, ModelMismatchError, ms_ssim, psnr
from walloc_edge.evaluation.evaluate import runtime_encoder
from walloc_edge.runtime import BitstreamError, read_bitstream
from walloc_edge.export.validate import as_channels

CONFIGS = {
    "gray": CodecConfig("image", channels=1, J=2, latent_dim=4, Nd=32),
    "rgb": CodecConfig("image", channels=3, J=3, latent_dim=12, Nd=32),
    "cube": CodecConfig("image", channels=31, J=1, latent_dim=16, Nd=32),
    "stereo": CodecConfig("audio", channels=2, J=4, latent_dim=8, Nd=8, post_filter=True),
}


@pytest.fixture(scope="module")
def codecs():
    torch.manual_seed(0)
    return {name: build(config).eval() for name, config in CONFIGS.items()}


def inputs(name):
    photo = sample_photo("coffee")[:45, :70]  # sizes that are not multiples of 2^J
    return {"gray": [as_channels(photo, 1)[..., 0], as_channels(photo, 1)],
            "rgb": [photo],
            "cube": [as_channels(photo, 31)],
            "stereo": [synthetic_music(1001, 2), synthetic_music(999, 2).astype(np.float32) / 32768]
            }[name]


@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_keeps_shape_and_dtype(codecs, name):
    codec = codecs[name]
    encoder, decoder = runtime_encoder(codec), Decoder(codec, "cpu")
    for x in inputs(name):
        for coder in ("rans", "raw"):
            out = decoder.decode(encoder.encode(x, coder=coder, sample_rate=8000))
            assert out.shape == x.shape and out.dtype == x.dtype


def test_decode_equals_the_torch_codec(codecs):
    """The decoder's output is the codec's own decode of the padded input, cropped."""
    from walloc_edge.codec import crop, pad

    codec = codecs["rgb"]
    photo = inputs("rgb")[0]
    out = Decoder(codec, "cpu").decode(runtime_encoder(codec).encode(photo))
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
    with torch.no_grad():
        ref = crop(codec.decode(codec.encode(pad(x, 8))), photo.shape[:2])[0]
    ref = torch.round((ref + 0.5) * 255).clamp(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    assert np.abs(out.astype(int) - ref).max() <= 1


def test_other_model_and_corruption_are_refused(codecs):
    torch.manual_seed(1)
    other = build(CONFIGS["rgb"]).eval()
    blob = runtime_encoder(codecs["rgb"]).encode(inputs("rgb")[0])
    with pytest.raises(ModelMismatchError, match="made by model"):
        Decoder(other, "cpu").decode(blob)
    corrupted = bytearray(blob)
    corrupted[len(blob) // 2] ^= 0x10
    with pytest.raises(BitstreamError):
        Decoder(codecs["rgb"], "cpu").decode(bytes(corrupted))


def test_tiles_are_cross_faded_into_place(codecs):
    """With a decoder network that reaches less far than the overlap (a 5 x 5 convolution,
    zero-padded at the image's edge like the real one), tiles put back together give exactly
    the whole-image decode, the image's edges included, where the packet synthesis wraps
    around. (How close a trained decoder's tiles come: the next test, and
    benchmarks/decoder_tiles.py.)"""
    codec = build(CONFIGS["rgb"]).eval()
    torch.manual_seed(0)
    codec.decoder = torch.nn.Conv2d(12, 192, 5, padding=2)  # latents → subbands, reach 2
    photo = sample_photo("astronaut")[:256, :200]
    blob = runtime_encoder(codec).encode(photo)
    whole = Decoder(codec, "cpu", tile=64).decode(blob)
    tiled = Decoder(codec, "cpu", tile=12, overlap=3).decode(blob)  # a 6 x 5 grid of tiles
    assert whole.std() > 10  # the stand-in's output is an image, not a flat grey
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_trained_decoder_tiles_match_a_whole_decode():
    """The embedded rgb-16x decoded in a 2 x 2 grid of tiles agrees closely with its
    whole-image decode, the image's edges included (where tiles that did not let the
    synthesis wrap around were ~30 dB off)."""
    photo = sample_photo("astronaut")  # 64 x 64 latents
    decoder = Decoder("rgb-16x", "cpu", tile=64)
    blob = runtime_encoder(decoder.codec).encode(photo)
    whole = decoder.decode(blob)
    tiled = Decoder(decoder.codec, "cpu", tile=48).decode(blob)
    frame = np.ones(photo.shape[:2], bool)
    frame[16:-16, 16:-16] = False
    assert psnr(whole, tiled) > 44
    assert psnr(whole[frame], tiled[frame]) > 40


def test_metrics():
    photo = sample_photo("coffee")
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 5, photo.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    assert psnr(photo, photo) == float("inf") and 32 < psnr(photo, noisy) < 36
    assert ms_ssim(photo, photo) == pytest.approx(1.0)
    assert 0.9 < ms_ssim(photo, noisy) < 1.0


def test_decode_and_eval_commands(codecs, tmp_path, capsys):
    model = tmp_path / "rgb.safetensors"
    save(codecs["rgb"], model)
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image
    Image.fromarray(sample_photo("coffee")[:64, :80]).save(photos / "a.png")
    Image.fromarray(sample_photo("astronaut")[:40, :40]).save(photos / "b.png")
    wlc = tmp_path / "wlc"
    encoder = runtime_encoder(codecs["rgb"])
    assert main(["encode", str(encoder.bundle.path), str(photos / "a.png"), "-o", str(wlc),
                 "--backend", "numpy"]) == 0
    (wlc / "junk.wlc").write_bytes(b"not a bitstream")
    assert main(["decode", str(model), str(wlc / "a.wlc"), str(wlc / "junk.wlc"),
                 "-o", str(tmp_path / "out"), "--device", "cpu"]) == 1
    decoded = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert decoded.shape == (64, 80, 3)
    assert "junk.wlc" in capsys.readouterr().out
    report = tmp_path / "eval.json"
    assert main(["eval", str(model), str(photos), "--json", str(report), "--device", "cpu"]) == 0
    result = json.loads(report.read_text())
    assert len(result["files"]) == 2 and result["mean"]["dimensionality_reduction"] == 16
    assert all(r["compression_ratio"] > 1 and 0 < r["ms_ssim"] <= 1 for r in result["files"])
    printed = capsys.readouterr().out
    assert "mean" in printed and "default protocol: PSNR against 255" in printed  # named
    other = runtime_encoder(codecs["gray"])  # another model's bundle: said once, not file
    assert main(["eval", str(model), str(photos), "--bundle", str(other.bundle.path),
                 "--device", "cpu"]) == 2  # by file
    assert "is an export of another model" in capsys.readouterr().err
    (wlc / "later").mkdir()  # a folder: its .wlc files, recursively, in their places
    (wlc / "later" / "a.wlc").write_bytes((wlc / "a.wlc").read_bytes())
    assert main(["decode", str(model), str(wlc), "-o", str(tmp_path / "all"),
                 "--device", "cpu"]) == 1  # junk.wlc
    assert sorted(str(p.relative_to(tmp_path / "all")) for p in
                  (tmp_path / "all").rglob("*.png")) == ["a.png", "later/a.png"]
    assert main(["decode", str(model), str(wlc), "-o", str(tmp_path / "wav"),
                 "--format", "wav", "--device", "cpu"]) == 2  # refused before any work
    assert "--format wav: image is written as png" in capsys.readouterr().err
    assert not (tmp_path / "wav").exists()


def test_a_bitstream_from_a_newer_walloc_edge(codecs, tmp_path, capsys):
    """Alone it is exit 2 with one line on stderr; among decodable ones it is skipped (1)."""
    import struct
    import zlib

    model = tmp_path / "rgb.safetensors"
    save(codecs["rgb"], model)
    blob = runtime_encoder(codecs["rgb"]).encode(np.zeros((16, 16, 3), np.uint8))
    fixed = struct.calcsize("<4sBBBB16sBBBHHBB")  # the header through the parameter length
    body = blob[:-4]
    body = body[:fixed - 1] + bytes([3, 15, 5, 9]) + body[fixed + body[fixed - 1]:]  # level 9
    (tmp_path / "new.wlc").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    (tmp_path / "old.wlc").write_bytes(blob)
    capsys.readouterr()
    assert main(["decode", str(model), str(tmp_path / "new.wlc"), "-o", str(tmp_path / "a"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "made by a newer walloc-edge" in err, err
    assert main(["decode", str(model), str(tmp_path / "new.wlc"), str(tmp_path / "old.wlc"),
                 "-o", str(tmp_path / "b"), "--device", "cpu"]) == 1
    assert (tmp_path / "b" / "old.png").exists()


def test_too_small_tile_is_a_usage_error(codecs, tmp_path, capsys):
    model = tmp_path / "rgb.safetensors"
    save(codecs["rgb"], model)
    assert main(["decode", str(model), "a.wlc", "-o", str(tmp_path), "--tile", "4"]) == 2
    assert "use at least 25" in capsys.readouterr().err


@pytest.mark.slow  # the whole demo (CI runs it, and `make demo`)
def test_demo_command(codecs, tmp_path, capsys):
    model, audio = tmp_path / "rgb.safetensors", tmp_path / "stereo.safetensors"
    save(codecs["rgb"], model)
    save(codecs["stereo"], audio)
    assert main(["demo", "--model", str(model), "--audio-model", str(audio),
                 "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "compression ratio" in out and "music-decoded.wav" in out
    header = read_bitstream((tmp_path / "demo" / "astronaut.wlc").read_bytes()).header
    assert header.shape == (512, 512, 3)
    assert (tmp_path / "demo" / "astronaut-side-by-side.png").is_file()
    import soundfile
    decoded, rate = soundfile.read(tmp_path / "demo" / "music-decoded.wav", dtype="int16")
    assert decoded.shape == (5 * 44100, 2) and rate == 44100
