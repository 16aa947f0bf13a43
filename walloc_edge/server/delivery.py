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
import random
import re
import sqlite3
import threading
import time
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
    that a server's memory does not grow with the messages it has written, and its start
    reads the text once to hash it (0.2 s a million messages) instead of holding it all.
    The text stays the record, the index a copy checked against it: it notes how far into
    the text it has read, a hash of those bytes and how many keys it holds, and a start
    indexes only the lines added since (an older server's included) once the hash, the
    count of its rows and 64 lines sampled from the text agree with it; where they do not
    (a ledger restored or copied, an index some of whose rows are gone or whose files are
    of two moments) or where SQLite finds it damaged, even in the middle of a run, it is
    made again from the text. New lines go to the index in batches, not synced (a crash
    loses at most those, which the next start reads again); until then, and while it cannot
    take them (tried again after a pause, doubling to a minute), they are looked up in
    memory. Where no index can be kept on the disk (a file system SQLite cannot lock, a
    disk too full, an unwritable file), it is kept in memory for the run. Damage that
    SQLite cannot see (a byte of a key changed in a page) is not found: an index is a
    cache of the text, and deleting its files has it made again."""

    FLUSH_LINES, FLUSH_SECONDS = 256, 1.0  # a batch of lines into the index
    SAMPLES = 64  # lines of the text looked up in the index at a start

    def __init__(self, path):
        self.path = Path(path)
        self.lock = threading.Lock()  # serve's workers record at once
        self.pending = {}  # key -> (digest, nonce) of lines in the text, not yet indexed
        self.pending_boots = {}  # boot -> the nonce of its first start among them
        self.flushed, self.backoff = time.monotonic(), 0.0  # the last flush; after a failed one
        self.file = open(self.path, "ab+", buffering=0)  # a failed line leaves nothing behind
        self._drop_a_cut_line()
        self.index_path = self.path.with_name(self.path.name + ".index")
        self.index = self._open_index()

    # --- the text ---------------------------------------------------------------------

    def _bytes(self, begin, end):
        return os.pread(self.file.fileno(), end - begin, begin) if end > begin else b""

    def _size(self):
        return os.fstat(self.file.fileno()).st_size

    def _drop_a_cut_line(self):
        """Take off a last line a full disk or a crash cut short (in bytes: a damaged byte
        is one byte), reading back from the end only as far as its start."""
        size = self._size()
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

    def _records(self, begin, end, hasher=None):
        """(key, digest, nonce) of each line in the file's bytes [begin, end) (whole
        lines), a chunk at a time; ``hasher`` takes the bytes as they are read."""
        rest = b""
        for at in range(begin, end, CHUNK):
            chunk = self._bytes(at, min(end, at + CHUNK))
            if hasher is not None:
                hasher.update(chunk)
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if (record := _parsed(line)) is not None:
                    yield record

    def _hash(self, end):
        """A hasher over the file's bytes [0, end)."""
        hasher = hashlib.blake2b(digest_size=16)
        for at in range(0, end, CHUNK):
            hasher.update(self._bytes(at, min(end, at + CHUNK)))
        return hasher

    # --- the index --------------------------------------------------------------------

    def _open_index(self):
        """The index on disk, checked against the text (made again where it is not the
        text's or is damaged); in memory where the disk cannot hold one."""
        try:
            return self._connect(self.index_path)
        except sqlite3.DatabaseError as e:
            if not _damaged(e):  # locked past the timeout, a full disk, unwritable: in memory
                return self._connect(":memory:")
            try:  # damaged: made again
                self._remove_index()
                return self._connect(self.index_path)
            except (OSError, sqlite3.Error):
                pass
        except OSError:
            pass
        return self._connect(":memory:")

    def _remove_index(self):
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)

    def _connect(self, where):
        index = sqlite3.connect(str(where), check_same_thread=False, isolation_level=None,
                                timeout=1)  # (waited for under the ledger's lock)
        try:
            index.execute("PRAGMA journal_mode=WAL")
            index.execute("PRAGMA synchronous=NORMAL")  # never damaged; the text is the record
            index.execute(f"PRAGMA journal_size_limit={4 << 20}")  # the -wal's size after use
            index.executescript("""
                CREATE TABLE IF NOT EXISTS messages (key TEXT PRIMARY KEY, digest TEXT,
                                                     nonce TEXT);
                CREATE TABLE IF NOT EXISTS boots (boot TEXT PRIMARY KEY, nonce TEXT);
                CREATE TABLE IF NOT EXISTS file (read INTEGER, hash TEXT, rows INTEGER);""")
            self.read, self.hasher, self.rows = 0, self._hash(0), 0
            known = index.execute("SELECT * FROM file").fetchone()  # (read, hash, rows)
            if known and len(known) == 3 and known[0] <= self._size():
                hasher = self._hash(known[0])
                if hasher.hexdigest() == known[1] and index.execute(
                        "SELECT count(*) FROM messages").fetchone()[0] == known[2] and \
                        self._samples_agree(index, known[0]):
                    self.read, self.hasher, self.rows = known[0], hasher, known[2]
            if not self.read:
                index.executescript("DROP TABLE IF EXISTS file; DELETE FROM messages; "
                                    "DELETE FROM boots; CREATE TABLE file (read INTEGER, "
                                    "hash TEXT, rows INTEGER);")
            self._index_tail(index, always=True)  # (a write: an index it cannot write fails)
        except BaseException:
            index.close()
            raise
        return index

    def _samples_agree(self, index, read):
        """Whether the keys of SAMPLES lines of the text's first ``read`` bytes, taken at
        random, are all in the index (an index of another moment than its text misses
        some)."""
        for _ in range(self.SAMPLES if read else 0):
            at = random.randrange(read)
            chunk = self._bytes(at, min(read, at + 4096))
            start = chunk.find(b"\n") + 1  # the next line after a random byte
            end = chunk.find(b"\n", start)
            record = _parsed(chunk[start:end]) if start and end > 0 else None
            if record is not None and index.execute(
                    "SELECT 1 FROM messages WHERE key = ?", (record[0],)).fetchone() is None:
                return False
        return True

    def _index_tail(self, index, always=False):
        """Index the text's lines after what the index has read, in one transaction, and
        note how far it has read, the hash of that, and how many keys it holds (counted as
        they come: a start counts the rows, and an index some of whose rows are gone, or
        whose files are of two moments, holds another number)."""
        size = self._size()
        if size == self.read and not always:
            return
        hasher, rows = self.hasher.copy(), self.rows
        records = self._records(self.read, size, hasher)
        with index:  # all of the tail or none of it
            index.execute("BEGIN")
            while batch := list(itertools.islice(records, 10000)):
                before = index.total_changes
                index.executemany("INSERT OR IGNORE INTO messages VALUES (?, ?, ?)", batch)
                rows += index.total_changes - before  # (the keys new to it)
                index.executemany("UPDATE messages SET digest = ?, nonce = ? WHERE key = ?",
                                  [(d, n, k) for k, d, n in batch])  # a key's last line holds
                index.executemany("INSERT OR IGNORE INTO boots VALUES (?, ?)",
                                  [(boot_of(k), n) for k, _, n in batch if n])
            index.execute("DELETE FROM file")
            index.execute("INSERT INTO file VALUES (?, ?, ?)", (size, hasher.hexdigest(), rows))
        self.read, self.hasher, self.rows = size, hasher, rows

    def _flush(self):
        """The pending lines into the index (lock held); where that fails (a full disk),
        they stay pending: the text has them, and the next flush takes them."""
        self.flushed = time.monotonic()
        try:
            try:
                self._index_tail(self.index)
            except sqlite3.DatabaseError as e:
                if not _damaged(e):
                    raise
                self._make_again()  # (which indexes the whole text)
        except Exception:  # noqa: BLE001 - the line is synced; an index is a copy of it
            self.backoff = min(60.0, 2 * self.backoff or 1.0)  # tried again later, not at
            self.flushed += self.backoff  # each record (a disk that stays full)
            return
        self.backoff = 0.0
        self.pending.clear()
        self.pending_boots.clear()

    def _make_again(self):
        """An index SQLite finds damaged in the middle of a run: made again from the text
        (lock held)."""
        self.index.close()
        if self.index_path.exists():
            try:
                self._remove_index()
            except OSError:
                pass
        self.index = self._open_index()
        self.pending.clear()
        self.pending_boots.clear()

    def _query(self, sql, args):
        try:
            return self.index.execute(sql, args).fetchone()
        except sqlite3.DatabaseError as e:
            if not _damaged(e):
                raise
            self._make_again()
            return self.index.execute(sql, args).fetchone()

    # --- what the server asks ---------------------------------------------------------

    def kept(self, key):
        with self.lock:
            return self.pending.get(key) or self._query(
                "SELECT digest, nonce FROM messages WHERE key = ?", (key,))

    def boot_nonce(self, boot):
        with self.lock:
            row = self._query("SELECT nonce FROM boots WHERE boot = ?", (boot,))
            return row[0] if row else self.pending_boots.get(boot)

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
            self.pending[key] = (digest, nonce)
            if nonce is not None:
                self.pending_boots.setdefault(boot_of(key), nonce)
            since = time.monotonic() - self.flushed
            if since >= 0 and (len(self.pending) >= self.FLUSH_LINES or
                               since >= self.FLUSH_SECONDS):
                self._flush()

    def close(self):
        with self.lock:
            self._flush()
            self.index.close()
        self.file.close()


def _damaged(error):
    """Whether an sqlite3 error says the index is damaged (made again from the text), not
    that it is busy or its disk full (tried again later): a value that does not decode is
    damage, though raised as an OperationalError."""
    return not isinstance(error, sqlite3.OperationalError) or "decode" in str(error)


def _parsed(line):
    """(key, digest, nonce) of a ledger line (bytes), or None for a blank one."""
    fields = line.decode(errors="replace").split()
    if not fields:
        return None
    known = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    return fields[0], known.get("digest"), known.get("nonce")


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
