"""Helpers that several test files call by name (fixtures live in conftest.py): one copy,
so that no test file imports another."""
import socket
import textwrap

import numpy as np

# Prepended to the code of a subprocess (python -c) that must run as on a sensor without
# torch: every import of torch fails there, lazy ones included.
BLOCK_TORCH = textwrap.dedent("""
    import sys
    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError("torch is blocked in this test", name="torch")
    sys.meta_path.insert(0, BlockTorch())
""")


def free_port():
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_channels(photo, channels):
    """A real photo with ``channels`` bands, for gray and hyperspectral models: itself, its
    luminance, or fixed random mixtures of its bands."""
    if channels == 3:
        return photo
    rgb = photo.astype(np.float64)
    if channels == 1:
        return np.round(rgb @ [0.299, 0.587, 0.114])[..., None].astype(np.uint8)
    mix = np.random.default_rng(0).dirichlet(np.ones(3), size=channels).T  # (3, C)
    return np.clip(np.round(rgb @ mix), 0, 255).astype(np.uint8)
