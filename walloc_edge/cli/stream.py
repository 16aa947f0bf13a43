"""``walloc-edge stream``: the sensor's send loop (files, a watched folder, video), with
nothing lost: every message is spooled on disk until the server acknowledges it; no torch."""
import argparse
import signal
import sys
from pathlib import Path

from .. import __version__
from ..firmware_bridge.delivery import (Courier, Identity, SentRecord, Spool, read_key,
                                        state_folder)
from ..firmware_bridge.delivery.identity import keep_reserve
from ..firmware_bridge.delivery.sent import claim_watch
from ..firmware_bridge.loops import stream_frames, stream_inputs, watch_folder
from ..firmware_bridge.transports import SENDER_URLS, check_url, open_link
from ..runtime.coders import CODERS
from ..runtime.console import say
from ..runtime.modality import IMAGE
from ._shared import (add_backend_options, add_level_option, add_video_options,
                      check_video_options, coder_level, input_files, level_note, naming, positive_int, positive_number,
                      sensor_encoder)
from ._stops import Stopped, stop_on

STOP_WAIT = 5  # seconds a stop by SIGTERM or SIGHUP waits for the last acknowledgements

EXAMPLES = """Each input becomes one message (a .wlc in frames, docs/framing.md) named by this
sensor's id, its boot number and a sequence number; the receiver is walloc-edge serve. Over
TCP and MQTT each message stays in the spool (STATE/spool) until the server has written it
and said so; the link is reconnected with backoff, and what is unacknowledged is sent again,
also at the next start after a reboot. UDP, serial and files are best-effort (no way back).
Files this sensor sent before, unchanged, are skipped and counted (--again sends them), so
running an interrupted stream again with the same INPUT sends no second copy.
Several streams may run on one device with one state folder (two cameras): each start takes
its own boot number and owns its spool entries; a start takes over those of a stream that
is gone. SIGTERM and SIGHUP stop it as a service manager expects: no new input, a few
seconds for the last acknowledgements, the report.
Exit status: 0 when everything was delivered (inputs sent before, unchanged, are no
failure; nor is an empty spool with nothing else to send), 1 when an input could not be
read, encoded or spooled, or a message is still unacknowledged (it stays spooled) or was
dropped, 130 after Ctrl-C (SIGTERM, SIGHUP: 0 or 1 as without them).

examples:
  walloc-edge stream bundle/ photos/ --to tcp://10.0.0.2:9000
  walloc-edge stream bundle/ --watch incoming/ --to mqtt://broker/sensors/cam1
  walloc-edge stream bundle/ --video 0 --fps 1 --to tcp://10.0.0.2:9000 --key cam1.key
  walloc-edge stream bundle/ --video picamera2 --fps 5 --to udp://10.0.0.2:9000?mtu=1400
  walloc-edge stream bundle/ --to tcp://10.0.0.2:9000     (only send what the spool holds)"""


