"""Where a server's outputs are kept, chosen by what ``--out`` names: a local folder (each
file written whole by rename, ``ledger.txt`` the record of what was written) or an object
store, ``s3://BUCKET/PREFIX`` through fsspec and s3fs.

In an object store each output is one object written by a single PUT of its complete
bytes (an object appears whole or not at all) and named by the message's key, and the
record of a written message is a small marker object beside it, put after the output; so
whether a message was written is asked of the store, and any number of servers behind one
broker write each message once: a message redelivered to another server after a crash
finds the marker, or, where the crash came between output and marker, writes the same
bytes under the same name again. Outputs and markers are put only where no object has the
name yet (a conditional PUT, If-None-Match), so two servers handling one key at the same
moment cannot overwrite each other: the second learns it from the store (the same bytes, or
the same message: acknowledged; other content: not acknowledged, or refused as a collision).
"""
import contextlib
import json
import os
import socket
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, urlsplit

from .delivery import KnownMessages, Ledger, RecordedElsewhere, boot_of
from ..runtime import io

__all__ = ["FolderStore", "ObjectStore", "ObjectLedger", "hold", "open_store", "open_dataset",
           "is_object_store", "local", "default_metrics"]

SCHEMES = ("s3",)  # object stores, through fsspec and s3fs


def is_object_store(target: "str | Path") -> bool:
    """Whether ``target`` names an object store (a URL) rather than a local folder."""
    return urlsplit(str(target)).scheme in SCHEMES


def open_store(target: "str | Path") -> "FolderStore | ObjectStore":
    """The store ``target`` names: ``s3://BUCKET/PREFIX[?endpoint=URL]`` or a folder."""
    return ObjectStore(str(target)) if is_object_store(target) else FolderStore(local(target))


def local(target: "str | Path") -> "str | Path":
    """``target``, a local folder; a URL of a store this server cannot write (gs://, s3a://)
    is a ValueError rather than a folder of that name."""
    scheme = urlsplit(str(target)).scheme
    if "://" in str(target) and scheme not in SCHEMES:
        raise ValueError(f"{target}: no store for {scheme}:// here (give "
                         f"{' or '.join(f'{s}://BUCKET/PREFIX' for s in SCHEMES)}, or a folder)")
    return target


class FolderStore:
    """Outputs as files in a local folder, the ledger in its ``ledger.txt`` (and that
    file's index). One server a folder: a second would not see what the first records (each
    indexes only what it read and wrote), so it refuses while the first holds the folder's
    lock (servers that share outputs share an object store)."""

    def __init__(self, folder: "str | Path"):
        self.folder = Path(folder)
        hold(self.folder)
        try:
            self.ledger = Ledger(self.folder / "ledger.txt")
        except BaseException:
            release(self.folder)
            raise

    def stem(self, name: str) -> Path:
        return self.folder / name

    def write_signal(self, signal, header, stem: Path, fmt: "str | None") -> Path:
        return io.write_signal(signal, header, stem, fmt)

    def close(self) -> None:
        self.ledger.close()
        release(self.folder)


_HELD = {}  # the output folders this process holds: real path → its open lock file


def hold(folder: "str | Path") -> None:
    """Lock the output folder ``folder`` (existing) for this process, once however often
    asked: a lock the kernel drops when the process dies, so a killed server leaves none
    behind (flock; where the system has none, or its file system cannot lock, one server a
    folder is the user's care). ValueError naming the holder while another serve has it.
    Held, what a killed server left half-written there (its temporary files) is removed."""
    try:
        import fcntl
    except ImportError:
        return
    key = os.path.realpath(folder)
    if key in _HELD:
        return
    try:
        held = open(Path(folder) / ".serve.lock", "a+")
    except OSError as e:
        raise ValueError(f"{folder}: cannot write there ({e.strerror or e})") from None
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.seek(0)
        holder = held.read().strip() or "unknown"
        held.close()
        raise ValueError(f"{folder}: another walloc-edge serve ({holder}) writes here; give "
                         "each server its own folder (servers that share outputs share an "
                         "object store, docs/delivery.md)") from None
    except OSError:  # a file system without locks (NFS without lockd): not held
        held.close()
        return
    held.seek(0)
    held.truncate()
    held.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    held.flush()
    _HELD[key] = held
    for stale in Path(folder).glob(".*.tmp-*"):  # atomic_file's, of a server gone
        if not stale.name.split(".tmp-", 1)[1].startswith(f"{os.getpid()}-"):
            stale.unlink(missing_ok=True)


def release(folder: "str | Path") -> None:
    """Give up the lock ``hold`` took on ``folder`` (closing its file drops it)."""
    held = _HELD.pop(os.path.realpath(folder), None)
    if held is not None:
        held.close()


