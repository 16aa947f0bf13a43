"""Sample photos shipped with the package (see README.md here for sources and licences)."""
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_PHOTOS", "sample_photo"]

SAMPLE_PHOTOS = {p.stem: p for p in sorted(Path(__file__).parent.glob("*.jpg"))}


def sample_photo(name):
    """uint8 (H, W, 3) array of a bundled photo."""
    from PIL import Image

    with Image.open(SAMPLE_PHOTOS[name]) as im:
        return np.array(im.convert("RGB"))
