"""What serve has seen of its sensors, for ``serve --http`` (``http.py``: the dashboard and
Prometheus metrics): each message's outcome, bytes and decode time, per sensor its last
message, counts, losses, latest frame and label, its last heartbeat, and the receiver's link
counters, read when asked so that the message path only adds to a few counters.

At most ``max_sensors`` sensors are tracked one by one (1,000 by default): what comes from
more is counted under the sensor ``other``, so that the metrics' sensor label (and the
memory) stays bounded whatever ids frames claim.
"""
import dataclasses
import math
import os
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from ..firmware_bridge.transports import Received, Receiver
    from ..firmware_bridge.transports.base import Heartbeat
    from .store import ObjectStore

__all__ = ["Fleet", "OUTCOMES", "OTHER", "DECODE_BUCKETS"]

OUTCOMES = ("written", "rejected", "not_written", "duplicate", "collision")
OTHER = "other"  # the sensors beyond the cap, together
DECODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HEARTBEAT_NUMBERS = ("spool", "spool_bytes", "in_flight", "dropped", "boot", "uptime")
HEARTBEAT_TEXTS = ("version", "backend", "name", "state")  # name: the --sensor-id a sensor
# was given; state: "stopped" in the last heartbeat of a sensor that stopped cleanly
THUMBNAIL = (160, 160)
FAILED_WRITE_HOLDS = 300  # seconds a failed write keeps /healthz at 503 (none written since)


