"""diffusers' autoencoder blocks, imported without the noise of its optional extras.

Importing diffusers pulls in torchao when that is installed (litert-torch depends on it),
and torchao logs warnings about CUDA kernels a CPU machine cannot load. Those loggers are
raised to ERROR for the duration of the import only (diffusers configures its own logger
from DIFFUSERS_VERBOSITY when first imported, so that is set too, unless the user set it).
"""
import logging
import os
import warnings
from contextlib import contextmanager

_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "diffusers")


@contextmanager
def _quiet(names):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    user_set = "DIFFUSERS_VERBOSITY" in os.environ
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if not user_set:
            os.environ.pop("DIFFUSERS_VERBOSITY", None)


def autoencoder_module(name):
    """``diffusers.models.autoencoders.<name>``, e.g. ``autoencoder_kl``."""
    with _quiet(_NOISY_LOGGERS):
        # diffusers imports lazily: the attribute access is where the noisy imports happen.
        from diffusers.models import autoencoders
        return getattr(autoencoders, name)


@contextmanager
def legacy_weight_norm():
    """Building diffusers' Oobleck blocks without a FutureWarning per block: they use
    ``torch.nn.utils.weight_norm``, whose ``weight_g``/``weight_v`` parameters are the keys of
    the reference checkpoints, so the deprecated form is the one to keep."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.nn\.utils\.weight_norm` is deprecated",
                                FutureWarning)
        yield
