"""serve's start-up calibration is measured once per model, engine and precision, device,
tile, CPU and thread count, and kept in the user's cache; a corrupt cache is measured again
and rewritten."""
import json

import pytest

from walloc_edge.decoder.cost import Speed, cached_calibration, calibration_file

SPEED = Speed(0.01, 8, 1e-5, 2e-6, 3000.0, 3e-4)


class Probe:
    """What cached_calibration reads of a decoder; counts its measurements."""

    model_id, engine_name, device, tile = "a06e0649", "torch bf16", "cpu", 64
    speed = None

    def __init__(self):
        self.measured = 0

    def calibrate(self):
        self.measured += 1
        self.speed = SPEED


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "walloc-edge" / "calibration.json"


def test_measured_once_then_read_back(cache):
    first, second = Probe(), Probe()
    assert cached_calibration(first) == SPEED and first.measured == 1
    assert calibration_file() == cache and len(json.loads(cache.read_text())) == 1
    assert cached_calibration(second) == SPEED and second.speed == SPEED
    assert second.measured == 0


def test_another_engine_or_thread_count_is_measured_again(cache, monkeypatch):
    cached_calibration(Probe())
    other = Probe()
    other.engine_name = "onnxruntime fp32"
    cached_calibration(other)
    assert other.measured == 1
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    again = Probe()
    cached_calibration(again)
    assert again.measured == 1 and len(json.loads(cache.read_text())) == 3


def test_an_onnxruntime_session_on_other_threads_is_measured_again(cache):
    """A torch-free server's workers each run a session on their share of the cores: a
    speed measured on all of them does not hold for one."""
    ort = pytest.importorskip("onnxruntime")

    class Session:
        def __init__(self, threads):
            self.options = ort.SessionOptions()
            self.options.intra_op_num_threads = threads

        def get_session_options(self):
            return self.options

        def get_providers(self):
            return ["CPUExecutionProvider"]

    for threads, measured in ((1, 1), (3, 1), (3, 0)):
        probe = Probe()
        probe.engine_name, probe.session = "onnxruntime fp32", Session(threads)
        cached_calibration(probe)
        assert probe.measured == measured, threads


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "null"])
def test_a_corrupt_cache_is_ignored_and_rewritten(cache, text):
    cache.parent.mkdir(parents=True)
    cache.write_text(text)
    probe = Probe()
    assert cached_calibration(probe) == SPEED and probe.measured == 1
    assert list(json.loads(cache.read_text()).values()) == [SPEED.__dict__]


def test_a_corrupt_entry_is_measured_again(cache):
    cached_calibration(Probe())
    entries = json.loads(cache.read_text())
    cache.write_text(json.dumps({key: {**entry, "per_latent": -1}
                                 for key, entry in entries.items()}))
    probe = Probe()
    assert cached_calibration(probe) == SPEED and probe.measured == 1
    assert json.loads(cache.read_text()) == entries


def test_a_cache_that_cannot_be_written_still_measures(cache):
    cache.parent.parent.chmod(0o500)
    try:
        probe = Probe()
        assert cached_calibration(probe) == SPEED and probe.measured == 1
    finally:
        cache.parent.parent.chmod(0o700)
