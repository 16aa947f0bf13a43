"""Delivery, the server's side: exactly-once output over at-least-once delivery; no torch.

A :class:`Ledger` remembers, on disk, which messages were written, so that a resent message
is acknowledged again but not written twice; the server acknowledges only after its outputs
are durably written. ``read_keys`` reads the keys that authenticate its sensors.
"""
import json
import os
from pathlib import Path

from ..framing import Keys
from .sensor import sensor_number

__all__ = ["Ledger", "read_keys"]


class Ledger:
    """The server's memory of what it has written: one line per message key in a file
    (appended and synced after the outputs are durable), read back at start, so that a
    message resent after any restart is acknowledged but not written again. A line a full
    disk or a crash cut short is not believed (it is taken off, or ignored at start)."""

    def __init__(self, path):
        self.path = Path(path)
        self.done = set()
        if self.path.is_file():
            text = self.path.read_text(errors="replace")
            complete = text[:text.rfind("\n") + 1]
            for line in complete.splitlines():
                if line.strip():
                    self.done.add(line.split()[0])
            if len(complete) != len(text):  # a cut-short last line: drop it
                with open(self.path, "r+b") as f:
                    f.truncate(len(complete.encode()))
        self.file = open(self.path, "ab")

    def __contains__(self, key):
        return key in self.done

    def record(self, key, output=""):
        at = self.file.tell()
        try:
            self.file.write(f"{key} {output}\n".encode())
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError:
            try:
                self.file.truncate(at)
            except OSError:
                pass
            raise
        self.done.add(key)

    def close(self):
        self.file.close()



def read_keys(path):
    """The server's keys file: JSON {sensor id (16 hex digits or a name): hex key}."""
    try:
        table = json.loads(Path(path).read_text())
        keys = {sensor_number(sensor): bytes.fromhex(key) for sensor, key in table.items()}
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, AttributeError):
        raise ValueError(f"{path}: give JSON {{\"SENSOR\": \"HEX KEY\", ...}}") from None
    if not keys:
        raise ValueError(f"{path} lists no sensor")
    return Keys(keys)
