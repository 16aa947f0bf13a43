"""``walloc-edge serve``: the server's options and receive loop; what it does with each
message (verify, decode, write durably, then acknowledge; never twice) is
``walloc_edge.server``."""
from ..firmware_bridge.delivery import read_keys
from ..firmware_bridge.loops import serve_messages
from ..firmware_bridge.transports import RECEIVER_URLS, ReceiverLimits, open_receiver
from ..server import Handler, Outputs, ServedModel
from ._shared import (add_decoder_options, check_device, decoder_choices, naming,
                      naming_engine, output_dir, positive_int, positive_number)

EXAMPLES = """Each message: verify the .wlc (CRC, model id, the size it claims), decode it,
write OUT/SENSOR-BOOT-SEQUENCE[-CAPTURED][-SOURCE].<ext> whole (temporary name, fsync,
rename), add a line to OUT/metrics.jsonl and OUT/ledger.txt, and only then acknowledge it to
the sensor (TCP, MQTT), which keeps it until then and sends it again after any restart. A
message already in the ledger is acknowledged again and not written twice. A bad message is
logged with its sender and refused (the sensor is told); a message that cannot be written
(a full disk) is not acknowledged, so the sensor keeps it. Ctrl-C stops and reports what
arrived.

Learning without decoding: --latents DIR writes each message's latents as a row of a
latents dataset (walloc-edge dataset's format; durable before the acknowledgement) beside,
or with --no-decode instead of, the decoded file; --classify CLF labels each frame from its
latents and logs the label in metrics.jsonl. With --no-decode and a bundle as MODEL the
server runs no decoder and needs no torch (--classify needs torch).

examples:
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/ --no-decode \
      --latents received/latents --classify clf16.safetensors
  walloc-edge serve rgb-16x --listen mqtt://broker/$share/decoders/sensors/cam1 --out received/
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/ --keys keys.json"""


def configure(p):
    p.add_argument("model", help="the model the sensors encode with (embedded name or file; "
                                 "with --no-decode, also its sensor bundle folder)")
    p.add_argument("--listen", required=True, metavar="URL",
                   help=f"where to receive: {RECEIVER_URLS}")
    p.add_argument("--out", required=True, help="folder for decoded files, metrics.jsonl and "
                                                "ledger.txt (what was written)")
    p.add_argument("--format", help="output format (see walloc-edge decode --help)")
    p.add_argument("--latents", metavar="DIR",
                   help="also write each message's latents as a dataset row (Parquet) here")
    p.add_argument("--no-decode", action="store_true",
                   help="do not decode: keep the latents only (needs --latents or --classify)")
    p.add_argument("--classify", metavar="CLF",
                   help="label each frame from its latents with this classifier (walloc-edge "
                        "classify train) and log it in metrics.jsonl")
    add_decoder_options(p)
    p.add_argument("--keys", metavar="FILE",
                   help="JSON {SENSOR: HEX KEY, ...}: take only frames authenticated by the "
                        "sending sensor's key (default: no authentication)")
    p.add_argument("--max-pixels", type=positive_number, default=64e6,
                   help="refuse an image claiming more pixels, before decoding it")
    p.add_argument("--max-samples", type=positive_number, default=64e6,
                   help="refuse audio claiming more samples (all channels), before decoding")
    p.add_argument("--max-connections", type=positive_int, default=256,
                   help="TCP connections open at once; more are refused")
    p.add_argument("--idle-timeout", type=positive_number, default=300,
                   help="close a TCP connection silent for this many seconds")
    p.add_argument("--max-pending-mb", type=positive_int, default=512,
                   help="memory that incomplete messages of all senders may hold")
    p.add_argument("--rate-limit", type=positive_number, metavar="N",
                   help="messages a second one sensor may send (bursts of 20); more are "
                        "dropped unacknowledged, so the sensor sends them again later "
                        "(default: no limit)")
    p.add_argument("--count", type=positive_int, help="stop after this many messages")
    p.add_argument("--idle", type=float, help="stop after this many seconds without a message")
    p.epilog = EXAMPLES


def run(args):
    if args.no_decode and not (args.latents or args.classify):
        raise ValueError("--no-decode keeps nothing without --latents or --classify")
    if not args.no_decode:
        check_device(args.device)
    with naming_engine():
        model = ServedModel(args.model, decode=not args.no_decode, device=args.device,
                            tile=args.tile, classifier=args.classify,
                            decoder_options=decoder_choices(args))
    out = output_dir(args.out, "--out")
    with naming("--keys"):
        keys = read_keys(args.keys) if args.keys else None
    limits = ReceiverLimits(connections=args.max_connections, idle=args.idle_timeout,
                            pending_bytes=args.max_pending_mb << 20,
                            rate=args.rate_limit or 0.0)
    with Outputs(out, model, args.format, args.latents) as outputs:
        handler = Handler(model, outputs, keys, args.max_pixels, args.max_samples,
                          limit_names=("--max-pixels", "--max-samples"))
        receiver = open_receiver(args.listen, keys, limits)
        if receiver.address or args.listen.startswith("mqtt"):
            print(f"listening on {args.listen} (model {model.model_id}"
                  f"{f', decoder {model.decoder.engine_name}' if model.decoder else ''}"
                  f"{', authenticated senders only' if keys else ''}); Ctrl-C to stop",
                  flush=True)
        handled, rejected, failed = serve_messages(receiver, handler, args.count, args.idle)
    stats = receiver.stats
    print(f"{'decoded' if model.decoder else 'kept'} {handled}, rejected {rejected}, not "
          f"written {failed}; frames "
          f"{stats.frames}, corrupted {stats.corrupted} ({stats.skipped_bytes} bytes skipped), "
          f"old-version {stats.old_version}, unauthenticated {stats.unauthenticated}, "
          f"rate-limited {stats.rate_limited}, lost messages {stats.lost}, duplicates "
          f"{stats.duplicates}")
    return 0
