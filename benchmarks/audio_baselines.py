"""An audio model beside Opus at the same size and lossless FLAC, on real music, with the
paper's preparation (each clip mean-removed and peak-normalised to 0.5).

    python benchmarks/audio_baselines.py MODEL FILE... [--out benchmarks/results]

For each clip: MODEL's .wlc (the sensor runtime, numpy backend, rans) and its decode; Opus
(libopus through soundfile's libsndfile, Ogg, at 48 kHz: the clip is resampled there and
back) at the compression level whose size is closest to the .wlc's; FLAC of the 16-bit clip
(lossless, so only its size). Quality as PSNR on the paper's scale, SI-SDR and the log-mel
distance (walloc_edge.decoder.metrics).
"""
import argparse
import math

import numpy as np

from walloc_edge.decoder import Decoder
from walloc_edge.decoder.metrics import mel_distance, si_sdr
from walloc_edge.evaluation.baselines import flac_bytes, opus_at
from walloc_edge.evaluation.evaluate import paper_audio, runtime_encoder
from walloc_edge.runtime.io import read_input
from walloc_edge.runtime.modality import AUDIO
from report import publish


def paper_psnr(x, y):
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else -10 * math.log10(mse)


def measure(x, y, rate):
    return {"psnr": paper_psnr(x, y), "si_sdr": si_sdr(x, y),
            "mel_distance": mel_distance(x, y, rate)}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an audio model: embedded name or file")
    p.add_argument("files", nargs="+", help="held-out audio files")
    p.add_argument("--out", help="write audio_baselines.md/.json here")
    args = p.parse_args()
    decoder = Decoder(args.model, "cpu")
    encoder = runtime_encoder(decoder.codec)
    rows = []
    for path in args.files:
        sample, rate = read_input(path, AUDIO, decoder.codec.config.channels)
        x = paper_audio(sample)
        seconds = len(x) / rate
        blob = encoder.encode((2 * x).astype(np.float32), sample_rate=rate)
        ours = measure(x, decoder.decode(blob).astype(np.float64) / 2, rate)
        opus, opus_decoded, _ = opus_at(2 * x, rate, len(blob))
        opus_decoded = opus_decoded / 2
        theirs = measure(x, opus_decoded, rate)
        rows.append({"file": path, "seconds": seconds, "wlc_kbps": 8 * len(blob) / seconds / 1e3,
                     "opus_kbps": 8 * len(opus) / seconds / 1e3,
                     "flac_kbps": 8 * flac_bytes(2 * x, rate) / seconds / 1e3,
                     **{f"wlc_{k}": v for k, v in ours.items()},
                     **{f"opus_{k}": v for k, v in theirs.items()}})
        r = rows[-1]
        print(f"{path}: walloc {r['wlc_kbps']:.1f} kb/s {r['wlc_psnr']:.2f} dB, opus "
              f"{r['opus_kbps']:.1f} kb/s {r['opus_psnr']:.2f} dB")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "file"}
    lines = [f"# `{args.model}` beside Opus (same size) and FLAC, {len(rows)} clips", "",
             "Clips mean-removed and peak-normalised to 0.5 (the paper's protocol); PSNR on "
             "that scale; mel: mean |log-mel difference| in dB (lower is better).", "",
             "| clip | kb/s: walloc / Opus / FLAC | PSNR dB: walloc / Opus | SI-SDR dB: walloc"
             " / Opus | mel dB: walloc / Opus |", "|---|---|---|---|---|"]
    for r in rows + [{"file": "mean", **mean}]:
        name = r["file"].rsplit("/", 1)[-1]
        lines.append(f"| {name} | {r['wlc_kbps']:.1f} / {r['opus_kbps']:.1f} / "
                     f"{r['flac_kbps']:.0f} | {r['wlc_psnr']:.2f} / {r['opus_psnr']:.2f} | "
                     f"{r['wlc_si_sdr']:.2f} / {r['opus_si_sdr']:.2f} | "
                     f"{r['wlc_mel_distance']:.2f} / {r['opus_mel_distance']:.2f} |")
    publish(lines, {"rows": rows, "mean": mean}, args.out, "audio_baselines")


if __name__ == "__main__":
    main()
