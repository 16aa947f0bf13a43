"""A sensor's identity: a 64-bit id made once and kept in a state folder, a boot number
counted up at every start (under a lock: processes starting at once never share one), and a
random nonce per start that lets the server tell apart two starts that took the same boot (a
shared id, a copied or restored state folder); no torch."""
import errno
import fcntl
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ...runtime.io import write_atomic

__all__ = ["Identity", "state_folder", "sensor_number", "read_key"]

# Room kept in the state folder for saving the identity when its disk is full (with the
# spool's messages, say): a sensor that could not count up its boot could not start, and
# so could never deliver what fills the disk.
RESERVE, RESERVE_BYTES = ".reserve", 64 << 10


def state_folder():
    """Where a sensor keeps its identity and spool: $WALLOC_EDGE_STATE, else
    $XDG_STATE_HOME/walloc-edge, else ~/.local/state/walloc-edge."""
    if os.environ.get("WALLOC_EDGE_STATE"):
        return Path(os.environ["WALLOC_EDGE_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "walloc-edge"


def sensor_number(text):
    """A sensor id from the command line: 16 hex digits as they are, any other name hashed."""
    text = str(text).strip()
    if len(text) == 16 and all(c in "0123456789abcdefABCDEF" for c in text):
        return int(text, 16)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Identity:
    sensor: int   # 64-bit id, unique per device
    boot: int     # counts the starts of this sensor: messages of two boots never collide
    # random per start, sent with each message: the server tells two starts that took the
    # same boot apart (a shared id, a copied or restored state folder)
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    folder: "Path | None" = field(default=None, compare=False, repr=False)  # its state

    @property
    def name(self):
        return f"{self.sensor:016x}"

    @classmethod
    def start(cls, folder: "str | Path", sensor: "str | None" = None,
              after: int = 0) -> "Identity":
        """This start's identity: the id kept in ``folder``/identity.json (made at the first
        start, random), or ``sensor`` (a name or 16 hex digits) when given, with the boot
        number counted up (past ``after``) and saved before anything is sent. Under a lock
        on ``folder``/identity.lock, so that processes starting at once never share a
        boot."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file of that name, no permission, a read-only card
            raise ValueError(f"{folder}: cannot keep a sensor's state there "
                             f"({e.strerror or e})") from None
        path = folder / "identity.json"
        with open(folder / "identity.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            saved = {}
            if path.is_file():
                try:
                    saved = json.loads(path.read_text())
                except ValueError:
                    raise ValueError(f"{path} is damaged; remove it to make a new identity "
                                     "(the server will see a new sensor)") from None
            number = sensor_number(sensor) if sensor is not None else \
                int(saved["sensor"], 16) if "sensor" in saved else secrets.randbits(64)
            boots = saved.get("boots", {})
            boot = max(int(boots.get(f"{number:016x}", 0)), after) + 1
            boots[f"{number:016x}"] = boot
            saved = {"sensor": saved.get("sensor", f"{number:016x}"), "boots": boots}
            _save(path, json.dumps(saved, indent=1).encode())
        return cls(number, boot, folder=folder)

    def renew(self) -> "Identity":
        """A new boot of this sensor, with a new nonce (the server holds other messages under
        this boot's keys); taken from the state folder like a start's, where there is one."""
        if self.folder is None:
            return Identity(self.sensor, self.boot + 1)
        return Identity.start(self.folder, self.name, after=self.boot)


def _save(path, data):
    """``data`` written to ``path``, the folder's reserve given up for it where the disk is
    full (ValueError, saying so, where that is not room enough); the reserve made again
    where there is room."""
    reserve = path.parent / RESERVE
    for last in (False, True):
        try:
            write_atomic(path, data)
            break
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            if last or not reserve.exists():
                raise ValueError(f"{path.parent}: the disk is full ({e.strerror}); this "
                                 "sensor cannot count up its boot. Free some room there (its "
                                 "spool keeps the unsent messages in spool/)") from None
            reserve.unlink()
    keep_reserve(path.parent)


def keep_reserve(state):
    """Make the state folder ``state``'s reserve where it is missing and there is room
    (at a start, and as a stream ends: its acknowledgements may have made room). Random
    bytes: a compressing file system keeps their room."""
    reserve = Path(state) / RESERVE
    if reserve.exists():
        return
    try:
        with open(reserve, "wb") as f:
            f.write(os.urandom(RESERVE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        reserve.unlink(missing_ok=True)  # no room yet


def read_key(path):
    """A sensor's key file: the key as hex (at least 16 bytes), on one line."""
    try:
        text = Path(path).read_text().strip()
        key = bytes.fromhex(text)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError:
        raise ValueError(f"{path}: not a hex key; make one with: python -c 'import "
                         "secrets; print(secrets.token_hex(32))'") from None
    if len(key) < 16:
        raise ValueError(f"{path}: {len(key)} bytes is too short; use at least 16")
    return key
