"""Why the fixed-point core lifts in int32: how many latents an int16 lifting would keep.

    python benchmarks/int16_lifting.py --photos PHOTO... --music FILE... [--out DIR]

int16 lanes are twice as many as float32's in a SIMD register, so a lifting in int16 would be
the one way for an integer core to outrun the float core on a CPU with an FPU. It has 15 bits
a value: a lifted image value on a real photo reaches ~850 pixel units (three levels of
gain), which leaves F = 5 fractional bits; a 16-bit PCM sample has none to spare. Here the
lifting is computed in float64 with every step's result rounded to a grid of 2^-F, as an
integer lifting with F fractional bits computes it (before any overflow), then the model's
exact 1x1 and compander (the thresholds of ``native.fold``); its latents are compared with
those of the unrounded float64 lifting. "fits int16" says whether every lifted value of
that input stayed within int16 at that F. Rows "float32" (each step rounded to float32, the
``native`` core's arithmetic) and F = 17 (the ``fixed-point`` core's int32 scaling for the
image models) check the method against those cores' measured parity (fixed_point.md).
"""
import argparse
import tempfile

import numpy as np

from walloc_edge.bench import machine
from walloc_edge.codec import load
from walloc_edge.export import export_bundle
from walloc_edge.runtime.backends.native import LIFTING, fold
from walloc_edge.runtime.bundle import load_bundle
from walloc_edge.runtime.modality import IMAGE
import real_data
from report import publish

GRIDS = {"rgb-16x": ["float32", 17, 8, 7, 6, 5, 4, 3],
         "stereo-5x": ["float32", 8, 4, 2, 0, -1, -2, -3, -4]}


def rounder(grid):
    """Each lifting step's result as the arithmetic ``grid`` keeps it."""
    if grid is None:
        return lambda v: v
    if grid == "float32":
        return lambda v: v.astype(np.float32).astype(np.float64)
    return lambda v: np.round(v * 2.0 ** grid) / 2.0 ** grid


def lift(x, axis, keep, peak):
    """One periodic lifting level along ``axis`` (as ``fixed_point._lift_rows``), each step
    kept as ``keep`` keeps it; (even, odd) halves; peak[0] the largest |value| so far."""
    x = np.moveaxis(x, axis, 0)
    s, d = x[0::2].copy(), x[1::2].copy()
    for odd, even in LIFTING.reshape(2, 2):
        d = keep(d + odd * (s + np.roll(s, -1, 0)))
        s = keep(s + even * (np.roll(d, 1, 0) + d))
        peak[0] = max(peak[0], np.abs(d).max(), np.abs(s).max())
    return np.moveaxis(s, 0, axis), np.moveaxis(d, 0, axis)


def pre_activations(x, J, image, grid, offset):
    """The 1x1's inputs of x ((H, W, C) or (n, C)), centred on ``offset``: the subband
    planes (positions..., planes) in the cores' order, and the largest lifted |value|."""
    keep, peak, planes = rounder(grid), [0.0], []
    for c in range(x.shape[-1]):
        bands = [keep(x[..., c].astype(np.float64) - offset)]
        for _ in range(J):
            if image:  # per level the width split, then each half's height split
                bands = [h for b in bands for w in lift(b, 1, keep, peak)
                         for h in lift(w, 0, keep, peak)]
            else:
                bands = [half for b in bands for half in lift(b, 0, keep, peak)]
        planes += bands
    return np.stack(planes, -1), peak[0]


def parity(bundle, inputs, grids):
    """Per grid of ``grids``: (identical latents, count, max |diff|, inputs that fit int16
    at that F)."""
    cfg = bundle.config
    image, J = bundle.modality is IMAGE, cfg["J"]
    f = fold(bundle.arrays(), cfg, bundle.meta["compander"], np.float64)
    W, clip = f["weight"], 2 ** (cfg["latent_bits"] - 1) - 1
    offset = 128.0 if image else 0.0
    out = {str(g): [0, 0, 0, 0] for g in grids}
    for x in inputs:
        B = 1 << J
        x = x[:x.shape[0] // B * B, :x.shape[1] // B * B] if image else x[:len(x) // B * B]
        exact, peak = pre_activations(x, J, image, None, offset)
        raw, _ = pre_activations(x, J, image, None, 0.0)
        centring = (raw - exact).reshape(-1, W.shape[0]).mean(0) @ W  # offset · W·dc
        bias = f["bias"] + centring

        def latents(P):
            return np.searchsorted(f["thresholds"], P @ W + bias, side="right") - clip

        reference = latents(exact)
        for g in grids:
            P, _ = pre_activations(x, J, image, g, offset)
            lat, t = latents(P), out[str(g)]
            t[0] += int((lat == reference).sum())
            t[1] += reference.size
            t[2] = max(t[2], int(np.abs(lat - reference).max()))
            t[3] += g == "float32" or bool(peak * 2.0 ** g < 32768)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    real_data.add_options(p)
    p.add_argument("--seconds", type=float, default=10.0, help="of each music file's middle")
    p.add_argument("--out")
    args = p.parse_args()
    photos, music = real_data.photos(args.photos), real_data.music(args.music, args.seconds)
    m = machine()
    lines = [f"# An int16 lifting's latents against float64's ({len(photos)} photos, "
             f"{len(music)} music excerpts of {args.seconds:g} s)", "",
             "Each lifting step rounded to 2^-F (an integer lifting with F fractional bits), "
             "or to float32; the exact 1x1 and compander after it. int16 holds F where every "
             "lifted value times 2^F stays below 32768.", "",
             "| model | arithmetic | latents identical | max diff | inputs within int16 |",
             "|---|---|---|---|---|"]
    results = {}
    for model, inputs in (("rgb-16x", photos), ("stereo-5x", music)):
        with tempfile.TemporaryDirectory() as folder:
            export_bundle(load(model), folder, (), log=lambda s: None)
            counts = parity(load_bundle(folder), inputs, GRIDS[model])
        results[model] = counts
        for g, (same, n, diff, fit) in counts.items():
            what = g if g == "float32" else f"F = {g}"
            lines.append(f"| {model} | {what} | {same / n:.4%} | {diff} | "
                         f"{'—' if g == 'float32' else f'{fit} of {len(inputs)}'} |")
    publish(lines, {"machine": m, "results": results}, args.out, "int16_lifting")


if __name__ == "__main__":
    main()
