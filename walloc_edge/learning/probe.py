"""A detail probe: a labelled task built from a fleet's own photos that only fine detail
answers, to test whether latents keep the detail that resizing removes.

Each photo is brought to ``size`` × ``size`` (as datasets bring it: shorter side resized,
centre cut) and a small plate showing one seven-segment digit is pasted at a random place
in it; the digit is the class (ten classes, as many photos each as the photos allow). The
digits are drawn here (no font, no download), so the set is the same on every machine for
the same photos and seed. A meter, a plate or a label read by a fleet's camera is this task.

``glyph`` (the digit's height in pixels), ``ink`` and ``contrast`` (ink against plate, 0 to
1) set how much detail the task needs. Hatched ink (the default) draws the digit as a fine
checkerboard on a plate of its mean grey, which a resize to ``size``/4 erases, so full
pixels beat resized ones there, and a classifier on latents shows how much of that gap
latents recover. Solid ink is the plainer task, but small solid digits were not learnt from
a few thousand photos, full pixels or resized (docs/learning.md).
"""
import os
import shutil
from pathlib import Path

import numpy as np

from ..runtime.io import IMAGE_SUFFIXES
from .datasets import prepare

__all__ = ["CLASSES", "INKS", "SEGMENTS", "glyph_mask", "find_photos", "probe_image", "make_probe"]

CLASSES = tuple(str(d) for d in range(10))
INKS = ("solid", "hatched")
# Seven segments: a (top), b (top right), c (bottom right), d (bottom), e (bottom left),
# f (top left), g (middle).
SEGMENTS = {"0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg",
            "5": "acdfg", "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg"}
SUPERSAMPLE = 8  # drawn this much larger, then averaged down: anti-aliased edges


def glyph_mask(digit, height):
    """float32 (height, width) ink coverage in [0, 1] of one seven-segment ``digit``,
    width about 0.6 × height."""
    if height < 5:
        raise ValueError(f"a glyph of {height} pixels is too small to draw a digit (at "
                         "least 5)")
    width = max(3, round(height * 0.6))
    h, w = height * SUPERSAMPLE, width * SUPERSAMPLE
    t = max(SUPERSAMPLE, round(h * 0.14))  # stroke
    mid = (h - t) // 2
    boxes = {"a": (0, t, 0, w), "g": (mid, mid + t, 0, w), "d": (h - t, h, 0, w),
             "f": (0, mid + t, 0, t), "b": (0, mid + t, w - t, w),
             "e": (mid, h, 0, t), "c": (mid, h, w - t, w)}
    big = np.zeros((h, w), np.float32)
    for segment in SEGMENTS[digit]:
        top, bottom, left, right = boxes[segment]
        big[top:bottom, left:right] = 1
    return big.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3))


