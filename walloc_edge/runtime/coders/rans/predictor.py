"""Prediction: per-channel linear predictors from a latent's causal neighbours and the earlier
channels, fitted by least squares, sent in Q8, applied in integers; and the context a
residual is coded in."""
import numpy as np

COEF_BITS = 8            # predictor coefficients in Q8
MAX_EARLIER = 16         # a channel is predicted from at most this many earlier channels
FIT_SAMPLES = 16384      # the least-squares fit looks at about this many latents per channel
ACTIVITY_EDGES = np.array([1, 3, 7, 15, 30])
PREVIOUS_EDGES = np.array([2])
CONTEXTS = (len(ACTIVITY_EDGES) + 1) * (len(PREVIOUS_EDGES) + 1)  # per channel

# Fixed own-neighbour coefficients (Q8) of the "planar" predictor, by the latents' spatial
# axes: W + N − NW on a grid (images), the previous value along a line (audio). What
# firmware uses: no least-squares fit on the device.
PLANAR = {2: (256, 256, -256, 0), 1: (256, 0, 0)}
# Those of the "fastest" level: 7/16 W + 7/16 N + 2/16 NE smooths the latents' noise, which
# W + N − NW amplifies (on photos 9% larger than the fitted predictors; planar 21%);
# audio: half the previous sample.
FIXED = {2: (112, 112, 0, 32), 1: (128, 0, 0)}


def fit_taps(grams, s, n):
    """Per channel c: its Q8 coefficients over its K own taps and the 3·m earlier-channel
    taps (values, west, north of channels c − m … c − 1), with m = 0 where the earlier
    channels do not pay for their 16-bit coefficients.

    Least squares on s evenly spaced latents (``fit_step`` apart) of a tile of n a channel,
    from their Gram matrices (``numpy_grams``). All channels share one Gram matrix of the
    earlier-channel features; a predictor's cost is judged from its mean squared residual v
    at ½·log2(1 + 2πe·v) bits a latent (a Gaussian's entropy for a large v, 0 for none),
    plus 16 bits per coefficient."""
    shared, cross, own_gram = grams
    C, K = own_gram.shape[:2]
    for c in range(C):
        m = min(c, MAX_EARLIER)
        pick = (np.arange(c - m, c) + C * np.arange(3)[:, None]).ravel()
        k = K + 3 * m
        gram = np.empty((k, k))  # [[own, cross], [crossᵀ, shared]] over the picked taps
        gram[:K, :K] = own_gram[c]
        gram[:K, K:] = cross[c][:, pick]
        gram[K:, :K] = gram[:K, K:].T
        gram[K:, K:] = shared[np.ix_(pick, pick)]
        target = np.concatenate([cross[c][:, c], shared[pick, c]])
        options = []
        for k in sorted({K, K + 3 * m}):
            regularised = gram[:k, :k].copy()
            regularised.flat[::k + 1] += 1e-6
            beta = np.linalg.solve(regularised, target[:k])
            q = np.clip(np.round(beta * (1 << COEF_BITS)), -32767, 32767)
            b = q / (1 << COEF_BITS)
            rss = shared[c, c] - 2 * b @ target[:k] + b @ gram[:k, :k] @ b
            options.append((n * _bits_per_latent(max(rss, 0) / s) + 16 * k,
                            q.astype(np.int64)))
        yield min(options, key=lambda option: option[0])[1]


def fit_all_taps(grams):
    """Per channel c: Q8 coefficients over its K own taps and the taps of all its m =
    min(c, MAX_EARLIER) earlier channels (no choice of m), by least squares from the Gram
    matrices (``numpy_grams``) in one batched solve: the ``fast`` level's fit. Each
    channel's system is padded to one size with identity rows, which leave its solution
    that of its own system."""
    shared, cross, own_gram = grams
    C, K = own_gram.shape[:2]
    m = np.minimum(np.arange(C), MAX_EARLIER)
    E = int(m.max())
    # pick[c]: the rows of V (values, west, north of channels c − m … c − 1), then padding
    offsets = np.arange(-E, 0)[None, :] + np.arange(C)[:, None]                   # (C, E)
    pick = (offsets[:, None, :] + C * np.arange(3)[None, :, None]).reshape(C, 3 * E)
    used = np.tile(offsets >= 0, 3)                                              # (C, 3E)
    order = np.argsort(~used, axis=1, kind="stable")  # each channel's taps first, in order
    pick = np.take_along_axis(np.where(used, pick, 0), order, 1)
    used = np.take_along_axis(used, order, 1)
    channel = np.arange(C)[:, None]
    F = K + 3 * E
    gram = np.zeros((C, F, F))
    gram[:, :K, :K] = own_gram
    gram[:, :K, K:] = cross[channel[:, :, None], np.arange(K)[:, None], pick[:, None, :]]
    gram[:, K:, :K] = gram[:, :K, K:].transpose(0, 2, 1)
    gram[:, K:, K:] = shared[pick[:, :, None], pick[:, None, :]]
    valid = np.concatenate([np.ones((C, K), bool), used], axis=1)                # (C, F)
    gram = np.where(valid[:, :, None] & valid[:, None, :], gram, np.eye(F))
    gram[:, np.arange(F), np.arange(F)] += 1e-6
    target = np.concatenate([cross[np.arange(C), :, np.arange(C)], shared[pick, channel]], 1)
    beta = np.linalg.solve(gram, np.where(valid, target, 0)[..., None])[..., 0]
    q = np.clip(np.round(beta * (1 << COEF_BITS)), -32767, 32767).astype(np.int64)
    return [q[c, :K + 3 * m[c]] for c in range(C)]


def numpy_grams(O, V):
    """The fit's Gram matrices from its features, O (C, K, s) the own neighbours and V
    (3C, s) the values, west and north neighbours (float64): V·Vᵀ (3C, 3C), O·Vᵀ
    (C, K, 3C) and O·Oᵀ per channel (C, K, K); sums of products of latents, exact in
    float64 (the C coder's int32 ones are the same)."""
    return V @ V.T, O @ V.T, O @ O.transpose(0, 2, 1)


def fit_step(n, samples=FIT_SAMPLES):
    """Positions between two latents the fit looks at (about ``samples`` a channel)."""
    return max(1, n // samples)


def _bits_per_latent(mean_square):
    return 0.5 * np.log2(1 + 2 * np.pi * np.e * mean_square)


def coefficient_row(sent, c, m, K, C):
    """Channel c's coefficients as a row over all features, from the K own taps and the 3·m
    earlier-channel taps (values, west, north of channels c − m … c − 1) it sends."""
    row = np.zeros(K + 3 * C, np.int64)
    row[:K] = sent[:K]
    for j in range(3):
        row[K + j * C + c - m:K + j * C + c] = sent[K + j * m:K + (j + 1) * m]
    return row


def prediction(acc, clip):
    """A Q8 sum of coefficient × feature, rounded and clipped to the latent range."""
    rounded = (acc + (1 << (COEF_BITS - 1))) >> COEF_BITS
    return np.minimum(np.maximum(rounded, -clip), clip)  # np.clip costs more per call


class Contexts:
    """Context number of a latent from its activity and the previous channel's residual."""

    per_channel = CONTEXTS

    def __init__(self, clip):
        self.activity = np.searchsorted(ACTIVITY_EDGES, np.arange(4 * clip + 1), "right") \
            * (len(PREVIOUS_EDGES) + 1)
        self.previous = np.searchsorted(PREVIOUS_EDGES, np.arange(clip + 1), "right")

    def __call__(self, activity, previous_residual):
        return self.activity[activity] + self.previous[np.abs(previous_residual)]
