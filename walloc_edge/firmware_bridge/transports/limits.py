"""What a receiver lets senders hold, checked before the work is done: its limits, and a
rate limit per sensor."""
import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ReceiverLimits", "RateLimit"]


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
