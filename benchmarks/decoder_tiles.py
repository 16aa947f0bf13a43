"""Seams of the tiled decoder: quality next to tile seams and the image's edges vs
elsewhere, and speed.

    python benchmarks/decoder_tiles.py MODEL PHOTO... [--tile 64] [--overlap 8] [--out DIR]

Each photo is encoded by the sensor runtime (numpy backend) and decoded twice: whole, and in
overlapping tiles cross-faded together. PSNR against the original is reported over the
pixels within 8 pixels of a tile seam (the middle of each overlap), over those within 16
pixels of the image's edge (where the packet synthesis wraps around the image), and over
the rest; a flaw shows as a lower PSNR there in the tiled decode than in the
whole decode.
"""
import argparse
import platform
from pathlib import Path

import numpy as np
from PIL import Image


from walloc_edge.bench import once
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.decoder.decoder import DECODE_TILE, tile_spans
from walloc_edge.evaluation.evaluate import runtime_encoder
from report import publish


EDGE = 16  # pixels: the image-edge band, where the packet transform wraps around


def seam_mask(shape, spans, block, width=8):
    """True within ``width`` pixels of the middle of every overlap along one axis."""
    mask = np.zeros(shape, bool)
    for (_, end), (start, _) in zip(spans[:-1], spans[1:]):
        middle = (start + end) * block // 2
        mask[max(0, middle - width):middle + width] = True
    return mask


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("photos", nargs="+")
    p.add_argument("--tile", type=int, default=DECODE_TILE)
    p.add_argument("--overlap", type=int, default=8)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    whole_decoder = Decoder(args.model, "cpu", tile=1 << 16)
    tiled_decoder = Decoder(whole_decoder.codec, "cpu", tile=args.tile, overlap=args.overlap)
    encoder = runtime_encoder(whole_decoder.codec)
    block = 2 ** whole_decoder.codec.J
    rows = []
    for path in args.photos:
        photo = np.asarray(Image.open(path).convert("RGB"))
        blob = encoder.encode(photo)
        results = {}
        for name, decoder in (("whole", whole_decoder), ("tiled", tiled_decoder)):
            results[name + "_s"], results[name] = once(lambda: decoder.decode(blob))
        h, w = -(-photo.shape[0] // block), -(-photo.shape[1] // block)
        pad_y, pad_x = (h * block - photo.shape[0]) // 2, (w * block - photo.shape[1]) // 2
        ys = seam_mask(h * block, tile_spans(h, args.tile, args.overlap), block)
        xs = seam_mask(w * block, tile_spans(w, args.tile, args.overlap), block)
        near = (ys[:, None] | xs[None, :])[pad_y:pad_y + photo.shape[0], pad_x:pad_x + photo.shape[1]]
        edge = np.ones(photo.shape[:2], bool)
        edge[EDGE:-EDGE, EDGE:-EDGE] = False
        near &= ~edge
        rest = ~(near | edge)
        row = {"photo": Path(path).name, "size": f"{photo.shape[1]}x{photo.shape[0]}",
               "seam_share": float(near.mean())}
        for name in ("whole", "tiled"):
            out = results[name]
            row[f"{name}_psnr"] = psnr(photo, out)
            row[f"{name}_psnr_near_seams"] = psnr(photo[near], out[near])
            row[f"{name}_psnr_image_edge"] = psnr(photo[edge], out[edge])
            row[f"{name}_psnr_elsewhere"] = psnr(photo[rest], out[rest])
            row[f"{name}_decode_MPps"] = photo.shape[0] * photo.shape[1] / 1e6 / results[name + "_s"]
        row["tiled_vs_whole_psnr"] = psnr(results["whole"], results["tiled"])
        rows.append(row)
        print(row, flush=True)
    lines = [f"Tiled decoding, {args.tile}-latent tiles with {args.overlap}-latent overlaps, model "
             f"`{args.model}`; {platform.machine()}, {platform.processor() or 'CPU'}, CPU decoder",
             "", "| photo | size | decode | PSNR | near seams | image edge | elsewhere | "
             "tiled vs whole | MP/s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for name in ("whole", "tiled"):
            lines.append(f"| {r['photo']} | {r['size']} | {name} | {r[name + '_psnr']:.2f} | "
                         f"{r[name + '_psnr_near_seams']:.2f} | {r[name + '_psnr_image_edge']:.2f} | "
                         f"{r[name + '_psnr_elsewhere']:.2f} | "
                         f"{r['tiled_vs_whole_psnr']:.1f} | {r[name + '_decode_MPps']:.2f} |")
    lines += ["", f"Near seams: within 8 pixels of the middle of an overlap; image edge: within "
              f"{EDGE} pixels of the image's border. PSNR in dB against the original; tiled "
              "vs whole: PSNR of the tiled decode against the whole decode."]
    publish(lines, rows, args.out, "decoder_tiles")


if __name__ == "__main__":
    main()
