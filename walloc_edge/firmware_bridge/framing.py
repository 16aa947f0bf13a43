"""Wire framing: messages (e.g. .wlc bitstreams) cut into CRC-checked frames, and put back
together on the other side of a lossy link. Spec: docs/framing.md.

A frame is ``sync · header · header CRC32 · payload · payload CRC32``. A byte-stream
receiver (:class:`FrameReader`) finds frames by their sync word and header CRC, so after
corrupted, dropped or inserted bytes it resynchronises at the next good frame; a length is
believed only once the header CRC vouches for it, and never beyond ``MAX_PAYLOAD``.
:class:`Reassembler` joins fragments (in any order), drops duplicates, and counts the
messages lost, from the sequence numbers.
"""
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["SYNC", "VERSION", "MAX_PAYLOAD", "HEADER", "Frame", "FramingError", "frames_for",
           "encode_frame", "decode_frame", "FrameReader", "Reassembler", "LinkStats"]

SYNC = b"\xa5WLF"
VERSION = 1
HEADER = struct.Struct("<4sBBHIHHH")  # sync, version, flags, stream, sequence, index, count, length
MAX_PAYLOAD = 65000                    # bytes of one frame's payload (UDP frames use less)
OVERHEAD = HEADER.size + 8             # the two CRC32s
_U32 = struct.Struct("<I")


class FramingError(ValueError):
    """A datagram that is not one valid frame."""


@dataclass(frozen=True)
class Frame:
    stream: int
    sequence: int
    index: int
    count: int
    payload: bytes


def encode_frame(frame):
    if not 0 < frame.count <= 0xFFFF or not 0 <= frame.index < frame.count:
        raise ValueError(f"fragment {frame.index} of {frame.count} is not valid")
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    header = HEADER.pack(SYNC, VERSION, 0, frame.stream, frame.sequence & 0xFFFFFFFF,
                         frame.index, frame.count, len(frame.payload))
    return b"".join([header, _U32.pack(zlib.crc32(header)), frame.payload,
                     _U32.pack(zlib.crc32(frame.payload))])


