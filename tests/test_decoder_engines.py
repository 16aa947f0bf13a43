"""Decoder engines and precisions: each one offered here holds the quality bar (agreement
with the fp32 torch decode ≥ 45 dB PSNR, PSNR against the original moved ≤ 0.05 dB), whole
and tiled; unknown or unrunnable choices are one clear error (exit 2 from the CLI)."""
import json

import numpy as np
import pytest

from walloc_edge.cli import main
from walloc_edge.data import sample_photo
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.decoder.engines import EngineError, engines_here, precisions_here
from walloc_edge.evaluation.evaluate import runtime_encoder

MIN_AGREEMENT_DB, MAX_PSNR_CHANGE_DB = 45.0, 0.05


def offered():
    """(engine, precision) pairs that run here."""
    pairs = [("torch", p) for p in precisions_here("cpu")]
    return pairs + [("onnxruntime", "fp32"), ("onnxruntime", "int8")] \
        if "onnxruntime" in engines_here() else pairs


@pytest.fixture(scope="module")
def cache(kept_cache):
    """A cache of its own for the onnxruntime engine's exported graphs (exported once per
    code change)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(kept_cache))
    yield
    mp.undo()


TILES = {"tile": 20, "overlap": 4}  # a 2 x 2 grid over 24 x 24 latents


@pytest.fixture(scope="module")
def reference():
    """(photo, its .wlc, the fp32 torch decoder, its decode whole and in tiles)."""
    photo = np.ascontiguousarray(sample_photo("astronaut")[128:320, 160:352])  # 24 x 24 latents
    decoder = Decoder("rgb-16x", "cpu")
    blob = runtime_encoder(decoder.codec).encode(photo)
    return (photo, blob, decoder, decoder.decode(blob),
            Decoder(decoder.codec, "cpu", **TILES).decode(blob))


@pytest.mark.parametrize("engine, precision", offered())
def test_engine_holds_the_quality_bar(cache, reference, engine, precision):
    photo, blob, fp32, expected, tiled_expected = reference
    decoder = Decoder(fp32.codec, "cpu", engine=engine, precision=precision)
    assert decoder.engine_name == f"{engine} {precision}"
    out = decoder.decode(blob)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert psnr(out, expected) >= MIN_AGREEMENT_DB
    assert abs(psnr(out, photo) - psnr(expected, photo)) <= MAX_PSNR_CHANGE_DB
    # the tiled path runs the network through the engine too
    tiled = Decoder(fp32.codec, "cpu", **TILES, engine=engine, precision=precision).decode(blob)
    assert psnr(tiled, tiled_expected) >= MIN_AGREEMENT_DB


def test_auto_picks_an_offered_engine(cache, reference):
    decoder = Decoder(reference[2].codec, "cpu", engine="auto")
    assert tuple(decoder.engine_name.split()) in offered()
    assert set(decoder.engine.probe_seconds) == {" ".join(pair) for pair in offered()}


def test_unknown_or_unrunnable_choices_are_refused(reference):
    codec = reference[2].codec
    for kwargs, option in [({"engine": "tensorflow"}, "engine"),
                           ({"precision": "int4"}, "precision"),
                           ({"engine": "torch", "providers": "cpu"}, "provider")]:
        with pytest.raises(EngineError) as e:
            Decoder(codec, "cpu", **kwargs)
        assert e.value.option == option
    missing = [p for p in ("bf16", "fp16") if p not in precisions_here("cpu")]
    for precision in missing:
        with pytest.raises(EngineError, match="available here: auto, fp32"):
            Decoder(codec, "cpu", precision=precision)


@pytest.mark.parametrize("command", ["decode", "eval", "serve"])
def test_cli_names_the_option_and_exits_2(command, tmp_path, capsys):
    inputs = {"decode": [str(tmp_path / "x.wlc"), "-o", str(tmp_path)],
              "eval": [str(tmp_path)],
              "serve": ["--listen", "tcp://127.0.0.1:9000", "--out", str(tmp_path)]}[command]
    for argv, option, listed in [(["--engine", "tensorflow"], "--engine", "onnxruntime"),
                                 (["--precision", "int4"], "--precision", "bf16")]:
        code = main([command, "rgb-16x", *inputs, *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert option in err and listed in err


def test_decode_command_says_what_auto_chose(cache, reference, tmp_path, capsys):
    (tmp_path / "x.wlc").write_bytes(reference[1])
    argv = ["decode", "rgb-16x", str(tmp_path / "x.wlc"), "-o", str(tmp_path / "out")]
    assert main([*argv, "--engine", "torch", "--precision", "auto"]) == 0
    low = next((p for p in ("bf16", "fp16") if p in precisions_here("cpu")), "fp32")
    assert f"decoder: torch {low} (auto: the precision this hardware computes)" in \
        capsys.readouterr().out
    assert main([*argv, "--engine", "auto", "--overwrite"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "the fastest on a probe here" in line and "torch fp32" in line


def test_audio_decoders_run_fp32_only():
    """bf16 moves an audio decode's PSNR against the original by more than the bar allows."""
    from walloc_edge.codec import CodecConfig, build

    codec = build(CodecConfig("audio", channels=2, J=4, latent_dim=8, Nd=8)).eval()
    with pytest.raises(EngineError, match="audio decoders run fp32 only"):
        Decoder(codec, "cpu", precision="bf16")
    assert Decoder(codec, "cpu", engine="torch", precision="auto").engine_name == "torch fp32"


@pytest.mark.slow  # exports the encoder and decoder graphs (~30 s)
def test_export_decoder_writes_a_validated_graph(tmp_path, capsys):
    assert main(["export", "rgb-16x", "--decoder", "--out", str(tmp_path)]) in (0, None)
    meta = json.loads((tmp_path / "decoder.json").read_text())
    assert meta["status"] == "validated" and meta["agreement_db"] >= MIN_AGREEMENT_DB
    assert (tmp_path / "decoder.onnx").is_file() and (tmp_path / "decoder.npz").is_file()


def test_info_lists_the_engines_that_run_here_and_why_not_the_others(capsys):
    assert main(["info", "rgb-16x"]) in (0, None)
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("engines      cpu:")]
    assert set(line.split(": ", 1)[1].split(" (and auto)")[0].split(", ")) == \
        {" ".join(pair) for pair in offered()}
    for precision in ("bf16", "fp16"):
        if precision not in precisions_here("cpu"):
            assert f"not torch {precision}: this CPU has no {precision} instructions" in out
    assert main(["info", "rgb-16x", "--json"]) in (0, None)
    rows = json.loads(capsys.readouterr().out)["decoder_engines"]
    assert {(r["engine"], r["precision"]) for r in rows if r["runs"]} == set(offered())
    assert all(r["why_not"] for r in rows if not r["runs"])


def test_int8_is_onnxruntimes_and_for_images_only(reference):
    with pytest.raises(EngineError, match="the torch engine runs fp32, bf16, fp16 only"):
        Decoder(reference[2].codec, "cpu", engine="torch", precision="int8")
    from walloc_edge.codec import CodecConfig, build

    codec = build(CodecConfig("audio", channels=2, J=4, latent_dim=8, Nd=8)).eval()
    with pytest.raises(EngineError, match="audio decoders run fp32 only"):
        Decoder(codec, "cpu", engine="onnxruntime", precision="int8")
