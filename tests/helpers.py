"""Helpers that several test files call by name (fixtures live in conftest.py): one copy,
so that no test file imports another."""
import socket
import textwrap
import time

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


def wait_for(condition, timeout=10.0, explain=lambda: ""):
    """Poll ``condition`` until it holds; fail with ``explain()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, explain()
        time.sleep(0.01)
