"""Scale-out: servers sharing an MQTT subscription and an object store write each message
once. A real S3 API on loopback (moto's server mode, started here) and a real mosquitto;
two serve processes, one SIGKILLed mid-run; the store's idempotence and its refusals."""
import io
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path, PurePath

import numpy as np
import pytest

from helpers import Serve, free_port, photos, sensor

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """The endpoint URL of a moto S3 server on loopback, dummy credentials in the
    environment while the module runs."""
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(),
                                            verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def bucket(endpoint, name):
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def objects(endpoint, name, prefix=""):
    """Every object key under ``prefix`` in the bucket ``name``."""
    import boto3

    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2")
    return [o["Key"] for page in pages.paginate(Bucket=name, Prefix=prefix)
            for o in page.get("Contents", [])]


def test_the_store_writes_a_key_once_and_tells_a_collision(s3):
    """Two servers on one store: what one recorded, the other finds (a resend); the same
    output put again is still one object; other content under the key is a collision, as is
    another sensor start under a boot the store has seen."""
    from walloc_edge.server.store import ObjectStore

    url = f"s3://{bucket(s3, 'unit')}/run?endpoint={s3}"
    first, second = ObjectStore(url), ObjectStore(url)
    assert first.put("00000000000000a1-1-000001.png", b"picture").endswith("-000001.png")
    first.ledger.record("00000000000000a1-1-1", "00000000000000a1-1-000001.png", "d1", "n1")
    assert "00000000000000a1-1-1" in second.ledger
    assert second.ledger.collision("00000000000000a1-1-1", "d1", "n1") is None
    second.put("00000000000000a1-1-000001.png", b"picture")  # a server that raced the first
    assert sorted(objects(s3, "unit", "run/")) == [
        "run/00000000000000a1-1-000001.png", "run/ledger/00000000000000a1-1-1.json",
        "run/ledger/boots/00000000000000a1-1.json"]
    assert "other content" in second.ledger.collision("00000000000000a1-1-1", "d2", "n1")
    assert "another start" in ObjectStore(url).ledger.collision("00000000000000a1-1-2", "d3",
                                                                "n2")
    assert "00000000000000a1-1-2" not in second.ledger
    assert second.get("missing") is None
    first.close(), second.close()


def test_servers_racing_for_a_key_never_overwrite_each_other(s3):
    """Two servers that both found a key free (each asked the store before the other wrote):
    outputs and markers are put only where no object has the name, so the second learns
    from the store what the first wrote: the same bytes or message are acknowledged; other
    bytes under the output's name are not written (OSError: not acknowledged), and other
    content under a recorded key is a collision."""
    from walloc_edge.server.delivery import RecordedElsewhere
    from walloc_edge.runtime import Header
    from walloc_edge.runtime.modality import IMAGE
    from walloc_edge.server.store import ObjectStore

    url = f"s3://{bucket(s3, 'race')}/run?endpoint={s3}"
    first, second = ObjectStore(url), ObjectStore(url)
    key = "00000000000000b2-1-7"
    second.ledger.fetch(key)  # asked while the key was free
    header = Header(IMAGE, "0" * 32, (8, 8, 3), np.dtype(np.uint8), 3, 8, 12, "raw", b"",
                    (0, 0))
    picture = np.full((8, 8, 3), 40, np.uint8)
    stem = first.stem("00000000000000b2-1-000007")
    written = first.write_signal(picture, header, stem, None)
    assert second.write_signal(picture, header, stem, None) == written  # the same bytes
    with pytest.raises(OSError, match="already holds other content"):
        second.write_signal(picture + 1, header, stem, None)
    assert first.get(written.rsplit("/", 1)[1]) == second.get(written.rsplit("/", 1)[1])
    first.ledger.record(key, written.rsplit("/", 1)[1], "d1", "n1")
    with pytest.raises(RecordedElsewhere) as same:
        second.ledger.record(key, written.rsplit("/", 1)[1], "d1", "n1")
    assert same.value.collision is None
    with pytest.raises(RecordedElsewhere) as other:
        second.ledger.record(key, "elsewhere.png", "d2", "n2")
    assert "other content" in other.value.collision
    assert other.value.output == written.rsplit("/", 1)[1]
    first.close(), second.close()


