"""The server's per-message protocol, exactly once: a message is acknowledged only after its
outputs are durable and the ledger names it, so the sensor, which keeps it until then and
sends it again after any restart, never loses it; one already in the ledger is acknowledged
again and not written twice; one with other content under a key the ledger holds (a
collision) is refused with its own status, so that the sensor sends it under a new boot. A bad
message (corrupt, another model's, too large) is refused
and the sensor told; one that cannot be written (a full disk) is not acknowledged, so the
sensor keeps it."""
import math
import threading
import time
from typing import TYPE_CHECKING, Callable

from .delivery import RecordedElsewhere, message_digest, start_nonce
from ..firmware_bridge.framing import ACK_COLLISION, ACK_REJECTED, ACK_WRITTEN, Keys, LinkStats
from ..firmware_bridge.loops import Rejected
from ..runtime import Bitstream, Header, read_bitstream
from ..runtime.console import say
from ..runtime.modality import IMAGE
from .model import ServedModel
from .outputs import Outputs

if TYPE_CHECKING:
    from ..firmware_bridge.transports import Received
    from .fleet import Fleet

__all__ = ["Handler", "check_size", "check_budget", "LIMIT_NAMES", "BUDGET_NAMES"]

LIMIT_NAMES = ("the pixel limit", "the sample limit")  # how a refusal names each limit
BUDGET_NAMES = ("the decode memory budget", "the decode time budget")


def check_size(header: Header, max_pixels: float, max_samples: float,
               names: "tuple[str, str]" = LIMIT_NAMES) -> None:
    """Refuse a bitstream whose claimed size exceeds the limits, before any allocation.
    ``names`` say how the pixel and the sample limit were set (the CLI gives its options)."""
    if header.modality is IMAGE:
        pixels = math.prod(header.shape[:2])
        if pixels > max_pixels:
            raise Rejected(f"claims {header.shape[0]}x{header.shape[1]} = {pixels:,} pixels, "
                           f"over {names[0]} {max_pixels:,.0f}")
    elif math.prod(header.shape) > max_samples:
        raise Rejected(f"claims {math.prod(header.shape):,} samples, over {names[1]} "
                       f"{max_samples:,.0f}")


def check_budget(cost: "tuple[int, float]", max_bytes: float, max_seconds: float,
                 names: "tuple[str, str]" = BUDGET_NAMES) -> None:
    """Refuse a decode whose estimated (peak bytes, seconds) exceed the budgets, before it
    starts: one message's work is bounded whatever its shape claims."""
    memory, seconds = cost
    if memory > max_bytes:
        raise Rejected(f"decoding it would take about {memory / 2 ** 20:,.0f} MB, over "
                       f"{names[0]} {max_bytes / 2 ** 20:,.0f} MB")
    if seconds > max_seconds:
        raise Rejected(f"decoding it would take about {seconds:,.0f} s on this machine, "
                       f"over {names[1]} {max_seconds:g} s")


