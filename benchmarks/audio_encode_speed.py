"""How fast the sensor path encodes real stereo music on one thread: latents alone and end
to end (int16 in → .wlc bytes), per backend and coder, in CPU time and times real time.

    python benchmarks/audio_encode_speed.py BUNDLE FILE [--seconds 30] [--out benchmarks/results]

One core: onnxruntime runs one thread and numpy's BLAS is held to one thread too (set here,
before numpy loads), so CPU time is one core's time.
"""
import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402 (after the thread settings)
import time  # noqa: E402

from walloc_edge.bench import timed  # noqa: E402
from walloc_edge.runtime import Encoder  # noqa: E402
from walloc_edge.runtime.coders.rans import native  # noqa: E402
from walloc_edge.runtime.io import read_input  # noqa: E402
from walloc_edge.runtime.modality import AUDIO  # noqa: E402
from report import publish  # noqa: E402


def cpu_seconds(fn, repeat=3):
    """The best of ``repeat`` runs after a warm-up, in this process's CPU time."""
    return float(timed(fn, repeat, clock=time.process_time).min())


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="an exported audio bundle (with an ONNX graph)")
    p.add_argument("file", help="a stereo music file")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--out")
    args = p.parse_args()
    encoder = Encoder(args.bundle, "numpy")
    x, rate = read_input(args.file, AUDIO, encoder.bundle.channels)
    x = x[:int(rate * args.seconds)]
    rows = []
    for backend in ("native", "onnxruntime", "numpy"):
        encoder = Encoder(args.bundle, backend, threads=1)
        latents_s = cpu_seconds(lambda: encoder.latents(x))
        for coder in ("rans", "webp"):
            total_s = cpu_seconds(lambda: encoder.encode(x, coder=coder))
            blob = encoder.encode(x, coder=coder)
            rows.append({"backend": backend, "coder": coder, "bytes": len(blob),
                         "latents_x_real_time": len(x) / rate / latents_s,
                         "end_to_end_x_real_time": len(x) / rate / total_s,
                         "end_to_end_MSps": len(x) / total_s / 1e6})
    coder = "C loops" if native.available() else f"numpy ({native.reason()})"
    lines = [f"# Audio encode speed, one thread, {args.seconds:g} s of `{args.file}` "
             f"({rate} Hz, {x.shape[1]} channels), best of 3 in CPU time; rans: {coder}", "",
             "| backend | coder | latents (x real time) | end to end (x real time) | MS/s | "
             "bytes |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['coder']} | {r['latents_x_real_time']:.0f} | "
              f"{r['end_to_end_x_real_time']:.0f} | {r['end_to_end_MSps']:.2f} | {r['bytes']:,} |"
              for r in rows]
    publish(lines, rows, args.out, "audio_encode_speed")


if __name__ == "__main__":
    main()
