"""``walloc-edge demo``: the main job on the embedded models and a bundled photo."""
from ..demo import run_demo
from ..zoo import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL, embedded_models

EXAMPLES = """Exports the model's sensor encoder to ONNX (validated), encodes a bundled photo
with the torch-free runtime into a .wlc, decodes it with torch, prints dimensionality
reduction, compression ratio, bpp, PSNR, MS-SSIM and MP/s, and writes a side-by-side picture
(original | decoded | error x4); then the same for 5 s of generated stereo music.

example:
  walloc-edge demo --out demo-out/"""


def configure(p):
    p.add_argument("--model", default=DEFAULT_IMAGE_MODEL,
                   help="an RGB image model: embedded name or file")
    p.add_argument("--audio-model", help="an audio model for the music part (default: the "
                                         f"embedded {DEFAULT_AUDIO_MODEL} when installed)")
    p.add_argument("--out", default="demo-out", help="output folder")
    p.epilog = EXAMPLES


def run(args):
    import torch  # noqa: F401  (the demo decodes with torch: without it, the line naming the extra)

    models = embedded_models()
    if args.model == DEFAULT_IMAGE_MODEL and DEFAULT_IMAGE_MODEL not in models:
        raise ValueError(f"the embedded model {DEFAULT_IMAGE_MODEL} is not installed: "
                         "pip install 'walloc-edge[server]', or pass --model PATH")
    audio = args.audio_model or (DEFAULT_AUDIO_MODEL if DEFAULT_AUDIO_MODEL in models else None)
    run_demo(args.model, args.out, audio_model=audio)
