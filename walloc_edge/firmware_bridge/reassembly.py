"""Messages put back together out of frames (any order, duplicates dropped, losses counted),
in bounded memory: what every receiver runs on the frames it reads (framing.py makes them)."""
from collections import OrderedDict
from dataclasses import dataclass, field

from .framing import FLAG_HEARTBEAT, LinkStats

__all__ = ["Reassembler", "Reassembled", "MESSAGE_OVERHEAD", "FRAGMENT_OVERHEAD"]

# What Python holds beyond the payload bytes (objects, table entries), charged to the memory
# account so that a flood of tiny fragments or messages cannot hide behind small payloads.
MESSAGE_OVERHEAD = 1024
FRAGMENT_OVERHEAD = 160


@dataclass(frozen=True)
class Reassembled:
    """A message the last of its frames completed."""
    sensor: int
    boot: int
    sequence: int
    flags: int      # the frames' flags together (FLAG_META: ``data`` starts with metadata)
    data: bytes
    repeat: bool    # delivered before and sent again whole (see Reassembler.add)


@dataclass
class _Pending:
    count: int
    flags: int = 0
    parts: dict = field(default_factory=dict)
    size: int = 0

    @property
    def held(self):
        """Bytes this incomplete message costs, Python objects included."""
        return MESSAGE_OVERHEAD + self.size + FRAGMENT_OVERHEAD * len(self.parts)


@dataclass
class _Stream:
    """What the reassembler knows of one (sensor, boot): the sequences seen and delivered.
    Incomplete messages are kept by (sequence, source): fragments join only those that came
    the same way."""
    first: int
    last: int
    key: tuple                 # (sensor, boot)
    delivered_count: int = 0
    pending: OrderedDict = field(default_factory=OrderedDict)    # (sequence, source) → _Pending
    delivered: OrderedDict = field(default_factory=OrderedDict)  # recent sequences
    repeats: OrderedDict = field(default_factory=OrderedDict)    # delivered, coming again

    @property
    def lost(self):
        waiting = {sequence for sequence, _ in self.pending}  # never a delivered one
        return self.last - self.first + 1 - self.delivered_count - len(waiting)


