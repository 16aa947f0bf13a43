"""Where the server's outputs go: OUT/[NAME-]SENSOR-BOOT-SEQUENCE[-CAPTURED][-SOURCE].<ext> for
each decoded message, a row per message in a latents dataset, a line per message in
OUT/metrics.jsonl, and OUT/ledger.txt, the record of what was written; or, with an object
store as OUT, objects and marker objects (``store.py``)."""
import json
import os
import re
import threading
import time
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np

from ..runtime import Header, io
from .model import ServedModel
from .store import ObjectStore, default_metrics, open_dataset, open_store

if TYPE_CHECKING:
    from ..firmware_bridge.transports import Received

__all__ = ["Outputs", "output_stem"]


def output_stem(received: "Received") -> str:
    """[NAME-]SENSOR-BOOT-SEQUENCE[-CAPTURED][-SOURCE]: which sensor (the name it was given,
    and its id, which alone keeps names apart), which message, when it was captured (UTC)
    and which source file (its folders below the sensor's input joined by "_"), where the
    sensor said."""
    name = _safe(received.meta.get("name"), 32, "-")  # one field: its "-" made "_", and
    parts = [name] if name and not SENSOR_ID.fullmatch(name) else []  # never an id's look
    parts += [f"{received.sensor:016x}", str(received.boot), f"{received.sequence:06d}"]
    captured = received.meta.get("time")
    if isinstance(captured, (int, float)) and 0 < captured < 2 ** 34:
        parts.append(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(captured)))
    source = _safe(str(received.meta.get("source", "")).rsplit(".", 1)[0], -64)
    return "-".join(parts + ([source] if source else []))


SENSOR_ID = re.compile(r"[0-9a-fA-F]{16}")


def _safe(text, limit, also=""):
    """``text`` as part of a file name: what is not a letter, digit or ``_.+-`` (less
    ``also``) becomes "_"; its first ``limit`` characters (its last, for a negative one:
    a deep path keeps its file's name); no leading or trailing dots."""
    if not isinstance(text, str):
        return ""
    text = re.sub(r"[^A-Za-z0-9_.+-]", "_", text)
    for character in also:
        text = text.replace(character, "_")
    return (text[:limit] if limit > 0 else text[limit:]).strip("._")


class Outputs:
    """The outputs of a server for ``model`` in ``folder``, a local folder or an object store
    URL (see ``open_store``): decoded files in ``fmt`` (default: the modality's), the latents
    dataset in the folder ``latents`` (when given; its labels the classifier's), the log
    ``metrics`` (default: ``default_metrics``) and the ledger, read back at start (or, for an
    object store, asked per message) so that a message sent again is known. Each file is
    written whole (temporary name, fsync, rename; one PUT) before the ledger names it. A
    context manager: leaving it closes the log and the ledger."""

    def __init__(self, folder: "str | Path | ObjectStore", model: ServedModel,
                 fmt: "str | None" = None, latents: "str | Path | ObjectStore | None" = None,
                 metrics: "str | Path | None" = None):
        self.store = folder if isinstance(folder, ObjectStore) else open_store(folder)
        self.fmt = fmt
        self.written = 0  # messages this server recorded
        self.counting = threading.Lock()
        self.dataset = None
        if latents:
            labels = f"predicted by {model.classifier_name}" if model.classifier else "none"
            self.dataset = open_dataset(latents, {
                "kind": "latents", "model": model.name, "model_id": model.model_id,
                "size": None, "resize": None, "classes": model.classes, "images": None,
                "labels": labels})
        self.ledger = self.store.ledger
        self.metrics = open_log(metrics or default_metrics(self.store))

    def fetch(self, key: str) -> None:
        """Ask the store what it holds of ``key`` now, so that the questions below are
        answered from memory (an object store answers over the network)."""
        self.ledger.fetch(key)

    def __contains__(self, key: str) -> bool:
        """Whether the message ``key`` was written (by this server or before a restart)."""
        return key in self.ledger

    def collision(self, key: str, digest: str, nonce: "str | None") -> "str | None":
        """Why the message ``key`` is another message than the one written under its key or
        boot (see ``Ledger.collision``); None when it is new or sent again."""
        return self.ledger.collision(key, digest, nonce)

    def stem(self, received: "Received") -> PurePath:
        """Where the outputs of a received message go, less their suffix."""
        return self.store.stem(output_stem(received))

    def write_signal(self, signal: np.ndarray, header: Header, stem: PurePath) -> "Path | str":
        """The decoded file, in the server's format; audio FLAC cannot hold (a rate it cannot
        say) as WAV instead, never refused: the recording is the sensor's."""
        fmt = "wav" if self.fmt == "flac" and io.flac_cannot_hold(header) else self.fmt
        return self.store.write_signal(signal, header, stem, fmt)

    def add_latents(self, stem: PurePath, latents: np.ndarray, size: int, label: int = -1,
                    name: str = "") -> Path:
        """A dataset row of one message's latents (``size``: its bytes as sent)."""
        return self.dataset.add(stem.name, latents, size, label, name, stem.name)

    def log(self, record: dict) -> None:
        """A line of metrics.jsonl."""
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()

    def record(self, key: str, file: "str | None", digest: "str | None" = None,
               nonce: "str | None" = None) -> None:
        """The message ``key`` (content ``digest``, from the sensor start ``nonce``) is
        written (its outputs durable): a line of the ledger."""
        self.ledger.record(key, PurePath(file).name if file else "", digest, nonce)
        with self.counting:
            self.written += 1

    def take_back(self, fields: dict, winner_output: "str | None") -> None:
        """Take back the outputs (``fields`` "file", "latents") of a message that lost the
        race for its key to another message, recorded by another server sharing the store
        (``RecordedElsewhere``) with the output ``winner_output``: each output but those of
        the recorded message, which have the same names in the shared store and dataset (one
        object per name: a conditional PUT never let the loser overwrite them). A latents
        folder of this server's own holds none of the winner's rows."""
        winner = PurePath(winner_output or "")
        latents = fields.get("latents")
        if fields.get("file") and fields["file"] != latents and \
                PurePath(fields["file"]).name != winner.name:
            self.store.remove(PurePath(fields["file"]).name)
        if latents:
            row = PurePath(latents).name  # the winner's output may be its row or a file
            if not self.dataset.shared or row not in (winner.name,
                                                      self.dataset.row_name(winner.stem)):
                self.dataset.remove(row)

    def close(self) -> None:
        self.metrics.close()
        self.store.close()

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_log(path: "str | Path") -> Path:
    """``path`` as a Path, or ValueError where it cannot be a log file (said at a start)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a file")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"{path}: a link to nothing ({os.readlink(path)})")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: no folder {path.parent} to write it in")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise ValueError(f"{path}: cannot be written here (permissions, or a read-only "
                         "file system)")
    return path


def open_log(path: "str | Path"):
    """A JSON-lines log (metrics.jsonl) opened to append to. A last line cut short (a full
    disk, then a crash before the rest was written) is ended first, so that the next record
    is not joined to it: a newline appended, never a cut (servers sharing a log append to
    it at once). Where it is no regular file (/dev/stdout, a FIFO) or cannot be read, it is
    appended to as it is; ValueError for a path that cannot be one."""
    path = check_log(path)
    try:
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"
            if cut:
                with open(path, "ab") as f:
                    f.write(b"\n")
    except OSError:  # a log this server may append to but not read: as it is
        pass
    try:
        return open(path, "a")
    except OSError as e:
        raise ValueError(f"{path}: cannot append to it ({e.strerror or e})") from None
