"""``walloc-edge serve``: the server's options and receive loop; what it does with each
message (verify, decode, write durably, then acknowledge; never twice) is
``walloc_edge.server``."""
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path

from ..server.delivery import read_keys
from ..firmware_bridge.loops import serve_messages
from ..firmware_bridge.transports import (RECEIVER_URLS, ReceiverLimits, check_url,
                                           open_receiver)
from ..firmware_bridge.transports.base import StreamReceiver
from ..runtime.console import say
from ..server import Handler, Outputs, ServedModel
from ..server.fleet import Fleet
from ..server.outputs import check_log
from ..server.store import ObjectStore, hold, is_object_store, local, open_store, release
from ._shared import (add_decoder_options, check_device, check_format, check_model,
                      decoder_choices, is_bundle, naming, naming_engine, output_dir,
                      positive_int, positive_number)
from ._stops import stop_on

# A server decodes for hours: the fastest engine that holds the quality bar pays back its
# start-up probe (about a second) at once; decode and eval keep torch fp32, the reference.
ENGINE = "auto"

EXAMPLES = """Each message: verify the .wlc (CRC, model id, the size it claims), decode it,
write OUT/[NAME-]SENSOR-BOOT-SEQUENCE[-CAPTURED][-SOURCE].<ext> whole (temporary name, fsync,
rename), add a line to OUT/metrics.jsonl and OUT/ledger.txt, and only then acknowledge it to
the sensor (TCP, MQTT), which keeps it until then and sends it again after any restart. A
message already in the ledger is acknowledged again and not written twice; one with other
content under a key the ledger holds (two starts of a sensor took the same boot: a shared
--sensor-id, a copied or restored --state) is a collision, logged, counted and refused with
its own status, and the sensor sends it again under a new boot. A bad message is logged
with its sender and refused (the sensor is told), as is one whose decode is estimated from
its header to exceed --max-decode-mb or --max-decode-seconds; a message that cannot be
written (a full disk) is not acknowledged, so the sensor keeps it. Sensors are served in
turn, so one sending heavy messages does not hold the others up; --workers N handles N
at once (decoding and writing overlap; each is still acknowledged only once written and in
the ledger, in whatever order they finish). Ctrl-C, SIGTERM (a service manager's stop) or
SIGHUP stops taking messages, lets those being handled finish, and reports what arrived.
Reading a file of frames (or stdin) to its end, it exits 1 where anything in it did not come
out (a message refused, not written, a collision or over --rate-limit; a frame corrupted,
lost, of an older version or unauthenticated): nothing will send it again.

Several servers: on an MQTT shared subscription ($share/GROUP/TOPIC) they split the
messages; with one object store as --out (s3://BUCKET/PREFIX; the endpoint from
AWS_ENDPOINT_URL or ?endpoint=URL) each output is one object named by its key, put whole,
and the ledger is a marker object per key that every server asks, so each message is
written once whichever server it reaches (docs/delivery.md).

Learning without decoding: --latents DIR writes each message's latents as a row of a
latents dataset (walloc-edge dataset's format; durable before the acknowledgement) beside,
or with --no-decode instead of, the decoded file; --classify CLF labels each frame from its
latents and logs the label in metrics.jsonl. With a bundle as MODEL the server needs no
torch: it decodes with the bundle's decoder graph (export --decoder) on onnxruntime, or
with --no-decode runs no decoder (--classify needs torch).

examples:
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/ --no-decode \
      --latents received/latents --classify clf16.safetensors
  walloc-edge serve rgb-16x --listen 'mqtt://broker/$share/decoders/sensors/cam1' --out received/
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/ --keys keys.json
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/ --http 9100
      (the dashboard on http://127.0.0.1:9100/, Prometheus metrics on /metrics)
  walloc-edge serve rgb-16x --listen 'mqtt://broker/$share/decoders/sensors/cam1' \
      --out s3://frames/site --metrics metrics.jsonl   # several servers, one store"""


