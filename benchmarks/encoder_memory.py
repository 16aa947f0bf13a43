"""Peak memory of the sensor encoder on large photos: tiled (the default) vs one run.

    python benchmarks/encoder_memory.py BUNDLE [--backends native,onnxruntime,numpy]
        [--sizes 2000x3000,4000x6000] [--out benchmarks/results]

Each measurement runs in a fresh process: it builds the photo (the bundled astronaut tiled to
the size), loads the encoder and warms it up on a small image, then encodes the photo to
.wlc (rans) while a thread samples the resident set size every 2 ms. Reported: the input's
size and the peak RSS above what the process held just before the encode. "one run" passes
the whole padded image to the backend at once (tile larger than the image).
"""
import argparse
import platform
from pathlib import Path

from walloc_edge.bench import PeakMemory, in_fresh_process, once
from report import publish

def child(bundle, backend, size, tile):
    """One measurement, in this (fresh) process: the peak RSS above the warmed-up encoder's
    while it encodes a photo of ``size``."""
    import numpy as np

    from walloc_edge.data import sample_photo
    from walloc_edge.runtime import Encoder

    h, w = size
    photo = np.tile(sample_photo("astronaut"), (h // 512 + 1, w // 512 + 1, 1))[:h, :w].copy()
    encoder = Encoder(bundle, backend, tile=tile)
    encoder.encode(photo[:256, :256])
    with PeakMemory() as memory:
        seconds, blob = once(lambda: encoder.encode(photo))
    return {"input_MB": photo.nbytes / 1e6, "extra_MB": memory.mb,
            "seconds": seconds, "bytes": len(blob)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--backends", default="native,onnxruntime,numpy")
    p.add_argument("--sizes", default="2000x3000,4000x6000")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    for backend in args.backends.split(","):
        for size in sizes:
            for mode, tile in (("tiled (default)", None), ("one run", 1 << 20)):
                r = in_fresh_process(child, args.bundle, backend, size, tile)
                rows.append({"backend": backend, "size": f"{size[0]}x{size[1]}", "mode": mode, **r})
                print(rows[-1], flush=True)
    lines = [f"Encoder peak memory above the input ({platform.machine()}, "
             f"{platform.processor() or 'CPU'}); .wlc with the rans coder", "",
             "| backend | photo | MP | input MB | mode | peak extra MB | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        h, w = (int(v) for v in r["size"].split("x"))
        lines.append(f"| {r['backend']} | {r['size']} | {h * w / 1e6:.0f} | {r['input_MB']:.0f} | "
                     f"{r['mode']} | {r['extra_MB']:.0f} | {r['seconds']:.2f} |")
    publish(lines, rows, args.out, "encoder_memory")


if __name__ == "__main__":
    main()
