"""Inference backends: each runs one exported sensor encoder on a raw sample.

One module per backend, each a :class:`~.base.Backend` (``base.py`` spells the contract);
``BACKENDS`` lists them by name in the order ``"auto"`` tries them. A new backend is a module
here and one entry in ``BACKENDS``.
"""
from .base import Backend, BackendError
from .fixed_point import FixedPointBackend
from .litert import LiteRTBackend, litert_runner
from .native import NativeBackend
from .numpy import NumpyBackend
from .onnxruntime import OnnxBackend, onnx_session, resolve_providers

__all__ = ["BACKENDS", "Backend", "BackendError", "NativeBackend", "FixedPointBackend",
           "OnnxBackend", "LiteRTBackend", "NumpyBackend", "make_backend", "available_backends",
           "onnx_session", "litert_runner", "resolve_providers"]

# fixed-point comes last: auto never takes it (numpy runs wherever it could).
BACKENDS = {cls.name: cls for cls in (NativeBackend, OnnxBackend, LiteRTBackend, NumpyBackend,
                                      FixedPointBackend)}


def available_backends(bundle) -> "list[str]":
    """Names of the backends that can run ``bundle`` here, in the order "auto" tries them."""
    return [name for name, cls in BACKENDS.items() if cls.usable(bundle) is None]


def _auto(bundle, providers):
    """The first usable backend of ``BACKENDS`` (of those that take execution providers where
    ``providers`` are asked for)."""
    candidates = {name: cls for name, cls in BACKENDS.items()
                  if providers is None or cls.takes_providers}
    why = {name: cls.usable(bundle) for name, cls in candidates.items()}
    usable = [name for name, reason in why.items() if reason is None]
    if usable:
        return usable[0]
    reasons = "; ".join(f"{name}: {reason}" for name, reason in why.items())
    if providers is not None:
        raise BackendError(f"execution providers were asked for, but no backend that has them "
                           f"can run {bundle.path} here ({reasons})")
    raise BackendError(f"no backend can run {bundle.path} here ({reasons})")


def make_backend(name, bundle, threads=None, providers=None):
    """Backend ``name`` for ``bundle``; "auto" takes the first usable one of ``BACKENDS``."""
    if name == "auto":
        name = _auto(bundle, providers)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
    why = BACKENDS[name].usable(bundle)
    if why:
        others = ", ".join(available_backends(bundle)) or "none"
        raise BackendError(f"the {name} backend cannot run {bundle.path} here: {why} "
                           f"(usable here: {others}; auto takes the first)")
    return BACKENDS[name](bundle, threads, providers)
