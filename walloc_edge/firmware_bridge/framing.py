"""Wire framing: messages (e.g. .wlc bitstreams) cut into CRC-checked frames, and put back
together on the other side of a lossy link. Spec: docs/framing.md (version 2).

A frame is ``sync · header · header CRC32 · payload · payload CRC32 [· MAC]``. The header
names the sender (a 64-bit sensor id and the sensor's boot number) and the message (its
sequence number within that boot), so that several sensors, and one sensor across reboots,
never collide. With a key, each frame carries a truncated HMAC-SHA256 over header and
payload, and a receiver that has keys drops frames that lack a valid one before they take
any memory. A byte-stream receiver (:class:`FrameReader`) finds frames by their sync word
and header CRC, so after corrupted, dropped or inserted bytes it resynchronises at the next
good frame; a length is believed only once the header CRC vouches for it, and never beyond
``MAX_PAYLOAD``. A message may start with a metadata block (:func:`pack_meta`, flagged
``FLAG_META``); ``reassembly.Reassembler`` joins the fragments of a message again. A
heartbeat (:func:`encode_heartbeat`, flagged ``FLAG_HEARTBEAT``) is a frame of no fragments
(index and count 0) holding a sensor's status: receivers older than heartbeats refuse a count
of 0 as a damaged header, so they drop it and never take it for a message.

The server's acknowledgement travels back as an :func:`encode_ack` record (TCP, MQTT).
"""
import hashlib
import hmac
import json
import struct
import zlib
from dataclasses import dataclass

__all__ = ["SYNC", "ACK_SYNC", "VERSION", "MAX_PAYLOAD", "HEADER", "MAC_SIZE", "Frame",
           "FramingError", "frames_for", "encode_frame", "decode_frame", "FrameReader",
           "LinkStats", "Keys", "pack_meta", "unpack_meta", "encode_ack", "AckReader", "Ack",
           "ACK_WRITTEN", "ACK_REJECTED", "ACK_COLLISION", "FLAG_MAC", "FLAG_META",
           "FLAG_HEARTBEAT", "MAX_HEARTBEAT", "encode_heartbeat", "unpack_heartbeat",
           "GARBAGE_LIMIT"]

SYNC = b"\xa5WLF"
ACK_SYNC = b"\xa5WLA"
VERSION = 2
# sync, version, flags, sensor, boot, sequence, fragment index, fragment count, payload length
HEADER = struct.Struct("<4sBBQIIHHH")
V1_HEADER = struct.Struct("<4sBBHIHHH")  # version 1 (no sensor identity), refused by name
MAX_PAYLOAD = 65000                    # bytes of one frame's payload (UDP frames use less)
MAC_SIZE = 16                          # HMAC-SHA256, truncated to 128 bits
OVERHEAD = HEADER.size + 8 + MAC_SIZE  # the two CRC32s and a MAC: the most a frame adds
FLAG_MAC = 1                           # a MAC follows the payload CRC
FLAG_META = 2                          # the message starts with a metadata block (first frame)
FLAG_HEARTBEAT = 4                     # a sensor's status, not part of any message (count 0)
MAX_HEARTBEAT = 4096                   # bytes of a heartbeat's status; a larger one is ignored
_U32 = struct.Struct("<I")
_META = struct.Struct("<H")  # the length of a metadata block


class FramingError(ValueError):
    """A datagram that is not one valid frame; ``counter`` names the LinkStats field that
    counts it."""

    def __init__(self, message, counter="corrupted"):
        super().__init__(message)
        self.counter = counter


@dataclass(frozen=True)
class Frame:
    sensor: int
    boot: int
    sequence: int
    index: int
    count: int
    payload: bytes
    flags: int = 0


def _mac(key, header, payload):
    return hmac.new(key, header + payload, hashlib.sha256).digest()[:MAC_SIZE]