@pytest.mark.slow  # a torch decoder loaded for it
@pytest.mark.parametrize("rows_in", ["the store", "own folders"])
def test_the_server_that_loses_the_race_for_a_key_is_told_by_the_store(s3, rgb_weights_bundle,
                                                                       reference_dir, tmp_path,
                                                                       rows_in):
    """Two servers' handlers, the second having asked the store before the first wrote: for
    other content under the key the second refuses a collision and takes its output and its
    latents row back (the store keeps only the first's); for the same message it
    acknowledges it (one row)."""
    from walloc_edge.firmware_bridge.framing import ACK_COLLISION, ACK_WRITTEN
    from walloc_edge.firmware_bridge.transports.base import Received
    from walloc_edge.runtime import Encoder
    from walloc_edge.server import Handler, Outputs, ServedModel

    model = ServedModel(str(reference_dir / "rgb_j3_l12.pth"), device="cpu")
    encoder = Encoder(rgb_weights_bundle, backend="numpy")
    rng = np.random.default_rng(1)
    blobs = [encoder.encode(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)) for _ in "ab"]
    url = f"s3://{bucket(s3, 'handlers')}/{tmp_path.name}?endpoint={s3}"
    rows = [f"s3://{bucket(s3, 'rows')}/{tmp_path.name}?endpoint={s3}"] * 2 \
        if rows_in == "the store" else [tmp_path / "one", tmp_path / "other"]
    acks, logs = [], []

    def message(sequence, blob, source, nonce):
        return Received("test", 0xC3, 1, sequence, blob, {"source": source, "nonce": nonce},
                        lambda frame, to: True, lambda: None)

    with Outputs(url, model, latents=rows[0], metrics=tmp_path / "one.jsonl") as one, \
            Outputs(url, model, latents=rows[1], metrics=tmp_path / "other.jsonl") as other:
        handlers = [Handler(model, outputs, log=logs.append) for outputs in (one, other)]
        for handler in handlers:
            handler._ack = lambda received, status: acks.append((received.meta["source"],
                                                                 status))
        for sequence in (0, 1):
            other.fetch(f"{0xC3:016x}-1-{sequence}")  # asked while the keys were free
        other.fetch = lambda key: None  # and its workers go on from there
        handlers[0](message(0, blobs[0], "a", "1"))
        handlers[1](message(0, blobs[1], "b", "2"))  # other content, another start
        handlers[0](message(1, blobs[0], "c", "1"))
        handlers[1](message(1, blobs[0], "c", "1"))  # the same message, redelivered
    assert acks == [("a", ACK_WRITTEN), ("b", ACK_COLLISION), ("c", ACK_WRITTEN),
                    ("c", ACK_WRITTEN)], logs
    assert any(line.startswith("COLLISION") for line in logs), logs
    assert sorted(name.rsplit("-", 1)[-1] for name in objects(s3, "handlers", tmp_path.name)
                  if name.endswith(".png")) == ["a.png", "c.png"]
    if rows_in == "the store":
        kept = objects(s3, "rows", tmp_path.name)
    else:  # each server's own rows: the loser keeps only the message it shares
        assert sorted(p.name.rsplit("-", 1)[-1] for p in rows[0].glob("*.parquet")) == \
            ["a.parquet", "c.parquet"]
        kept = [p.name for p in rows[1].glob("*.parquet")]
    assert sorted(name.rsplit("-", 1)[-1] for name in kept if name.endswith(".parquet")) == \
        ["a.parquet", "c.parquet"] if rows_in == "the store" else ["c.parquet"]


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_a_store_that_stops_answering_is_an_os_error(s3):
    """A store gone mid-run fails like a full disk (OSError): the handler then leaves the
    message unacknowledged, and the sensor keeps it."""
    from walloc_edge.server.store import ObjectStore

    gone = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(),
                                          verbose=False)
    gone.start()
    endpoint = "http://%s:%d" % gone.get_host_and_port()
    store = ObjectStore(f"s3://{bucket(endpoint, 'gone')}/x?endpoint={endpoint}")
    gone.stop()
    with pytest.raises(OSError, match="cannot write it"):
        store.put("a.png", b"picture")
    with pytest.raises(OSError, match="cannot read it"):
        store.get("ledger/a.json")
    store.close()


