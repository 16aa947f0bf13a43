"""Errors of the runtime that callers catch by type."""

__all__ = ["BitstreamError"]


class BitstreamError(ValueError):
    """Bytes that are not a valid .wlc bitstream (or coder payload); the message says why."""
