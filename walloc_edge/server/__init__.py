"""The server: what ``walloc-edge serve`` does with each message a sensor sends, exactly once.

- ``model.py``: what runs for the sensors' model (its id, the decoder, a latents classifier);
- ``outputs.py``: where outputs go (file names, the latents dataset, metrics, the ledger);
- ``store.py``: what keeps them: a local folder, or an object store that several servers
  share (objects and ledger markers by message key);
- ``delivery.py``: the ledger that makes outputs exactly-once over at-least-once delivery,
  and the keys file that authenticates sensors;
- ``handler.py``: the per-message protocol: verify, decode or keep the latents, classify,
  write durably, record in the ledger, and only then acknowledge;
- ``fleet.py`` and ``http.py`` (with ``static/``): ``serve --http``, what the fleet did as a
  live dashboard, Prometheus metrics and a health check.

The receive loop and the transports are the firmware bridge's. Nothing here imports torch
when it loads: a server that keeps the latents of a sensor bundle runs without it.
"""
from .handler import BUDGET_NAMES, LIMIT_NAMES, Handler, check_budget, check_size
from .model import ServedModel
from .outputs import Outputs, output_stem

__all__ = ["Handler", "ServedModel", "Outputs", "check_size", "check_budget", "output_stem",
           "LIMIT_NAMES", "BUDGET_NAMES"]
