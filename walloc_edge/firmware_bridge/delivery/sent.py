"""What a sensor has sent of its files, so that a restart sends only what is new or
changed: a watched folder's, and the INPUT files of its runs (``stream``)."""
import hashlib
import json
import os
from pathlib import Path

from ...runtime.io import write_atomic

__all__ = ["SentRecord", "file_digest"]


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

    def __init__(self, path=None):
        self.path, self.files, self.lines = (Path(path) if path else None), {}, 0
        if self.path and self.path.is_file():
            self._load(self.path.read_text())

    def _load(self, text):
        if text.lstrip().startswith('{"files"') or text.lstrip().startswith("{\n"):
            try:  # the earlier format, one JSON object: rewritten as a journal
                self.files = dict(json.loads(text)["files"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{self.path} is damaged; remove it to send the files "
                                 "again") from None
            return self._compact()
        lines = text.splitlines()
        for i, line in enumerate(lines):
            try:
                entry = json.loads(line)
                self.files[entry.pop("name")] = entry
            except (ValueError, KeyError, TypeError, AttributeError):
                if i == len(lines) - 1 and not text.endswith("\n"):
                    return self._compact()  # a line cut short by a crash: its file is sent
                    # again, and the journal rewritten without it (appends go after it)
                raise ValueError(f"{self.path} is damaged; remove it to send the files "
                                 "again") from None
        self.lines = len(lines)

    def version(self, name):
        entry = self.files.get(name)
        return entry and (entry["size"], entry["mtime_ns"])

    def unchanged(self, name, path):
        """Whether ``path`` is what was sent as ``name``: the same size and time, or the
        same content (a file touched)."""
        stat = path.stat()
        if self.version(name) == (stat.st_size, stat.st_mtime_ns):
            return True
        return name in self.files and self.files[name].get("sha256") == file_digest(path)

    def keep(self, name, version, digest, present=None):
        """Record ``name`` as sent; files no longer in the folder (not in ``present``, when
        given) are left out."""
        if present is not None:
            self.files = {n: e for n, e in self.files.items() if n in present}
        self.files[name] = {"size": version[0], "mtime_ns": version[1], "sha256": digest}
        if self.path is None:
            return
        if self.lines > 2 * len(self.files) + 64:
            return self._compact()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"name": name, **self.files[name]}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.lines += 1

    def _compact(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
