"""The torch wavelet packet transform against PyWavelets, level by level."""
import numpy as np
import pytest
import pywt
import torch

from walloc_edge.codec import DWT1D, DWT2D, IDWT1D, IDWT2D, packet_analysis, packet_synthesis

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
WAVELETS = ["bior4.4", "haar", "db2", "sym4", "coif1"]


def pywt_packet_2d(x, J, wavelet):
    """Reference packet tree: every level applies pywt.dwt2 to every channel."""
    for _ in range(J):
        bands = []
        for c in range(x.shape[0]):
            cA, (cH, cV, cD) = pywt.dwt2(x[c], wavelet, mode="periodization")
            bands += [cA, cH, cV, cD]
        x = np.stack(bands)
    return x


def pywt_packet_1d(x, J, wavelet):
    for _ in range(J):
        x = np.stack([b for c in range(x.shape[0])
                      for b in pywt.dwt(x[c], wavelet, mode="periodization")])
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("channels,J,size", [(1, 1, (16, 24)), (3, 2, (32, 16)),
                                             (31, 1, (8, 12)), (3, 3, (64, 40))])
def test_analysis_2d_matches_pywt(dtype, wavelet, channels, J, size):
    rng = np.random.default_rng(J)
    x = rng.uniform(-0.5, 0.5, (channels, *size))
    ours = packet_analysis(DWT2D(wavelet), torch.tensor(x[None], dtype=dtype), J)[0]
    expected = pywt_packet_2d(x, J, wavelet)
    assert ours.shape == expected.shape == (channels * 4 ** J, size[0] >> J, size[1] >> J)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("channels,J,length", [(1, 1, 32), (2, 4, 256), (5, 3, 64)])
def test_analysis_1d_matches_pywt(dtype, wavelet, channels, J, length):
    rng = np.random.default_rng(J)
    x = rng.uniform(-0.5, 0.5, (channels, length))
    ours = packet_analysis(DWT1D(wavelet), torch.tensor(x[None], dtype=dtype), J)[0]
    expected = pywt_packet_1d(x, J, wavelet)
    assert ours.shape == expected.shape == (channels * 2 ** J, length >> J)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wavelet, J", [
    (w, J) if w == WAVELETS[0] or J < 4 else pytest.param(w, J, marks=pytest.mark.slow)
    for w in WAVELETS for J in (1, 2, 4)])  # the models' wavelet 4 deep in the inner loop
def test_synthesis_inverts_analysis(dtype, wavelet, J):
    g = torch.Generator().manual_seed(J)
    # Deep levels reach signals shorter than the filter: the periodic wrap must still hold.
    x2 = torch.rand(2, 3, 32, 48, generator=g, dtype=dtype) - 0.5
    X2 = packet_analysis(DWT2D(wavelet), x2, J)
    y2 = packet_synthesis(IDWT2D(wavelet), X2, J)
    x1 = torch.rand(2, 31, 64, generator=g, dtype=dtype) - 0.5
    y1 = packet_synthesis(IDWT1D(wavelet), packet_analysis(DWT1D(wavelet), x1, J), J)
    # pywt's bior filters are given to ~12 digits, so float64 perfect reconstruction is ~1e-11.
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    assert (y2 - x2).abs().max() < tol
    assert (y1 - x1).abs().max() < tol


def test_synthesis_matches_pywt_idwt2():
    rng = np.random.default_rng(0)
    bands = rng.standard_normal((4, 6, 5))
    expected = pywt.idwt2((bands[0], tuple(bands[1:])), "bior4.4", mode="periodization")
    ours = IDWT2D()(torch.tensor(bands[None]))[0, 0]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-10)


def test_signal_shorter_than_filter():
    """A 2-sample signal (deep level of a small tile) against pywt."""
    x = np.array([[0.3, -0.2]])
    ours = DWT1D("bior4.4")(torch.tensor(x[None]))[0].numpy()
    np.testing.assert_allclose(ours, pywt_packet_1d(x, 1, "bior4.4"), atol=1e-12)



@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("J", [1, 3, 5, 9])
def test_packet_synthesis_equals_level_by_level(wavelet, J):
    """The polyphase synthesis (several levels per convolution) is the one-level cascade."""
    g = torch.Generator().manual_seed(J)
    X1 = torch.randn(2, 3 * 2 ** J, 5, generator=g, dtype=torch.float64)
    idwt1 = IDWT1D(wavelet)
    cascade = X1
    for _ in range(J):
        cascade = idwt1(cascade)
    assert (packet_synthesis(idwt1, X1, J) - cascade).abs().max() < 1e-12
    if J <= 5:
        X2 = torch.randn(2, 2 * 4 ** J, 3, 2, generator=g, dtype=torch.float64)
        idwt2 = IDWT2D(wavelet)
        cascade = X2
        for _ in range(J):
            cascade = idwt2(cascade)
        assert (packet_synthesis(idwt2, X2, J) - cascade).abs().max() < 1e-12
