"""``walloc-edge stream``: the sensor's send loop (files, a watched folder, video); no torch."""
import sys

from ..firmware_bridge.loops import stream_files, stream_frames, watch_folder
from ..firmware_bridge.transports import SENDER_URLS, open_sender
from ..runtime.coders import CODERS
from ._shared import add_backend_options, add_video_options, input_files, sensor_encoder

EXAMPLES = """Each input becomes one message (a .wlc in frames, docs/framing.md); the receiver
is walloc-edge serve. The exit status is 1 when an input was skipped, 130 after Ctrl-C.

examples:
  walloc-edge stream bundle/ photos/ --to tcp://10.0.0.2:9000
  walloc-edge stream bundle/ --watch incoming/ --to mqtt://broker/sensors/cam1
  walloc-edge stream bundle/ --video 0 --fps 1 --to udp://10.0.0.2:9000?mtu=1400
  walloc-edge stream bundle/ --video picamera2 --fps 5 --to tcp://10.0.0.2:9000"""


def configure(p):
    p.add_argument("bundle", help="sensor bundle folder (from walloc-edge export)")
    p.add_argument("inputs", nargs="*", default=[], metavar="INPUT",
                   help="images or audio files to send, or folders of them (recursive)")
    p.add_argument("--to", required=True, metavar="URL", help=f"where to send: {SENDER_URLS}")
    p.add_argument("--watch", metavar="DIR",
                   help="also send every file that appears in DIR until Ctrl-C")
    add_backend_options(p)
    p.add_argument("--coder", default="rans", choices=list(CODERS), help="entropy coder")
    add_video_options(p)
    p.add_argument("--stream-id", type=int, default=0,
                   help="this sensor's stream number (0-65535)")
    p.epilog = EXAMPLES


def run(args):
    if not args.inputs and not args.watch and args.video is None:
        raise ValueError("give INPUT files or folders, --watch DIR, --video SOURCE, or some "
                         "of them")
    if not 0 <= args.stream_id <= 0xFFFF:
        raise ValueError(f"--stream-id {args.stream_id} is outside 0..65535")
    encoder = sensor_encoder(args)
    if args.video is not None and encoder.bundle.modality != "image":
        raise ValueError(f"--video needs an image model; {args.bundle} is an audio bundle")
    files, skipped = input_files(args, encoder.bundle.modality)
    log = (lambda line: print(line, file=sys.stderr)) if args.to == "-" else print
    log(f"encoding with {encoder.describe()} + {args.coder}")
    sent = failed = 0
    stopped = False
    with open_sender(args.to, args.stream_id) as sender:
        try:
            sent, failed = stream_files(encoder, sender, [path for path, _ in files],
                                        args.coder, log)
            if args.video is not None:
                from ..runtime.sources import VideoSource

                source = VideoSource(args.video)
                more, more_failed = stream_frames(encoder, sender,
                                                  source.frames(args.fps, args.frames),
                                                  source.name, args.coder, log)
                sent, failed = sent + more, failed + more_failed
            if args.watch:
                more, more_failed = watch_folder(encoder, sender, args.watch, args.coder,
                                                 log=log)
                sent, failed = sent + more, failed + more_failed
        except KeyboardInterrupt:
            stopped = True
            sent = sender.sequence
    if skipped:
        log(skipped)
    log(f"{'stopped: ' if stopped else ''}sent {sent} message(s), {sender.bytes:,} bytes to "
        f"{args.to}" + (f"; {failed} input(s) skipped" if failed else ""))
    return 130 if stopped else 1 if failed else 0
