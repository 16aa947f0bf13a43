"""``walloc-edge serve``: the server's receive loop: verify, decode, write durably, then
acknowledge; never twice, never stopped by one message."""
import json
import math
import re
import time
from pathlib import Path

from ..firmware_bridge.delivery import Ledger, read_keys
from ..firmware_bridge.framing import ACK_REJECTED, ACK_WRITTEN
from ..firmware_bridge.loops import Rejected, serve_messages
from ..firmware_bridge.transports import RECEIVER_URLS, ReceiverLimits, open_receiver
from ..runtime import read_bitstream
from ._shared import add_decoder_options, output_dir, positive_int, positive_number

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


def output_stem(received):
    """SENSOR-BOOT-SEQUENCE[-CAPTURED][-SOURCE]: which sensor, which message, when it was
    captured (UTC) and which source file, where the sensor said."""
    parts = [f"{received.sensor:016x}", str(received.boot), f"{received.sequence:06d}"]
    captured = received.meta.get("time")
    if isinstance(captured, (int, float)) and 0 < captured < 2 ** 34:
        parts.append(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(captured)))
    source = str(received.meta.get("source", ""))
    source = re.sub(r"[^A-Za-z0-9_.+-]", "_", source.rsplit(".", 1)[0])[:64].strip("._")
    return "-".join(parts + ([source] if source else []))


def check_size(header, max_pixels, max_samples):
    """Refuse a bitstream whose claimed size exceeds the limits, before any allocation."""
    if header.modality == "image":
        pixels = math.prod(header.shape[:2])
        if pixels > max_pixels:
            raise Rejected(f"claims {header.shape[0]}x{header.shape[1]} = {pixels:,} pixels, "
                           f"over --max-pixels {max_pixels:,.0f}")
    elif math.prod(header.shape) > max_samples:
        raise Rejected(f"claims {math.prod(header.shape):,} samples, over --max-samples "
                       f"{max_samples:,.0f}")


class _Model:
    """What the server runs per message: the decoder (unless --no-decode), the latents
    dataset and the classifier, all for one model id."""

    def __init__(self, args):
        if args.no_decode and not (args.latents or args.classify):
            raise ValueError("--no-decode keeps nothing without --latents or --classify")
        self.decoder = None
        if not args.no_decode:  # the torch side: a --no-decode server of a bundle has none
            from .decode import decoder_for

            self.decoder = decoder_for(args)
        if self.decoder is not None:
            self.model_id = self.decoder.model_id
        elif Path(args.model, "encoder.json").is_file():  # a bundle: no torch needed
            from ..runtime import load_bundle

            self.model_id = load_bundle(args.model).model_id
        else:
            from ..codec import encoder_arrays, load
            from ..runtime.bundle import model_id

            codec = load(args.model)
            self.model_id = model_id(codec.config.to_dict(), encoder_arrays(codec))
        self.classifier = None
        if args.classify:
            from ..learning.classifier import load_classifier

            self.classifier = load_classifier(args.classify)
            cfg = self.classifier.config
            if cfg["kind"] != "latents" or cfg["model_id"] != self.model_id:
                raise ValueError(f"{args.classify} classifies {cfg['kind']} of model "
                                 f"{cfg['model']} ({cfg['model_id'][:8]}), not latents of "
                                 f"{args.model} ({self.model_id[:8]})")
        self.dataset = None
        if args.latents:
            from ..learning.datasets import LiveDataset

            classes = self.classifier.config["classes"] if self.classifier else []
            self.dataset = LiveDataset(args.latents, {
                "kind": "latents", "model": args.model, "model_id": self.model_id,
                "size": None, "resize": None, "classes": classes, "images": None,
                "labels": f"predicted by {args.classify}" if args.classify else "none"})

    def check(self, header):
        if header.model_id != self.model_id:
            raise Rejected(f"made by model {header.model_id}, this server takes "
                           f"{self.model_id}")

    def process(self, stream, stem, fmt, size):
        """Decode, classify and keep one verified bitstream; returns the metrics fields."""
        fields = {}
        if self.decoder is not None:
            from ..runtime.io import write_signal

            signal = self.decoder.decode(stream)
            fields["shape"] = list(signal.shape)
            fields["file"] = str(write_signal(signal, stream.header, stem, fmt))
        if self.dataset is None and self.classifier is None:
            return fields
        latents = stream.latents()
        label, name = -1, ""
        if self.classifier is not None:
            from ..learning.classifier import predict

            label, confidence = predict(self.classifier, latents)
            name = self.classifier.config["classes"][label]
            fields.update(label=name, confidence=confidence)
        if self.dataset is not None:
            fields["latents"] = str(self.dataset.add(stem.name, latents, size, label, name,
                                                     stem.name))
        fields.setdefault("file", fields.get("latents"))
        return fields