class Reassembler:
    """Messages out of frames: fragments in any order, duplicates dropped, losses counted.

    Fragments are joined only with those from the same ``source`` (a connection): two
    devices sending under one key (a shared sensor id, a copied state folder) over two
    connections make two messages, which the server tells apart as a collision, never one
    message of both. A message is lost when a sequence number between the first and the last
    one seen from a (sensor, boot) never completes (a receiver cannot know of messages after
    the last frame it saw). Memory is bounded: at most ``max_pending`` incomplete messages per stream and
    ``max_pending_bytes`` in all, objects counted (the oldest incomplete message is given up
    beyond either, in constant time; a receiver lowers the bound while complete messages
    take memory),
    messages of at most ``max_message`` bytes, and at most ``max_streams`` (sensor, boot)
    pairs remembered (the least recently heard is forgotten).
    """

    def __init__(self, stats=None, max_pending=32, max_message=256 << 20, window=4096,
                 max_pending_bytes=512 << 20, max_streams=4096):
        self.stats = stats or LinkStats()
        self.max_pending, self.max_message, self.window = max_pending, max_message, window
        self.max_pending_bytes, self.max_streams = max_pending_bytes, max_streams
        self.streams = OrderedDict()  # (sensor, boot) → _Stream, least recently heard first
        self.pending_bytes = 0
        self.oldest = OrderedDict()   # (sensor, boot, repeat, (sequence, source)) of each
        # incomplete one, oldest first
        self.lost_forgotten = 0       # losses of streams no longer remembered

    def add(self, frame, source=None):
        """The message this frame (from ``source``) completes (a :class:`Reassembled`), or
        None. Its
        ``repeat`` is True for a message delivered before and sent again whole (a sender that
        did not hear its acknowledgement, or another message under a key already used): a
        receiver passes it on, so that the sender hears its acknowledgement this time and the
        server finds a collision (another message's content under the key) and says so. A
        heartbeat is part of no message."""
        if frame.flags & FLAG_HEARTBEAT:
            return None
        key = (frame.sensor, frame.boot)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = _Stream(frame.sequence, frame.sequence, key)
            while len(self.streams) > self.max_streams:
                self._forget(next(iter(self.streams)))
        self.streams.move_to_end(key)
        stream.first, stream.last = min(stream.first, frame.sequence), \
            max(stream.last, frame.sequence)
        return self._add(stream, frame, (frame.sequence, source))

    def _add(self, stream, frame, key):
        repeat = frame.sequence in stream.delivered
        if repeat:
            self.stats.duplicates += 1
        table = stream.repeats if repeat else stream.pending
        message = table.get(key)
        if message is None or message.count != frame.count:  # new, or counts disagree
            if message is not None:
                self._drop(stream, key, table)
            message = table[key] = _Pending(frame.count)
            self.oldest[(*stream.key, table is stream.repeats, key)] = None
            self.pending_bytes += MESSAGE_OVERHEAD
            while len(table) > self.max_pending:
                self._drop(stream, next(iter(table)), table)
        if frame.index in message.parts:
            if not repeat:
                self.stats.duplicates += 1
            return None
        message.parts[frame.index] = frame.payload
        message.flags |= frame.flags
        message.size += len(frame.payload)
        self.pending_bytes += FRAGMENT_OVERHEAD + len(frame.payload)
        if message.size > self.max_message:
            self._drop(stream, key, table)
            return None
        self._bound_memory()
        if key not in table or len(message.parts) < message.count:
            return None
        del table[key]
        del self.oldest[(*stream.key, repeat, key)]
        self.pending_bytes -= message.held
        data = b"".join(message.parts[i] for i in range(message.count))
        if not repeat:
            self._now_repeats(stream, frame.sequence)
            stream.delivered[frame.sequence] = True
            while len(stream.delivered) > self.window:
                stream.delivered.popitem(last=False)
            stream.delivered_count += 1
            self.stats.messages += 1
        return Reassembled(frame.sensor, frame.boot, frame.sequence, message.flags, data,
                           repeat)

    def _now_repeats(self, stream, sequence):
        """``sequence`` was just delivered: what other sources have under way under it is a
        repeat from now on (pending holds only what was never delivered)."""
        for key in [k for k in stream.pending if k[0] == sequence]:
            message = stream.pending.pop(key)
            del self.oldest[(*stream.key, False, key)]
            stream.repeats[key] = message
            self.oldest[(*stream.key, True, key)] = None
            while len(stream.repeats) > self.max_pending:
                self._drop(stream, next(iter(stream.repeats)), stream.repeats)

    def forget_source(self, source):
        """Give up what ``source`` (a connection now closed) had under way: it cannot
        complete, and a sender that reconnects sends the whole message again."""
        for sensor, boot, repeat, key in [k for k in self.oldest if k[3][1] == source]:
            stream = self.streams[(sensor, boot)]
            self._drop(stream, key, stream.repeats if repeat else stream.pending)

    def _drop(self, stream, key, table):
        self.pending_bytes -= table.pop(key).held
        del self.oldest[(*stream.key, table is stream.repeats, key)]

    def _bound_memory(self):
        """Give up the oldest incomplete messages while they hold more than
        ``max_pending_bytes``."""
        while self.oldest and self.pending_bytes > self.max_pending_bytes:
            sensor, boot, repeat, key = next(iter(self.oldest))
            stream = self.streams[(sensor, boot)]
            self._drop(stream, key, stream.repeats if repeat else stream.pending)

    def _forget(self, key):
        stream = self.streams.pop(key)
        for table in (stream.repeats, stream.pending):
            for key in list(table):
                self._drop(stream, key, table)
        self.lost_forgotten += stream.lost

    def count_lost(self):
        """Update ``stats.lost`` (messages given up or never completed so far; incomplete
        ones are not counted until given up). Not done per frame: its cost grows with the
        number of streams."""
        self.stats.lost = self.lost_forgotten + sum(s.lost for s in self.streams.values())
        return self.stats.lost

    def lost_by_sensor(self):
        """Messages lost so far per sensor id, over the (sensor, boot) pairs remembered (as
        ``count_lost``, its cost grows with the number of streams)."""
        lost = {}
        for (sensor, _), stream in self.streams.items():
            lost[sensor] = lost.get(sensor, 0) + stream.lost
        return lost

    def finish(self):
        """Give up on every incomplete message."""
        for stream in self.streams.values():
            for table in (stream.repeats, stream.pending):
                for key in list(table):
                    self._drop(stream, key, table)
        self.count_lost()

