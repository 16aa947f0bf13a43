"""``walloc-edge serve``: the server's receive loop: verify, decode, write, log."""
import json
import time

from ..firmware_bridge.loops import serve_messages
from ..firmware_bridge.transports import RECEIVER_URLS, open_receiver
from ._shared import add_decoder_options, output_dir, positive_int
from .decode import decode_to_file, decoder_for

EXAMPLES = """Each message: verify the .wlc (CRC, model id), decode it, write
OUT/<stream>-<sequence>.<ext>, append a line to OUT/metrics.jsonl. Bad messages are logged
with their sender and skipped. Ctrl-C stops and reports frames received, corrupted, lost
and duplicated.

examples:
  walloc-edge serve rgb-16x --listen tcp://0.0.0.0:9000 --out received/
  walloc-edge serve rgb-16x --listen mqtt://broker/$share/decoders/sensors/cam1 --out received/"""


def configure(p):
    p.add_argument("model", help="the model the sensors encode with (embedded name or file)")
    p.add_argument("--listen", required=True, metavar="URL",
                   help=f"where to receive: {RECEIVER_URLS}")
    p.add_argument("--out", required=True, help="folder for decoded files and metrics.jsonl")
    p.add_argument("--format", help="output format (see walloc-edge decode --help)")
    add_decoder_options(p)
    p.add_argument("--count", type=positive_int, help="stop after this many messages")
    p.add_argument("--idle", type=float, help="stop after this many seconds without a message")
    p.epilog = EXAMPLES


def run(args):
    decoder = decoder_for(args)
    out = output_dir(args.out, "--out")
    receiver = open_receiver(args.listen)
    if receiver.address:
        print(f"listening on {args.listen} (model {decoder.model_id}); Ctrl-C to stop")
    metrics = open(out / "metrics.jsonl", "a")

    def handle(received):
        start = time.perf_counter()
        signal, path = decode_to_file(decoder, received.message,
                                      out / f"{received.stream}-{received.sequence}",
                                      args.format)
        record = {"time": time.time(), "sender": received.sender, "stream": received.stream,
                  "sequence": received.sequence, "bytes": len(received.message),
                  "shape": list(signal.shape), "decode_s": time.perf_counter() - start,
                  "file": str(path)}
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        print(f"{received.sender} stream {received.stream} #{received.sequence}: "
              f"{len(received.message):,} bytes -> {path}")

    with metrics:
        handled, rejected = serve_messages(receiver, handle, args.count, args.idle)
    stats = receiver.stats
    print(f"decoded {handled}, rejected {rejected}; frames {stats.frames}, corrupted "
          f"{stats.corrupted} ({stats.skipped_bytes} bytes skipped), lost messages "
          f"{stats.lost}, duplicates {stats.duplicates}")
    return 0
