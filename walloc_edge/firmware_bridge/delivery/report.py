"""What a sensor run delivered, as its last line and its exit status say."""
from dataclasses import dataclass

__all__ = ["Report"]


@dataclass
class Report:
    """What a sensor run delivered (counts of messages)."""
    sent: int = 0           # new messages of this run put on the link
    resent: int = 0         # transmissions of earlier messages (after a restart or timeout)
    acknowledged: int = 0   # written by the server (this run's and earlier runs' messages)
    rejected: int = 0       # refused for good by the server (bad bitstream, wrong model)
    dropped: int = 0        # given up because the spool was full (policy drop-oldest)
    collisions: int = 0     # keys the server holds other content under: sent under a new boot
    damaged: int = 0        # spool files that were no message: set aside, not sent
    unacknowledged: int = 0  # still in the spool at the end: sent again at the next start
    best_effort: bool = False  # a link with no way back (UDP, serial, file): nothing is known

    def line(self):
        if self.best_effort:
            return f"sent {self.sent} message(s) best-effort (this link has no acknowledgements)"
        parts = [f"{self.acknowledged} acknowledged", f"{self.sent} new",
                 f"{self.resent} resent"]
        if self.rejected:
            parts.append(f"{self.rejected} rejected by the server")
        if self.dropped:
            parts.append(f"{self.dropped} dropped (spool full)")
        if self.damaged:
            parts.append(f"{self.damaged} damaged in the spool (set aside in its damaged/ "
                         "folder, not sent)")
        if self.collisions:
            parts.append(f"{self.collisions} collision(s) (another start sent under the same "
                         "keys; sent again under a new boot)")
        if self.unacknowledged:
            parts.append(f"{self.unacknowledged} unacknowledged, kept in the spool (sent "
                         "again at the next start; a busy server may need a longer --wait; "
                         "a server that takes only signed frames drops those without its "
                         "key, and its log says so)")
        return "delivery: " + ", ".join(parts)

    @property
    def complete(self):
        return self.best_effort or not (self.unacknowledged or self.dropped or self.rejected
                                        or self.damaged)
