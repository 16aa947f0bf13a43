"""Write the held-out audio set the audio models are measured on (no audio data ships):

    python benchmarks/make_audio_eval.py OUT_DIR [--clips 6] [--seconds 5]

Generated stereo clips at 44.1 kHz, from seeds that training never draws (training's
generator starts from its --seed, 0 by default, validation from 12345): music-, noise- and
speech-like sound as walloc_edge.codec.data.synthetic_audio makes it.
"""
import argparse
import wave
from pathlib import Path

import numpy as np


from walloc_edge.codec.data import synthetic_audio


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--seconds", type=float, default=5)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.clips):
        pcm = synthetic_audio(int(44100 * args.seconds), 2, np.random.default_rng(900000 + i))
        with wave.open(str(args.out / f"clip{i}.wav"), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(44100)
            w.writeframes(pcm.astype("<i2").tobytes())
    print(f"wrote {args.clips} clips to {args.out}")


if __name__ == "__main__":
    main()
