"""``walloc-edge eval``: rate, distortion and speed of a model over files (server side)."""
import json

from ..evaluation.evaluate import (PROTOCOLS, eval_table, evaluate_files, runtime_encoder,
                                   summarise)
from ..runtime.coders import CODERS
from ..runtime.files import expand_inputs
from ..runtime.modality import AUDIO
from ._shared import add_decoder_options, progress, skipped_line, write_text
from .decode import decoder_for

EXAMPLES = """Each file: sensor runtime encode -> .wlc -> torch decode, then PSNR, MS-SSIM
(images), bits per pixel (per sample for audio), compression ratio and encode/decode MP/s
(MS/s).

examples:
  walloc-edge eval rgb-16x photos/ --json eval.json
  walloc-edge eval stereo-5x music/ --protocol paper      (figures to set beside the paper's)
  walloc-edge eval stereo-5x music/ --baselines           (Opus at the same size, and FLAC)
  walloc-edge eval stereo-5x music/ --bundle bundle-audio/ --backend onnxruntime"""


def configure(p):
    p.add_argument("model", help="an embedded model name, a .safetensors file or a reference "
                                 ".pth")
    p.add_argument("data", nargs="+", help="folders of images or audio (recursive), or files")
    p.add_argument("--coder", default="rans", choices=list(CODERS), help="entropy coder")
    p.add_argument("--bundle", help="encode with this exported bundle's backend (default: the "
                                    "numpy backend over the model's own weights)")
    p.add_argument("--backend", default="auto", help="backend for --bundle")
    add_decoder_options(p)
    p.add_argument("--protocol", default="default", choices=PROTOCOLS,
                   help="default: files as they are, PSNR against 255 / 32768, ratio = mean "
                        "of per-file ratios, audio bits per stereo frame; paper: the WaLLoC "
                        "paper's (audio mean-removed and peak-normalised to 0.5, PSNR on "
                        "that scale, ratio = 16 (24 for RGB) / mean bits per sample of each "
                        "channel, encode speed in CPU time)")
    p.add_argument("--baselines", action="store_true",
                   help="audio models: also code each file with Opus at the size of its .wlc "
                        "(libopus via soundfile, resampled to 48 kHz and back) and FLAC, and "
                        "score Opus the same way (Opus PSNR, SI-SDR, mel; FLAC ratio)")
    p.add_argument("--json", help="also write the per-file rows and the means to this file")
    p.epilog = EXAMPLES


def run(args):
    decoder = decoder_for(args)
    cfg = decoder.codec.config
    if args.baselines and cfg.modality is not AUDIO:
        raise ValueError("--baselines is for audio models (Opus, FLAC); for images, "
                         "walloc-edge bench measures JPEG and WebP at the same size")
    kind = cfg.modality
    found, skipped = expand_inputs(args.data, kind.inputs, kind.plural)
    files = [path for path, _ in found]
    if not files:
        raise ValueError(f"no {cfg.modality} files in {' '.join(args.data)}")
    encoder = runtime_encoder(decoder.codec, args.bundle, args.backend)
    rows = evaluate_files(decoder, encoder, files, args.coder,
                          progress=lambda items: progress(items, "evaluating"),
                          protocol=args.protocol, baselines=args.baselines)
    summary = summarise(rows, cfg)
    print(eval_table(rows, summary, cfg.modality))
    if skipped:
        print(skipped_line(skipped))
    if args.json:
        write_text(args.json, json.dumps({"model": args.model, "coder": args.coder,
                                          "protocol": args.protocol, "mean": summary,
                                          "files": rows}, indent=2) + "\n")
    return 1 if summary["failed"] else 0
