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
    with pytest.raises(ValueError, match="holds latents of another model"):
        open_dataset(url, {**fields, "model_id": "ffff0000"})


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
    # written once each, but for the one message a kill may cut between output and marker
    assert 24 <= servers[0].written() + servers[1].written() <= 25
    assert (tmp_path / "decoder2.jsonl").read_text().count("\n") == servers[1].written()