def encode_frame(frame: Frame, key: bytes | None = None) -> bytes:
    """The bytes of one frame; with ``key`` (bytes), authenticated by a MAC."""
    if frame.flags & FLAG_HEARTBEAT:
        if frame.index or frame.count:
            raise ValueError("a heartbeat has no fragments (index and count 0)")
    elif not 0 < frame.count <= 0xFFFF or not 0 <= frame.index < frame.count:
        raise ValueError(f"fragment {frame.index} of {frame.count} is not valid")
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    flags = (frame.flags & ~FLAG_MAC) | (FLAG_MAC if key else 0)
    header = HEADER.pack(SYNC, VERSION, flags, frame.sensor, frame.boot,
                         frame.sequence & 0xFFFFFFFF, frame.index, frame.count,
                         len(frame.payload))
    parts = [header, _U32.pack(zlib.crc32(header)), frame.payload,
             _U32.pack(zlib.crc32(frame.payload))]
    if key:
        parts.append(_mac(key, header, frame.payload))
    return b"".join(parts)


def frames_for(message, sensor, boot, sequence, max_payload=MAX_PAYLOAD, key=None,
               flags=0):
    """The frames (bytes) that carry ``message``: fragments of at most ``max_payload``."""
    max_payload = min(max_payload, MAX_PAYLOAD)
    count = max(1, -(-len(message) // max_payload))
    if count > 0xFFFF:
        raise ValueError(f"a {len(message)}-byte message needs more than 65535 fragments of "
                         f"{max_payload} bytes")
    return [encode_frame(Frame(sensor, boot, sequence, i, count,
                               message[i * max_payload:(i + 1) * max_payload], flags), key)
            for i in range(count)]


def encode_heartbeat(sensor: int, boot: int, number: int, status: dict,
                     key: bytes | None = None) -> bytes:
    """The frame of heartbeat ``number`` of a sensor's start: ``status`` as compact JSON."""
    payload = json.dumps(status, separators=(",", ":")).encode()
    if len(payload) > MAX_HEARTBEAT:
        raise ValueError(f"a heartbeat's status is over {MAX_HEARTBEAT} bytes")
    return encode_frame(Frame(sensor, boot, number & 0xFFFFFFFF, 0, 0, payload,
                              FLAG_HEARTBEAT), key)


def unpack_heartbeat(payload: bytes) -> dict:
    """The status a heartbeat holds; {} when it is damaged or too large."""
    if len(payload) > MAX_HEARTBEAT:
        return {}
    try:
        status = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return {}
    return status if isinstance(status, dict) else {}


def pack_meta(message, meta):
    """``message`` with a metadata block in front (its frames then carry FLAG_META): the
    block's length (uint16), then the metadata as compact JSON."""
    block = json.dumps(meta, separators=(",", ":")).encode()
    if len(block) > 0xFFFF:
        raise ValueError("message metadata is over 64 KB")
    return _META.pack(len(block)) + block + message


def unpack_meta(data):
    """(meta dict, message) of a FLAG_META message; a damaged block gives {} and the rest."""
    if len(data) < _META.size:
        return {}, data
    (size,) = _META.unpack_from(data)
    try:
        meta = json.loads(data[_META.size:_META.size + size])
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return {}, data[_META.size + size:]
    return (meta if isinstance(meta, dict) else {}), data[_META.size + size:]


def _is_v1_header(data, offset):
    """A version-1 frame header (valid CRC) at ``offset``: an old sensor, refused by name."""
    end = offset + V1_HEADER.size
    return (len(data) >= end + 4 and data[offset + 4] == 1 and
            _U32.unpack_from(data, end)[0] == zlib.crc32(bytes(data[offset:end])))


def _parse_header(data, offset=0):
    """(header bytes, fields, flags, payload length) if a valid header starts at ``offset``,
    else None."""
    if len(data) - offset < HEADER.size + 4:
        return None
    header = bytes(data[offset:offset + HEADER.size])
    if _U32.unpack_from(data, offset + HEADER.size)[0] != zlib.crc32(header):
        return None
    sync, version, flags, sensor, boot, sequence, index, count, length = HEADER.unpack(header)
    fragments = index == count == 0 if flags & FLAG_HEARTBEAT else index < count
    if sync != SYNC or version != VERSION or length > MAX_PAYLOAD or not fragments:
        return None
    return header, (sensor, boot, sequence, index, count), flags, length


def _frame_size(flags, length):
    return HEADER.size + 4 + length + 4 + (MAC_SIZE if flags & FLAG_MAC else 0)


class Keys:
    """Per-sensor keys: sensor id → key bytes. Empty: frames are not authenticated (any MAC
    is ignored). Otherwise a frame is accepted only from a listed sensor with a valid MAC."""

    def __init__(self, keys=None):
        self.keys = dict(keys or {})

    def __bool__(self):
        return bool(self.keys)

    def accepts(self, header, fields, flags, payload, tag):
        if not self.keys:
            return True
        key = self.keys.get(fields[0])
        return bool(key and flags & FLAG_MAC and hmac.compare_digest(
            tag, _mac(key, header, payload)))


def decode_frame(datagram: bytes, keys: "Keys | None" = None) -> Frame:
    """The Frame in one datagram (UDP); FramingError if it is not exactly one valid frame
    (or, with ``keys``, not authenticated)."""
    parsed = _parse_header(datagram)
    if parsed is None:
        if _is_v1_header(datagram, 0):
            raise FramingError("a version-1 frame (from walloc-edge 0.1, without sensor "
                               "identity): update the sensor's walloc-edge", "old_version")
        raise FramingError("not a frame (bad sync, version or header CRC)")
    header, fields, flags, length = parsed
    start = HEADER.size + 4
    if len(datagram) != _frame_size(flags, length):
        raise FramingError(f"datagram of {len(datagram)} bytes does not hold its "
                           f"{length}-byte payload")
    payload = bytes(datagram[start:start + length])
    if _U32.unpack_from(datagram, start + length)[0] != zlib.crc32(payload):
        raise FramingError("payload CRC mismatch")
    tag = bytes(datagram[start + length + 4:])
    if keys and not keys.accepts(header, fields, flags, payload, tag):
        raise FramingError(f"frame from sensor {fields[0]:016x} is not authenticated",
                           "unauthenticated")
    return Frame(*fields, payload, flags)


@dataclass
class LinkStats:
    frames: int = 0
    corrupted: int = 0       # frames whose header or payload failed its CRC
    skipped_bytes: int = 0   # bytes thrown away while resynchronising
    old_version: int = 0     # version-1 frames, refused
    unauthenticated: int = 0  # frames without a valid MAC while keys are configured
    duplicates: int = 0
    rate_limited: int = 0    # messages dropped because their sensor was over --rate-limit
    messages: int = 0
    lost: int = 0            # messages never completed (sequence gaps and given-up partials)
    heartbeats: int = 0      # heartbeat frames (a sensor's status; also counted in frames)


class FrameReader:
    """Frames out of a byte stream that may be corrupted, truncated or interleaved with noise.

    ``feed(data)`` returns the complete, CRC-checked (and with ``keys``, authenticated)
    frames found so far; the buffer holds at most one frame's worth of bytes. ``garbage``
    counts the bytes since the last frame taken that were skipped, unauthenticated or
    checked in vain (a payload under a valid header whose CRC fails: each such header costs
    a CRC of up to 65 KB, however close it follows the last). On a link that loses no
    bytes such a sender is no sensor of this server (or has the wrong key), and parsing
    what it sends costs the server's CPU (every sync word a header to check): the reader
    stops reading (``given_up``) past ``give_up_after`` bytes of it (None: never), or as
    soon as the ``budget`` it shares with the receiver's other readers (``take(n)``) is
    spent, so that no number of senders or connections parses more than the budget.
    """

    def __init__(self, stats=None, keys=None, give_up_after=None, budget=None):
        self.buffer = bytearray()
        self.stats = stats or LinkStats()
        self.keys = keys or Keys()
        self.garbage, self.give_up_after, self.budget = 0, give_up_after, budget
        self.over_budget = False

    @property
    def given_up(self):
        return self.over_budget or (self.give_up_after is not None and
                                    self.garbage > self.give_up_after)

    def _waste(self, n):
        """``n`` bytes of work spent on what was no frame taken."""
        self.garbage += n
        if self.budget is not None and not self.budget.take(n):
            self.over_budget = True

    def _skip(self, n):
        self.stats.skipped_bytes += n
        self._waste(n)
        del self.buffer[:n]

    def feed(self, data):
        if self.given_up:
            return []
        self.buffer += data
        frames = []
        while not self.given_up:
            start = self.buffer.find(SYNC)
            if start < 0:  # keep a possible partial sync word at the end
                self._skip(max(0, len(self.buffer) - (len(SYNC) - 1)))
                return frames
            if start:
                self._skip(start)
            if len(self.buffer) < HEADER.size + 4:
                if _is_v1_header(self.buffer, 0):
                    self._drop_v1()
                    continue
                return frames
            parsed = _parse_header(self.buffer)
            if parsed is None:  # an old frame, a false sync or a damaged header
                if _is_v1_header(self.buffer, 0):
                    self._drop_v1()
                    continue
                self.stats.corrupted += self.buffer[:4] == SYNC
                self._skip(1)
                continue
            header, fields, flags, length = parsed
            end = _frame_size(flags, length)
            if len(self.buffer) < end:
                return frames
            body = HEADER.size + 4
            payload = bytes(self.buffer[body:body + length])
            if _U32.unpack_from(self.buffer, body + length)[0] != zlib.crc32(payload):
                self.stats.corrupted += 1
                self._waste(length)  # the payload checked, for nothing: its cost counts
                self._skip(1)
                continue
            tag = bytes(self.buffer[body + length + 4:end])
            del self.buffer[:end]
            if not self.keys.accepts(header, fields, flags, payload, tag):
                self.stats.unauthenticated += 1
                self._waste(end)
                continue
            self.stats.frames += 1
            self.garbage = 0
            frames.append(Frame(*fields, payload, flags))
        self.buffer.clear()  # given up: nothing more is read
        return frames

    def finish(self):
        """The stream has ended, so a frame the buffer still waits for will never complete:
        counted as corrupted and skipped, and the whole frames behind it (a frame cut short
        in the middle of a capture) returned, as ``feed`` returns frames."""
        frames = []
        while self.buffer:
            self.stats.corrupted += self.buffer.startswith(SYNC)
            self._skip(1)
            frames += self.feed(b"")
        return frames

    def _drop_v1(self):
        self.stats.old_version += 1
        self._skip(V1_HEADER.size + 4)


GARBAGE_LIMIT = 1 << 16  # bytes a sender on a link that loses none may send beside frames

ACK = struct.Struct("<4sBBQII")  # sync, version, status, sensor, boot, sequence
ACK_WRITTEN, ACK_REJECTED = 0, 1  # written durably (or already), or refused for good
ACK_COLLISION = 2  # other content holds this key: keep the message, send it under a new boot


@dataclass(frozen=True)
class Ack:
    status: int
    sensor: int
    boot: int
    sequence: int


def encode_ack(ack: "Ack", key: bytes | None = None) -> bytes:
    """An acknowledgement record: ``ACK · CRC32 [· MAC]`` (MAC with ``key``)."""
    body = ACK.pack(ACK_SYNC, VERSION, ack.status | (0x80 if key else 0), ack.sensor,
                    ack.boot, ack.sequence)
    tail = _mac(key, body, b"") if key else b""
    return body + _U32.pack(zlib.crc32(body)) + tail


class AckReader:
    """Acknowledgements out of a byte stream (the server's side of a TCP connection); with a
    ``key``, only authenticated ones (a forged ack could make a sensor drop its data)."""

    def __init__(self, key=None):
        self.buffer, self.key = bytearray(), key

    def feed(self, data):
        self.buffer += data
        acks = []
        while True:
            start = self.buffer.find(ACK_SYNC)
            if start < 0:
                del self.buffer[:max(0, len(self.buffer) - 3)]
                return acks
            del self.buffer[:start]
            size = ACK.size + 4
            if len(self.buffer) < size:
                return acks
            body = bytes(self.buffer[:ACK.size])
            _, version, status, sensor, boot, sequence = ACK.unpack(body)
            if _U32.unpack_from(self.buffer, ACK.size)[0] != zlib.crc32(body) or \
                    version != VERSION:
                del self.buffer[:1]
                continue
            keyed = bool(status & 0x80)
            total = size + (MAC_SIZE if keyed else 0)
            if len(self.buffer) < total:
                return acks
            tag = bytes(self.buffer[size:total])
            del self.buffer[:total]
            if self.key and not (keyed and hmac.compare_digest(tag, _mac(self.key, body, b""))):
                continue
            acks.append(Ack(status & 0x7F, sensor, boot, sequence))
