"""diffusers' autoencoder blocks, imported without the noise of its optional extras.

Importing diffusers pulls in torchao when that is installed (litert-torch depends on it),
and torchao logs warnings about CUDA kernels a CPU machine cannot load. Those loggers are
raised to ERROR for the duration of the import only.
"""
import logging
from contextlib import contextmanager

_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "diffusers")


@contextmanager
def _quiet(names):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def autoencoders():
    """The module ``diffusers.models.autoencoders`` (Decoder, OobleckDecoder…)."""
    with _quiet(_NOISY_LOGGERS):
        from diffusers.models import autoencoders as module
    return module
