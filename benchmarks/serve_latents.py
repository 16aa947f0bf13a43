"""How fast the server takes messages when it decodes them, and when it keeps (and labels)
latents without decoding.

    python benchmarks/serve_latents.py IMAGES [--model rgb-16x] [--count 200]
                                       [--out benchmarks/results]

IMAGES: a folder of photos (searched recursively), brought to 224x224 as walloc-edge dataset
does. A sensor (walloc-edge stream, numpy backend) writes COUNT of them as frames into a
file link, once with each coder (rans, webp); walloc-edge serve then replays each link in
each configuration, on the CPU:
decode to PNG (today's server), latents rows only (--no-decode --latents), latents and a
label (--classify), and all of it. Throughput is messages over the span between the first
and the last message's metrics line; "per message" is the mean of serve's own timing of each
message (read, verify, decode and/or classify, write). The classifier is the walloc-edge
classify family with untrained weights: the cost is the same, the labels are meaningless.
"""
import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from walloc_edge.cli import main as walloc_edge
from walloc_edge.learning.datasets import prepare
from walloc_edge.runtime.io import IMAGE_SUFFIXES
from report import publish

CONFIGURATIONS = {
    "decode to PNG": [],
    "latents only (--no-decode --latents)": ["--no-decode", "--latents", "{out}/latents"],
    "latents + label (--no-decode --classify)": ["--no-decode", "--latents", "{out}/latents",
                                                 "--classify", "{work}/clf.safetensors"],
    "decode + latents + label": ["--latents", "{out}/latents", "--classify",
                                 "{work}/clf.safetensors"],
}


def untrained_classifier(model, path):
    from walloc_edge.codec import encoder_arrays, load
    from walloc_edge.learning.classifier import build_classifier, save_classifier
    from walloc_edge.runtime.bundle import model_id

    codec = load(model)
    side = 224 // 2 ** codec.config.J
    save_classifier(build_classifier({"kind": "latents", "model": model, "model_id": model_id(
        codec.config.to_dict(), encoder_arrays(codec)), "in_channels": codec.config.latent_dim,
        "in_size": side, "classes": [str(i) for i in range(10)],
        "arch": "cnn", "grid": side, "widths": [32, 64, 128, 256]}), path)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images")
    p.add_argument("--model", default="rgb-16x")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--out")
    args = p.parse_args()
    files = sorted(f for f in Path(args.images).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    files = files[::max(1, len(files) // args.count)][:args.count]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "frames").mkdir()
        for i, f in enumerate(files):
            Image.fromarray(prepare(f, 224)).save(work / "frames" / f"{i:05d}.png")
        untrained_classifier(args.model, work / "clf.safetensors")
        assert walloc_edge(["export", args.model, "--format", "onnx", "--out",
                            str(work / "bundle")]) == 0
        for coder in ("rans", "webp"):
            link = work / f"{coder}.frames"
            assert walloc_edge(["stream", str(work / "bundle"), str(work / "frames"), "--to",
                                f"file://{link}", "--coder", coder, "--state",
                                str(work / "state")]) == 0
            for name, extra in CONFIGURATIONS.items():
                out = work / f"out-{len(rows)}"
                options = [o.format(work=work, out=out) for o in extra]
                assert walloc_edge(["serve", args.model, "--listen", str(link), "--out",
                                    str(out), "--device", "cpu", *options]) == 0
                lines = [json.loads(line)
                         for line in (out / "metrics.jsonl").read_text().splitlines()]
                span = lines[-1]["time"] - lines[0]["time"]
                rows.append({"configuration": name, "coder": coder, "messages": len(lines),
                             "messages_per_s": (len(lines) - 1) / span,
                             "ms_per_message": 1e3 * float(np.mean([r["decode_s"]
                                                                    for r in lines]))})
    lines = [f"# Server throughput with and without decoding: {len(files)} frames of 224x224, "
             f"`{args.model}`, CPU ({platform.machine()})", "",
             "| configuration | sensor's coder | messages/s | ms per message |",
             "|---|---|---|---|"]
    lines += [f"| {r['configuration']} | {r['coder']} | {r['messages_per_s']:.1f} | "
              f"{r['ms_per_message']:.1f} |" for r in rows]
    publish(lines, rows, args.out, "serve_latents")


if __name__ == "__main__":
    main()
