"""The native backend (the C encoder) against torch on real photos and real music: the share
of identical latents and the largest difference, per model and input size.

    python benchmarks/native_parity.py --photos PHOTO... --music FILE... [--out benchmarks/results]

Each input is reflect-padded as the runtime pads it; torch computes the reference latents
(Codec.encode), the native backend its own through the sensor runtime (two threads, default
tiles), and the numpy backend's figure stands beside it. Mono models take the downmix.
"""
import argparse
import tempfile

from walloc_edge.codec import load
from walloc_edge.export import export_bundle
from walloc_edge.export.validate import compare, torch_latents
from walloc_edge.runtime import Encoder, pad_reflect
from walloc_edge.runtime.encoder import as_sensor_sample
from walloc_edge.runtime.io import match_channels
from walloc_edge.runtime.modality import IMAGE
import real_data
from report import publish

IMAGE_MODELS, AUDIO_MODELS = ("rgb-16x", "rgb-4x"), ("stereo-5x", "mono-4x")


def crops(photo):
    """The photo whole, a 512x512 centre crop and an odd-sized 301x457 corner."""
    h, w = photo.shape[:2]
    yield "whole", photo
    yield "512x512", photo[(h - 512) // 2:(h + 512) // 2, (w - 512) // 2:(w + 512) // 2]
    yield "301x457", photo[:301, :457]


def clips(x, rate=44100):
    yield "10 s", x[len(x) // 2:len(x) // 2 + 10 * rate]
    yield "1 s + 37", x[:rate + 37]


def measure(model, inputs):
    codec = load(model)
    image = codec.config.modality is IMAGE
    with tempfile.TemporaryDirectory() as bundle:
        export_bundle(codec, bundle, (), log=lambda s: None)
        encoders = {b: Encoder(bundle, b, threads=2 if b == "native" else None)
                    for b in ("native", "numpy")}
        rows = {}
        for size, samples in inputs.items():
            totals = {b: [0, 0, 0] for b in encoders}  # identical, count, max diff
            for x in samples:
                x = x if image else match_channels(x, codec.config.channels)  # mono: downmix
                sample, _ = as_sensor_sample(x, codec.config.modality, codec.config.channels)
                padded, _ = pad_reflect(sample, 2 ** codec.J, axes=(0, 1) if image else (0,))
                reference = torch_latents(codec, padded[None])[0]
                for b, encoder in encoders.items():
                    c = compare(encoder.latents(x), reference)
                    t = totals[b]
                    t[0] += c["identical"] * reference.size
                    t[1] += reference.size
                    t[2] = max(t[2], c["max_diff"])
            rows[size] = {b: {"identical": t[0] / t[1], "max_diff": t[2], "latents": t[1]}
                          for b, t in totals.items()}
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    real_data.add_options(p)
    p.add_argument("--out")
    args = p.parse_args()
    photos, music = real_data.photos(args.photos), real_data.music(args.music)
    photo_inputs, music_inputs = {}, {}
    for photo in photos:
        for size, crop in crops(photo):
            photo_inputs.setdefault(size, []).append(crop)
    for x in music:
        for size, clip in clips(x):
            music_inputs.setdefault(size, []).append(clip)
    results = {m: measure(m, photo_inputs) for m in IMAGE_MODELS}
    results.update({m: measure(m, music_inputs) for m in AUDIO_MODELS})
    lines = [f"# Native encoder parity with torch ({len(photos)} photos, {len(music)} music "
             "files)", "", "| model | input | latents | native identical | native max diff | "
             "numpy identical | numpy max diff |", "|---|---|---|---|---|---|---|"]
    for model, rows in results.items():
        for size, r in rows.items():
            lines.append(f"| {model} | {size} | {r['native']['latents']:,} | "
                         f"{r['native']['identical']:.5%} | {r['native']['max_diff']} | "
                         f"{r['numpy']['identical']:.5%} | {r['numpy']['max_diff']} |")
    publish(lines, results, args.out, "native_parity")


if __name__ == "__main__":
    main()
