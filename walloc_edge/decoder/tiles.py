"""How a large image's decode is cut (numpy only, shared by the torch decoder and the
torch-free bundle decoder): the decoder network's overlapping tiles of latents and their
cross-fade weights, and the periodic blocks the wavelet synthesis runs over."""
import math

import numpy as np

__all__ = ["DECODE_TILE", "SYNTHESIS_BLOCK", "tile_spans", "ramp", "periodic_blocks"]

DECODE_TILE = 64  # latents per tile side that the decoder runs at once
SYNTHESIS_BLOCK = 64 * 2048  # latents the wavelet synthesis of a tiled decode takes at once


def tile_spans(n, tile, overlap):
    """(start, end) latent ranges covering [0, n): as few tiles as ``tile`` allows, each cut
    down to the smallest equal size that lets neighbours share 3·overlap latents (an
    ``overlap`` each tile drops at its edge, and one to cross-fade over), evenly spaced."""
    if n <= tile:
        return [(0, n)]
    count = math.ceil((n - 3 * overlap) / (tile - 3 * overlap))
    size = math.ceil((n - 3 * overlap) / count) + 3 * overlap
    return [(s, s + size) for s in (round(i * (n - size) / (count - 1)) for i in range(count))]


def ramp(spans, i, margin):
    """Weights (float32) along one axis of tile i's latents. Where it shares latents with a
    neighbour, the ``margin`` nearest its own edge (which the edge disturbs) get no weight,
    and the rest fades linearly into the neighbour's."""
    start, end = spans[i]
    r = np.ones(end - start, np.float32)
    if i > 0:
        shared = spans[i - 1][1] - start
        r[:shared] = _fade_in(shared, margin)
    if i < len(spans) - 1:
        shared = end - spans[i + 1][0]
        r[len(r) - shared:] = np.minimum(r[len(r) - shared:], _fade_in(shared, margin)[::-1])
    return r


def _fade_in(n, margin):
    """0 over the first ``margin`` of ``n`` latents, 1 over the last ``margin``, linear
    between."""
    return np.clip((np.arange(n, dtype=np.float32) + 0.5 - margin)
                   / np.float32(max(n - 2 * margin, 1)), 0, 1)


def periodic_blocks(n, size, pad):
    """Blocks of at most ``size`` of an axis of ``n`` latents that wraps around: (start, end,
    the indices to take, where the block starts in them). One block that spans the axis
    needs no latents beyond it (the synthesis itself wraps); others take ``pad`` a side."""
    if n <= size:
        return [(0, n, slice(None), 0)]
    return [(s, min(s + size, n), np.arange(s - pad, min(s + size, n) + pad) % n, pad)
            for s in range(0, n, size)]
