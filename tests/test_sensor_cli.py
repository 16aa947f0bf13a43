"""The sensor commands as a user runs them: folders, backends, clear one-line errors, and
the whole sensor CLI with torch imports blocked."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import BLOCK_TORCH
from walloc_edge.cli import main
from walloc_edge.runtime import Encoder, read_bitstream, read_latents
from walloc_edge.runtime.backends import BackendError, resolve_providers


def photo(seed, size=(40, 56)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.fixture
def photo_tree(tmp_path):
    """photos/a.png, photos/sub/b.jpg, photos/sub/a.png (same stem), notes.txt, .hidden.png,
    .thumbnails/c.png"""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(photo(0)).save(root / "a.png")
    Image.fromarray(photo(1)).save(root / "sub" / "b.jpg", quality=95)
    Image.fromarray(photo(2)).save(root / "sub" / "a.png")
    (root / "notes.txt").write_text("not a photo")
    (root / "sub" / "table.csv").write_text("1,2")
    Image.fromarray(photo(3)).save(root / ".hidden.png")
    (root / ".thumbnails").mkdir()
    Image.fromarray(photo(4)).save(root / ".thumbnails" / "c.png")
    return root


def test_encode_a_folder_recursively(rgb_bundle, photo_tree, tmp_path, capsys):
    out = tmp_path / "wlc"
    assert main(["encode", str(rgb_bundle), str(photo_tree), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.wlc"))
    assert written == ["a.wlc", "sub/a.wlc", "sub/b.wlc"]  # same stems stay apart
    assert ("skipped in the folders: 1 hidden (.name), 1 hidden folder(s), not searched, "
            "2 not images (.csv, .txt)") in text
    assert f"encoding with {Encoder(rgb_bundle).describe()}" in text  # auto says what it took
    header, latents = read_latents((out / "sub" / "a.wlc").read_bytes())
    assert np.array_equal(latents, Encoder(rgb_bundle, "numpy").latents(photo(2)))
    assert not list(out.rglob(".*"))  # no temporary files left


def test_auto_backend_order_and_fallback(rgb_bundle, tmp_path, monkeypatch):
    """native (the C encoder, where it was built), then onnxruntime, then numpy for a bundle
    without graphs."""
    import json
    import shutil

    from walloc_edge.runtime.backends import native as native_backend
    bare = tmp_path / "bare"
    shutil.copytree(rgb_bundle, bare)
    meta = json.loads((bare / "encoder.json").read_text())
    meta["graphs"] = {}
    (bare / "encoder.json").write_text(json.dumps(meta))
    assert Encoder(rgb_bundle).describe() == f"native ({os.cpu_count()} threads)"
    assert Encoder(bare).backend.name == "native"  # it needs only the weights
    monkeypatch.setattr(native_backend, "_LIB", None)  # as where no compiler was found
    assert Encoder(rgb_bundle).backend.name == "onnxruntime"
    assert Encoder(bare).backend.name == "numpy"


def test_providers_are_checked():
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("cuda,cpu", available) == available
    assert resolve_providers(None, available) == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="not available.*it has: cuda, cpu"):
        resolve_providers("tensorrt,cpu", available)
    with pytest.raises(BackendError, match="unknown onnxruntime provider 'gpu'"):
        resolve_providers("gpu", available)


def test_provider_errors_on_the_command_line(rgb_bundle, tmp_path, capsys):
    Image.fromarray(photo(0)).save(tmp_path / "a.png")
    args = ["encode", str(rgb_bundle), str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]
    assert main(args + ["--provider", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert "tensorrt" in err and "(it has: " in err and "cpu" in err and "Traceback" not in err
    assert main(args + ["--backend", "numpy", "--provider", "cpu"]) == 2
    assert "--backend onnxruntime" in capsys.readouterr().err
    assert main(args + ["--provider", "cpu"]) == 0


def usage_error(capsys, argv):
    """A usage mistake: exit 2 and one line on stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["decode", "eval", "serve"])
def test_device_gpu_is_a_usage_error(command, capsys, tmp_path):
    argv = {"decode": ["decode", "rgb-16x", "x.wlc", "-o", str(tmp_path)],
            "eval": ["eval", "rgb-16x", str(tmp_path)],
            "serve": ["serve", "rgb-16x", "--listen", "tcp://127.0.0.1:9", "--out",
                      str(tmp_path)]}[command]
    err = usage_error(capsys, argv + ["--device", "gpu"])
    assert "'gpu' is not a device; use auto, cpu, cuda" in err


def test_bench_threads_must_be_numbers(capsys):
    err = usage_error(capsys, ["bench", "--threads", "a"])
    assert "--threads" in err and "e.g. 1,2" in err


