"""Delivery, the server's side: exactly-once output over at-least-once delivery; no torch.

A :class:`Ledger` remembers, on disk, which messages were written, so that a resent message
is acknowledged again but not written twice, and one with other content under a key it
holds (a collision: two starts of a sensor took the same boot) is told apart; the server
acknowledges only after its outputs are durably written. ``read_keys`` reads the keys that
authenticate its sensors.
"""
import errno
import hashlib
import itertools
import json
import os
import re
import sqlite3
import threading
from pathlib import Path

from ..firmware_bridge.delivery.identity import sensor_number
from ..firmware_bridge.framing import Keys

__all__ = ["KnownMessages", "Ledger", "RecordedElsewhere", "boot_of", "read_keys",
           "message_digest", "start_nonce"]


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


CHUNK = 1 << 20  # bytes of the ledger read at once


class KnownMessages:
    """What a ledger answers from what it holds of each key: its content's digest and the
    nonce of the sensor start that sent it (``kept``), and the nonce of the start that
    first sent a boot (``boot_nonce``)."""

    def kept(self, key):
        """(digest, nonce) of the message recorded under ``key`` (either None where not
        known), or None where none is."""
        raise NotImplementedError

    def boot_nonce(self, boot):
        """The nonce of the start that first sent under ``boot`` ("SENSOR-BOOT"), or None."""
        raise NotImplementedError

    def fetch(self, key):
        """Learn what there is to know of ``key`` before it is asked about (an object
        store's ledger asks the store; a file's has it at hand)."""

    def __contains__(self, key):
        return self.kept(key) is not None

    def collision(self, key, digest, nonce=None):
        """Why the message ``key`` with content ``digest``, from the sensor start ``nonce``,
        is not the message the ledger holds (other content under that key, or its boot
        taken by another start: a shared id, a copied or restored state folder); None when
        it is new or the same message sent again."""
        kept = self.kept(key)
        if kept is not None:
            kept_digest, kept_nonce = kept
            # a line without a digest (from a server that kept none) matches any content
            if kept_digest is not None and kept_digest != digest:
                return "other content is already written under this key"
            if None not in (kept_nonce, nonce) and kept_nonce != nonce:
                return "another start of this sensor already sent this key"
            return None
        kept_nonce = self.boot_nonce(boot_of(key))
        if None not in (kept_nonce, nonce) and kept_nonce != nonce:
            return "another start of this sensor already sent under this boot number"
        return None


def boot_of(key):
    """"SENSOR-BOOT" of a message key "SENSOR-BOOT-SEQUENCE"."""
    return key.rsplit("-", 1)[0]


