"""Entropy coders on audio: .wlc size of every coder per class of sound, per audio model.

    python benchmarks/audio_coders.py MODEL... [--music FILE...] [--seconds 10]
                                      [--out benchmarks/results]

Classes: real music (--music files, SECONDS from the middle of each), speech (formant-
synthesised: no recorded speech ships with the project or its data, so it is generated and
named so), tones (a sine, a chord, a sweep, a tone in one channel only) and silence (digital
zeros, and ±1 LSB dither). Each clip is encoded end to end with the sensor runtime (ONNX
backend), once per coder, and decoded back to check the latents; sizes are whole .wlc files,
headers included, summed per class, with the size relative to the lossless WebP mosaic (the
reference's way of storing latents).
"""
import argparse
import tempfile

import numpy as np
from scipy.signal import chirp, lfilter

from walloc_edge.codec import load
from walloc_edge.export import export_bundle
from walloc_edge.runtime import Encoder, read_latents
from walloc_edge.runtime.coders import CODERS
from walloc_edge.runtime.encoder import as_sensor_sample
from walloc_edge.runtime.io import match_channels, read_input
from walloc_edge.runtime.modality import AUDIO
from report import publish

RATE = 44100
VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
          (570, 840, 2410)]  # formant frequencies (Hz) of a, i, u, e, o


def resonator(x, frequency, bandwidth):
    """A two-pole resonance at ``frequency`` (Hz) of ``bandwidth`` (Hz), unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / RATE)
    a = [1, -2 * r * np.cos(2 * np.pi * frequency / RATE), r * r]
    return lfilter([sum(a)], a, x)


def speech(seconds, seed):
    """Syllables of a voice (a glottal pulse train with a gliding pitch through three vowel
    formants), fricative noise bursts between some, and pauses: the structure of speech
    (pitch, formants, silences) without recorded speech. The same in both channels, as a
    centred voice is."""
    rng = np.random.default_rng(seed)
    out, n = [], int(seconds * RATE)
    while sum(map(len, out)) < n:
        length = int(rng.uniform(0.12, 0.3) * RATE)
        f0 = rng.uniform(90, 220) * np.linspace(1, rng.uniform(0.8, 1.2), length)
        phase = np.cumsum(f0 / RATE)
        pulses = np.diff(np.floor(phase), prepend=0) * (1 + 0.05 * rng.standard_normal(length))
        voice = sum(resonator(pulses, f, 60 + f / 20) for f in VOWELS[rng.integers(5)])
        envelope = np.sin(np.pi * np.arange(length) / length) ** 0.5
        out.append(voice * envelope)
        if rng.random() < 0.3:  # a fricative (s, f)
            out.append(np.diff(rng.standard_normal(int(0.08 * RATE)), prepend=0) * 0.02)
        if rng.random() < 0.25:  # a pause between words
            out.append(np.zeros(int(rng.uniform(0.1, 0.4) * RATE)))
    x = np.concatenate(out)[:n]
    return pcm(np.stack([x, x], axis=1), 0.5)


def pcm(x, peak):
    return np.round(x * (peak * 32767 / max(np.abs(x).max(), 1e-9))).astype(np.int16)


def tones(seconds):
    t = np.arange(int(seconds * RATE)) / RATE
    sine = np.sin(2 * np.pi * 440 * t)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    sweep = chirp(t, 100, t[-1], 8000, method="logarithmic")
    both = lambda x: np.stack([x, x], axis=1)  # noqa: E731
    return {"sine 440 Hz": pcm(both(sine), 0.5), "C major chord": pcm(both(chord), 0.5),
            "sweep 100 Hz-8 kHz": pcm(both(sweep), 0.5),
            "sine in one channel": pcm(np.stack([sine, 0 * sine], axis=1), 0.5)}


def silence(seconds, seed=0):
    n = int(seconds * RATE)
    dither = np.random.default_rng(seed).integers(-1, 2, (n, 2)).astype(np.int16)
    return {"digital silence": np.zeros((n, 2), np.int16), "±1 LSB dither": dither}


def music(files, seconds):
    clips = {}
    for f in files:
        x, _ = read_input(f, AUDIO, 2)  # Ogg Vorbis decodes to float in [-1, 1]
        x, _ = as_sensor_sample(x, AUDIO, 2)  # int16, as a sensor takes it
        n = min(len(x), int(seconds * RATE))
        start = (len(x) - n) // 2
        clips[f.split("/")[-1]] = x[start:start + n]
    return clips


def bench_model(model, classes):
    codec = load(model)
    with tempfile.TemporaryDirectory() as bundle:
        export_bundle(codec, bundle, ("onnx",), log=lambda s: None)
        encoder = Encoder(bundle, "onnxruntime")
        result = {}
        for cls, clips in classes.items():
            sizes = {name: 0 for name in CODERS}
            per_clip = {}
            for clip_name, clip in clips.items():
                x = match_channels(clip, codec.config.channels)  # mono: the downmix
                latents = encoder.latents(x)
                per_clip[clip_name] = {}
                for name in CODERS:
                    blob = encoder.encode(x, coder=name, sample_rate=RATE)
                    assert np.array_equal(read_latents(blob)[1], latents), (clip_name, name)
                    sizes[name] += len(blob)
                    per_clip[clip_name][name] = len(blob)
            result[cls] = {"clips": per_clip, "bytes": sizes,
                           "vs_webp": {n: s / sizes["webp"] for n, s in sizes.items()}}
    return result


def markdown(results, classes, args):
    lines = [f"# Entropy coders on audio: .wlc bytes per class ({args.seconds:g} s clips, "
             "44.1 kHz, sizes summed over the class's clips)", ""]
    for model, result in results.items():
        lines += [f"## `{model}`", "", "| class | clips | " + " | ".join(CODERS) +
                  " | rans vs webp |", "|---|---|" + "---|" * (len(CODERS) + 1)]
        for cls, r in result.items():
            lines.append(f"| {cls} | {len(r['clips'])} | " +
                         " | ".join(f"{r['bytes'][n]:,}" for n in CODERS) +
                         f" | {r['vs_webp']['rans']:.1%} |")
        lines += ["", "| clip | " + " | ".join(CODERS) + " |", "|---|" + "---|" * len(CODERS)]
        for r in result.values():
            lines += [f"| {clip} | " + " | ".join(f"{sizes[n]:,}" for n in CODERS) + " |"
                      for clip, sizes in r["clips"].items()]
        lines.append("")
    return lines[:-1]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="audio models (embedded names or files)")
    p.add_argument("--music", nargs="+", required=True, help="real music files")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--out")
    args = p.parse_args()
    classes = {"music": music(args.music, args.seconds),
               "speech (synthesised)": {f"voice {s}": speech(args.seconds, s) for s in range(3)},
               "tones": tones(args.seconds), "silence": silence(args.seconds)}
    results = {m: bench_model(m, classes) for m in args.models}
    publish(markdown(results, classes, args), results, args.out, "audio_coders")


if __name__ == "__main__":
    main()
