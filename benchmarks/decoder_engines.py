"""Decoder engines × precisions: decode speed (MP/s) and agreement with the fp32 torch
decode, measured in the same run, on a real photo.

    python benchmarks/decoder_engines.py [MODEL] [--sizes 224,512,2048] [--repeat 3]
                                         [--compile] [--out DIR]

Each size is a centre crop of the bundled astronaut photo (tiled by reflection past 512),
encoded once by the sensor runtime; 2048² decodes in tiles (64 latents a side). Every
engine/precision decodes it ``repeat`` times, the engines taking turns (so that a busy
machine slows them alike); MP/s is the median. Agreement: PSNR (dB) of the decode against
the fp32 torch decode; ΔPSNR: its PSNR against the original minus fp32 torch's. The bar
for an engine to be offered: agreement ≥ 45 dB, |ΔPSNR| ≤ 0.05 dB. The load average at
the start and the end is printed (a shared machine's other jobs slow every engine). Rows
marked "(variant)" are not offered choices: the torch engine in channels-last memory
format, to show what it does here.
"""
import argparse
import os
import time

import numpy as np
import torch

from walloc_edge.bench import machine
from walloc_edge.bench.timing import once
from walloc_edge.data import sample_photo
from walloc_edge.decoder import Decoder, psnr
from walloc_edge.decoder.engines import (REGISTRY, EngineError, TorchEngine, engines_here,
                                         precisions_here)
from walloc_edge.decoder.network import split_decoder
from walloc_edge.decoder.tiles import DECODE_TILE
from walloc_edge.evaluation.evaluate import runtime_encoder
from walloc_edge.export.validate import _fit
from report import publish

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
         "amx_bf16", "amx_fp16", "amx_int8", "amx_tile")


def cpu_flags():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    return [f for f in FLAGS if f in flags]


def candidates(codec, compile_too):
    """[(label, Decoder or the reason it does not run here)]."""
    out = []
    pairs = [(e, p) for e, kind in REGISTRY.items() for p in kind.precisions]
    for engine, precision in pairs:
        label = f"{engine} {precision}"
        try:
            out.append((label, Decoder(codec, "cpu", engine=engine, precision=precision)))
        except EngineError as e:
            out.append((label, str(e)))
    _, network = split_decoder(codec.decoder)
    for precision in precisions_here("cpu"):
        decoder = Decoder(codec, "cpu")
        decoder.engine = TorchEngine(network, "cpu", precision, channels_last=True)
        out.append((f"torch {precision} channels-last (variant)", decoder))
    if compile_too:
        for precision in precisions_here("cpu"):
            out.append((f"torch {precision} compiled",
                        Decoder(codec, "cpu", precision=precision, compile=True)))
    auto = Decoder(codec, "cpu", engine="auto", precision="auto")
    print(f"auto here: {auto.engine_name}; engines installed: {', '.join(engines_here())}; "
          f"precisions: {', '.join(precisions_here('cpu'))}", flush=True)
    return out, auto.engine_name


def load_of():
    """The machine's load average (1, 5, 15 minutes), as ``uptime`` prints it: a shared
    machine's other jobs slow every engine, the engines taking turns share it alike."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def photo_of(size):
    photo = sample_photo("astronaut")
    return np.ascontiguousarray(_fit(photo, size, size))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", nargs="?", default="rgb-16x")
    p.add_argument("--sizes", default="224,512,2048")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--large-repeat", type=int,
                   help="decodes timed at the sizes decoded in tiles (default: --repeat); 0 "
                        "times the one decode that is compared (no warm-up: at 2048² it is "
                        "a small part of a decode)")
    p.add_argument("--tiled-variants", action="store_true",
                   help="the (variant) rows at the sizes decoded in tiles too")
    p.add_argument("--compile", action="store_true", help="also torch.compile'd engines")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    info = machine()
    start_load = load_of()
    print(f"load average (1, 5, 15 min): {start_load}", flush=True)
    codec = Decoder(args.model, "cpu").codec
    decoders, auto = candidates(codec, args.compile)
    encoder = runtime_encoder(codec)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        photo = photo_of(size)
        blob = encoder.encode(photo)
        tiled = size // 2 ** codec.J > DECODE_TILE
        repeat = args.large_repeat if tiled and args.large_repeat is not None else args.repeat
        live = [(label, d) for label, d in decoders if isinstance(d, Decoder)
                and ("(variant)" not in label or not tiled or args.tiled_variants)]
        outputs, times = {}, {label: [] for label, _ in live}
        for label, d in live:  # warm-up, and the output compared (timed where repeat is 0)
            seconds, outputs[label] = once(lambda d=d: d.decode(blob))
            if not repeat:
                times[label].append(seconds)
        for _ in range(repeat):
            for label, d in live:
                times[label].append(once(lambda d=d: d.decode(blob))[0])
        mp = size * size / 1e6
        reference = outputs["torch fp32"]
        base_psnr, base_speed = psnr(reference, photo), mp / np.median(times["torch fp32"])
        for label, d in decoders:
            row = {"size": size, "engine": label}
            if label not in times and isinstance(d, Decoder):
                continue
            if isinstance(d, Decoder):
                speed = mp / float(np.median(times[label]))
                row.update(mp_per_s=speed, speedup=speed / base_speed,
                           agreement_db=psnr(outputs[label], reference),
                           delta_psnr_db=psnr(outputs[label], photo) - base_psnr,
                           tiled=size // 2 ** codec.J > d.tile)
                row["holds_bar"] = row["agreement_db"] >= 45 and abs(row["delta_psnr_db"]) <= 0.05
            else:
                row["not_here"] = d
            rows.append(row)
            print(row, flush=True)
    lines = [f"Decoder engines, model `{args.model}`, {info['cpu']} ({info['cores']} cores, "
             f"load average at the start {start_load}, at the end {load_of()}; "
             f"flags: {', '.join(cpu_flags()) or 'none of ' + ', '.join(FLAGS)}), torch "
             f"{info['versions']['torch']}, onnxruntime {info['versions']['onnxruntime']}, "
             f"{torch.get_num_threads()} torch threads; {time.strftime('%Y-%m-%d')}. "
             f"auto picks: {auto}.", "",
             "| size | engine | MP/s | × fp32 torch | agreement dB | ΔPSNR dB | bar |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['size']}²{' tiled' if r.get('tiled') else ''}"
        if "not_here" in r:
            lines.append(f"| {size} | {r['engine']} | – | – | – | – | not here: "
                         f"{r['not_here']} |")
            continue
        agreement = "exact" if r["agreement_db"] == float("inf") else f"{r['agreement_db']:.1f}"
        lines.append(f"| {size} | {r['engine']} | {r['mp_per_s']:.2f} | {r['speedup']:.2f} | "
                     f"{agreement} | {r['delta_psnr_db']:+.3f} | "
                     f"{'holds' if r['holds_bar'] else 'FAILS'} |")
    large = args.repeat if args.large_repeat is None else args.large_repeat
    lines += ["", "Agreement: PSNR of the decode against the fp32 torch decode of the same run; "
              "ΔPSNR: its PSNR against the original minus fp32 torch's. MP/s: median of "
              f"{args.repeat} decodes (.wlc → pixels), engines taking turns"
              + (f"; at sizes decoded in tiles {large or 'one'} decode{'s' if large != 1 else ''}"
                 f"{' (the one compared, no warm-up)' if not large else ''}"
                 if large != args.repeat else "") + "."]
    publish(lines, rows, args.out, "decoder_engines")


if __name__ == "__main__":
    main()
