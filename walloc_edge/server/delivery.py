"""Delivery, the server's side: exactly-once output over at-least-once delivery; no torch.

A :class:`Ledger` remembers, on disk, which messages were written, so that a resent message
is acknowledged again but not written twice, and one with other content under a key it
holds (a collision: two starts of a sensor took the same boot) is told apart; the server
acknowledges only after its outputs are durably written. ``read_keys`` reads the keys that
authenticate its sensors.
"""
import errno
import hashlib
import json
import os
import re
import threading
from pathlib import Path

from ..firmware_bridge.delivery.identity import sensor_number
from ..firmware_bridge.framing import Keys

__all__ = ["Ledger", "RecordedElsewhere", "read_keys", "message_digest", "start_nonce"]


def message_digest(message: bytes) -> str:
    """What the ledger keeps of a message's content: enough to tell two messages apart."""
    return hashlib.sha256(message).hexdigest()[:32]


def start_nonce(meta: dict) -> "str | None":
    """The sensor start's random nonce from a message's metadata (sensors that send one
    understand a collision acknowledgement); None when absent or malformed."""
    nonce = meta.get("nonce")
    return nonce if isinstance(nonce, str) and re.fullmatch(r"[0-9a-f]{1,32}", nonce) else None


class RecordedElsewhere(Exception):
    """Another server recorded the key first (servers sharing one store): ``collision`` says
    why its message is another message than ours, or is None when it is the same message;
    ``output`` is the output its record names."""

    def __init__(self, key, collision, output=None):
        super().__init__(f"{key}: recorded by another server meanwhile")
        self.key, self.collision, self.output = key, collision, output


class Ledger:
    """The server's memory of what it has written: one line per message key in a file
    (appended and synced after the outputs are durable), read back at start, so that a
    message resent after any restart is acknowledged but not written again. A line a full
    disk or a crash cut short is not believed (it is taken off, or ignored at start).

    A line is ``KEY [OUTPUT] digest=HEX [nonce=HEX]``: the content's digest, and the nonce
    of the sensor start that sent it, tell the same message sent again from another message
    under the same key (see :meth:`collision`)."""

    def __init__(self, path):
        self.path = Path(path)
        self.done = {}   # key -> (digest, nonce), either None where not known
        self.boots = {}  # "SENSOR-BOOT" -> the nonce of the start that sent that boot
        self.lock = threading.Lock()  # serve's workers record at once
        if self.path.is_file():
            data = self.path.read_bytes()
            complete = data[:data.rfind(b"\n") + 1]  # in bytes: a damaged byte is one byte
            for line in complete.decode(errors="replace").splitlines():
                fields = line.split()
                if fields:
                    known = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
                    self._remember(fields[0], known.get("digest"), known.get("nonce"))
            if len(complete) != len(data):  # a cut-short last line: drop it
                with open(self.path, "r+b") as f:
                    f.truncate(len(complete))
        self.file = open(self.path, "ab", buffering=0)  # a failed line leaves nothing behind

    def _remember(self, key, digest, nonce):
        self.done[key] = (digest, nonce)
        if nonce is not None:
            self.boots.setdefault(key.rsplit("-", 1)[0], nonce)

    def fetch(self, key):
        """Learn what there is to know of ``key`` before it is asked about; a file ledger
        has it all in memory (an object store's asks the store)."""

    def __contains__(self, key):
        return key in self.done

    def collision(self, key, digest, nonce=None):
        """Why the message ``key`` with content ``digest``, from the sensor start ``nonce``,
        is not the message the ledger holds (other content under that key, or its boot
        taken by another start: a shared id, a copied or restored state folder); None when
        it is new or the same message sent again."""
        if key in self.done:
            kept_digest, kept_nonce = self.done[key]
            # a line without a digest (from a server that kept none) matches any content
            if kept_digest is not None and kept_digest != digest:
                return "other content is already written under this key"
            if None not in (kept_nonce, nonce) and kept_nonce != nonce:
                return "another start of this sensor already sent this key"
            return None
        kept_nonce = self.boots.get(key.rsplit("-", 1)[0])
        if None not in (kept_nonce, nonce) and kept_nonce != nonce:
            return "another start of this sensor already sent under this boot number"
        return None

    def record(self, key, output="", digest=None, nonce=None):
        line = " ".join([key, output] + [f"{name}={value}" for name, value in
                                         (("digest", digest), ("nonce", nonce)) if value])
        data = f"{line}\n".encode()
        with self.lock:
            at = os.lseek(self.file.fileno(), 0, os.SEEK_END)
            try:
                if os.write(self.file.fileno(), data) != len(data):
                    raise OSError(errno.ENOSPC, "the ledger line was cut short")
                os.fsync(self.file.fileno())
            except OSError:
                try:
                    os.ftruncate(self.file.fileno(), at)  # no part of it stays
                except OSError:
                    pass
                raise
            self._remember(key, digest, nonce)

    def close(self):
        self.file.close()


def read_keys(path):
    """The server's keys file: JSON {sensor id (16 hex digits or a name): hex key}."""
    shape = 'give JSON {"SENSOR": "HEX KEY", ...}'
    try:
        table = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError:
        raise ValueError(f"{path}: not JSON; {shape}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: {shape}")
    keys = {}
    for sensor, key in table.items():
        if not sensor.strip():  # stream refuses an empty --sensor-id: no sensor is named so
            raise ValueError(f"{path}: a sensor named {sensor!r}; {shape}")
        try:
            keys[sensor_number(sensor)] = bytes.fromhex(key)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: the key of {sensor} is not hex; {shape}") from None
        if len(keys[sensor_number(sensor)]) < 16:  # as a sensor's --key file
            raise ValueError(f"{path}: the key of {sensor} is "
                             f"{len(keys[sensor_number(sensor)])} bytes; use at least 16")
    if not keys:
        raise ValueError(f"{path} lists no sensor")
    return Keys(keys)
