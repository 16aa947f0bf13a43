"""At-least-once delivery, the sensor's side: ``identity.py``, ``spool.py``, ``sensor.py``
(the courier; ``report.py``, what it delivered) and ``sent.py`` (what was sent of its files,
so a restart sends no copy). The server's side (the ledger that makes outputs exactly-once,
the keys file) is ``walloc_edge.server.delivery``."""
from .identity import Identity, read_key, state_folder
from .report import Report
from .sensor import Courier
from .sent import SentRecord
from .spool import Spool, SpoolFull

__all__ = ["Identity", "Spool", "SpoolFull", "Courier", "Report", "SentRecord", "state_folder",
           "read_key"]