class Ledger(KnownMessages):
    """The server's memory of what it has written: one line per message key in a text file
    (appended and synced after the outputs are durable), so that a message resent after any
    restart is acknowledged but not written again. A line a full disk or a crash cut short
    is not believed (it is taken off at start).

    A line is ``KEY [OUTPUT] digest=HEX [nonce=HEX]``: the content's digest, and the nonce
    of the sensor start that sent it, tell the same message sent again from another message
    under the same key (see :meth:`collision`).

    The lines are looked up in an index beside the file (``ledger.txt.index``, SQLite), so
    that neither a server's start nor its memory grows with the messages it has written: a
    start indexes only the lines added since the index last saw the file (none, after this
    server; all, the first time, or after a server that kept no index). The text stays the
    record: the index says how far into it it has read and what the bytes before that point
    end with, and is made again from the text where they differ (a file replaced or
    restored) or where it cannot be read; it is not synced at each line (a crash loses
    at most its last lines, which the next start reads again). Where no index can be kept
    on the disk (a file system SQLite cannot lock), it is kept in memory."""

    TAIL = 64  # bytes before the indexed point that the index keeps, to know its file again

    def __init__(self, path):
        self.path = Path(path)
        self.lock = threading.Lock()  # serve's workers record at once
        self.pending = {}  # key -> (digest, nonce) of lines written, not yet indexed
        self.file = open(self.path, "ab+", buffering=0)  # a failed line leaves nothing behind
        self._drop_a_cut_line()
        self.index_path = self.path.with_name(self.path.name + ".index")
        try:
            self.index = self._open_index(self.index_path)
        except sqlite3.Error:  # damaged: made again; unusable here: in memory
            try:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
                self.index = self._open_index(self.index_path)
            except (OSError, sqlite3.Error):
                self.index = self._open_index(":memory:")

    def _open_index(self, where):
        index = sqlite3.connect(str(where), check_same_thread=False, isolation_level=None)
        try:
            index.execute("PRAGMA journal_mode=WAL")
            index.execute("PRAGMA synchronous=NORMAL")  # never damaged; the text is the record
            index.executescript("""
                CREATE TABLE IF NOT EXISTS messages (key TEXT PRIMARY KEY, digest TEXT,
                                                     nonce TEXT);
                CREATE TABLE IF NOT EXISTS boots (boot TEXT PRIMARY KEY, nonce TEXT);
                CREATE TABLE IF NOT EXISTS file (read INTEGER, tail BLOB);""")
            self._catch_up(index)
        except BaseException:
            index.close()
            raise
        return index

    def _drop_a_cut_line(self):
        """Take off a last line a full disk or a crash cut short (in bytes: a damaged byte
        is one byte), reading back from the end only as far as its start."""
        size = os.fstat(self.file.fileno()).st_size
        if not size or self._bytes(size - 1, size) == b"\n":
            return
        end = size
        while end:
            chunk = self._bytes(max(0, end - CHUNK), end)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                os.ftruncate(self.file.fileno(), end - len(chunk) + cut + 1)
                return
            end -= len(chunk)
        os.ftruncate(self.file.fileno(), 0)  # no line ends: nothing of it is believed

    def _lines(self, begin, end):
        """The lines of the file's bytes [begin, end) (whole lines), a chunk at a time."""
        rest = b""
        for at in range(begin, end, CHUNK):
            rest += self._bytes(at, min(end, at + CHUNK))
            *lines, rest = rest.split(b"\n")
            yield from (line.decode(errors="replace") for line in lines)

    def _catch_up(self, index):
        """Index the lines the index has not read (all of them where it does not know the
        file as it is)."""
        known = index.execute("SELECT read, tail FROM file").fetchone()
        read, tail = known or (0, b"")
        size = os.fstat(self.file.fileno()).st_size
        if read > size or self._bytes(max(0, read - self.TAIL), read) != tail:
            index.executescript("DELETE FROM messages; DELETE FROM boots; DELETE FROM file;")
            read = 0
        records = self._records(read, size)
        with index:  # one transaction: all of the tail or none of it
            index.execute("BEGIN")
            while batch := list(itertools.islice(records, 10000)):
                self._index(index, batch)
            self._mark(index, size)

    def _records(self, begin, end):
        """(key, digest, nonce) of each line in the file's bytes [begin, end)."""
        for line in self._lines(begin, end):
            fields = line.split()
            if fields:
                known = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
                yield fields[0], known.get("digest"), known.get("nonce")

    def _bytes(self, begin, end):
        return os.pread(self.file.fileno(), end - begin, begin) if end > begin else b""

    @staticmethod
    def _index(index, records):
        """Index (key, digest, nonce) records, in the ledger's order: a key's last line
        holds, and the first start seen under a boot keeps it."""
        index.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?)", records)
        index.executemany("INSERT OR IGNORE INTO boots VALUES (?, ?)",
                          [(boot_of(key), nonce) for key, _, nonce in records if nonce])

    def _mark(self, index, read):
        index.execute("DELETE FROM file")
        index.execute("INSERT INTO file VALUES (?, ?)",
                      (read, self._bytes(max(0, read - self.TAIL), read)))

    def kept(self, key):
        with self.lock:
            return self.pending.get(key) or self.index.execute(
                "SELECT digest, nonce FROM messages WHERE key = ?", (key,)).fetchone()

    def boot_nonce(self, boot):
        with self.lock:
            row = self.index.execute("SELECT nonce FROM boots WHERE boot = ?",
                                     (boot,)).fetchone()
            later = [n for k, (_, n) in self.pending.items() if n and boot_of(k) == boot]
        return row[0] if row else (later[0] if later else None)

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
            try:
                if self.pending:  # the lines the index missed, this one with them
                    self._catch_up(self.index)
                    self.pending.clear()
                else:
                    with self.index:
                        self.index.execute("BEGIN")
                        self._index(self.index, [(key, digest, nonce)])
                        self._mark(self.index, at + len(data))
            except sqlite3.Error:  # (a full disk): the line is the record; indexed later
                self.pending[key] = (digest, nonce)

    def close(self):
        with self.lock:
            self.index.close()
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
