"""``walloc-edge classify probe``: the detail probe (walloc_edge/learning/probe.py) as an
image folder that ``classify sweep`` and ``dataset`` take."""
from ._shared import HelpFormatter, positive_int, positive_number, progress

PROBE_EXAMPLES = """The probe asks whether a classifier can read a digit pasted on a plate at a
random place in each photo (ten classes, one per digit) from detail that resizing removes.
Tune --glyph-size, --contrast and --ink until full pixels beat resized ones by a clear margin
(a one-seed sweep of resized and full), then compare latents: how much of that gap do they
recover? (On Imagenette at 112 px, solid digits of 8 and 12 px were not learnt from 4,000
photos in 15 epochs, full pixels or resized; hatched ones of 24 px were.)

examples:
  walloc-edge classify probe imagenette/train probe/ --size 112 --glyph-size 24 --ink hatched
  walloc-edge classify sweep probe/ --out probe-sweep/ --sizes 112 --inputs resized,full
  walloc-edge classify sweep probe/ --out probe-sweep/ --sizes 112 --seeds 3"""


def configure_probe(sub):
    p = sub.add_parser("probe", help="a detail probe: a digit-reading task made from your "
                                     "photos, for classify sweep",
                       formatter_class=HelpFormatter, epilog=PROBE_EXAMPLES,
                       description="Write a labelled image folder (OUT/DIGIT/NNNNN.png) made "
                                   "from PHOTOS: each photo brought to SIZE x SIZE with a "
                                   "seven-segment digit pasted at a random place; the digit "
                                   "is the class. The same photos and --seed give the same "
                                   "folder.")
    p.add_argument("photos", help="a folder of photos (searched at any depth; classes, if "
                                  "any, are ignored)")
    p.add_argument("out", help="the folder to write (new, or empty)")
    p.add_argument("--size", type=positive_int, default=112,
                   help="side of the square images written, in pixels (make the sweep's "
                        "--sizes this, or a fraction of it)")
    p.add_argument("--glyph-size", type=positive_int, default=24, metavar="PIXELS",
                   help="height of the digit in pixels (at least 5)")
    p.add_argument("--contrast", type=positive_number, default=1.0,
                   help="ink against plate, 0 to 1 (1: black on white or white on black)")
    p.add_argument("--ink", choices=("solid", "hatched"), default="hatched",
                   help="solid (a dark digit on a light plate or the reverse), or hatched (a "
                        "checkerboard digit on a grey plate of its mean: a resize by 2 x --cell "
                        "or a multiple of it erases it)")
    p.add_argument("--cell", type=positive_int, default=1, metavar="PIXELS",
                   help="side of the checkerboard's squares of --ink hatched")
    p.add_argument("--seed", type=int, default=0, help="seed of the digits and places")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="use N of the photos (a seeded choice; default: all)")
    p.add_argument("--per-photo", type=positive_int, default=1, metavar="K",
                   help="images made from each photo, each with another digit (at most 10; "
                        "with 10 a photo tells nothing of the class, so remembering photos "
                        "cannot score)")


def run_probe(args):
    from ..learning.probe import make_probe

    try:
        counts = make_probe(args.photos, args.out, args.size, args.glyph_size, args.contrast,
                            args.seed, args.limit, args.per_photo, args.ink, args.cell,
                            progress=lambda jobs: progress(jobs, "probe", "image"))
    except ValueError as e:
        raise ValueError(_option(str(e))) from None
    ink = f"hatched ink in cells of {args.cell} px" if args.ink == "hatched" else "solid ink"
    print(f"wrote {sum(counts.values())} images to {args.out} (10 classes, "
          f"{min(counts.values())} to {max(counts.values())} each; {args.size} px, digits "
          f"{args.glyph_size} px high, {ink}, contrast {args.contrast:g})")


def _option(message):
    """The library's message with the option that set the refused value named."""
    for word, option in (("a glyph of", "--glyph-size"), ("contrast", "--contrast"),
                         ("size", "--size"), ("per photo", "--per-photo")):
        if message.startswith(word):
            return f"{option}: {message}"
    return message