def configure(p):
    p.add_argument("bundle", help="sensor bundle folder (from walloc-edge export)")
    p.add_argument("inputs", nargs="*", default=[], metavar="INPUT",
                   help="images or audio files to send, or folders of them (recursive)")
    p.add_argument("--to", required=True, metavar="URL", help=f"where to send: {SENDER_URLS}")
    p.add_argument("--again", action="store_true",
                   help="send the INPUT files even where an earlier run of this sensor sent "
                        "them with the same size, time and content (default: those are "
                        "skipped, and said so, so that restarting an interrupted run sends "
                        "no second copy)")
    p.add_argument("--watch", metavar="DIR",
                   help="also send every file that appears in DIR (once complete; not in "
                        "its subfolders) until Ctrl-C; what was sent is kept in --state, so "
                        "a restart sends only new or changed files")
    add_backend_options(p)
    p.add_argument("--coder", default="rans", choices=list(CODERS), help="entropy coder")
    add_level_option(p)
    add_video_options(p)
    p.add_argument("--sensor-id", metavar="ID", type=sensor_id,
                   help="this sensor's identity: 16 hex digits, or a name (hashed to 64 "
                        "bits) (default: one made at the first start and kept in --state)")
    p.add_argument("--state", metavar="DIR", default=str(state_folder()),
                   help="where the identity, boot count and spool are kept")
    p.add_argument("--key", metavar="FILE",
                   help="this sensor's key (hex, one line): authenticate every frame with "
                        "HMAC-SHA256; the server's --keys lists it")
    p.add_argument("--spool-mb", type=positive_int, default=256,
                   help="disk the unacknowledged messages may take")
    p.add_argument("--spool-full", choices=("drop-oldest", "block"), default="drop-oldest",
                   help="when the spool is full: give up the oldest message (counted and "
                        "reported) or wait for the server")
    p.add_argument("--ack-timeout", type=positive_number, default=30,
                   help="send a message again when unacknowledged for this many seconds")
    p.add_argument("--wait", type=positive_number, default=60,
                   help="at the end, wait this many seconds for the last acknowledgements")
    p.add_argument("--heartbeat", type=seconds_or_off, default=30, metavar="SECONDS",
                   help="send this sensor's status (spool depth, dropped, uptime, version, "
                        "backend) every this many seconds over TCP and MQTT, never spooled; "
                        "serve --http shows it; 0: never")
    p.epilog = EXAMPLES


def sensor_id(text):
    """A --sensor-id: not empty (every device started with an empty variable would share
    the id of the empty name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a name or 16 hex digits, not an empty one")
    return text.strip()


def seconds_or_off(text):
    """A number of seconds, or 0 for never."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be 0 (never) or more")
    return value


def _name(sensor_id, identity):
    """The heartbeat's "name": a --sensor-id that is a name (not the id's own 16 hex
    digits), for dashboards to show beside the id it hashes to."""
    given = str(sensor_id or "").strip()
    return {"name": given} if given and given.lower() != identity.name else {}


