"""At-least-once delivery with exactly-once output: the sensor's side in ``identity.py``,
``spool.py`` and ``sensor.py`` (the courier), the server's (ledger, keys) in ``server.py``."""
from .identity import Identity, state_folder
from .sensor import Courier, Report, read_key
from .server import Ledger, RecordedElsewhere, message_digest, read_keys, start_nonce
from .spool import Spool, SpoolFull

__all__ = ["Identity", "Spool", "SpoolFull", "Courier", "Ledger", "RecordedElsewhere", "Report",
           "state_folder", "read_key", "read_keys", "message_digest", "start_nonce"]
