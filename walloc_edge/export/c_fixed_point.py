"""The integers of the C export's fixed-point builds, for walloc_model.h.

Two encoders run without floats: the runtime's fixed-point core (``runtime/native_fixed.c``,
``walloc_encode --fixed-point``: ``backends.fixed_point.fold_fixed``'s integers), and the
fixed-memory encoder built with ``-DWALLOC_FIXED_POINT`` (``c_source/walloc_encoder.c``, for
devices without an FPU or an OS). For the latter every float array of its float build is
rounded here to integers whose sums fit int64 on every input, so it computes exactly:
  images  ring = Σ round(row_filter 2^ROW) · pixel (int32, |ring| < 2^31), then
          y 2^(ROW + COL) = Σ round(col_weight 2^COL) · ring + bias (int64);
  audio   samples x 2^IN (int32), each level's filters round(h 2^30) in int64 sums
          rounded back to int32 (+ 2^29 >> 30), then y 2^(IN + W) = Σ round(w 2^W) · x + bias;
  both    the latent is the count of int64 thresholds ceil(t 2^scale) <= y, less clip
          (|sums| < 2^62 and |bias| < 2^61, so y fits; thresholds beyond it clamped).
"""
import math

import numpy as np

__all__ = ["fixed_core_arrays", "fixed_memory_arrays"]

_INT32 = 2 ** 31 - 1
_INT64 = 2 ** 63 - 1
_SUMS = 2 ** 62  # what an int64 sum of products may reach, with room to spare
_BIAS = 2 ** 61  # what the bias may add to it: every y stays under 2^62 + 2^61 < 2^63


def _exponent(limit, worst):
    """The largest e with worst · 2^e <= limit (worst > 0)."""
    return math.floor(math.log2(limit / worst))


def fixed_core_arrays(fixed):
    """(name, values, comment, C type) of the fixed-point core's integers (fold_fixed)."""
    return [("walloc_fixed_scaling", fixed["scaling"], "the fixed core's Q30 lifting "
             "constants, input offset and shift, second sum's shift", "int32_t"),
            ("walloc_fixed_weight", fixed["weight"], "the fixed core's 1x1 [plane][hi, lo, "
             "rest][latent]", "int16_t"),
            ("walloc_fixed_shifts", fixed["shifts"], "the fixed core's subband shifts "
             "[plane][sh, d]", "int32_t"),
            ("walloc_fixed_bias", fixed["bias"], "the fixed core's bias, scaled 2^G", "int32_t"),
            ("walloc_fixed_thresholds", fixed["thresholds"], "the fixed core's thresholds, "
             "scaled 2^G", "int32_t")]


def _scale_for_bias(bias, base):
    """The largest shift e with |bias| 2^(base + e) <= _BIAS (no bound for a zero bias)."""
    worst = np.abs(bias).max() * 2.0 ** base
    return _exponent(_BIAS, worst) if worst > 0 else _INT64


def _thresholds(thresholds, scale):
    """ceil(t 2^scale) as int64, clamped: a threshold beyond every y the sums and the bias
    can reach (|y| < 2^62 + 2^61) is counted alike at the bound (a model with small weights
    gets a large scale, and its outermost thresholds would not fit)."""
    return np.array([min(max(math.ceil(t * 2.0 ** scale), -_INT64), _INT64)  # (-2^63 has
                     for t in thresholds], np.int64)  # no literal in C: it warns)


def _image(rows, cols, bias, thresholds):
    """rows (subband, taps·B) with / 255 folded, cols [c][subband][row][latent]."""
    ring_per_unit = np.abs(rows).sum(1) * 255  # worst |ring| per subband
    ROW = _exponent(_INT32 - 2 ** 10, ring_per_unit.max() * 1.001)
    rows_q = np.round(rows * 2.0 ** ROW)
    ring_max = np.abs(rows_q).sum(1) * 255  # exact worst |ring| of the integers
    worst = np.einsum("csrl,s->l", np.abs(cols), ring_max).max()
    COL = min(_exponent(_SUMS, worst * 1.001), _exponent(_INT32, np.abs(cols).max()),
              _scale_for_bias(bias, ROW))
    scale = ROW + COL
    return ([("walloc_row_filters_q", rows_q, f"row pass in integers, 2^{ROW}", "int32_t"),
             ("walloc_col_weights_q", np.round(cols * 2.0 ** COL), f"column pass and 1x1, "
              f"2^{COL}", "int32_t"),
             ("walloc_bias_q", np.round(bias * 2.0 ** scale), f"bias, 2^{scale}", "int64_t"),
             ("walloc_thresholds_q", _thresholds(thresholds, scale),
              f"thresholds, 2^{scale}", "int64_t")], {})


def _level_bound(dec_lo, dec_hi, J):
    """The worst |value| any level reaches per unit of input: per level the larger L1 norm
    of the two filters, compounded (a bound, not the exact norm)."""
    return max(np.abs(dec_lo).sum(), np.abs(dec_hi).sum(), 1.0) ** J


def _audio(dec_lo, dec_hi, weight, bias, thresholds, J):
    """dec_lo, dec_hi the analysis filters (reversed), weight (C·2^J, latent)."""
    grow = _level_bound(dec_lo, dec_hi, J)
    IN = _exponent(2 ** 30, 32768 * grow * 1.01)  # values < 2^30: sums of 2 taps fit
    worst = (np.abs(weight) * 32768 * grow * 2.0 ** IN).sum(0).max()
    W = min(_exponent(_SUMS, worst * 1.001), _exponent(_INT32, np.abs(weight).max()),
            _scale_for_bias(bias, IN))
    scale = IN + W
    return ([("walloc_dec_lo_q", np.round(dec_lo * 2.0 ** 30), "analysis low-pass, 2^30",
              "int32_t"),
             ("walloc_dec_hi_q", np.round(dec_hi * 2.0 ** 30), "analysis high-pass, 2^30",
              "int32_t"),
             ("walloc_weight_q", np.round(weight * 2.0 ** W), f"1x1, 2^{W}", "int32_t"),
             ("walloc_bias_q", np.round(bias * 2.0 ** scale), f"bias, 2^{scale}", "int64_t"),
             ("walloc_thresholds_q", _thresholds(thresholds, scale),
              f"thresholds, 2^{scale}", "int64_t")], {"WALLOC_INPUT_SHIFT": IN})


def fixed_memory_arrays(arrays, thresholds, audio, J, B, C, L):
    """(arrays as fixed_core_arrays gives them, {macro: value}) of the fixed-memory
    encoder's -DWALLOC_FIXED_POINT build, from the same arrays its float build reads."""
    bias = arrays["graph.bias"].astype(np.float64)
    if audio:
        dec_lo, dec_hi = (arrays[f"wt.{k}"].astype(np.float64).ravel()[::-1]
                          for k in ("h0", "h1"))
        return _audio(dec_lo, dec_hi, arrays["graph.weight"][..., 0].T.astype(np.float64),
                      bias, thresholds, J)
    rows = arrays["graph.row_filters"][:, 0, 0, :].astype(np.float64)
    taps = rows.shape[1] // B
    cols = arrays["graph.col_weights"][..., 0].astype(np.float64)
    cols = cols.reshape(L, C, B, taps * B).transpose(1, 2, 3, 0)
    return _image(rows, cols, bias, thresholds)
