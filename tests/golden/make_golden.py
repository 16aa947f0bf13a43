"""Write the golden .wlc files that pin the bitstream format (run from the repository root).

    python tests/golden/make_golden.py        (or: WALLOC_EDGE_GENERATE_GOLDEN=1 pytest)

Inputs: a 61x77 crop of the bundled coffee photo (RGB, sizes not multiples of 8) encoded by
the reference checkpoint tests/reference/rgb_j3_l12, and 3001 samples of synthetic stereo
music (float32) encoded by tests/reference/stereo_j4_l8; one file per coder, and one per
rans level other than the default in rans-LEVEL/. Regenerate only when the format version
changes.
"""
import tempfile
from pathlib import Path

import numpy as np

from walloc_edge.codec import load
from walloc_edge.data import synthetic_music
from walloc_edge.data import sample_photo
from walloc_edge.export import export_bundle
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.coders.rans.levels import LEVELS

HERE = Path(__file__).parent
REFERENCE = HERE.parent / "reference"
INPUTS = {
    "rgb_j3_l12": lambda: sample_photo("coffee")[100:161, 200:277],
    "stereo_j4_l8": lambda: synthetic_music(3001, 2, seed=5).astype(np.float32) / 32768,
}
CODERS = {"rgb_j3_l12": ("rans", "webp", "png", "raw"), "stereo_j4_l8": ("rans", "raw")}


def main():
    for name, make_input in INPUTS.items():
        with tempfile.TemporaryDirectory() as bundle:
            export_bundle(load(REFERENCE / f"{name}.pth"), bundle, ("onnx",), log=lambda s: None)
            encoder = Encoder(bundle)
            x = make_input()
            np.savez(HERE / f"{name}.npz", input=x, latents=encoder.latents(x))
            for coder in CODERS[name]:
                rate = 44100 if name.startswith("stereo") else 0
                (HERE / f"{name}.{coder}.wlc").write_bytes(encoder.encode(x, coder=coder,
                                                                          sample_rate=rate))
            for level in LEVELS[1:]:
                (HERE / f"rans-{level}").mkdir(exist_ok=True)
                (HERE / f"rans-{level}" / f"{name}.rans.wlc").write_bytes(
                    encoder.encode(x, sample_rate=rate, level=level))


if __name__ == "__main__":
    main()