def one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_out_naming_a_file(rgb_bundle, tmp_path, capsys):
    Image.fromarray(photo(0)).save(tmp_path / "a.png")
    (tmp_path / "taken").write_text("x")
    one_line_error(capsys, ["encode", str(rgb_bundle), str(tmp_path / "a.png"), "-o",
                            str(tmp_path / "taken")], "is a file; give a folder")


@pytest.mark.parametrize("url, needle", [
    ("udp://127.0.0.1:9000?mtu=abc", "mtu=abc is not a whole number"),
    ("tcp://127.0.0.1:99999", "port must be a number in 1..65535"),
    ("file:///tmp/", "names a folder; name a file in it"),
    ("mqtt://127.0.0.1:1883/frames/#", "+ and # are MQTT's wildcards, not a topic's name"),
    ("mqtt://127.0.0.1:1883/frames/+", "+ and # are MQTT's wildcards, not a topic's name"),
    ("127.0.0.1:9000", "looks like HOST:PORT: give tcp://127.0.0.1:9000"),  # not a file
])
def test_bad_urls(rgb_bundle, tmp_path, capsys, url, needle, monkeypatch):
    Image.fromarray(photo(0)).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "127.0.0.1:9000").write_bytes(b"")  # what the slip used to make
    one_line_error(capsys, ["stream", str(rgb_bundle), str(tmp_path / "a.png"), "--to", url],
                   needle)


def test_encode_counts_the_inputs_own_samples_and_says_how_it_fitted_them(
        rgb_bundle, tmp_path, capsys):
    """A gray or RGBA photo is fitted to an RGB model, and said so; the ratio counts the
    file's own 8-bit samples (a gray photo's one channel), and an input too small to shrink
    is "larger", not "0.0x smaller"."""
    gray, rgba = tmp_path / "gray.png", tmp_path / "rgba.png"
    Image.fromarray(photo(4)[..., 0]).save(gray)
    Image.fromarray(np.dstack([photo(5), photo(6)[..., :1]])).save(rgba)
    Image.fromarray(photo(7, (1, 1))).save(tmp_path / "tiny.png")
    out = tmp_path / "wlc"
    assert main(["encode", str(rgb_bundle), str(gray), str(rgba), str(tmp_path / "tiny.png"),
                 "-o", str(out)]) == 0
    lines = {line.split(" -> ")[0]: line for line in capsys.readouterr().out.splitlines()}
    size = (out / "gray.wlc").stat().st_size
    assert f"({40 * 56 / size:.1f}x smaller)" in lines[str(gray)]
    assert "note: gray, encoded as RGB: it decodes as RGB" in lines[str(gray)]
    assert "note: its alpha channel is not encoded" in lines[str(rgba)]
    assert "x larger than its 3 bytes of samples" in lines[str(tmp_path / "tiny.png")]