class ObjectStore:
    """Outputs as objects under ``s3://BUCKET/PREFIX``; its ledger an :class:`ObjectLedger`.
    The endpoint is S3's unless the URL says ``?endpoint=URL`` or the environment sets
    ``AWS_ENDPOINT_URL`` (credentials as for any AWS client: the environment, ~/.aws).
    Opening it writes and deletes a probe object, so a store that cannot be reached or
    written is a ValueError before any message is taken."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"{url}: give {parts.scheme}://BUCKET/PREFIX")
        endpoint = parse_qs(parts.query).get("endpoint", [None])[0]
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        self.root = f"{parts.netloc}{parts.path}".rstrip("/")
        try:
            import fsspec

            # a store that does not answer fails in seconds, not after botocore's minute
            config = {"connect_timeout": 10, "retries": {"max_attempts": 3}}
            self.fs = fsspec.filesystem(parts.scheme, skip_instance_cache=True,
                                        config_kwargs=config, client_kwargs=(
                                            {"endpoint_url": endpoint} if endpoint else {}))
        except ImportError:
            raise ValueError(f"{url}: an object store needs s3fs (pip install "
                             "'walloc-edge[s3]')") from None
        self.probe()
        self.ledger = ObjectLedger(self)
        self.scratch = Path(tempfile.mkdtemp(prefix="walloc-edge-serve-"))

    def probe(self):
        """Write (as outputs are: a conditional PUT) and delete a small object; ValueError
        naming why the store is unusable."""
        probe = f"{self.root}/.probe-{uuid.uuid4().hex}"
        try:
            self.fs.pipe_file(probe, b"probe", mode="create")
            self.fs.rm_file(probe)
        except Exception as e:  # noqa: BLE001 - whatever the client raises, the store is unusable
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{self.url}: cannot write there ({reason})") from None

    def put(self, name: str, data: bytes, exclusive: bool = False) -> str:
        """``data`` as the object ``name`` (under the prefix), whole; returns its URL. Any
        failure is an OSError, as a full disk is: the message is then not acknowledged.
        ``exclusive``: only where there is no such object yet, else FileExistsError."""
        with _as_os_error(f"{self.url}/{name}: cannot write it"):
            self.fs.pipe_file(f"{self.root}/{name}", data,
                              mode="create" if exclusive else "overwrite")
        return f"{self.url}/{name}"

    def put_once(self, name: str, data: bytes, same=bytes.__eq__,
                 taken: str = "other content") -> str:
        """``data`` as the object ``name`` where no object has that name yet (a conditional
        PUT); one that has is this output only if ``same(kept, data)`` (put before a crash,
        or by a server handling the same message), else an OSError saying it holds
        ``taken``: not written, so not acknowledged. Returns the object's URL."""
        try:
            return self.put(name, data, exclusive=True)
        except FileExistsError:
            kept = self.get(name)
        if kept is not None and same(kept, data):
            return f"{self.url}/{name}"
        raise OSError(f"{self.url}/{name} " + ("was removed while it was put" if kept is None
                                               else f"already holds {taken}") +
                      "; not overwritten")

    def remove(self, name: str) -> None:
        with _as_os_error(f"{self.url}/{name}: cannot remove it"):
            self.fs.rm_file(f"{self.root}/{name}")

    def get(self, name: str) -> "bytes | None":
        """The object ``name``, or None where there is none; a store that cannot answer is an
        OSError."""
        try:
            with _as_os_error(f"{self.url}/{name}: cannot read it"):
                return self.fs.cat_file(f"{self.root}/{name}")
        except FileNotFoundError:
            return None

    def stem(self, name: str) -> PurePosixPath:
        return PurePosixPath(name)

    def write_signal(self, signal, header, stem: PurePosixPath, fmt: "str | None") -> str:
        """The signal's file, encoded in the scratch folder, then put whole where no object
        has its name; one that has is this output only if its bytes are these (put before a
        crash, or by a server handling the same message), else an OSError: not written."""
        path = io.write_signal(signal, header, self.scratch / stem.name, fmt)
        try:
            return self.put_once(path.name, path.read_bytes(), taken=(
                "other content (another server wrote another message under this name)"))
        finally:
            path.unlink()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


@contextlib.contextmanager
def _as_os_error(what):
    """Errors of the store's client (an endpoint that stopped answering raises botocore's
    own) as OSError, which the handler takes for "not written"."""
    try:
        yield
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - the client's errors have no common base
        raise OSError(f"{what} ({e})") from e


