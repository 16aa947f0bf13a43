"""At-least-once delivery with exactly-once output: the sensor's side (identity, spool,
courier) in ``sensor.py``, the server's (ledger, keys) in ``server.py``."""
from .sensor import Courier, Identity, Report, Spool, SpoolFull, read_key, state_folder
from .server import Ledger, read_keys

__all__ = ["Identity", "Spool", "SpoolFull", "Courier", "Ledger", "Report", "state_folder",
           "read_key", "read_keys"]
