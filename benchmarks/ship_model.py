"""Ship a trained model in the walloc-edge-models package: float16 parameters into
models/walloc_edge_models,
measured on held-out data with `walloc-edge eval`, described in models.json.

    python benchmarks/ship_model.py NAME MODEL --data FILE... --trained "COMMAND" [--note TEXT]

The eval JSON goes to benchmarks/results/eval-NAME.json; models.json records the config,
the training command, the file size and the measured means, with the eval command.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from walloc_edge.codec import load, save


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("name")
    p.add_argument("model")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--trained", required=True, help="the command that trained it")
    p.add_argument("--steps", type=int)
    p.add_argument("--note", default="")
    args = p.parse_args()
    folder = ROOT / "models" / "walloc_edge_models"
    target = folder / f"{args.name}.safetensors"
    codec = load(args.model)
    save(codec, target, parameter_dtype=torch.float16)
    report = ROOT / "benchmarks" / "results" / f"eval-{args.name}.json"
    command = ["walloc-edge", "eval", str(target), *args.data, "--json", str(report),
               "--device", "cpu"]
    subprocess.run([sys.executable, "-m", "walloc_edge.cli", *command[1:]], check=True, cwd=ROOT)
    mean = json.loads(report.read_text())["mean"]
    shown = " ".join(["walloc-edge", "eval", args.name, *args.data, "--json",
                      str(report.relative_to(ROOT))])
    manifest_path = folder / "models.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    cfg = codec.config
    manifest[args.name] = {
        "file": target.name,
        "description": f"{cfg.modality} {cfg.channels}-channel, J={cfg.J}, latent_dim="
                       f"{cfg.latent_dim} ({cfg.dimensionality_reduction:.2f}x), Nd={cfg.Nd}"
                       + (f"; {args.note}" if args.note else ""),
        "config": cfg.to_dict(),
        "training": {"command": args.trained, "steps": args.steps},
        "measured": {k: round(v, 4) for k, v in mean.items() if isinstance(v, float)},
        "measured_by": shown,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"shipped {args.name}: {target.stat().st_size / 1e6:.1f} MB; {manifest[args.name]['measured']}")


if __name__ == "__main__":
    main()