def run(args):
    model = _Model(args)
    out = output_dir(args.out, "--out")
    keys = read_keys(args.keys) if args.keys else None
    limits = ReceiverLimits(connections=args.max_connections, idle=args.idle_timeout,
                            pending_bytes=args.max_pending_mb << 20,
                            rate=args.rate_limit or 0.0)
    ledger = Ledger(out / "ledger.txt")
    receiver = open_receiver(args.listen, keys, limits)
    if receiver.address or args.listen.startswith("mqtt"):
        print(f"listening on {args.listen} (model {model.model_id}"
              f"{', authenticated senders only' if keys else ''}); Ctrl-C to stop",
              flush=True)
    metrics = open(out / "metrics.jsonl", "a")
    ack_key = (lambda sensor: keys.keys.get(sensor)) if keys else (lambda sensor: None)

    def handle(received):
        if received.key in ledger:  # sent again: its outputs are already there
            received.ack(ACK_WRITTEN, ack_key(received.sensor))
            print(f"{received.sender} {received.key}: already written; acknowledged again")
            return
        start = time.perf_counter()
        stem = out / output_stem(received)
        try:
            stream = read_bitstream(received.message)
            model.check(stream.header)
            check_size(stream.header, args.max_pixels, args.max_samples)
            if model.decoder is None:
                stream.latents()  # a bitstream that does not decode is refused here too
            fields = model.process(stream, stem, args.format, len(received.message))
        except OSError:
            raise  # not written (a full disk): not acknowledged, so the sensor keeps it
        except Exception as e:  # noqa: BLE001 - decoding is a function of the bytes alone
            received.ack(ACK_REJECTED, ack_key(received.sensor))
            raise Rejected(e if isinstance(e, Rejected) else f"{type(e).__name__}: {e}") \
                from None
        record = {"time": time.time(), "sender": received.sender, "key": received.key,
                  "sensor": f"{received.sensor:016x}", "boot": received.boot,
                  "sequence": received.sequence, "source": received.meta.get("source"),
                  "captured": received.meta.get("time"), "bytes": len(received.message),
                  "decode_s": time.perf_counter() - start, **fields}
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        ledger.record(received.key, Path(fields["file"]).name)
        received.ack(ACK_WRITTEN, ack_key(received.sensor))
        label = f" ({fields['label']}, {fields['confidence']:.0%})" if "label" in fields else ""
        print(f"{received.sender} {received.key}: {len(received.message):,} bytes -> "
              f"{fields['file']}{label}", flush=True)

    with metrics:
        handled, rejected, failed = serve_messages(receiver, handle, args.count, args.idle)
    ledger.close()
    stats = receiver.stats
    print(f"{'decoded' if model.decoder else 'kept'} {handled}, rejected {rejected}, not "
          f"written {failed}; frames "
          f"{stats.frames}, corrupted {stats.corrupted} ({stats.skipped_bytes} bytes skipped), "
          f"old-version {stats.old_version}, unauthenticated {stats.unauthenticated}, "
          f"rate-limited {stats.rate_limited}, lost messages {stats.lost}, duplicates "
          f"{stats.duplicates}")
    return 0