def frames_for(message, stream, sequence, max_payload=MAX_PAYLOAD):
    """The frames (bytes) that carry ``message``: fragments of at most ``max_payload``."""
    max_payload = min(max_payload, MAX_PAYLOAD)
    count = max(1, -(-len(message) // max_payload))
    if count > 0xFFFF:
        raise ValueError(f"a {len(message)}-byte message needs more than 65535 fragments of "
                         f"{max_payload} bytes")
    return [encode_frame(Frame(stream, sequence, i, count,
                               message[i * max_payload:(i + 1) * max_payload]))
            for i in range(count)]


def _parse_header(data, offset=0):
    """(frame fields, payload length) if a valid header starts at ``offset``, else None."""
    if len(data) - offset < HEADER.size + 4:
        return None
    header = bytes(data[offset:offset + HEADER.size])
    if _U32.unpack_from(data, offset + HEADER.size)[0] != zlib.crc32(header):
        return None
    sync, version, _, stream, sequence, index, count, length = HEADER.unpack(header)
    if sync != SYNC or version != VERSION or length > MAX_PAYLOAD or not index < count:
        return None
    return (stream, sequence, index, count), length


def decode_frame(datagram):
    """The Frame in one datagram (UDP); FramingError if it is not exactly one valid frame."""
    parsed = _parse_header(datagram)
    if parsed is None:
        raise FramingError("not a frame (bad sync, version or header CRC)")
    fields, length = parsed
    start = HEADER.size + 4
    if len(datagram) != start + length + 4:
        raise FramingError(f"datagram of {len(datagram)} bytes does not hold its "
                           f"{length}-byte payload")
    payload = bytes(datagram[start:start + length])
    if _U32.unpack_from(datagram, start + length)[0] != zlib.crc32(payload):
        raise FramingError("payload CRC mismatch")
    return Frame(*fields, payload)


@dataclass
class LinkStats:
    frames: int = 0
    corrupted: int = 0       # frames whose header or payload failed its CRC
    skipped_bytes: int = 0   # bytes thrown away while resynchronising
    duplicates: int = 0
    messages: int = 0
    lost: int = 0            # messages never completed (sequence gaps and expired partials)


class FrameReader:
    """Frames out of a byte stream that may be corrupted, truncated or interleaved with noise.

    ``feed(data)`` returns the complete, CRC-checked frames found so far; the buffer holds at
    most one frame's worth of bytes.
    """

    def __init__(self, stats=None):
        self.buffer = bytearray()
        self.stats = stats or LinkStats()

    def feed(self, data):
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:  # keep a possible partial sync word at the end
                keep = len(SYNC) - 1
                self.stats.skipped_bytes += max(0, len(self.buffer) - keep)
                del self.buffer[:max(0, len(self.buffer) - keep)]
                return frames
            if start:
                self.stats.skipped_bytes += start
                del self.buffer[:start]
            if len(self.buffer) < HEADER.size + 4:
                return frames
            parsed = _parse_header(self.buffer)
            if parsed is None:  # a false sync or a damaged header: look further on
                self.stats.corrupted += self.buffer[:4] == SYNC
                self.stats.skipped_bytes += 1
                del self.buffer[:1]
                continue
            fields, length = parsed
            end = HEADER.size + 4 + length + 4
            if len(self.buffer) < end:
                return frames
            payload = bytes(self.buffer[HEADER.size + 4:end - 4])
            if _U32.unpack_from(self.buffer, end - 4)[0] != zlib.crc32(payload):
                self.stats.corrupted += 1
                self.stats.skipped_bytes += 1
                del self.buffer[:1]
                continue
            del self.buffer[:end]
            self.stats.frames += 1
            frames.append(Frame(*fields, payload))


@dataclass
class _Pending:
    count: int
    parts: dict = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Messages out of frames: fragments in any order, duplicates dropped, losses counted.

    A message is lost when a sequence number between the first and the last one seen on its
    stream never completes (a receiver cannot know of messages after the last frame it saw).
    Per stream at most ``max_pending`` incomplete messages are kept (the oldest is given up
    beyond that), and a message may not exceed ``max_message`` bytes.
    """

    def __init__(self, stats=None, max_pending=32, max_message=256 << 20, window=4096):
        self.stats = stats or LinkStats()
        self.max_pending, self.max_message, self.window = max_pending, max_message, window
        self.pending = {}     # stream → OrderedDict(sequence → _Pending)
        self.delivered = {}   # stream → OrderedDict of recently delivered sequences
        self.span = {}        # stream → [first, last] sequence seen
        self.count = {}       # stream → messages delivered

    def add(self, frame):
        """The message (stream, sequence, bytes) this frame completes, or None."""
        span = self.span.setdefault(frame.stream, [frame.sequence, frame.sequence])
        span[0], span[1] = min(span[0], frame.sequence), max(span[1], frame.sequence)
        self._count_lost()
        done = self.delivered.setdefault(frame.stream, OrderedDict())
        if frame.sequence in done:
            self.stats.duplicates += 1
            return None
        pending = self.pending.setdefault(frame.stream, OrderedDict())
        message = pending.get(frame.sequence)
        if message is None or message.count != frame.count:  # new, or counts disagree
            message = pending[frame.sequence] = _Pending(frame.count)
            while len(pending) > self.max_pending:
                pending.popitem(last=False)
        if frame.index in message.parts:
            self.stats.duplicates += 1
            return None
        message.parts[frame.index] = frame.payload
        message.size += len(frame.payload)
        if message.size > self.max_message:
            del pending[frame.sequence]
            return None
        if len(message.parts) < message.count:
            return None
        del pending[frame.sequence]
        done[frame.sequence] = True
        while len(done) > self.window:
            done.popitem(last=False)
        self.count[frame.stream] = self.count.get(frame.stream, 0) + 1
        self.stats.messages += 1
        self._count_lost()
        return frame.stream, frame.sequence, b"".join(message.parts[i] for i in range(message.count))

    def _count_lost(self):
        self.stats.lost = sum(last - first + 1 - self.count.get(stream, 0)
                              for stream, (first, last) in self.span.items())

    def finish(self):
        """Give up on every incomplete message."""
        for pending in self.pending.values():
            pending.clear()
        self._count_lost()