def test_encode_turns_a_photo_upright_and_says_what_it_leaves_out(rgb_bundle, tmp_path,
                                                                    capsys):
    """A JPEG whose EXIF says "rotated 90°" is encoded upright, as viewers show it; of a
    multi-page TIFF only the first page is encoded: both said."""
    from walloc_edge.runtime.io import ORIENTATION

    turned, pages = tmp_path / "turned.jpg", tmp_path / "pages.tif"
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(photo(9, (40, 56))).save(turned, exif=exif)
    Image.fromarray(photo(10)).save(pages, save_all=True,
                                    append_images=[Image.fromarray(photo(11))])
    out = tmp_path / "wlc"
    assert main(["encode", str(rgb_bundle), str(turned), str(pages), "-o", str(out)]) == 0
    lines = {line.split(" -> ")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "note: turned upright as its EXIF orientation says" in lines[str(turned)]
    assert "note: the first of its 2 frames or pages only" in lines[str(pages)]
    assert read_bitstream((out / "turned.wlc").read_bytes()).header.shape == (56, 40, 3)


def test_a_long_file_name_is_encoded(rgb_bundle, tmp_path):
    """A legal name near the file system's 255 bytes: its temporary name must stay legal
    too (before, the whole run stopped at it)."""
    name = "p" * 240 + ".png"
    Image.fromarray(photo(13)).save(tmp_path / name)
    out = tmp_path / "wlc"
    assert main(["encode", str(rgb_bundle), str(tmp_path / name), "-o", str(out)]) == 0
    assert (out / ("p" * 240 + ".wlc")).is_file()
    assert [p.name for p in out.iterdir()] == ["p" * 240 + ".wlc"]


def test_a_damaged_bundle_is_one_line_and_info_says_so(rgb_bundle, tmp_path):
    """encoder.npz cut short (a copy interrupted) or another model's: the backends that
    read it refuse in one line, info says why and lists the graph's backend, which auto
    then takes; a graph cut short is one line too."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(rgb_bundle, bundle)
    Image.fromarray(photo(12)).save(tmp_path / "a.png")
    weights = bundle / "encoder.npz"
    blob = weights.read_bytes()
    for damaged in (blob[:1000], None):
        if damaged is None:  # the right size and format, other weights
            arrays = dict(np.load(rgb_bundle / "encoder.npz"))
            arrays["encoder_bias"] = arrays["encoder_bias"] + 1
            np.savez(weights, **arrays)
        else:
            weights.write_bytes(damaged)
        done = run_blocked("encode", str(bundle), str(tmp_path / "a.png"), "-o",
                           str(tmp_path / "none"), "--backend", "native")
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, \
            done.stderr
        assert "export the bundle or copy it again" in done.stderr
        assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())
        info = run_blocked("info", str(bundle))  # the graph runs without encoder.npz
        assert info.returncode == 0 and "usable here: onnxruntime" in info.stdout, info.stdout
        assert "weights      " in info.stdout and "copy it again" in info.stdout
        out = tmp_path / f"out-{damaged is None}"
        done = run_blocked("encode", str(bundle), str(tmp_path / "a.png"), "-o", str(out))
        assert done.returncode == 0 and (out / "a.wlc").is_file(), done.stderr  # the graph
    graph = bundle / "encoder.onnx"
    graph.write_bytes(graph.read_bytes()[:5000])
    done = run_blocked("encode", str(bundle), str(tmp_path / "a.png"), "-o",
                       str(tmp_path / "out2"), "--backend", "onnxruntime")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "could not be loaded by onnxruntime" in done.stderr


def test_info_names_a_decoder_graph_of_another_model(rgb_bundle, tmp_path):
    """A folder that kept another model's decoder.* (a second export into it): info says
    the decoder is another model's rather than "runs here"."""
    import json
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(rgb_bundle, bundle)
    for name in ("decoder.onnx", "decoder.npz"):
        (bundle / name).write_bytes(b"x")
    (bundle / "decoder.json").write_text(json.dumps({"model_id": "0" * 32}))
    info = run_blocked("info", str(bundle))
    assert info.returncode == 0, info.stderr
    assert f"decoder.json is of model {'0' * 32}, not this bundle's" in info.stdout


def test_info_reads_a_bitstreams_header_without_torch(rgb_bundle, tmp_path):
    """`info x.wlc`: the header, verified, without torch; a corrupted one is one line."""
    import json

    path = tmp_path / "a.wlc"
    blob = Encoder(rgb_bundle, "numpy").encode(photo(8), level="fast")
    path.write_bytes(blob)
    done = run_blocked("info", str(path), "--json")
    assert done.returncode == 0, done.stderr
    fields = json.loads(done.stdout)
    assert fields["shape"] == [40, 56, 3] and fields["bytes"] == len(blob)
    assert fields["coder"] == "rans" and fields["level"] == "fast"
    assert fields["model_id"] == Encoder(rgb_bundle).bundle.model_id
    path.write_bytes(blob[:-3])
    done = run_blocked("info", str(path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_missing_inputs_and_empty_folders(rgb_bundle, tmp_path, capsys):
    one_line_error(capsys, ["encode", str(rgb_bundle), str(tmp_path / "nope"), "-o",
                            str(tmp_path / "o")], "nope: no such file or folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    one_line_error(capsys, ["encode", str(rgb_bundle), str(tmp_path / "empty"), "-o",
                            str(tmp_path / "o")], "no image files in", "not images (.txt)")


def run_blocked(*argv, cwd=None):
    """``walloc-edge ARGV`` in a fresh interpreter where torch cannot be imported."""
    code = BLOCK_TORCH + f"from walloc_edge.cli import main\nrc = main({list(argv)!r})\n" \
                         "assert 'torch' not in sys.modules\nsys.exit(rc)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_sensor_cli_without_torch(rgb_bundle, photo_tree, tmp_path):
    """What a sensor runs, with torch imports failing: help, version, info, encode, stream."""
    for argv in (["--help"], ["--version"], ["encode", "--help"], ["stream", "--help"],
                 ["info", str(rgb_bundle)], ["models"]):
        result = run_blocked(*argv)
        assert result.returncode == 0, (argv, result.stderr)
    assert "onnxruntime, litert, numpy" in run_blocked("info", str(rgb_bundle)).stdout
    out = tmp_path / "wlc"
    for backend in ("auto", "onnxruntime", "litert", "numpy"):
        result = run_blocked("encode", str(rgb_bundle), str(photo_tree), "-o",
                             str(out / backend), "--backend", backend)
        assert result.returncode == 0, result.stderr
    expected = (out / "numpy" / "sub" / "a.wlc").read_bytes()
    for backend in ("auto", "onnxruntime", "litert"):  # every backend: the same bytes
        assert (out / backend / "sub" / "a.wlc").read_bytes() == expected
    frames = tmp_path / "frames.bin"
    result = run_blocked("stream", str(rgb_bundle), str(photo_tree), "--to", f"file://{frames}")
    assert result.returncode == 0 and "sent 3 message(s)" in result.stdout, result.stderr


@pytest.mark.parametrize("argv, said", [
    (["info", "rgb16x"], "rgb16x: no such bundle folder"),
    (["decode", "rgb16x", "x.wlc", "-o", "out"], "rgb16x: no such bundle folder"),
    (["decode", "no/bundle", "x.wlc", "-o", "out"], "no/bundle: no such bundle folder or "
                                                    "model file"),
    (["serve", "no/bundle", "--listen", "tcp://127.0.0.1:9", "--out", "out"],
     "no/bundle: no such bundle folder or model file"),
])
def test_a_model_that_is_nothing_is_said_so_without_torch(tmp_path, argv, said):
    """A typo (of rgb-16x, of a bundle's path) on a torch-free machine is named as such,
    not taken for a model that needs torch."""
    result = run_blocked(*argv, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert said in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, extra", [
    (["decode", "rgb-16x", "x.wlc", "-o", "out"], "server"),
    (["eval", "rgb-16x", "photos/"], "server"),
    (["serve", "rgb-16x", "--listen", "tcp://127.0.0.1:9", "--out", "o"], "server"),
    (["train", "--preset", "rgb-16x", "--data", "synthetic", "--out", "m.safetensors"],
     "server"),
    (["demo"], "server"),
    (["export", "rgb-16x", "--out", "b"], "export"),
    (["info", "rgb-16x"], "server"),
])
def test_torch_commands_name_their_extra(argv, extra, tmp_path):
    result = run_blocked(*argv, cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"pip install 'walloc-edge[{extra}]'" in err and "torch" in err


def test_a_second_run_with_the_same_inputs_sends_only_what_changed(rgb_bundle, tmp_path,
                                                                   capsys):
    """Restarting an interrupted stream with the same INPUT sends no second copy of what an
    earlier run sent (its spool holds those); a changed file is sent, and --again sends all."""
    from walloc_edge.firmware_bridge.transports import open_receiver

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo(i)).save(folder / f"p{i}.png")
    frames = tmp_path / "frames.bin"

    def run(*extra):
        argv = ["stream", str(rgb_bundle), str(folder), "--to", f"file://{frames}",
                "--state", str(tmp_path / "state"), "--backend", "numpy", *extra]
        assert main(argv) == 0
        return capsys.readouterr().out

    def sources():
        return [m.meta["source"] for m in open_receiver(str(frames)).messages(timeout=0.5)]

    run()
    assert "skipped 2 input(s) this sensor sent before, unchanged" in run()
    assert sorted(sources()) == ["p0.png", "p1.png"]
    Image.fromarray(photo(5)).save(folder / "p1.png")
    run()
    run("--again")
    assert sorted(sources()) == ["p0.png", "p0.png", "p1.png", "p1.png", "p1.png"]


def test_16_bit_photos_are_reduced_to_8_bits_and_said_so(rgb_bundle, tmp_path, capsys):
    """A 16-bit RGB PNG was reduced to 8 bits without a word (Pillow does it), and a 16-bit
    gray one refused: both are encoded now from their top 8 bits, and said so."""
    deep = (photo(12).astype(np.uint16) << 8) | 0x5A
    gray = tmp_path / "gray16.png"
    Image.fromarray(deep[..., 0]).save(gray)
    assert Image.open(gray).mode.startswith("I;16")
    out = tmp_path / "wlc"
    assert main(["encode", str(rgb_bundle), str(gray), "-o", str(out)]) == 0
    assert "16 bits a sample, reduced to 8" in capsys.readouterr().out
    _, latents = read_latents((out / "gray16.wlc").read_bytes())
    eight = np.repeat(photo(12)[..., :1], 3, axis=2)
    assert np.array_equal(latents, Encoder(rgb_bundle, "numpy").latents(eight))


def test_stream_says_how_it_fitted_an_input_as_encode_does(rgb_bundle, tmp_path, capsys):
    gray = tmp_path / "gray.png"
    Image.fromarray(photo(13)[..., 0]).save(gray)
    assert main(["stream", str(rgb_bundle), str(gray), "--to", f"file://{tmp_path}/f.bin",
                 "--state", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert "note: gray, encoded as RGB: it decodes as RGB" in out, out
