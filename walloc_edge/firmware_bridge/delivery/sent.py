"""What a sensor has sent of its files, so that a restart sends only what is new or
changed: a watched folder's, and the INPUT files of its runs (``stream``)."""
import contextlib
import errno
import functools
import hashlib
import json
import os
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: one stream a state folder
    fcntl = None

from ...runtime.io import write_atomic

__all__ = ["SentRecord", "file_digest", "claim_watch"]


def _one_at_a_time(method):
    """``method`` under the record's own lock: a courier's acknowledgement thread moves
    entries (a collision) while the main thread keeps and forgets them."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        with self.guard:
            return method(self, *args, **kwargs)
    return guarded


class SentRecord:
    """What a sensor has sent of its files (a watched folder, or the INPUT files of its
    runs): name → size, time and sha256 of each, kept once its message is spooled, so that a
    restart sends only what is new or changed. On disk (``path``; None: in memory only) a
    journal, a JSON line a file appended and synced, so that recording the n-th of many
    files costs one line, not a rewrite; compacted when mostly outdated."""

    @staticmethod
    def inputs_in(state, sensor):
        """Where sensor ``sensor`` (its name) keeps the record of the files it was given by
        name or folder (INPUT arguments), by absolute path."""
        return Path(state) / "sent" / f"{sensor}-inputs.jsonl"

    @staticmethod
    def path_in(state, sensor, folder):
        """Where sensor ``sensor`` (its name) keeps the record of ``folder`` in its state
        folder: one per sensor and folder (another --sensor-id sends the folder again)."""
        folder = Path(folder).resolve()
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
        return Path(state) / "watch" / f"{sensor}-{digest}.json"

    def __init__(self, path=None, prune_missing=False):
        """The record in ``path``; ``prune_missing``: names are absolute paths, and those
        no longer there are dropped (an INPUT record would grow forever otherwise)."""
        self.path, self.files, self.lines = (Path(path) if path else None), {}, 0
        self.unsaved = []  # files sent that could not be recorded (a full disk), and why
        self.unforgotten = []  # files given up that the record could not forget, and why
        self.unmoved = []  # files whose message moved (a collision), not so recorded, and why
        self.moved = {}  # "boot-sequence" → the key a collision moved that message to
        self.guard = threading.RLock()
        if self.path is None:
            return
        with self._locked():
            self.files, self.lines, damaged = self._read()
            if prune_missing:
                self.files = {n: e for n, e in self.files.items() if os.path.exists(n)}
            if damaged or self.lines > len(self.files):
                self._write()

    @contextlib.contextmanager
    def _locked(self):
        """Several streams may share a state folder: appends and rewrites one at a time
        (flock, where the system has it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self):
        """(files, lines, whether to rewrite it) of the journal on disk: the earlier format
        (one JSON object) is read and rewritten; a last line cut short by a crash (its file is
        sent again) or without its newline is rewritten, so that appends never join it."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}, 0, False
        damaged = ValueError(f"{self.path} is damaged; remove it to send the files again")
        if text.lstrip().startswith(("{\n", '{"files"')):
            try:
                return dict(json.loads(text)["files"]), 0, True
            except (ValueError, KeyError, TypeError):
                raise damaged from None
        files, lines = {}, text.splitlines()
        for i, line in enumerate(lines):
            try:
                entry = json.loads(line)
                files[entry.pop("name")] = entry
            except (ValueError, KeyError, TypeError, AttributeError):
                if i < len(lines) - 1 or text.endswith("\n"):
                    raise damaged from None
        return files, len(lines), not text.endswith("\n") and bool(text)

    def version(self, name):
        entry = self.files.get(name)
        return entry and (entry["size"], entry["mtime_ns"])

    def holds(self, name, version, digest):
        """Whether ``name`` was sent with this size and time and this content (an INPUT
        file: a new capture to the same path, even of the same content, is sent)."""
        entry = self.files.get(name)
        return bool(entry) and self.version(name) == tuple(version) and \
            entry["sha256"] == digest

    @_one_at_a_time
    def keep(self, name, version, digest, present=None, key=None):
        """Record ``name`` as sent (as message ``key``, (boot, sequence), where given, or
        the key a collision has moved it to meanwhile); files no longer in the folder (not
        in ``present``, when given) are left out, on disk too."""
        earlier = self.files.get(name, {})  # a file touched, not changed: the same message
        tag = key and f"{key[0]}-{key[1]}"
        while tag in self.moved:  # sent, and answered by a collision, before this record
            tag = self.moved[tag]
        entry = {"size": version[0], "mtime_ns": version[1], "sha256": digest,
                 **({"key": tag} if tag else
                    {"key": earlier["key"]} if "key" in earlier else {})}
        gone = set() if present is None else set(self.files) - set(present)
        for n in gone:
            del self.files[n]
        self.files[name] = entry
        if self.path is None:
            return
        try:
            with self._locked():
                if gone or self.lines > 2 * len(self.files) + 64:
                    # another stream on this state folder may have appended: theirs are kept
                    on_disk, _, _ = self._read()
                    self.files = {**{n: e for n, e in on_disk.items() if n not in gone},
                                  **self.files}
                    return self._write()
                self._append({"name": name, **entry})
        except OSError as e:  # a full card: the file is spooled, sent, just not recorded
            self.unsaved.append(f"{name} ({e.strerror or e})")

    def _append(self, line):
        """One line added to the journal, synced; none (the journal as it was) where the
        write fails, so that a later line is never joined to a part of this one."""
        data = (json.dumps(line) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a short write
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        self.lines += 1

    @_one_at_a_time
    def forget(self, keys):
        """The files sent as the messages ``keys`` are not sent after all (the spool gave
        them up, full): left out of the record, on disk too, so that a run again sends
        them."""
        wanted = {f"{boot}-{sequence}" for boot, sequence in keys}
        gone = {n for n, e in self.files.items() if e.get("key") in wanted}
        if self.path is not None:
            try:
                with self._locked():
                    on_disk, _, _ = self._read()
                    gone |= {n for n, e in on_disk.items() if e.get("key") in wanted}
                    if gone:
                        self.files = {n: e for n, e in {**on_disk, **self.files}.items()
                                      if n not in gone}
                        self._write()
            except (OSError, ValueError) as e:  # a full card, a damaged record: said
                self.unforgotten += [f"{n} ({getattr(e, 'strerror', None) or e})"
                                     for n in sorted(gone) or ["?"]]
        for name in gone:
            self.files.pop(name, None)

    @_one_at_a_time
    def move(self, old, new):
        """Message ``old`` goes as ``new`` now (a collision moved it to a new boot): its
        files' entries follow it, so that the spool giving ``new`` up forgets them. A line a
        file appended (the journal's last line for a name wins); where that fails (a full
        card), ``unmoved`` says so (this run still forgets them: the record in memory
        moved)."""
        was, now = f"{old[0]}-{old[1]}", f"{new[0]}-{new[1]}"
        self.moved[was] = now
        names = [n for n, e in self.files.items() if e.get("key") == was]
        for name in names:
            self.files[name] = {**self.files[name], "key": now}
        if self.path is None:
            return
        for name in names:
            try:
                with self._locked():
                    self._append({"name": name, **self.files[name]})
            except OSError as e:
                self.unmoved.append(f"{name} ({e.strerror or e})")

    def _write(self):
        write_atomic(self.path, "".join(json.dumps({"name": n, **e}) + "\n"
                                        for n, e in self.files.items()).encode())
        self.lines = len(self.files)


def file_digest(path):
    """The SHA-256 of a file's bytes (hex), read a MiB at a time."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def claim_watch(record):
    """The watch of the folder whose record is ``record`` (``SentRecord.path_in``) claimed
    for this process: an open file holding an OS lock until it is closed (or the process
    ends). A second stream of one sensor watching one folder would send every file a
    second time (each reads the record before the other has written it): ValueError,
    naming the first's process, where another holds it."""
    record = Path(record)
    record.parent.mkdir(parents=True, exist_ok=True)
    claim = open(record.with_name(record.name + ".watching"), "a+")
    if fcntl is None:
        return claim
    try:
        fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        claim.seek(0)
        holder = claim.read().strip()
        claim.close()
        raise ValueError(f"this sensor already watches that folder "
                         f"({f'pid {holder}' if holder else 'another stream'}): a second "
                         "stream would send every file in it again; stop it first (under "
                         "another --sensor-id or --state it too would send them all)") from None
    claim.truncate(0)
    claim.write(str(os.getpid()))
    claim.flush()
    return claim
