"""walloc-edge: WaLLoC's cheap encoder on sensors, its deep decoder on a server.

Sub-packages: ``codec`` (torch model), ``export`` (encoder graphs), ``runtime`` (sensor side,
no torch), ``firmware_bridge`` (getting bytes off the device), ``decoder`` (server side).
Importing this package imports neither torch nor any inference runtime.
"""
__version__ = "0.1.0"
