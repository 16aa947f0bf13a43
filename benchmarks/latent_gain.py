"""Rate and quality of a model at wider latent spreads, before any fine-tuning.

    python benchmarks/latent_gain.py MODEL --gains 1,2,3,4 --data FILE... [--protocol paper]
        [--out benchmarks/results]

For each gain K, the model's latents are spread K times wider with the decoder's first layer
divided by K (`walloc_edge.codec.models.scale_latents`, what `walloc-edge train --init MODEL
--latent-gain K` starts from), then measured as `walloc-edge eval` measures: the sensor
runtime's .wlc (rans) and the torch decoder. Shows where an operating point lies before
choosing the gain to fine-tune at.
"""
import argparse
import sys
from pathlib import Path


from walloc_edge.codec import load
from walloc_edge.codec.models import scale_latents
from walloc_edge.decoder import Decoder
from walloc_edge.evaluation.evaluate import evaluate_files, runtime_encoder, summarise
from report import publish


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", help="a model name or file")
    p.add_argument("--gains", default="1,2,3,4", help="comma-separated latent gains")
    p.add_argument("--data", nargs="+", required=True, help="held-out images or audio files")
    p.add_argument("--protocol", default="default", choices=("default", "paper"),
                   help="walloc-edge eval's protocols (paper: the WaLLoC paper's PSNR and ratio)")
    p.add_argument("--name", help="the name in the results file (default: the model's)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = []
    for gain in [float(g) for g in args.gains.split(",")]:
        codec = scale_latents(load(args.model), gain).eval()
        decoder, encoder = Decoder(codec, "cpu"), runtime_encoder(codec)
        results = evaluate_files(decoder, encoder, args.data, protocol=args.protocol)
        failed = [r for r in results if "error" in r]
        if failed:
            sys.exit(f"latent_gain: {failed[0]['file']}: {failed[0]['error']}")
        rows.append({"gain": gain, **summarise(results, codec.config)})
        paper = args.protocol == "paper"
        quality = rows[-1]["paper_psnr" if paper else "psnr"]
        ratio = rows[-1]["paper_compression_ratio" if paper else "compression_ratio"]
        print(f"gain {gain:g}: {quality:.2f} dB, ratio {ratio:.1f}", file=sys.stderr)
    name = args.name or Path(args.model).stem
    if args.protocol == "paper":
        unit = "bits per sample of each channel" if "paper_encode_MSps" in rows[0] else "bpp"
        lines = [f"Latent gain of `{name}` without fine-tuning, on {len(args.data)} held-out "
                 "file(s), the paper's protocol (audio mean-removed and peak-normalised to 0.5; "
                 "PSNR on that scale; ratio = 16 (24 for RGB) / mean bits)", "",
                 f"| gain | PSNR dB (paper) | {unit} | compression ratio (paper) |",
                 "|---|---|---|---|"]
        lines += [f"| {r['gain']:g} | {r['paper_psnr']:.2f} | {r['paper_bits']:.3f} | "
                  f"{r['paper_compression_ratio']:.1f} |" for r in rows]
    else:
        unit = "bits_per_pixel" if "bits_per_pixel" in rows[0] else "bits_per_sample"
        lines = [f"Latent gain of `{name}` without fine-tuning, on {len(args.data)} held-out "
                 "file(s)", "",
                 f"| gain | PSNR dB | {unit.replace('_', ' ')} | compression ratio |",
                 "|---|---|---|---|"]
        lines += [f"| {r['gain']:g} | {r['psnr']:.2f} | {r[unit]:.3f} | "
                  f"{r['compression_ratio']:.1f} |" for r in rows]
    suffix = "-paper" if args.protocol == "paper" else ""
    publish(lines, rows, args.out, f"latent-gain-{name}{suffix}")


if __name__ == "__main__":
    main()
