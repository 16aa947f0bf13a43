"""Peak memory and speed of decoding a large photo with the tiled torch decoder.

    python benchmarks/decoder_memory.py MODEL [--size 4000x6000] [--out benchmarks/results]

The bundled astronaut photo tiled to SIZE is encoded by the sensor runtime (numpy backend,
rans) and decoded on the CPU in tiles of the decoder's default size; a thread samples the
resident set size.
Reported: the peak above what the process held just before the decode, and MP/s.
"""
import argparse
import platform
from pathlib import Path

import numpy as np


from walloc_edge.bench import PeakMemory, once
from walloc_edge.data import sample_photo
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.evaluation.evaluate import runtime_encoder
from report import publish


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("--size", default="4000x6000")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    decoder = Decoder(args.model, "cpu")
    photo = np.tile(sample_photo("astronaut"), (h // 512 + 1, w // 512 + 1, 1))[:h, :w].copy()
    blob = runtime_encoder(decoder.codec).encode(photo)
    decoder.decode(runtime_encoder(decoder.codec).encode(photo[:256, :256]))  # warm-up
    with PeakMemory() as memory:
        seconds, out = once(lambda: decoder.decode(blob))
    result = {"size": args.size, "megapixels": h * w / 1e6, "output_MB": out.nbytes / 1e6,
              "peak_extra_MB": memory.mb, "seconds": seconds, "MPps": h * w / 1e6 / seconds,
              "psnr": psnr(photo, out), "machine": f"{platform.machine()}, {platform.processor()}"}
    text = (f"Tiled decode of a {args.size} photo ({result['megapixels']:.0f} MP) with "
            f"`{args.model}` on the CPU ({result['machine']}): peak "
            f"{result['peak_extra_MB']:.0f} MB above the process before the decode (the "
            f"decoded image itself is {result['output_MB']:.0f} MB), {seconds:.0f} s, "
            f"{result['MPps']:.2f} MP/s, PSNR {result['psnr']:.2f} dB")
    publish([text], result, args.out, "decoder_memory")


if __name__ == "__main__":
    main()