def run(args):
    check_video_options(args)
    level = coder_level(args)  # a level the coder lacks is refused before any work
    encoder = sensor_encoder(args)
    if args.video is not None and encoder.bundle.modality is not IMAGE:
        raise ValueError(f"--video needs an image model; {args.bundle} is an audio bundle")
    files, skipped = input_files(args, encoder.bundle.modality)
    if args.watch and not Path(args.watch).is_dir():
        raise ValueError(f"--watch {args.watch}: " + ("a file, not a folder" if Path(
            args.watch).exists() else "no such folder"))
    if not args.inputs and not args.watch and args.video is None and \
            not (Path(args.state) / "identity.json").is_file():
        raise ValueError(f"--state {args.state}: no sensor state there (no identity.json), "
                         "so no spool to send from; check the path (a first run needs INPUT "
                         "files or folders, --watch DIR or --video SOURCE)")
    log = (lambda line: say(line, sys.stderr)) if args.to == "-" else say
    note = level_note(level, encoder.bundle.modality)
    if note:
        log(note)
    with naming("--key"):
        key = read_key(args.key) if args.key else None
    check_url(args.to)  # a mistyped URL or a missing transport library before any state
    with naming("--state"):
        identity = Identity.start(args.state, args.sensor_id)
    claim = claim_watch(SentRecord.path_in(args.state, identity.name, args.watch)) \
        if args.watch else None  # one stream a folder and sensor
    spool = Spool.of(args.state, identity, args.spool_mb << 20, args.spool_full)
    if not args.inputs and not args.watch and args.video is None and not len(spool):
        spool.close()  # a start that only empties the spool (after a reboot): done
        log(f"sensor {identity.name}: the spool is empty, nothing to send (INPUT files or "
            "folders, --watch DIR or --video SOURCE send more)")
        return 0
    link = open_link(args.to, identity.sensor, ack_key=key)
    records = []  # this run's records of its files: what the spool gives up is forgotten
    courier = Courier(link, identity, spool, key, log=log, ack_timeout=args.ack_timeout,
                      heartbeat=args.heartbeat, status={"version": __version__,
                                                        "backend": encoder.backend.name,
                                                        **_name(args.sensor_id, identity)},
                      on_dropped=lambda keys: [r.forget(keys) for r in records],
                      on_moved=lambda old, new: [r.move(old, new) for r in records])
    log(f"sensor {identity.name} boot {identity.boot}: {encoder.describe()} + {args.coder}"
        f"{f' (level {level})' if level else ''} -> {args.to}")
    stop_on(signal.SIGTERM, signal.SIGHUP)
    failed, stop = 0, None  # stop: the Ctrl-C, or a service manager's Stopped, that ended it
    try:
        # The records a message given up by the spool is forgotten in, so that a run again
        # sends its file: the INPUT files' even in a run without them (the spool may still
        # hold theirs), and the watched folder's.
        inputs = SentRecord(SentRecord.inputs_in(args.state, identity.name),
                            prune_missing=True)
        watched = SentRecord(SentRecord.path_in(args.state, identity.name, args.watch)) \
            if args.watch else None
        records += [r for r in (inputs, watched) if r is not None]
        courier.start()
        sources = [(path, name.with_name(name.name + path.suffix).as_posix())  # a/1.jpg
                   for path, name in files]  # (a folder's files keep their folders' names)
        _, failures, earlier = stream_inputs(encoder, courier, sources, inputs if files else
                                             None, args.coder, log, level, args.again)
        failed += failures
        if earlier:
            log(f"skipped {earlier} input(s) this sensor sent before, unchanged (--again "
                "sends them anew)")
        if args.video is not None:
            from ..runtime.sources import VideoSource

            source = VideoSource(args.video)
            failed += stream_frames(encoder, courier, source.frames(args.fps, args.frames),
                                    source.name, args.coder, log, level)[1]
        if args.watch:
            failed += watch_folder(encoder, courier, args.watch, args.coder, log=log,
                                   record=watched, level=level)[1]
    except KeyboardInterrupt as e:
        stop = e
    try:  # a service manager's stop lets what is in flight be acknowledged, briefly
        report = courier.finish(wait=args.wait if stop is None else
                                min(args.wait, STOP_WAIT) if isinstance(stop, Stopped) else 0)
    except KeyboardInterrupt as e:
        stop, report = stop or e, courier.finish(wait=0)
    spool.close()
    keep_reserve(args.state)  # where acknowledgements made room on a full card
    unsaved = [line for r in records for line in r.unsaved]
    if unsaved:
        log(f"{len(unsaved)} input(s) sent could not be recorded as sent, so a run again sends "
            f"them a second time: {', '.join(unsaved[:3])}{' …' if len(unsaved) > 3 else ''}")
    unforgotten = [line for r in records for line in r.unforgotten]
    if unforgotten:
        log(f"{len(unforgotten)} input(s) whose messages the full spool gave up could not be "
            "taken out of the record of what was sent, so a run again skips them (--again "
            f"sends them): {', '.join(unforgotten[:3])}{' …' if len(unforgotten) > 3 else ''}")
    unmoved = [line for r in records for line in r.unmoved]
    if unmoved:
        log(f"{len(unmoved)} input(s) whose messages a collision moved to a new boot could "
            "not have the move recorded: should a later run's full spool give them up, a run "
            f"again skips them (--again sends them): {', '.join(unmoved[:3])}"
            f"{' …' if len(unmoved) > 3 else ''}")
    if claim is not None:
        claim.close()
    if skipped:
        log(skipped)
    log((f"stopped ({stop}): " if isinstance(stop, Stopped) else "stopped: " if stop else "")
        + report.line() + (f"; {failed} input(s) could not be read, encoded or spooled"
                           if failed else ""))
    if stop is not None and not isinstance(stop, Stopped):
        return 130
    return 0 if report.complete and not failed else 1
