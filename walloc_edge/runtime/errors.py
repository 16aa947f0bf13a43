"""Errors of the runtime that callers catch by type."""

__all__ = ["BitstreamError", "NewerBitstreamError"]


class BitstreamError(ValueError):
    """Bytes that are not a valid .wlc bitstream (or coder payload); the message says why."""


class NewerBitstreamError(BitstreamError):
    """A bitstream made by a newer walloc-edge (a coder level or model version this reader
    does not know): not bad data, but a reader to upgrade."""