def test_a_store_that_refuses_conditional_writes_is_refused_at_start(s3, monkeypatch):
    """Exactly-once across servers rests on If-None-Match: a store whose API refuses it is
    refused when opened, one line naming the URL and the store's reason."""
    import fsspec

    from walloc_edge.server.store import ObjectStore

    opened = fsspec.filesystem

    def without_conditional_puts(*args, **kwargs):
        fs = opened(*args, **kwargs)
        plain = fs.pipe_file

        def pipe_file(path, data, mode="overwrite", **kw):
            if mode == "create":
                raise NotImplementedError("A header you provided implies functionality that "
                                          "is not implemented (If-None-Match)")
            return plain(path, data, mode=mode, **kw)

        fs.pipe_file = pipe_file
        return fs

    monkeypatch.setattr(fsspec, "filesystem", without_conditional_puts)
    url = f"s3://{bucket(s3, 'plain')}/run?endpoint={s3}"
    with pytest.raises(ValueError, match=r"^s3://plain/run: cannot write there \(A header "
                                         r"you provided implies"):
        ObjectStore(url)
    assert objects(s3, "plain") == []


def test_latents_rows_go_to_the_store_and_another_model_is_refused(s3):
    """A latents dataset in a store: dataset.json put once, a Parquet object per row named
    by the message; opened for another model, a plain error."""
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from walloc_edge.server.store import ObjectStore, open_dataset

    url = f"s3://{bucket(s3, 'latents')}/rows?endpoint={s3}"
    fields = {"kind": "latents", "model": "m", "model_id": "abcd1234", "size": None}
    dataset = open_dataset(url, fields)
    where = dataset.add("00000000000000a1-1-000001", np.ones((4, 2, 2), np.int8), 99)
    assert where == "s3://latents/rows/part-00000000000000a1-1-000001.parquet"
    open_dataset(ObjectStore(url), fields)  # the same model: the dataset is shared
    assert sorted(objects(s3, "latents")) == ["rows/dataset.json",
                                              "rows/part-00000000000000a1-1-000001.parquet"]
    row = pq.read_table(io.BytesIO(ObjectStore(url).get(
        "part-00000000000000a1-1-000001.parquet"))).to_pylist()[0]
    assert row["sent_bytes"] == 99 and row["shape"] == [4, 2, 2]
    racing = open_dataset(url, fields)  # another server: its rows count from 0 as well
    racing.add("00000000000000a1-1-000002", np.ones((4, 2, 2), np.int8), 5)
    assert racing.add("00000000000000a1-1-000001", np.ones((4, 2, 2), np.int8), 99) == where
    with pytest.raises(OSError, match="already holds another row"):
        racing.add("00000000000000a1-1-000001", np.zeros((4, 2, 2), np.int8), 99)
    ObjectStore(url).put("part-00000000000000a1-1-000003.parquet", b"")  # no row at all
    with pytest.raises(OSError, match="already holds another row"):
        racing.add("00000000000000a1-1-000003", np.ones((4, 2, 2), np.int8), 99)
    assert pq.read_table(io.BytesIO(ObjectStore(url).get(
        "part-00000000000000a1-1-000001.parquet"))).to_pylist()[0]["data"] == bytes([1] * 16)
    with pytest.raises(ValueError, match="holds latents of another model"):
        open_dataset(url, {**fields, "model_id": "ffff0000"})


def test_a_race_loser_takes_back_its_own_row_never_the_winners(s3, tmp_path):
    """Another message recorded under the key by another server: in a shared store the row
    under the winner's name is the winner's (a conditional PUT let no other in) and stays;
    in this server's own latents folder a row of that name is the loser's and goes."""
    pytest.importorskip("pyarrow")
    from types import SimpleNamespace

    from walloc_edge.server import Outputs

    model = SimpleNamespace(classifier=None, name="m", model_id="abcd1234", classes=None)
    url = f"s3://{bucket(s3, 'loser')}/run?endpoint={s3}"
    latents = np.ones((4, 2, 2), np.int8)
    for rows, kept in ((f"s3://{bucket(s3, 'loser-rows')}/run?endpoint={s3}", 1),
                       (tmp_path / "own", 0)):
        with Outputs(url, model, latents=rows, metrics=tmp_path / "m.jsonl") as outputs:
            stem = outputs.stem(SimpleNamespace(sensor=0xD4, boot=1, sequence=3, meta={}))
            row = str(outputs.add_latents(stem, latents, 9))
            outputs.take_back({"file": row, "latents": row}, f"part-{stem.name}.parquet")
            assert (outputs.dataset.store.get(PurePath(row).name) is not None
                    if kept else not Path(row).exists())


