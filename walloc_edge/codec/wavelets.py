"""Wavelet packet transform in plain torch ops (strided convolution, periodic wrap).

One analysis level splits *every* channel into its subbands and stacks them as channels,
exactly as the reference does: channel ``4c + k`` holds subband k of input channel c, with k
over pywt's ``(cA, cH, cV, cD)`` in 2D and ``(cA, cD)`` in 1D; J levels give C·4^J (C·2^J)
channels. Mode is pywt's ``periodization``:

    analysis:   c[o] = Σ_j dec[j] · x[(2o + F/2 − j) mod N]
    synthesis:  x[(2o + k − (F/2 − 1)) mod N] += c[o] · rec[k]

for a filter of (even) length F. Only conv, pad, slice, concat and reshape are used, so the
analysis exports cleanly to ONNX and LiteRT.

Synthesis of J levels runs as a few polyphase convolutions instead of J cascaded ones: up to
four levels along one axis are one linear, 2^g-periodic map, i.e. a convolution from the 2^g
subbands to the 2^g output phases. Its kernel is read off the one-level synthesis applied to
impulses, so both always agree. Being dense, it is 5-12x faster than the cascade (in training,
where the synthesis and its gradient run every step, and in decoding).

The one-level modules keep the reference's buffer names (``h0_col``… from pytorch_wavelets)
so that reference checkpoints load unchanged. Buffers hold float64 filters; each forward
casts them to the input's dtype, so float64 inputs get exact pywt arithmetic.
"""
import pywt
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DWT1D", "IDWT1D", "DWT2D", "IDWT2D", "packet_analysis", "packet_synthesis",
           "periodic_pad"]


def _filters(wavelet):
    w = pywt.Wavelet(wavelet)  # every discrete pywt wavelet has an even filter length
    as_t = lambda f: torch.tensor(f, dtype=torch.float64)
    # Analysis filters reversed: torch convolutions are cross-correlations. Each buffer gets
    # its own copy (.clone()) so that safetensors, which refuses shared memory, can save them.
    return as_t(w.dec_lo[::-1]), as_t(w.dec_hi[::-1]), as_t(w.rec_lo), as_t(w.rec_hi)


