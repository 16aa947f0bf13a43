"""``walloc-edge bench``: per-device throughput of every backend beside JPEG/WebP/PNG."""
import json
import sys

from ..bench import markdown, print_table, run_bench, svg_plot
from ..runtime.coders import CODERS
from ._shared import thread_counts, write_text

EXAMPLES = """Rows: each backend (native, fixed-point, onnxruntime and LiteRT/XNNPACK per thread
count; numpy), the end to end path (latents and rans) against JPEG and WebP at equal cores,
the torch encoder and decoder, and JPEG / WebP (size-matched) and PNG. Every number is measured
in the run; a backend missing here shows as skipped, with why.

examples:
  walloc-edge bench --quick                       (exports the embedded rgb-16x; needs [export])
  walloc-edge bench --bundle bundle/ --json bench.json      (on a sensor, no torch)"""


def configure(p):
    p.add_argument("--model", help="model to export and to decode with (default: the embedded "
                                   "rgb-16x; needs [export])")
    p.add_argument("--bundle", help="an exported sensor bundle: benchmark it without torch "
                                    "(as on a Raspberry Pi or Jetson)")
    p.add_argument("--quick", action="store_true", help="a 1024x1024 input and 3 runs per row "
                                                        "(about a minute on 2 cores)")
    p.add_argument("--threads", default=(1, 2), type=thread_counts, metavar="LIST",
                   help="thread counts of the threaded backends' rows, comma-separated")
    p.add_argument("--level", choices=CODERS["rans"].levels,
                   help="the rans level of the end-to-end and coder rows (default: best)")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--markdown", help="write the table as Markdown")
    p.add_argument("--plot", help="write a bar chart of the throughputs (SVG)")
    p.epilog = EXAMPLES


def run(args):
    model = args.model
    if model is None and args.bundle is None:
        from ..zoo import DEFAULT_IMAGE_MODEL

        model = DEFAULT_IMAGE_MODEL
    result = run_bench(args.bundle, model, quick=args.quick, threads=args.threads,
                       level=args.level)
    print_table(result)
    command = "walloc-edge " + " ".join(sys.argv[1:])
    if args.json:
        write_text(args.json, json.dumps(result, indent=2) + "\n")
    if args.markdown:
        write_text(args.markdown, markdown(result, command))
    if args.plot:
        write_text(args.plot, svg_plot(result))