class Handler:
    """``handler(received)`` for each message of a receive loop (``serve_messages``): verify
    (CRC, model id, the size it claims against ``max_pixels`` and ``max_samples``, the
    decode's estimated peak memory and time against ``max_decode_bytes`` and
    ``max_decode_seconds``), decode or keep the latents, classify, write to ``outputs``,
    log, record in the ledger, then acknowledge (authenticated with the sensor's key from
    ``keys`` where given). A refused message raises ``Rejected``; one not written raises
    its OSError, unacknowledged. A collision is counted in ``collisions``. Each outcome is
    told to ``fleet`` (a ``Fleet``, for serve --http) where given. Thread-safe for messages
    of distinct keys (``serve_messages`` never hands one key to two workers): the ledger,
    metrics and acknowledgements are serialised under ``lock`` (the ledger's records under
    its own, outside it, as an object store's requests are), and a boot's start nonce is
    claimed while its messages are in flight, so that two starts sharing a boot collide even
    when neither is in the ledger yet."""

    def __init__(self, model: ServedModel, outputs: Outputs, keys: "Keys | None" = None,
                 max_pixels: float = 64e6, max_samples: float = 64e6,
                 limit_names: "tuple[str, str]" = LIMIT_NAMES,
                 log: "Callable[[str], None]" = say, max_decode_bytes: float = math.inf,
                 max_decode_seconds: float = math.inf,
                 budget_names: "tuple[str, str]" = BUDGET_NAMES,
                 fleet: "Fleet | None" = None):
        if model.decoder is None and model.classifier is None and outputs.dataset is None:
            raise ValueError("a server that does not decode keeps nothing without a latents "
                             "dataset or a classifier")
        self.model, self.outputs, self.keys, self.log = model, outputs, keys, log
        self.limits = (max_pixels, max_samples, limit_names)
        self.collisions = 0
        self.budget = (max_decode_bytes, max_decode_seconds, budget_names)
        self.fleet = fleet
        self.lock = threading.Lock()
        self.flying = {}  # "SENSOR-BOOT" -> [start nonce, messages of it in flight]
        self.rows = threading.Lock()  # the latents dataset numbers its rows

    def summary(self, handled: int, rejected: int, failed: int, stats: LinkStats,
                seconds: float) -> str:
        """serve's last two lines: what the receive loop's ``handled`` messages came to
        (written, acknowledged again, collisions), ``rejected`` and ``failed`` (not
        written), in ``seconds``; then the receiver's ``stats`` (frames, heartbeats,
        corruption, authentication, rate, losses)."""
        written = self.outputs.written
        return (f"{'decoded' if self.model.decoder else 'kept'} {written}, rejected "
                f"{rejected}, not written {failed}, acknowledged again "
                f"{handled - written - self.collisions} (sent again after they were written), "
                f"collisions {self.collisions}; {seconds:,.1f} s, "
                f"{written / max(seconds, 1e-9):,.2f} written a second\n"
                f"frames {stats.frames} (heartbeats {stats.heartbeats}; again "
                f"{stats.duplicates}: dropped, or a written message's answered again), corrupted "
                f"{stats.corrupted} ({stats.skipped_bytes} bytes skipped), old-version "
                f"{stats.old_version}, unauthenticated {stats.unauthenticated}, rate-limited "
                f"{stats.rate_limited}, lost messages {stats.lost}")

    def _tell(self, outcome, received, **details):
        if self.fleet is not None:
            self.fleet.message(outcome, received, **details)

    def _ack(self, received, status):
        """Answer the sender; False where the link has no way back."""
        return received.ack(status, self.keys.keys.get(received.sensor) if self.keys else None)

    def __call__(self, received: "Received") -> None:
        digest, nonce = message_digest(received.message), start_nonce(received.meta)
        boot = received.key.rsplit("-", 1)[0]
        self.outputs.fetch(received.key)  # an object store's requests outside the lock
        with self.lock:
            clash = self.outputs.collision(received.key, digest, nonce) or \
                self._boot_taken(boot, nonce)
            if clash:
                self._collide(received, clash, nonce)
                self._tell("collision", received)
                return
            if received.key in self.outputs:  # sent again: its outputs are already there
                self._written_before(received, "already written", "acknowledged again")
                return
            self.flying.setdefault(boot, [nonce, 0])[1] += 1
        try:
            self._write(received, digest, nonce)
        finally:
            with self.lock:
                self.flying[boot][1] -= 1
                if not self.flying[boot][1]:
                    del self.flying[boot]

    def _boot_taken(self, boot, nonce):
        kept = self.flying.get(boot, [None])[0]
        if None not in (kept, nonce) and kept != nonce:
            return "another start of this sensor is sending under this boot number"
        return None

    def _acceptable(self, header):
        """Refuses (Rejected) what the header alone shows this server will not decode: another
        model, a size over the limits, a decode over the budgets; before the tile table is
        read, so a message that claims much costs nothing."""
        self.model.check(header)
        check_size(header, *self.limits)
        check_budget(self.model.cost(header), *self.budget)

    def _write(self, received, digest, nonce):
        start = time.perf_counter()
        stem = self.outputs.stem(received)
        try:
            stream = read_bitstream(received.message, accept=self._acceptable)
            fields = self._keep(stream, stem, len(received.message))
        except Exception as e:  # noqa: BLE001 - decoding is a function of the bytes alone
            if _of_this_machine(e):  # a full disk, no memory: not acknowledged, so that
                self._tell("not_written", received, error=e)  # the sensor keeps the
                raise  # message and sends it again
            self._ack(received, ACK_REJECTED)
            self._tell("rejected", received)
            raise Rejected(e if isinstance(e, Rejected) else f"{type(e).__name__}: {e}") \
                from None
        record = {"time": time.time(), "sender": received.sender, "key": received.key,
                  "sensor": f"{received.sensor:016x}", "boot": received.boot,
                  "sequence": received.sequence, "source": received.meta.get("source"),
                  "captured": received.meta.get("time"), "bytes": len(received.message),
                  "decode_s": time.perf_counter() - start, **fields}
        # In the ledger first: a metrics line and an acknowledgement are only of a written
        # message (the ledger serialises its own records).
        try:
            self.outputs.record(received.key, fields["file"], digest, nonce)
        except RecordedElsewhere as e:
            self._recorded_elsewhere(received, e, fields, nonce)
            return
        with self.lock:
            self.outputs.log(record)
            self._ack(received, ACK_WRITTEN)
        received.written()
        self._tell("written", received, seconds=record["decode_s"], fields=fields)
        label = f" ({fields['label']}, {fields['confidence']:.0%})" if "label" in fields else ""
        self.log(f"{received.sender} {received.key}: {len(received.message):,} bytes -> "
                 f"{fields['file'] or 'a label'}{label}")

    def _recorded_elsewhere(self, received, elsewhere, fields, nonce):
        """Another server sharing the store recorded this key while this one wrote it: the
        same message is acknowledged as written; another one is a collision, and its outputs,
        which no record names, are taken back (never the other server's)."""
        if elsewhere.collision is not None:
            self.outputs.take_back(fields, elsewhere.output)
        with self.lock:
            if elsewhere.collision is None:
                self._written_before(received, "written by another server meanwhile",
                                     "acknowledged")
            else:
                self._collide(received, elsewhere.collision, nonce)
                self._tell("collision", received)

    def _written_before(self, received, how, answered):
        """A message whose outputs are already there (``how``): acknowledged as written
        (``answered`` says so) where the link has a way back."""
        said = f"; {answered}" if self._ack(received, ACK_WRITTEN) else \
            " (a copy; nothing to answer on this link)"
        self._tell("duplicate", received)
        self.log(f"{received.sender} {received.key}: {how}{said}")

    def _collide(self, received, why, nonce):
        """Two messages under one key: never drop either. A sensor that sends its start's
        nonce knows ACK_COLLISION (it sends the message again under a new boot); an older
        one is not acknowledged at all, so that it keeps the message."""
        self.collisions += 1
        if received.reply is None:
            what = ("not written, and this link has no way back to say so: number the "
                    "captures apart (walloc_encode --boot/--sequence)")
        elif nonce is not None:
            self._ack(received, ACK_COLLISION)
            what = "refused as a collision; the sensor sends it again under a new boot"
        else:
            what = "not acknowledged (this sensor does not know collisions; it keeps it)"
        self.log(f"COLLISION {received.sender} {received.key}: {why} (two starts of sensor "
                 f"{received.sensor:016x} took the same boot: a shared sensor id, a copied "
                 f"or restored state folder); {what}")

    def _keep(self, stream: Bitstream, stem, size):
        """Decode, classify and keep one verified bitstream; returns the metrics fields."""
        fields, latents = {}, None
        if self.model.decoder is not None:
            signal = self.model.decode(stream)
            fields["shape"] = list(signal.shape)
            fields["file"] = str(self.outputs.write_signal(signal, stream.header, stem))
        else:  # a bitstream that does not decode is refused here too
            latents = stream.latents()
        if self.outputs.dataset is None and self.model.classifier is None:
            return fields
        latents = stream.latents() if latents is None else latents
        label, name = -1, ""
        if self.model.classifier is not None:
            label, name, confidence = self.model.classify(latents)
            fields.update(label=name, confidence=confidence)
        if self.outputs.dataset is not None:
            with self.rows:
                fields["latents"] = str(self.outputs.add_latents(stem, latents, size, label,
                                                                 name))
        fields.setdefault("file", fields.get("latents"))
        return fields


def _of_this_machine(error):
    """Whether ``error`` comes of this server's state, not of the message: a full disk or
    store (OSError), or memory running out (MemoryError; torch's and onnxruntime's own
    out-of-memory errors say so in their message)."""
    return isinstance(error, (OSError, MemoryError)) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())