class ObjectLedger(KnownMessages):
    """The ledger kept in an object store, shared by every server that writes there:
    ``PREFIX/ledger/KEY.json`` holds a written message's output name, digest and nonce, and
    ``PREFIX/ledger/boots/SENSOR-BOOT.json`` the nonce of the sensor start that first sent
    that boot. Markers never change once put, so what was read is kept in memory; serve
    fetches a key's markers before taking its handler's lock, so that no worker waits on
    another's requests."""

    def __init__(self, store: ObjectStore):
        self.store = store
        self.done = {}   # key -> (digest, nonce), either None where not known
        self.boots = {}  # "SENSOR-BOOT" -> the nonce of the start that first sent that boot
        self.fetched = set()  # keys whose markers were asked of the store

    def _remember(self, key, digest, nonce):
        self.done[key] = (digest, nonce)
        if nonce is not None:
            self.boots.setdefault(boot_of(key), nonce)

    def fetch(self, key):
        """Read the markers of ``key`` and of its boot from the store, where not known."""
        if key not in self.done:
            marker = self.store.get(f"ledger/{key}.json")
            if marker is not None:
                kept = json.loads(marker)
                self._remember(key, kept.get("digest"), kept.get("nonce"))
        boot = boot_of(key)
        if boot not in self.boots:
            marker = self.store.get(f"ledger/boots/{boot}.json")
            if marker is not None:
                self.boots.setdefault(boot, json.loads(marker)["nonce"])
        self.fetched.add(key)

    def kept(self, key):
        if key not in self.fetched:
            self.fetch(key)
        return self.done.get(key)

    def boot_nonce(self, boot):
        return self.boots.get(boot)

    def record(self, key, output="", digest=None, nonce=None):
        """The marker of ``key``, put only where none is yet: one that is (another server
        recorded the key since it was fetched) raises RecordedElsewhere, saying whether its
        message is ours."""
        try:
            self.store.put(f"ledger/{key}.json", json.dumps(
                {"key": key, "output": output, "digest": digest, "nonce": nonce}).encode(),
                exclusive=True)
        except FileExistsError:
            kept = json.loads(self.store.get(f"ledger/{key}.json"))
            self._remember(key, kept.get("digest"), kept.get("nonce"))
            raise RecordedElsewhere(key, self.collision(key, digest, nonce),
                                    kept.get("output")) from None
        boot = boot_of(key)
        if nonce is not None and boot not in self.boots:
            self.store.put(f"ledger/boots/{boot}.json", json.dumps({"nonce": nonce}).encode())
        self._remember(key, digest, nonce)

    def close(self):
        pass


def open_dataset(target: "str | Path | ObjectStore", fields: dict):
    """The latents dataset a server grows in ``target``: a folder, or an object store (a URL
    or one opened), with the dataset fields ``fields``."""
    # imported here: the server loads without the learning side (test_architecture)
    from ..learning.datasets import FORMAT, VERSION, LiveDataset, require_pyarrow

    require_pyarrow()
    if not isinstance(target, ObjectStore) and not is_object_store(target):
        return LiveDataset(local(target), fields)

    class ObjectDataset(LiveDataset):
        """A :class:`LiveDataset` in an object store: dataset.json put once, a part per row."""

        shared = True  # other servers may write here (see Outputs.take_back)

        def __init__(self, store):
            self.store = store
            old = store.get("dataset.json")
            if old is None:
                store.put("dataset.json", (json.dumps(
                    {"format": FORMAT, "version": VERSION, **fields}, indent=2) + "\n").encode())
            elif json.loads(old).get("model_id") != fields["model_id"]:
                model = json.loads(old)
                raise ValueError(f"{store.url} holds latents of another model "
                                 f"({model.get('model')}, {str(model.get('model_id'))[:8]}); "
                                 "give another prefix")
            self.next_index = 0  # rows are told apart by name: servers share the store

        def _put(self, name, data):
            """The row put once, as a decoded output is; a row already there with the same
            values is this one (``index`` counts one server's rows and may differ)."""
            return self.store.put_once(name, data, same=_same_row, taken=(
                "another row (another server kept another message under this name, or the "
                "object is no row)"))

        def remove(self, name):
            self.store.remove(name)

    return ObjectDataset(target if isinstance(target, ObjectStore) else ObjectStore(target))


def _same_row(kept: bytes, data: bytes) -> bool:
    """Whether two one-row Parquet parts hold the same row but for its ``index``; an object
    that is no such part is another row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        kept, ours = (pq.read_table(pa.BufferReader(b)).drop_columns(["index"])
                      for b in (kept, data))
    except (pa.ArrowException, KeyError, ValueError):
        return False
    return kept.equals(ours)


def default_metrics(store: "FolderStore | ObjectStore") -> Path:
    """Where metrics.jsonl goes unless told: in the output folder, or, for an object store
    (objects cannot be appended to), in the server's current folder."""
    return store.folder / "metrics.jsonl" if isinstance(store, FolderStore) else \
        Path("metrics.jsonl")
