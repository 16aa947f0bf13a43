"""Shared fixtures: the reference checkpoints and golden outputs in tests/reference/."""
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="session")
def reference_dir():
    return REFERENCE


@pytest.fixture(scope="session")
def rgb_golden():
    return dict(np.load(REFERENCE / "rgb_j3_l12.npz"))


@pytest.fixture(scope="session")
def stereo_golden():
    return dict(np.load(REFERENCE / "stereo_j4_l8.npz"))
