"""The sensor packages run where torch is not installed: torch imports are made to fail."""
import subprocess
import sys
import textwrap

import pytest

from helpers import BLOCK_TORCH


def run_without_torch(code):
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_blocker_really_blocks():
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH + "import torch"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "blocked" in result.stderr


def test_runtime_and_bridge_import_and_work_without_torch():
    out = run_without_torch("""
        import numpy as np
        import walloc_edge, walloc_edge.runtime, walloc_edge.firmware_bridge
        padded, pads = walloc_edge.runtime.pad_reflect(np.zeros((3, 5, 7)), 8, axes=(1, 2))
        print(padded.shape, "torch" in sys.modules)
    """)
    assert out.strip() == "(3, 8, 8) False"


@pytest.mark.slow  # every backend and coder in a process of its own (test_sensor_cli runs one)
def test_encoder_and_bitstream_without_torch(exported, reference_dir):
    """A sensor with no torch: every backend encodes a photo, and the .wlc parses."""
    from walloc_edge.codec import load

    bundle = exported("rgb-any-size", load(reference_dir / "rgb_j3_l12.pth"))
    out = run_without_torch(f"""
        import numpy as np
        from walloc_edge.data import sample_photo
        from walloc_edge.runtime import Encoder, read_latents
        photo = sample_photo("coffee")[:150, :201]
        for backend in ("onnxruntime", "litert", "numpy"):
            encoder = Encoder({str(bundle)!r}, backend)
            for coder in ("rans", "webp"):
                header, latents = read_latents(encoder.encode(photo, coder=coder))
                assert np.array_equal(latents, encoder.latents(photo)), backend
        print(header.shape, latents.shape, "torch" in sys.modules)
    """)
    assert out.strip() == "(150, 201, 3) (12, 19, 26) False"


@pytest.mark.slow  # every bench row, in processes of their own
def test_bench_on_a_sensor_without_torch(tmp_path, reference_dir):
    """The bench of an exported bundle runs with only the runtime; torch rows say why not."""
    from walloc_edge.codec import load
    from walloc_edge.export import export_bundle
    from walloc_edge.export.validate import MIN_IDENTICAL

    export_bundle(load(reference_dir / "rgb_j3_l12.pth"), tmp_path, ("onnx",),
                  log=lambda s: None)
    out = run_without_torch(f"""
        import json
        from walloc_edge.bench import markdown, run_bench, svg_plot
        result = run_bench({str(tmp_path)!r}, size=128, repeat=1, threads=(1,),
                           log=lambda s: None)
        rows = {{r["row"]: r for r in result["rows"]}}
        assert rows["onnxruntime, 1 thread"]["encode"]["median"] > 0
        assert rows["numpy"]["identical_latents"] == 1.0
        assert rows["native, 1 thread"]["identical_latents"] >= {MIN_IDENTICAL}
        assert rows["fixed-point, 1 thread"]["identical_latents"] >= {MIN_IDENTICAL}
        assert rows["litert, 1 thread"]["status"].startswith("skipped")  # no .tflite exported
        assert "torch" in rows["torch decoder"]["status"]
        assert any(r["kind"] == "baseline" and r["compression_ratio"] > 1 for r in rows.values())
        text = markdown(result, "walloc-edge bench --bundle b")
        assert all(name in text for name in rows) and "<rect" in svg_plot(result)
        print(len(rows), "torch" in sys.modules)
    """)
    assert out.strip() == "16 False"  # 7 sensor rows, 4 coders, 2 torch (skipped), 3 baselines