def serve(reference_dir, url, out, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "walloc_edge.cli", "serve", str(reference_dir / "rgb_j3_l12.pth"),
         "--listen", url, "--out", out, "--device", "cpu", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_an_unreachable_or_unwritable_store_is_one_line(s3, reference_dir, tmp_path):
    """No endpoint listening, or a bucket that does not exist: one line naming --out, exit
    2, before any message is taken, and nothing left in the store."""
    port = free_port()
    for out in (f"s3://nowhere/run?endpoint=http://127.0.0.1:{free_port()}",
                f"s3://no-such-bucket/run?endpoint={s3}"):
        proc = serve(reference_dir, f"tcp://127.0.0.1:{port}", out, "--metrics",
                     str(tmp_path / "metrics.jsonl"))
        log = proc.communicate(timeout=120)[0]
        assert proc.returncode == 2, log
        assert len(log.strip().splitlines()) == 1, log
        assert log.startswith("walloc-edge serve: error"), log
        assert "--out s3://" in log and "cannot write there" in log, log
    assert not (tmp_path / "metrics.jsonl").exists()
    bucket(s3, "latents-elsewhere")
    proc = serve(reference_dir, f"tcp://127.0.0.1:{port}", f"s3://latents-elsewhere/x?endpoint="
                 f"{s3}", "--latents", f"s3://no-such-bucket/l?endpoint={s3}")
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2 and "--latents s3://no-such-bucket/l" in log, log
    assert objects(s3, "latents-elsewhere") == []  # the probe of --out left nothing


@pytest.mark.slow  # two servers in their own processes, one killed
def test_two_servers_one_killed_write_each_message_once(s3, rgb_weights_bundle, reference_dir,
                                                       tmp_path, mosquitto):
    """Three sensors stream 8 photos each to a topic that two servers share (an MQTT shared
    subscription), both writing to one bucket (the endpoint from AWS_ENDPOINT_URL); one
    server is SIGKILLed after it wrote 3: every message is in the bucket exactly once (one
    object per key, one marker per key), none lost, and every sensor hears all acknowledged."""
    broker = mosquitto(persistent=True)
    topic = f"mqtt://127.0.0.1:{broker.port}/site/cams"
    shared = f"mqtt://127.0.0.1:{broker.port}/$share/decoders/site/cams?client="
    out = f"s3://{bucket(s3, 'fleet')}/received"
    env = {**os.environ, "AWS_ENDPOINT_URL": s3}
    names = [f"{s:016x}" for s in (0xA1, 0xB2, 0xC3)]
    servers = []
    try:
        for name in ("decoder1", "decoder2"):
            servers.append(Serve.reference(reference_dir, out, shared + name, "--metrics",
                                           tmp_path / f"{name}.jsonl", env=env))
        procs = [sensor(rgb_weights_bundle, photos(tmp_path / f"in{i}", 8, seed=i), "--to",
                        topic, "--sensor-id", name, "--ack-timeout", "3", "--wait", "120",
                        state=tmp_path / f"state{i}") for i, name in enumerate(names)]
        servers[0].wait_for(lambda: servers[0].written() >= 3, 120)
        servers[0].proc.send_signal(signal.SIGKILL)
        servers[0].proc.wait(timeout=10)
        logs = [p.communicate(timeout=240)[0] for p in procs]
        servers[1].proc.send_signal(signal.SIGTERM)
        servers[1].proc.wait(timeout=30)
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.kill()
        broker.stop()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0 and "8 acknowledged, 8 new" in log, log
    keys = objects(s3, "fleet", "received/")
    pictures = [k for k in keys if k.endswith(".png")]
    by_key = Counter(re.match(r"received/([0-9a-f]{16}-\d+-\d{6})-", k).group(1)
                     for k in pictures)
    assert set(by_key.values()) == {1}, by_key
    got = {(k.split("/")[1].split("-")[0], k.rsplit("-", 1)[1][:-4]) for k in pictures}
    assert len(pictures) == 24 and got == {(n, f"p{i:02d}") for n in names for i in range(8)}
    markers = [k for k in keys if re.fullmatch(r"received/ledger/[0-9a-f]{16}-\d+-\d+\.json", k)]
    assert len(markers) == 24
    # Written once each, as the bucket shows; the servers' own counts (their "->" lines) may
    # differ by the one message the kill cut: between output and marker (written again by
    # the other: 25), or between marker and line (written, not said: 23).
    assert 23 <= servers[0].written() + servers[1].written() <= 25
    assert (tmp_path / "decoder2.jsonl").read_text().count("\n") == servers[1].written()