class Rate:
    """Counts per ``width`` seconds over the last ``size`` such intervals, in fixed memory."""

    def __init__(self, width, size):
        self.width, self.size = width, size
        self.counts, self.epochs = [0] * size, [-1] * size

    def add(self, now):
        epoch = int(now // self.width)
        i = epoch % self.size
        if self.epochs[i] != epoch:
            self.epochs[i], self.counts[i] = epoch, 0
        self.counts[i] += 1

    def series(self, now):
        """The counts, oldest first, the current (partial) interval last."""
        last = int(now // self.width)
        return [self.counts[e % self.size] if self.epochs[e % self.size] == e else 0
                for e in range(last - self.size + 1, last + 1)]


@dataclasses.dataclass
class Sensor:
    """What the fleet knows of one sensor (or of ``other``)."""
    id: str
    first_seen: float
    last_seen: float = 0.0
    sender: str = ""
    messages: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    bytes: int = 0
    rate: Rate = dataclasses.field(default_factory=lambda: Rate(5, 12))  # the last minute
    frames: int = 0          # outputs written: the latest one's number
    frame: "Path | None" = None  # the latest output file
    label: "str | None" = None
    confidence: "float | None" = None
    heartbeats: int = 0
    heartbeat: "dict | None" = None  # the last one's status, with its time
    thumbnail: "tuple[Path, bytes] | None" = None  # (for which file, JPEG)


class Fleet:
    """A thread-safe record of what serve receives: ``message()`` from the handler,
    ``heartbeat()`` from the receiver (``watch``), and ``snapshot()``, ``health()`` and
    ``thumbnail()`` for the HTTP side. ``out`` is the output folder (or object store) that
    /healthz probes."""

    def __init__(self, out: "str | Path | ObjectStore", max_sensors: int = 1000):
        self.out = out if hasattr(out, "probe") else Path(out)
        self.max_sensors = max_sensors
        self.lock = threading.Lock()
        self.sensors = {}
        self.totals = dict.fromkeys(OUTCOMES, 0)
        self.bytes = 0
        self.decode = [0] * (len(DECODE_BUCKETS) + 1)  # per bucket; the last is +Inf
        self.decode_sum = 0.0
        self.rate = Rate(10, 60)  # the last ten minutes
        self.started = time.time()
        self.written_at = self.failed_at = 0.0  # time.monotonic()
        self.failure = ""
        self.receiver = None
        self.probed = (float("-inf"), True, "ok")  # the last write probe: (when, ok, why)

    def watch(self, receiver: "Receiver") -> None:
        """Read link counters from ``receiver`` and take its heartbeats."""
        self.receiver = receiver
        receiver.on_heartbeat = self.heartbeat

    def _sensor(self, sensor, now):
        """The record of a sensor id (an int), ``other`` beyond the cap; lock held."""
        name = f"{sensor:016x}"
        record = self.sensors.get(name)
        if record is None:
            if len(self.sensors) - (OTHER in self.sensors) >= self.max_sensors:
                name = OTHER
                record = self.sensors.get(OTHER)
            if record is None:
                record = self.sensors[name] = Sensor(name, now)
        record.last_seen = now
        return record

    def message(self, outcome: str, received: "Received", seconds: "float | None" = None,
                fields: "dict | None" = None, error: "Exception | None" = None) -> None:
        """One message's outcome (one of OUTCOMES); ``seconds`` and ``fields`` (the metrics
        line's) for one written, ``error`` for one not written."""
        now, size = time.time(), len(received.message)
        with self.lock:
            record = self._sensor(received.sensor, now)
            record.sender = received.sender
            record.messages[outcome] += 1
            record.bytes += size
            record.rate.add(now)
            self.totals[outcome] += 1
            self.bytes += size
            self.rate.add(now)
            if outcome == "not_written":  # health's clock: one a clock step does not move
                self.failed_at = time.monotonic()
                self.failure = getattr(error, "strerror", None) or str(error)
            if outcome != "written":
                return
            self.written_at = time.monotonic()
            self.decode_sum += seconds or 0.0
            self.decode[next((i for i, edge in enumerate(DECODE_BUCKETS)
                              if (seconds or 0.0) <= edge), len(DECODE_BUCKETS))] += 1
            fields = fields or {}
            record.frames += 1
            record.frame = Path(fields["file"]) if fields.get("file") else None
            record.label, record.confidence = fields.get("label"), fields.get("confidence")

    def heartbeat(self, beat: "Heartbeat") -> None:
        """A sensor's heartbeat: its status is kept (known fields only, bounded)."""
        now = time.time()
        status = {k: beat.status[k] for k in HEARTBEAT_NUMBERS
                  if isinstance(beat.status.get(k), (int, float)) and
                  not isinstance(beat.status[k], bool) and _finite(beat.status[k])}
        status.update({k: beat.status[k][:64] for k in HEARTBEAT_TEXTS
                       if isinstance(beat.status.get(k), str)})
        with self.lock:
            record = self._sensor(beat.sensor, now)
            record.heartbeats += 1
            if record.id != OTHER:  # the others' statuses would mix several sensors
                record.sender = beat.sender
                record.heartbeat = {**status, "time": now, "number": beat.number}

    def link(self) -> dict:
        """The receiver's counters (LinkStats), the bytes its memory account holds, its
        queue depth and open connections, and the messages lost per sensor id."""
        if self.receiver is None:
            return {"lost_by_sensor": {}}
        receiver = self.receiver
        with receiver.lock:
            receiver.reassembler.count_lost()
            lost = receiver.reassembler.lost_by_sensor()
            link = dataclasses.asdict(receiver.stats)
            link["held_bytes"] = receiver.held_bytes
        link["queue"] = receiver.queue.qsize()
        link["connections"] = receiver.connections
        link["lost_by_sensor"] = lost
        return link

    def health(self) -> "tuple[bool, str]":
        """(healthy, why): receiving (an MQTT server: connected to its broker), the output
        folder takes a small write (probed at most once a second), and no message failed to
        be written since the last one was, in the last FAILED_WRITE_HOLDS seconds."""
        if self.receiver is not None and self.receiver.stopped.is_set():
            return False, "not receiving"
        if self.receiver is not None and (self.receiver.failed or self.receiver.down):
            return False, self.receiver.failed or self.receiver.down
        now = time.monotonic()  # a clock set back an hour kept an old probe's "ok" that long
        with self.lock:
            failed = self.failed_at > self.written_at and now - self.failed_at < \
                FAILED_WRITE_HOLDS
            failure, probed = self.failure, self.probed
        if now - probed[0] >= 1:
            probed = self.probed = (now, *self._probe())
        if not probed[1]:
            return False, probed[2]
        if failed:
            return False, f"the last message could not be written ({failure})"
        return True, "ok"

    def _probe(self):
        if not isinstance(self.out, Path):  # an object store
            try:
                self.out.probe()
            except ValueError as e:
                return False, str(e)
            return True, "ok"
        path = self.out / f".healthz-{os.getpid()}-{threading.get_ident()}"
        try:
            with open(path, "wb") as f:
                f.write(b"ok")
                f.flush()
                os.fsync(f.fileno())
            path.unlink()
        except OSError as e:
            return False, f"cannot write the output folder ({e.strerror or e})"
        return True, "ok"

    def snapshot(self) -> dict:
        """Everything above as plain data (the dashboard's /fleet.json; /metrics reads it)."""
        link, (healthy, why) = self.link(), self.health()
        lost = link.pop("lost_by_sensor")
        now = time.time()
        with self.lock:
            tracked = {int(k, 16) for k in self.sensors if k != OTHER}
            lost_named = {f"{s:016x}" if s in tracked else OTHER: 0 for s in lost}
            for sensor, n in lost.items():
                lost_named[f"{sensor:016x}" if sensor in tracked else OTHER] += n
            sensors = [self._row(r, now, lost_named.get(r.id, 0))
                       for _, r in sorted(self.sensors.items(), key=lambda i: i[0] == OTHER)]
            cumulative = [sum(self.decode[:i + 1]) for i in range(len(self.decode))]
            return {
                "time": now, "started": self.started, "healthy": healthy, "health": why,
                "max_sensors": self.max_sensors,
                "messages": dict(self.totals), "bytes": self.bytes,
                "decode_seconds": {"le": list(DECODE_BUCKETS), "cumulative": cumulative,
                                   "sum": self.decode_sum},
                "rate": {"width": self.rate.width, "counts": self.rate.series(now)},
                "link": link, "sensors": sensors}

    @staticmethod
    def _row(record, now, lost):
        image = record.frame is not None and \
            record.frame.suffix.lower() in Image.registered_extensions()
        return {"id": record.id, "sender": record.sender, "first_seen": record.first_seen,
                "last_seen": record.last_seen, "per_minute": sum(record.rate.series(now)),
                "messages": dict(record.messages), "bytes": record.bytes,
                "rejected": record.messages["rejected"], "lost": lost,
                "frame": record.frames if image else None, "label": record.label,
                "confidence": record.confidence, "heartbeats": record.heartbeats,
                "heartbeat": dict(record.heartbeat) if record.heartbeat else None}

    def thumbnail(self, sensor: str) -> "bytes | None":
        """The latest frame of ``sensor`` (its id as 16 hex digits), as a small JPEG made
        from its output file when first asked; None without one (audio, latents only, a
        format Pillow does not read, a file removed)."""
        with self.lock:
            record = self.sensors.get(sensor)
            path = record and record.frame
            if path is None:
                return None
            if record.thumbnail and record.thumbnail[0] == path:
                return record.thumbnail[1]
        try:
            with Image.open(path) as image:
                image.thumbnail(THUMBNAIL)
                image = image if image.mode in ("RGB", "L") else image.convert("RGB")
                data = BytesIO()
                image.save(data, "JPEG", quality=85)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        with self.lock:
            record.thumbnail = (path, data.getvalue())
        return data.getvalue()


def _finite(number):
    """Whether a heartbeat's number is one to show: finite, and an integer of sane size
    (math.isfinite raises on a 400-digit one)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False