def configure(p):
    p.add_argument("model", help="the model the sensors encode with (embedded name or file), "
                                 "or its sensor bundle folder (to decode, exported with "
                                 "--decoder; no torch needed)")
    p.add_argument("--listen", required=True, metavar="URL",
                   help=f"where to receive: {RECEIVER_URLS}")
    p.add_argument("--out", required=True,
                   help="folder for decoded files, metrics.jsonl and ledger.txt (what was "
                        "written), or an object store s3://BUCKET/PREFIX[?endpoint=URL] that "
                        "several servers share (see docs/delivery.md)")
    p.add_argument("--metrics", metavar="FILE",
                   help="append each message's metrics line here (default: OUT/metrics.jsonl; "
                        "with an object store as --out, metrics.jsonl in the current folder)")
    p.add_argument("--format", help="output format (see walloc-edge decode --help)")
    p.add_argument("--latents", metavar="DIR",
                   help="also write each message's latents as a dataset row (Parquet) here "
                        "(a folder or s3://BUCKET/PREFIX)")
    p.add_argument("--no-decode", action="store_true",
                   help="do not decode: keep the latents only (needs --latents or --classify)")
    p.add_argument("--classify", metavar="CLF",
                   help="label each frame from its latents with this classifier (walloc-edge "
                        "classify train) and log it in metrics.jsonl")
    add_decoder_options(p, engine=ENGINE)
    p.add_argument("--keys", metavar="FILE",
                   help="JSON {SENSOR: HEX KEY, ...}: take only frames authenticated by the "
                        "sending sensor's key (default: no authentication)")
    p.add_argument("--max-pixels", type=positive_number, default=64_000_000,
                   help="refuse an image claiming more pixels, before decoding it")
    p.add_argument("--max-samples", type=positive_number, default=64_000_000,
                   help="refuse audio claiming more samples (all channels), before decoding")
    p.add_argument("--max-decode-mb", type=positive_number,
                   help="refuse a message whose decode is estimated (from its header) to take "
                        "more memory than this (default: half of this machine's memory, at "
                        "most 4096, shared among the --workers)")
    p.add_argument("--max-decode-seconds", type=positive_number, default=10,
                   help="refuse a message whose decode is estimated to take longer on this "
                        "machine (measured at start); one sensor's message then delays "
                        "others by at most this")
    p.add_argument("--max-connections", type=positive_int, default=256,
                   help="TCP connections open at once; when all are taken, the one silent "
                        "the longest that never sent a whole frame is closed for a new one, "
                        "else the new one is refused")
    p.add_argument("--max-connections-per-host", type=positive_int, default=32, metavar="N",
                   help="TCP connections one source address may hold open (the same rule)")
    p.add_argument("--idle-timeout", type=positive_number, default=300,
                   help="close a TCP connection silent for this many seconds")
    p.add_argument("--frame-timeout", type=positive_number, default=30,
                   help="close a TCP connection whose frame is not whole this many seconds "
                        "after its first byte (a 65 KB frame needs 2.2 KB/s)")
    p.add_argument("--max-pending-mb", type=positive_int, default=512,
                   help="memory that all messages hold from their first byte until handled: "
                        "fragments, complete messages queued or waiting for the queue; "
                        "readers wait, and incomplete messages are given up, to stay within")
    p.add_argument("--rate-limit", type=positive_number, metavar="N",
                   help="messages a second one sensor may send (bursts of 20); more are "
                        "dropped unacknowledged, so the sensor sends them again later "
                        "(default: no limit)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="handle this many messages at once in threads (entropy decoding, "
                        "decoding and writing overlap; each message is still acknowledged "
                        "only once written and in the ledger), sharing the cores and the "
                        "decode budgets between them: a message is then refused sooner "
                        "(default: 1, one at a time on every core; one per core, "
                        f"{usable_cores()} here, suits many small frames)")
    p.add_argument("--count", type=positive_int, help="stop after this many messages")
    p.add_argument("--idle", type=positive_number,
                   help="stop after this many seconds without a message")
    p.add_argument("--http", metavar="[HOST:]PORT",
                   help="also serve a live dashboard (/), Prometheus metrics (/metrics) and "
                        "health (/healthz: 503 when OUT cannot be written) here; HOST is "
                        "127.0.0.1 unless given (beyond loopback, --http-token is required)")
    p.add_argument("--http-token", metavar="TOKEN",
                   help="require this token of every HTTP request but /healthz "
                        "(Authorization: Bearer TOKEN, or ?token=TOKEN)")
    p.add_argument("--http-token-file", metavar="FILE",
                   help="read --http-token from this file (not shown in the process list)")
    p.epilog = EXAMPLES


def usable_cores():
    """The cores this process may run on (taskset's or a cpuset's share; a CPU quota such as
    docker --cpus is not seen)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_decode_mb():
    """Half of this machine's memory, at most 4 GB."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4096
    return min(4096, memory // 2 ** 21)


def _http(args):
    """(host, port, token) of --http, checked before anything loads; None without it."""
    if args.http_token and args.http_token_file:
        raise ValueError("give --http-token or --http-token-file, not both")
    if (args.http_token or args.http_token_file) and not args.http:
        raise ValueError("--http-token needs --http")
    if not args.http:
        return None
    from ..server.http import is_loopback, parse_address

    with naming("--http"):
        host, port = parse_address(args.http)
        loopback = is_loopback(host)
    token = args.http_token
    if args.http_token_file:
        try:
            token = Path(args.http_token_file).read_text().strip()
        except OSError as e:
            raise ValueError(f"--http-token-file {args.http_token_file}: cannot read "
                             f"({e.strerror or e})") from None
        if not token:
            raise ValueError(f"--http-token-file {args.http_token_file} is empty")
    if not loopback and not token:
        raise ValueError(f"--http {args.http} is reachable from other machines: give "
                         "--http-token (or --http-token-file) too")
    return host, port, token


def _dashboard(http, fleet):
    """The HTTP side, bound (a port in use is one line), or nothing without --http."""
    if http is None:
        return nullcontext()
    from ..server.http import Dashboard

    with naming("--http"):
        return Dashboard(fleet, *http)


def object_store(target, option):
    """The object store ``target`` names, opened (a probe write) before the model loads, so
    that one that cannot be reached or written stops serve at once; a folder as given."""
    with naming(option):
        if not target or not is_object_store(target):
            return target and local(target)
        return open_store(target)


def run(args):
    if args.no_decode and not (args.latents or args.classify):
        raise ValueError("--no-decode keeps nothing without --latents or --classify")
    http = _http(args)
    with naming("--listen"):
        listen = check_url(args.listen)  # a mistyped URL or a missing library first
    if http and listen.scheme == "tcp" and http[1] == listen.port:
        raise ValueError(f"--http {args.http}: --listen {args.listen} takes that port; give "
                         "the dashboard another")
    check_model(args.model)
    if args.metrics:
        with naming("--metrics"):
            check_log(args.metrics)  # a folder, or a missing one, said before any work
    if not args.no_decode and not is_bundle(args.model):  # a bundle decodes on onnxruntime
        check_device(args.device)
    if args.latents:
        from ..learning.datasets import require_pyarrow

        require_pyarrow()  # before a store or the model is opened
    out, latents = object_store(args.out, "--out"), object_store(args.latents, "--latents")
    if not isinstance(out, ObjectStore) and Path(out).is_dir():
        with naming("--out"):  # another serve on it: said before the model and the link
            hold(out)
    if latents and not isinstance(latents, ObjectStore):  # one server a latents folder
        latents = output_dir(latents, "--latents")  # too (each numbers its rows)
        with naming("--latents"):
            hold(latents)
    if isinstance(latents, ObjectStore) and not isinstance(out, ObjectStore):
        say("note: --latents is an object store, --out a local folder: fine for one server; "
            "servers sharing the latents store need --out in a store too, whose ledger they "
            "share (docs/delivery.md)")
    with naming_engine():
        model = ServedModel(args.model, decode=not args.no_decode, device=args.device,
                            tile=args.tile, classifier=args.classify,
                            decoder_options=decoder_choices(args, ENGINE),
                            threads=max(1, usable_cores() // args.workers))
    if model.decoder:  # a --format the model's outputs cannot take: every message refused
        check_format(args.format, model.decoder)
    with naming("--keys"):
        keys = read_keys(args.keys) if args.keys else None
    limits = ReceiverLimits(connections=args.max_connections,
                            per_host=args.max_connections_per_host, idle=args.idle_timeout,
                            frame=args.frame_timeout, pending_bytes=args.max_pending_mb << 20,
                            rate=args.rate_limit or 0.0)
    stop_on(signal.SIGTERM, signal.SIGHUP)
    # listening and the dashboard bound first: a port in use or a broker that is down is
    # said before any output is made (what arrives meanwhile waits, unacknowledged)
    receiver = open_receiver(args.listen, keys, limits)
    fleet = Fleet(out) if http else None
    try:
        with _dashboard(http, fleet) as dashboard, \
                Outputs(out if isinstance(out, ObjectStore) else output_dir(out, "--out"),
                        model, args.format, latents, args.metrics) as outputs:
            handler = Handler(model, outputs, keys, args.max_pixels, args.max_samples,
                              limit_names=("--max-pixels", "--max-samples"),
                              max_decode_bytes=(args.max_decode_mb or
                                                default_decode_mb() / args.workers) * 2 ** 20,
                              max_decode_seconds=args.max_decode_seconds,
                              budget_names=("--max-decode-mb", "--max-decode-seconds"),
                              fleet=fleet)
            if dashboard:
                fleet.watch(receiver)
                dashboard.start()
                say(f"dashboard on {dashboard.url} (metrics: /metrics, health: /healthz"
                    f"{'; token required' if dashboard.token else ''})")
            if receiver.address or args.listen.startswith("mqtt"):
                # the receiver's threads log already: whole lines
                say(f"listening on {args.listen} (model {model.model_id}"
                    f"{f', decoder {model.decoder.engine_name}' if model.decoder else ''}"
                    f"{', authenticated senders only' if keys else ''}); Ctrl-C to stop")
            started = time.monotonic()
            handled, rejected, failed = serve_messages(
                receiver, handler, args.count, args.idle, workers=args.workers,
                start_worker=model.use_threads)
    finally:
        receiver.stop()
        if latents and not isinstance(latents, ObjectStore):
            release(latents)
    say(handler.summary(handled, rejected, failed, receiver.stats,
                        time.monotonic() - started))
    # a file of frames (or stdin) read to its end: nothing sends what did not come out again
    stats = receiver.stats
    missed = (rejected + failed + handler.collisions + stats.corrupted + stats.lost +
              stats.unauthenticated + stats.old_version + stats.rate_limited)
    return 1 if isinstance(receiver, StreamReceiver) and missed else 0