def periodic_pad(x, before, after, dim):
    """Periodic extension of ``dim`` by ``before``/``after`` samples (any pad, even > size)."""
    if before == after == 0:
        return x
    n = x.shape[dim]
    if max(before, after) <= n:
        return torch.cat([x.narrow(dim, n - before, before), x, x.narrow(dim, 0, after)], dim)
    reps = -(-max(before, after) // n)
    tiled = torch.cat([x] * (2 * reps + 1), dim)
    return tiled.narrow(dim, reps * n - before, n + before + after)


def _wrap_fold(y, n, shift, dim):
    """Inverse of the wrap: out[(t − shift) mod n] += y[t] along ``dim``."""
    y = y.movedim(dim, -1)
    lead = (-shift) % n
    tail = (-(lead + y.shape[-1])) % n
    y = F.pad(y, (lead, tail))
    y = y.reshape(*y.shape[:-1], -1, n).sum(-2)
    return y.movedim(-1, dim)


def _split(x, lo, hi, dim):
    """(N, 1, H, W) → (N, 2, …) low/high halves along ``dim`` (-1: width, -2: height)."""
    f = lo.numel()
    kernel = torch.stack([lo, hi]).to(x.dtype)
    if dim == -1:
        kernel, stride = kernel.reshape(2, 1, 1, f), (1, 2)
    else:
        kernel, stride = kernel.reshape(2, 1, f, 1), (2, 1)
    return F.conv2d(periodic_pad(x, f // 2 - 1, f // 2 - 1, dim), kernel, stride=stride)


def _merge(z, lo, hi, dim):
    """(N, 2, …) low/high halves → (N, 1, …) doubled along ``dim``."""
    f = lo.numel()
    kernel = torch.stack([lo, hi]).to(z.dtype)
    if dim == -1:
        kernel, stride = kernel.reshape(2, 1, 1, f), (1, 2)
    else:
        kernel, stride = kernel.reshape(2, 1, f, 1), (2, 1)
    y = F.conv_transpose2d(z, kernel, stride=stride)
    return _wrap_fold(y, 2 * z.shape[dim], f // 2 - 1, dim)


_LEVELS_PER_CONV = 4  # 2^4 phases × 2^4 subbands × ~F taps: still cheap per output sample


def _polyphase_kernel(lo, hi, levels):
    """(K, d) with K of shape (P, P, T), P = 2^levels: ``levels`` one-dimensional synthesis
    levels as y[r, p] = Σ_k Σ_t K[r, k, t] · c_k[(p + t + d) mod n], out[P·p + r] = y[r, p]."""
    P, f = 2 ** levels, lo.numel()
    n0, q0 = 4 * f, 2 * f  # the response of an impulse at q0 spans < f coarse positions
    x = torch.zeros(P, P, 1, n0, dtype=torch.float64)
    x[torch.arange(P), torch.arange(P), 0, q0] = 1  # batch entry k: an impulse in subband k
    lo, hi = lo.to(torch.float64), hi.to(torch.float64)
    for _ in range(levels):
        b, c, _, n = x.shape
        x = _merge(x.reshape(-1, 2, 1, n), lo, hi, -1).reshape(b, c // 2, 1, 2 * n)
    response = x.reshape(P, n0, P)  # [subband k, coarse position p, phase r]
    hit = response.abs().amax(dim=(0, 2)).nonzero().flatten()
    first, last = min(hit.min().item(), q0), max(hit.max().item(), q0)
    kernel = response[:, first:last + 1].flip(1).permute(2, 0, 1)
    return kernel, q0 - last


def _synthesize_axis(X, lo, hi, levels, dim):
    """(N, 2^levels, H, W) subbands of a 1D packet tree along ``dim`` → (N, 1, …) signal."""
    while levels:
        g = min(levels, _LEVELS_PER_CONV)
        levels -= g
        kernel, d = _polyphase_kernel(lo, hi, g)
        P, _, T = kernel.shape
        kernel = kernel.to(X.dtype).reshape(P, P, *((1, T) if dim == -1 else (T, 1)))
        n, c, h, w = X.shape
        # The deepest g levels are the last g binary digits of the subband index.
        X = X.reshape(n * c // P, P, h, w)
        y = F.conv2d(periodic_pad(X, -d, T - 1 + d, dim), kernel)
        if dim == -1:
            y = y.permute(0, 2, 3, 1).reshape(n, c // P, h, P * w)
        else:
            y = y.permute(0, 2, 1, 3).reshape(n, c // P, P * h, w)
        X = y
    return X


class DWT2D(nn.Module):
    """One level on every channel: (B, C, H, W) → (B, 4C, H/2, W/2)."""

    def __init__(self, wavelet: str = "bior4.4"):
        super().__init__()
        h0, h1, _, _ = _filters(wavelet)
        self.register_buffer("h0_col", h0.reshape(1, 1, -1, 1).clone())
        self.register_buffer("h1_col", h1.reshape(1, 1, -1, 1).clone())
        self.register_buffer("h0_row", h0.reshape(1, 1, 1, -1).clone())
        self.register_buffer("h1_row", h1.reshape(1, 1, 1, -1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = _split(x.reshape(-1, 1, h, w), self.h0_row.flatten(), self.h1_row.flatten(), -1)
        y = _split(y.reshape(-1, 1, h, w // 2), self.h0_col.flatten(), self.h1_col.flatten(), -2)
        # (B·C·2, 2, H/2, W/2): [width-lo: (height-lo, height-hi), width-hi: (…)] = cA, cH, cV, cD
        return y.reshape(b, 4 * c, h // 2, w // 2)


class IDWT2D(nn.Module):
    """Inverse of :class:`DWT2D`: (B, 4C, h, w) → (B, C, 2h, 2w)."""

    def __init__(self, wavelet: str = "bior4.4"):
        super().__init__()
        _, _, g0, g1 = _filters(wavelet)
        self.register_buffer("g0_col", g0.reshape(1, 1, -1, 1).clone())
        self.register_buffer("g1_col", g1.reshape(1, 1, -1, 1).clone())
        self.register_buffer("g0_row", g0.reshape(1, 1, 1, -1).clone())
        self.register_buffer("g1_row", g1.reshape(1, 1, 1, -1).clone())

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = X.shape
        y = _merge(X.reshape(-1, 2, h, w), self.g0_col.flatten(), self.g1_col.flatten(), -2)
        y = _merge(y.reshape(-1, 2, 2 * h, w), self.g0_row.flatten(), self.g1_row.flatten(), -1)
        return y.reshape(b, c4 // 4, 2 * h, 2 * w)

    def packet(self, X: torch.Tensor, J: int) -> torch.Tensor:
        """J levels at once: (B, C·4^J, h, w) → (B, C, 2^J·h, 2^J·w)."""
        b, c, h, w = X.shape
        C, P = c // 4 ** J, 2 ** J
        # Channel digits, most significant first: (width, height) bit per level. Separable
        # filters make the 2D tree the product of a height tree and a width tree.
        X = X.reshape(b * C, *([2, 2] * J), h, w)
        width_bits, height_bits = range(1, 2 * J, 2), range(2, 2 * J + 1, 2)
        X = X.permute(0, *width_bits, *height_bits, 2 * J + 1, 2 * J + 2)
        X = _synthesize_axis(X.reshape(b * C * P, P, h, w), self.g0_col.flatten(),
                             self.g1_col.flatten(), J, -2)
        X = _synthesize_axis(X.reshape(b * C, P, P * h, w), self.g0_row.flatten(),
                             self.g1_row.flatten(), J, -1)
        return X.reshape(b, C, P * h, P * w)


class DWT1D(nn.Module):
    """One level on every channel: (B, C, L) → (B, 2C, L/2)."""

    def __init__(self, wavelet: str = "bior4.4"):
        super().__init__()
        h0, h1, _, _ = _filters(wavelet)
        self.register_buffer("h0", h0.reshape(1, 1, -1).clone())
        self.register_buffer("h1", h1.reshape(1, 1, -1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        y = _split(x.reshape(-1, 1, 1, n), self.h0.flatten(), self.h1.flatten(), -1)
        return y.reshape(b, 2 * c, n // 2)


class IDWT1D(nn.Module):
    """Inverse of :class:`DWT1D`: (B, 2C, l) → (B, C, 2l)."""

    def __init__(self, wavelet: str = "bior4.4"):
        super().__init__()
        _, _, g0, g1 = _filters(wavelet)
        self.register_buffer("g0", g0.reshape(1, 1, -1).clone())
        self.register_buffer("g1", g1.reshape(1, 1, -1).clone())

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        b, c2, n = X.shape
        y = _merge(X.reshape(-1, 2, 1, n), self.g0.flatten(), self.g1.flatten(), -1)
        return y.reshape(b, c2 // 2, 2 * n)

    def packet(self, X: torch.Tensor, J: int) -> torch.Tensor:
        """J levels at once: (B, C·2^J, l) → (B, C, 2^J·l)."""
        b, c, n = X.shape
        y = _synthesize_axis(X.reshape(b * c // 2 ** J, 2 ** J, 1, n), self.g0.flatten(),
                             self.g1.flatten(), J, -1)
        return y.reshape(b, c // 2 ** J, 2 ** J * n)


def packet_analysis(dwt: nn.Module, x: torch.Tensor, J: int) -> torch.Tensor:
    """J levels of ``dwt``, each splitting every channel (the full packet tree)."""
    for _ in range(J):
        x = dwt(x)
    return x


def packet_synthesis(idwt: nn.Module, X: torch.Tensor, J: int) -> torch.Tensor:
    """Inverse of :func:`packet_analysis` (``idwt`` an :class:`IDWT2D` or :class:`IDWT1D`)."""
    return idwt.packet(X, J) if J else X
