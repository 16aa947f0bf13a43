"""The bench's yardstick: end to end against size-matched JPEG and WebP at equal cores (one
thread against one encode, N threads against N encodes at once), alternating."""
import numpy as np

from walloc_edge.bench import alternating_at_equal_cores, equal_cores
from walloc_edge.runtime import Encoder


def test_equal_cores_rounds(rgb_bundle):
    sample = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    encoders = {n: Encoder(rgb_bundle, "numpy", threads=n) for n in (1, 2)}
    result = alternating_at_equal_cores(encoders, sample, 2, level="fast")
    assert result["wlc_bytes"] == len(encoders[1].encode(sample, level="fast"))
    assert 1 <= result["quality"] <= 95 and 0 <= result["webp_quality"] <= 100
    assert result["jpeg_bytes"] > 0 and result["webp_bytes"] > 0
    for n, times in result["cores"].items():
        assert sorted(times) == ["jpeg", "ours", "webp"]
        assert all(len(t) == 2 and (t > 0).all() for t in times.values())
        for baseline in ("jpeg", "webp"):
            ratio = equal_cores(times, n, baseline)
            assert ratio == np.median(times[baseline]) / (n * np.median(times["ours"]))
