"""The torch-free decode server: a bundle's decoder graph on onnxruntime with the
de-companding and the wavelet synthesis in numpy agrees with the fp32 torch decode at
≥ 45 dB PSNR (images whole and tiled, audio), and `decode`/`serve` with a bundle run where
torch cannot be imported."""
import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import BLOCK_TORCH, free_port
from walloc_edge.codec import load
from walloc_edge.data import sample_photo
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.decoder.numeric import erfinv, packet_synthesis, post_filter, to_normal
from walloc_edge.decoder.tiles import ramp, tile_spans
from walloc_edge.runtime import Encoder

MIN_DB = 45.0


def test_erfinv_agrees_with_scipy():
    special = pytest.importorskip("scipy.special")
    y = np.concatenate([np.linspace(-0.9999, 0.9999, 20001),
                        [0.0, 1e-12, -1e-300, 0.5, -0.5, 1 - 1e-10, -(1 - 1e-12)]])
    assert np.max(np.abs(erfinv(y) - special.erfinv(y))) < 1e-12
    assert erfinv(np.array([1.0, -1.0])).tolist() == [np.inf, -np.inf]
    assert np.isnan(erfinv(np.array([1.5, -2.0, np.nan]))).all()


@pytest.mark.parametrize("name", ["rgb-16x", "stereo-5x"])
def test_numpy_decompanding_and_synthesis_agree_with_torch(name):
    codec = load(name)
    filters = {f"iwt.{k}": v.double().numpy() for k, v in codec.iwt.state_dict().items()}
    span = 2 ** (codec.latent_bits - 1) - 1
    sizes = (12, 20) if codec.config.modality.spatial_axes == 2 else (37,)
    z = torch.from_numpy(np.random.default_rng(0).integers(-span, span + 1,
                                                           (1, codec.latent_dim, *sizes)))
    with torch.no_grad():
        normal = codec.decoder[0](z.float())
    np.testing.assert_allclose(to_normal(z.numpy(), codec.decoder[0].scale,
                                         codec.decoder[0].latent_max), normal.numpy(),
                               rtol=1e-5, atol=1e-5)  # torch's erfinv is float32
    X = torch.randn(1, codec.channels * codec.freq_bands, *sizes,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = codec.wavelet_synthesis(X)[0]
    assert np.max(np.abs(packet_synthesis(X[0].numpy(), filters, codec.J) - expected.numpy())) \
        < 1e-5
    if codec.config.post_filter:
        with torch.no_grad():
            filtered = codec.post(expected[None])[0]
        got = post_filter(expected.numpy(), codec.post.weight.detach().numpy(),
                          codec.post.bias.detach().numpy())
        assert np.max(np.abs(got - filtered.numpy())) < 1e-5


def test_tiles_are_the_torch_decoders():
    for n, tile, overlap in [(30, 64, 8), (100, 64, 8), (257, 64, 8), (400, 40, 4)]:
        spans = tile_spans(n, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == n
        for i in range(len(spans)):
            weights = ramp(spans, i, overlap)
            assert weights.dtype == np.float32 and 0 <= weights.min() <= weights.max() == 1


@pytest.fixture(scope="module")
def rgb16(tmp_path_factory):
    """rgb-16x's bundle (weights only: the numpy backend encodes) with its decoder graph."""
    from walloc_edge.export import export_bundle

    out = tmp_path_factory.mktemp("rgb16")
    export_bundle(load("rgb-16x"), out, (), decoder=True, log=lambda s: None)
    return out


@pytest.mark.slow  # exports rgb-16x's decoder graph; torch decodes a 512x512 photo
def test_bundle_decode_agrees_with_torch_whole_and_tiled(rgb16):
    from walloc_edge.decoder.bundle import BundleDecoder

    photo = sample_photo("astronaut")
    encoder = Encoder(rgb16, "numpy")
    for crop, options in [((slice(0, 512), slice(0, 512)), {}),  # one tile
                          ((slice(0, 200), slice(0, 330)), {"tile": 16, "overlap": 4})]:
        blob = encoder.encode(photo[crop])
        expected = Decoder("rgb-16x", "cpu", **options).decode(blob)
        got = BundleDecoder(rgb16, **options).decode(blob)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert psnr(expected, got) >= MIN_DB, options


@pytest.mark.slow  # exports stereo-5x's decoder graph
def test_bundle_decode_of_audio_agrees_with_torch(tmp_path):
    from walloc_edge.decoder.bundle import BundleDecoder
    from walloc_edge.export import export_bundle

    export_bundle(load("stereo-5x"), tmp_path, (), decoder=True, log=lambda s: None)
    t = np.arange(20000) / 44100
    clip = np.stack([np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1234 * t),
                     np.sin(2 * np.pi * 660 * t * (1 + t))], 1)
    clip = (clip * 12000).astype(np.int16)
    blob = Encoder(tmp_path, "numpy").encode(clip)
    expected = Decoder("stereo-5x", "cpu").decode(blob)
    got = BundleDecoder(tmp_path).decode(blob)
    assert got.shape == expected.shape == clip.shape and got.dtype == np.int16
    assert psnr(expected, got) >= MIN_DB


def without_torch(*argv, **kwargs):
    """``walloc-edge ARGV`` in a process where importing torch fails."""
    code = BLOCK_TORCH + textwrap.dedent(f"""
        from walloc_edge.cli import main
        sys.exit(main({[str(a) for a in argv]!r}))
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow  # exports rgb-16x's decoder graph; three processes
def test_decode_and_serve_a_bundle_without_torch(rgb16, tmp_path):
    photo = sample_photo("astronaut")[:256, :320]
    (tmp_path / "in").mkdir()
    Image.fromarray(photo).save(tmp_path / "in" / "astro.png")
    blob = Encoder(rgb16, "numpy").encode(photo)
    (tmp_path / "astro.wlc").write_bytes(blob)
    expected = Decoder("rgb-16x", "cpu").decode(blob)

    decode = without_torch("decode", rgb16, tmp_path / "astro.wlc", "-o", tmp_path / "dec")
    out, _ = decode.communicate(timeout=120)
    assert decode.returncode == 0, out
    assert psnr(expected, np.array(Image.open(tmp_path / "dec" / "astro.png"))) >= MIN_DB

    port = free_port()
    server = without_torch("serve", rgb16, "--listen", f"tcp://127.0.0.1:{port}", "--out",
                           tmp_path / "srv", "--count", "1", "--workers", "2")
    lines, listening = [], threading.Event()

    def read():
        for line in server.stdout:
            lines.append(line)
            if line.startswith("listening"):
                listening.set()
    threading.Thread(target=read, daemon=True).start()
    try:
        assert listening.wait(60), "".join(lines)
        sensor = without_torch("stream", rgb16, tmp_path / "in", "--to",
                               f"tcp://127.0.0.1:{port}", "--backend", "numpy", "--state",
                               tmp_path / "state")
        log, _ = sensor.communicate(timeout=120)
        assert sensor.returncode == 0 and "1 acknowledged" in log, log
        assert server.wait(timeout=60) == 0, "".join(lines)
    finally:
        server.kill()
    assert "decoder onnxruntime fp32" in "".join(lines)
    [written] = (tmp_path / "srv").glob("*.png")
    assert psnr(expected, np.array(Image.open(written))) >= MIN_DB


@pytest.mark.slow  # exports rgb-16x's decoder graph; four processes
def test_a_damaged_decoder_graph_is_one_line_and_info_says_so(rgb16, tmp_path):
    """decoder.npz or decoder.onnx cut short (a copy interrupted), on a server without
    torch: decode refuses in one line naming the file, and info says the decoder does not
    run, and why."""
    import shutil

    blob = Encoder(rgb16, "numpy").encode(sample_photo("astronaut")[:64, :64])
    (tmp_path / "a.wlc").write_bytes(blob)
    for name in ("decoder.npz", "decoder.onnx"):
        bundle = tmp_path / name.replace(".", "-")
        shutil.copytree(rgb16, bundle)
        damaged = bundle / name
        damaged.write_bytes(damaged.read_bytes()[:damaged.stat().st_size // 2])
        decode = without_torch("decode", bundle, tmp_path / "a.wlc", "-o", tmp_path / "out")
        out, _ = decode.communicate(timeout=120)
        assert decode.returncode == 2 and len(out.strip().splitlines()) == 1, out
        assert name in out and "again" in out, out
        info = without_torch("info", bundle)
        out, _ = info.communicate(timeout=120)
        line = [x for x in out.splitlines() if x.startswith("decoder")]
        assert info.returncode == 0 and line and "none here" in line[0], out
        assert name in line[0], out


def test_a_bundle_without_a_decoder_graph_is_refused(rgb_weights_bundle):
    from walloc_edge.decoder.bundle import BundleDecoder
    from walloc_edge.runtime import BundleError

    with pytest.raises(BundleError, match="no decoder graph"):
        BundleDecoder(rgb_weights_bundle)


def test_info_says_whether_a_bundles_decoder_runs_here(rgb_weights_bundle, capsys):
    from walloc_edge.cli import main

    assert main(["info", str(rgb_weights_bundle)]) in (0, None)
    out = capsys.readouterr().out
    assert "decoder      none here: no decoder graph (decoder.onnx" in out
    assert "not onnxruntime: " in out  # a weights-only bundle: why each graph backend is out
    assert main(["info", str(rgb_weights_bundle), "--json"]) in (0, None)
    assert "onnxruntime" in json.loads(capsys.readouterr().out)["unusable_backends"]


@pytest.mark.slow  # exports a decoder graph of its own
def test_equal_shape_frames_decode_in_one_batch(tmp_path):
    """A bundle's decoder graph takes any batch: equal-shape frames go through it at once and
    decode as they do one at a time."""
    from walloc_edge.codec import CodecConfig, build
    from walloc_edge.decoder.bundle import BundleDecoder
    from walloc_edge.export import export_bundle

    torch.manual_seed(0)
    codec = build(CodecConfig("image", channels=3, J=2, latent_dim=4, Nd=32)).eval()
    export_bundle(codec, tmp_path, (), decoder=True, log=lambda s: None)
    decoder = BundleDecoder(tmp_path)
    assert decoder.batches
    photo = sample_photo("astronaut")
    encoder = Encoder(tmp_path, "numpy")
    blobs = [encoder.encode(photo[y:y + 48, 40:104]) for y in (0, 100, 200)]
    blobs.append(encoder.encode(photo[:40, :40]))  # a shape of its own
    calls = []
    run = decoder.session.run
    decoder.session.run = lambda out, feed: calls.append(next(iter(feed.values())).shape) or \
        run(out, feed)
    together = decoder.decode_many(blobs)
    assert sorted(shape[0] for shape in calls) == [1, 3]
    for blob, batched in zip(blobs, together):  # (a batch's kernels may round otherwise)
        assert np.abs(batched.astype(int) - decoder.decode(blob)).max() <= 1


def test_the_decoder_package_without_torch_names_the_bundle_decoder():
    """Without torch, ``from walloc_edge.decoder import BundleDecoder`` works and asking for
    the torch Decoder says what to install and what to use instead."""
    code = BLOCK_TORCH + textwrap.dedent("""
        from walloc_edge.decoder import BundleDecoder, psnr
        try:
            from walloc_edge.decoder import Decoder
        except ModuleNotFoundError as e:
            print(e)
        assert 'torch' not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "needs torch (pip install 'walloc-edge[server]')" in done.stdout
    assert "BundleDecoder('bundle/')" in done.stdout
