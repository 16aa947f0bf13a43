"""The decoders' errors (no torch: the bundle decoder raises them too)."""

__all__ = ["ModelMismatchError", "EngineError"]


class ModelMismatchError(ValueError):
    """A bitstream made by another model than the decoder's."""


class EngineError(ValueError):
    """An engine, precision or provider that is unknown or cannot run here. ``option`` says
    which choice ("engine", "precision", "provider", "compile"); ``detail`` starts with the
    value chosen."""

    def __init__(self, option, detail):
        super().__init__(f"{option} {detail}")
        self.option, self.detail = option, detail
