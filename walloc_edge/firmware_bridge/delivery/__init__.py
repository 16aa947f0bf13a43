"""At-least-once delivery, the sensor's side: ``identity.py``, ``spool.py`` and ``sensor.py``
(the courier). The server's side (the ledger that makes outputs exactly-once, the keys
file) is ``walloc_edge.server.delivery``."""
from .identity import Identity, state_folder
from .sensor import Courier, Report, read_key
from .spool import Spool, SpoolFull

__all__ = ["Identity", "Spool", "SpoolFull", "Courier", "Report", "state_folder", "read_key"]
