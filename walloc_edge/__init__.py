"""walloc-edge: WaLLoC's cheap encoder on sensors, its deep decoder on a server.

Its rooms, and where a change goes, are described in one place: docs/architecture.md.
Importing this package imports neither torch nor any inference runtime.
"""
__version__ = "0.1.0"
