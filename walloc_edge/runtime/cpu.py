"""The CPU this runs on, from Linux's /proc/cpuinfo (elsewhere: what platform says, no
flags): its model, for benchmark headers and the decoder's calibration key, and its flags,
for which precisions and kernels run here."""
import functools
import platform
from pathlib import Path

__all__ = ["cpu_model", "cpu_flags"]


@functools.cache
def _fields():
    """(model, flags) of the first processor listed."""
    model, flags = None, frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86, ARM
            flags = frozenset(value.split())
    return model, flags


def cpu_model() -> str:
    return _fields()[0] or platform.processor() or platform.machine()


def cpu_flags() -> "frozenset[str]":
    return _fields()[1]
