"""Entropy coders on real photos: size and speed of rans, webp, png (and raw) per model.

    python benchmarks/coders.py MODEL... [--photos FILE...] [--crop WxH] [--repeat 3]
                                [--out benchmarks/results]

For each model: export the sensor bundle (ONNX), compute the integer latents of each photo
with the runtime, then code them with every coder (median of --repeat runs for encode and
decode, after one warm-up). Sizes are totals over the photos: bits per latent, bits per
pixel, compression ratio against 24-bit RGB, and size relative to the lossless WebP mosaic
(the reference's way of storing latents). Speeds are in megabytes of int8 latents per second
and in megapixels of the photo per second. --crop codes the centre WxH of each photo instead
(a sensor's frame size; results then go to coders-WxH.md).
"""
import argparse
import contextlib
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


from walloc_edge.bench import timed
from walloc_edge.codec import load
from walloc_edge.data import SAMPLE_PHOTOS, sample_photo
from walloc_edge.export import export_bundle
from walloc_edge.runtime import Encoder
from walloc_edge.runtime.coders import CODERS
from walloc_edge.runtime.coders.rans import native
from report import publish


def median_time(fn, repeat):
    return float(np.median(timed(fn, repeat)))


def photos(paths, crop=None):
    if not paths:
        images = [(name, sample_photo(name)) for name in SAMPLE_PHOTOS]
    else:
        images = [(Path(p).name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]
    if crop is None:
        return images
    w, h = crop
    for name, img in images:
        if img.shape[0] < h or img.shape[1] < w:
            sys.exit(f"--crop {w}x{h} is larger than {name} ({img.shape[1]}x{img.shape[0]})")
    return [(name, img[(img.shape[0] - h) // 2:][:h, (img.shape[1] - w) // 2:][:, :w])
            for name, img in images]


def frame_size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH, e.g. 640x480") from None
    return w, h


def bench_model(model_path, images, repeat):
    codec = load(model_path)
    bits = codec.config.latent_bits
    with tempfile.TemporaryDirectory() as bundle:
        export_bundle(codec, bundle, ("onnx",), log=lambda s: None)
        encoder = Encoder(bundle)
        latents = [encoder.latents(img) for _, img in images]
    pixels = sum(img.shape[0] * img.shape[1] for _, img in images)
    count = sum(lat.size for lat in latents)
    rows = {}
    variants = [(name, coder, contextlib.nullcontext) for name, coder in CODERS.items()]
    if native.available():  # the C loops above; the numpy reference beside them
        variants.insert(1, ("rans (numpy)", CODERS["rans"], native.turned_off))
    for name, coder, mode in variants:
        if bits > coder.max_bits:
            continue
        with mode():
            rows[name] = _measure(coder, latents, bits, repeat, count, pixels)
    for row in rows.values():
        row["vs_webp"] = row["bytes"] / rows["webp"]["bytes"]
    return {"model": str(model_path), "latents": count, "pixels": pixels, "coders": rows}


def _measure(coder, latents, bits, repeat, count, pixels):
    """Sizes and median speeds of one coder over every photo's latents (checked to decode)."""
    payloads = [coder.encode(lat, bits) for lat in latents]
    for lat, payload in zip(latents, payloads):
        assert np.array_equal(coder.decode(payload, lat.shape, bits, coder.params(bits)), lat)
    enc = sum(median_time(lambda lat=lat: coder.encode(lat, bits), repeat) for lat in latents)
    dec = sum(median_time(lambda p=p, lat=lat: coder.decode(p, lat.shape, bits,
                                                             coder.params(bits)), repeat)
              for p, lat in zip(payloads, latents))
    size = sum(len(p) for p in payloads)
    return {"bytes": size, "bits_per_latent": 8 * size / count,
            "bpp": 8 * size / pixels, "compression_ratio": 3 * pixels / size,
            "encode_MBps": count / 1e6 / enc, "decode_MBps": count / 1e6 / dec,
            "encode_MPps": pixels / 1e6 / enc, "decode_MPps": pixels / 1e6 / dec}


def markdown(results, images, args):
    crop = f"the centre {args.crop[0]}x{args.crop[1]} of " if args.crop else ""
    lines = [f"Entropy coders on {crop}{len(images)} photos ({', '.join(n for n, _ in images)}); "
             f"{platform.machine()}, {platform.processor() or 'CPU'}, median of {args.repeat}",
             ""]
    for r in results:
        lines += [f"Model `{r['model']}`: {r['latents']:,} latents for {r['pixels']:,} pixels",
                  "", "| coder | bits/latent | bpp | compression ratio | vs webp | encode MB/s "
                  "(MP/s) | decode MB/s (MP/s) |", "|---|---|---|---|---|---|---|"]
        for name, c in r["coders"].items():
            lines.append(f"| {name} | {c['bits_per_latent']:.3f} | {c['bpp']:.3f} | "
                         f"{c['compression_ratio']:.1f} | {c['vs_webp']:.1%} | "
                         f"{c['encode_MBps']:.1f} ({c['encode_MPps']:.1f}) | "
                         f"{c['decode_MBps']:.1f} ({c['decode_MPps']:.1f}) |")
        lines.append("")
    return lines[:-1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--photos", nargs="*", help="photo files (default: the bundled samples)")
    p.add_argument("--crop", type=frame_size, metavar="WxH",
                   help="code the centre WxH of each photo (e.g. 640x480)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    images = photos(args.photos, args.crop)
    results = [bench_model(m, images, args.repeat) for m in args.models]
    stem = f"coders-{args.crop[0]}x{args.crop[1]}" if args.crop else "coders"
    publish(markdown(results, images, args), results, args.out, stem)


if __name__ == "__main__":
    main()
