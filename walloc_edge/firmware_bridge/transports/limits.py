"""What a receiver lets senders hold, checked before the work is done: its limits, a rate
limit per sensor, and a budget for parsing what is no frame."""
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ReceiverLimits", "RateLimit", "ByteBudget", "GARBAGE_RATE"]

GARBAGE_RATE = 256 << 10  # bytes a second a receiver parses of what is no frame, all told


@dataclass
class ReceiverLimits:
    """What one receiver lets senders hold (checked before the work is done)."""
    queue: int = 16                 # complete messages waiting for the handler
    connections: int = 256          # open TCP connections at once
    per_host: int = 32              # ... from one source address
    idle: float = 300.0             # seconds a TCP connection may stay silent
    frame: float = 30.0             # seconds a TCP frame may take from its first byte
    pending_bytes: int = 512 << 20  # memory all messages hold, from first byte to handled
    message_bytes: int = 256 << 20  # the largest message
    rate: float = 0.0               # messages a second one sensor may send (0: no limit)
    burst: int = 20                 # ... in bursts of up to this many


class RateLimit:
    """A token bucket per sensor: a sensor over its rate has its messages dropped unheard
    (not acknowledged, so an honest sensor sends them again later), and cannot crowd the
    others out of the decoder."""

    def __init__(self, rate, burst):
        self.rate, self.burst, self.buckets = rate, burst, OrderedDict()

    def allows(self, sensor):
        if not self.rate:
            return True
        now = time.monotonic()
        tokens, last = self.buckets.pop(sensor, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        self.buckets[sensor] = (tokens - 1, now) if tokens >= 1 else (tokens, now)
        while len(self.buckets) > 65536:
            self.buckets.popitem(last=False)
        return tokens >= 1


class ByteBudget:
    """A token bucket of bytes a second, shared by threads: what a receiver's readers may
    spend, all of them together, on what turns out to be no frame (``FrameReader.budget``).
    Sensors over TCP or MQTT send none, so only senders of garbage meet it: however many
    connections or addresses they use, parsing it costs the server at most this."""

    def __init__(self, rate, burst):
        self.rate, self.burst, self.tokens = rate, burst, float(burst)
        self.last, self.lock = time.monotonic(), threading.Lock()

    def take(self, n):
        """Spend ``n``; False when the budget does not hold them (spent nonetheless)."""
        with self.lock:
            now = time.monotonic()
            self.tokens = max(-self.burst, min(self.burst, self.tokens +
                                               (now - self.last) * self.rate) - n)
            self.last = now
            return self.tokens >= 0