def probe_image(photo, digit, glyph, contrast, rng, ink="solid", cell=1):
    """``photo`` (uint8 (S, S, 3)) with a plate showing ``digit`` pasted at a place ``rng``
    draws. ``ink`` "solid": the plate is light where the photo around it is dark and dark
    where it is light, the digit the opposite, so it is easy to find; reading it is what
    needs detail. "hatched": a mid-grey plate, the digit drawn as a checkerboard of
    ``cell``-pixel squares whose mean is that grey, so that a box average over 2 × ``cell``
    pixels or a multiple of it (a resize by that factor) erases it and only detail finer
    than that shows it."""
    mask = glyph_mask(digit, glyph)
    margin = max(1, glyph // 5)
    ph, pw = mask.shape[0] + 2 * margin, mask.shape[1] + 2 * margin
    side = photo.shape[0]
    if ph > side or pw > side:
        raise ValueError(f"a glyph of {glyph} pixels does not fit in {side}-pixel images")
    top, left = int(rng.integers(0, side - ph + 1)), int(rng.integers(0, side - pw + 1))
    out = photo.astype(np.float32)
    region = out[top:top + ph, left:left + pw]
    if ink == "hatched":
        y, x = np.indices((ph, pw))
        checker = np.where(((top + y) // cell + (left + x) // cell) % 2, 1.0,
                           -1.0).astype(np.float32)
        shade = np.full((ph, pw), 0.5, np.float32)
        shade[margin:margin + mask.shape[0], margin:margin + mask.shape[1]] += \
            mask * checker[margin:margin + mask.shape[0], margin:margin + mask.shape[1]] \
            * contrast / 2
        region[:] = 255 * shade[..., None]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    light = region.mean() < 128
    plate, ink = (0.5 + contrast / 2, 0.5 - contrast / 2) if light else \
        (0.5 - contrast / 2, 0.5 + contrast / 2)
    shade = np.full((ph, pw), plate, np.float32)
    shade[margin:margin + mask.shape[0], margin:margin + mask.shape[1]] += mask * (ink - plate)
    region[:] = 255 * shade[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def find_photos(root):
    """The images under folder ``root`` (any depth), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    photos = sorted(p for p in root.rglob("*")
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise ValueError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return photos


def make_probe(photos, out, size=112, glyph=24, contrast=1.0, seed=0, limit=None,
               per_photo=1, ink="hatched", cell=1, progress=None):
    """Write the probe of the photos under ``photos`` into folder ``out`` (OUT/DIGIT/NNNNN.png,
    ready for ``classify sweep`` or ``dataset``); returns {digit: images}. Every photo is
    used (the first ``limit`` of a seeded shuffle where given) ``per_photo`` times, each
    time with another digit: with 10, a photo says nothing of the class, so a classifier
    cannot score by remembering photos and must read. The digits are dealt evenly in a
    seeded order, and each image's place depends only on ``seed`` and its number, so the
    same inputs give the same set. ``out`` is built in a sibling folder and
    renamed into place: an interrupted run leaves nothing under its name."""
    if ink not in INKS:
        raise ValueError(f"ink {ink!r} is not one of {', '.join(INKS)}")
    if cell < 1:
        raise ValueError(f"cell {cell} must be at least 1 pixel")
    if not 0 < contrast <= 1:
        raise ValueError(f"contrast {contrast} must be above 0 and at most 1")
    if not 1 <= per_photo <= 10:
        raise ValueError(f"per photo {per_photo} must be 1 to 10 (a photo shows each digit "
                         "at most once)")
    if size < 8:
        raise ValueError(f"size {size} is too small (at least 8 pixels)")
    glyph_mask("8", glyph)  # a glyph too small is refused before any work
    if glyph + 2 * max(1, glyph // 5) > size:
        raise ValueError(f"a glyph of {glyph} pixels does not fit in {size}-pixel images")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    files = find_photos(photos)
    order = np.random.default_rng([seed, 0]).permutation(len(files))
    if limit is not None:
        order = order[:limit]
    # the i-th photo (in the shuffled order) gets the digits i, i + 1, … (mod 10) of a
    # seeded permutation: as many images of each digit as the count allows
    turn = np.arange(len(order))[:, None] + np.arange(per_photo)[None, :]
    digits = np.random.default_rng([seed, 1]).permutation(10)[turn % 10].ravel()
    order = np.repeat(order, per_photo)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    counts = dict.fromkeys(CLASSES, 0)
    try:
        for name in CLASSES:
            (partial / name).mkdir(parents=True)
        jobs = list(enumerate(zip(order.tolist(), digits.tolist())))
        for number, (index, digit) in (progress(jobs) if progress else jobs):
            image = probe_image(prepare(files[index], size), CLASSES[digit], glyph, contrast,
                                np.random.default_rng([seed, 2, number]), ink, cell)
            (partial / CLASSES[digit] / f"{number:05d}.png").write_bytes(_png(image))
            counts[CLASSES[digit]] += 1
        if out.exists():
            out.rmdir()
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return counts


def _png(image):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()
