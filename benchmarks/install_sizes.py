"""How much each install of walloc-edge weighs: a fresh venv per variant, the checkout
installed as a user would, then the venv's size on disk.

    python benchmarks/install_sizes.py [--out benchmarks/results]

Variants: the bare package (numpy backend), [runtime] (onnxruntime), [litert], [runtime,
camera] (OpenCV), the server ([server]: CPU torch first, then the weights from ./models),
and the torch-free decode server ([decode]; with MQTT, an object store and latents rows).
An empty venv (pip and setuptools alone) is measured too, so the package's own share shows.
"""
import argparse
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from report import publish

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name: pip install arguments after the first (torch) step, if any
    "empty venv": [],
    "walloc-edge (bare, numpy backend)": [str(ROOT)],
    "walloc-edge[runtime]": [f"{ROOT}[runtime]"],
    "walloc-edge[litert]": [f"{ROOT}[litert]"],
    "walloc-edge[runtime,camera]": [f"{ROOT}[runtime,camera]"],
    "walloc-edge[server] + walloc-edge-models": ["torch==2.13.0", "&&", str(ROOT / "models"),
                                                 f"{ROOT}[server]"],
    "walloc-edge[decode]": [f"{ROOT}[decode]"],
    "walloc-edge[decode,bridge,s3,learning]": [f"{ROOT}[decode,bridge,s3,learning]"],
}


def size_mb(folder):
    out = subprocess.run(["du", "-sm", str(folder)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def install(folder, args):
    venv.create(folder, with_pip=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q",
           "--root-user-action=ignore"]
    steps, step = [], []
    for arg in args:
        if arg == "&&":
            steps.append(step)
            step = []
        else:
            step.append(arg)
    for step in steps + ([step] if step else []):
        subprocess.run(pip + step, check=True, capture_output=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write install_sizes.md/.json here")
    args = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, pip_args) in enumerate(VARIANTS.items()):
            folder = Path(tmp) / f"v{i}"
            install(folder, pip_args)
            rows[name] = size_mb(folder)
            print(f"{name}: {rows[name]} MB", file=sys.stderr)
    empty = rows["empty venv"]
    lines = ["# Install sizes", "",
             f"Fresh venvs on {sys.platform}, Python {sys.version.split()[0]}; size on disk "
             "(`du -sm` of the venv).", "",
             "| install | venv MB | above an empty venv |", "|---|---|---|"]
    lines += [f"| {name} | {mb} | {mb - empty} |" for name, mb in rows.items()]
    publish(lines, rows, args.out, "install_sizes")


if __name__ == "__main__":
    main()
