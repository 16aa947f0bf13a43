"""``walloc-edge models``: the models shipped with walloc-edge (the walloc-edge-models
package), with how each was trained and what it measured."""
import json

from ..zoo import embedded_models, model_file, weights_installed


def configure(p):
    p.add_argument("--json", action="store_true", help="print the list as JSON")


MEASURED = {"dimensionality_reduction": "{:.2f}x fewer values", "psnr": "PSNR {:.2f} dB",
            "paper_psnr": "PSNR {:.2f} dB", "paper_compression_ratio": "ratio {:.1f}",
            "paper_bits": "{:.3f} bits/sample", "paper_encode_MSps": "encode {:.2f} MS/s (CPU)",
            "si_sdr": "SI-SDR {:.2f} dB", "mel_distance": "log-mel distance {:.2f} dB",
            "ms_ssim": "MS-SSIM {:.3f}", "compression_ratio": "ratio {:.1f}",
            "bits_per_pixel": "{:.3f} bpp", "bits_per_sample": "{:.3f} bits/frame",
            "encode_MPps": "encode {:.1f} MP/s", "decode_MPps": "decode {:.2f} MP/s",
            "encode_MSps": "encode {:.2f} MS/s", "decode_MSps": "decode {:.2f} MS/s"}


def run(args):
    models = embedded_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return
    if not weights_installed():
        print("the model weights are not installed here (a sensor does not need them: it "
              "runs an exported bundle); on a server: pip install 'walloc-edge[server]'")
        return
    for name, info in models.items():
        size = model_file(name).stat().st_size / 1e6
        print(f"{name:<17} {info['description']} ({size:.1f} MB)")
        steps = info.get("training", {}).get("steps")
        if steps:
            print(f"{'':<17}   trained {steps:,} steps (command: walloc-edge models --json)")
        if info.get("latent_gain"):
            print(f"{'':<17}   an operating point of {info['file']}: latents "
                  f"{info['latent_gain']:g}x wider")
        for field, what in (("measured", "measured"),
                            ("measured_paper", "measured, the paper's protocol")):
            shown = [MEASURED.get(key, key + " {:g}").format(value)
                     for key, value in info.get(field, {}).items()]
            if shown:
                print(f"{'':<17}   {what}: {', '.join(shown)}")
