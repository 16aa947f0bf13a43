"""The rans levels, like zstd's: how much the encoder spends on choosing its predictors.

Every level writes the same payload (model version 5) and every decoder reads every level
at the same speed; a level only changes how the encoder picks the coefficients it sends:

- ``best`` (level 0, the default): least squares on about 16,384 latents a channel, each
  channel choosing whether its earlier channels pay for their coefficients; audio tiles
  also try LZMA (``lzma_mode``).
- ``fast`` (1): least squares on fewer latents (``fit_samples``), every channel predicted
  from its own neighbours and up to 16 earlier channels, all channels in one batched solve;
  no LZMA. Measured: 0.2% larger than ``best`` on photos, 1% on music.
- ``fastest`` (2): no fit at all: fixed own-neighbour predictors (``predictor.FIXED``), as
  the firmware encoder's. Measured: 10% larger on photos, 68% on music (whose channels
  predict each other: use ``fast`` for audio).

The coder parameters record the level: ``0f 05`` for ``best`` (what every version wrote),
``0f 05 <level>`` for the others, so a reader too old for a level says so instead of
misreading it.
"""
from ...errors import BitstreamError, NewerBitstreamError
from .model import PREC
from .payload import VERSIONS
from .predictor import FIT_SAMPLES as BEST_FIT_SAMPLES

__all__ = ["LEVELS", "DEFAULT", "params", "level_of", "check_level", "fit_samples"]

LEVELS = ("best", "fast", "fastest")  # a level's number (its byte) is its index here
DEFAULT = "best"
FAST_FIT_BUDGET = 1 << 22  # the fast fit's Gram matrices: about this many multiply-adds


def fit_samples(level, channels):
    """Latents a channel the least squares of ``level`` looks at. ``fast``: as many as
    FAST_FIT_BUDGET multiply-adds allow over the 3·channels shared features, between 1,024
    and best's 16,384 (12 image channels: about 3,200; 108 audio channels: 1,024): a smooth
    picture needs the more, and audio's many channels make each sample dear."""
    if level == DEFAULT:
        return BEST_FIT_SAMPLES
    return max(1024, min(BEST_FIT_SAMPLES, FAST_FIT_BUDGET // (3 * channels) ** 2))


def check_level(level):
    """``level``'s name (None: the default), or ValueError naming the choices."""
    level = DEFAULT if level is None else level
    if level not in LEVELS:
        raise ValueError(f"unknown rans level {level!r}; choose from {', '.join(LEVELS)}")
    return level


def params(version, level):
    """The coder parameters of a model version written at ``level``."""
    return bytes([PREC, version] + ([LEVELS.index(level)] if level != DEFAULT else []))


def level_of(params):
    """(model version, level name) of coder parameters, or BitstreamError: parameters of a
    newer version or level say that a newer walloc-edge made them."""
    params = bytes(params)
    known = ", ".join(f"{PREC:02x}{v:02x}" for v in VERSIONS)
    if len(params) not in (2, 3) or params[0] != PREC:
        raise BitstreamError(f"rans parameters {params.hex()} are not ones this reader knows "
                             f"({known})")
    version = params[1]
    level = params[2] if len(params) == 3 else 0
    if version > max(VERSIONS) or level >= len(LEVELS):
        raise NewerBitstreamError(
            f"this rans bitstream was made by a newer walloc-edge (model version {version}, "
            f"level {level}; this one reads versions {', '.join(map(str, VERSIONS))} and "
            f"levels {', '.join(f'{i} ({n})' for i, n in enumerate(LEVELS))}): upgrade "
            f"walloc-edge to decode it")
    if version not in VERSIONS or (len(params) == 3 and version != max(VERSIONS)):
        raise BitstreamError(f"rans parameters {params.hex()} are not ones this reader knows "
                             f"({known})")
    return version, LEVELS[level]
