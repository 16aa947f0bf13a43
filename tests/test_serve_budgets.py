"""One message cannot kill or stall serve: a claim whose decode would take too much memory
(a thin 8 x 2,000,000 image) or time (4096 x 4096) is refused from its header, a sensor's
flood waits its turn, and the estimate the refusals rest on covers what a decode takes.
Loopback only, serve under an address-space limit, bounded in time."""
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import free_port
from walloc_edge.cli import main
from walloc_edge.firmware_bridge.framing import ACK_REJECTED, AckReader, frames_for
from walloc_edge.firmware_bridge.loops import Rejected, serve_messages
from walloc_edge.runtime import BitstreamError, Encoder, load_bundle, read_bitstream
from walloc_edge.runtime.bitstream import write_bitstream


def forged(bundle, shape, sample_rate=0, dtype="uint8", tile=None):
    """A CRC-valid .wlc of all-zero latents claiming ``shape`` (what an attacker sends)."""
    b = load_bundle(bundle)
    block = 2 ** b.config["J"]
    edge = 2 * b.modality.edge_latents
    latents = np.zeros((b.config["latent_dim"], *[-(-n // block) + edge
                                                  for n in shape[:-1]]), np.int8)
    return write_bitstream(b, latents, {"shape": shape, "dtype": dtype},
                           sample_rate=sample_rate, tile=tile)


def test_the_time_estimate_counts_each_tile(rgb_weights_bundle, reference_dir):
    """A claim cut into tiles of one latent (65,536 of them in a 2 MB message) took 22 s to
    entropy-decode under a 10 s budget, the estimate counting the network alone: each
    tile's own time is in it, as measured at calibration."""
    from walloc_edge.decoder import Decoder
    from walloc_edge.decoder.cost import Speed, tile_seconds
    from walloc_edge.runtime.modality import IMAGE

    decoder = Decoder(reference_dir / "rgb_j3_l12.pth", "cpu")
    decoder.speed = Speed(0.01, 8, 1e-5, 2e-6, 3000.0, 5e-4)
    whole = read_bitstream(forged(rgb_weights_bundle, (256, 256, 3))).header
    tiny = read_bitstream(forged(rgb_weights_bundle, (256, 256, 3), tile=1)).header
    assert whole.tile_count() == 1 and tiny.tile_count() > 1000
    extra = decoder.cost(tiny).seconds - decoder.cost(whole).seconds
    assert extra == pytest.approx((tiny.tile_count() - 1) * 5e-4)
    assert 0 < tile_seconds(12, IMAGE) < 0.1


def test_a_server_without_a_decoder_budgets_the_entropy_decoding(rgb_weights_bundle):
    """--no-decode (latents kept, no decoder) had no budget at all: a claim of 65,536 tiny
    tiles was kept after 22 s. Its cost is the entropy decoding's: each tile's measured
    time, and the latents with the largest tile's working arrays."""
    from walloc_edge.server import ServedModel

    served = ServedModel(str(rgb_weights_bundle), decode=False)
    whole = read_bitstream(forged(rgb_weights_bundle, (256, 256, 3))).header
    tiny = read_bitstream(forged(rgb_weights_bundle, (256, 256, 3), tile=1)).header
    (whole_bytes, whole_s), (tiny_bytes, tiny_s) = served.cost(whole), served.cost(tiny)
    assert served.per_tile > 0 and whole_s == pytest.approx(served.per_tile)
    assert tiny_s == pytest.approx(tiny.tile_count() * served.per_tile)
    assert whole_bytes > tiny_bytes >= 12 * 32 * 32  # (the latents, at least)


def test_the_tile_estimate_covers_the_dearest_tiles(stereo):
    """Audio's calibration once timed tiles in the LZMA mode (what level best picks for a
    small tile, ~7 µs) where a sender's rANS-mode tiles take ~30 times as long: the estimate
    covers a claim of tiny rANS tiles (measured: the fastest of three decodes)."""
    from walloc_edge.decoder.cost import tile_seconds

    b = load_bundle(stereo[1])
    length = 200 * 2 ** b.config["J"]
    positions = 200 + 2 * b.modality.edge_latents
    latents = np.random.default_rng(1).integers(-127, 128, (b.config["latent_dim"], positions))
    blob = write_bitstream(b, latents.astype(np.int8), {"shape": (length, 2), "dtype": "int16"},
                           tile=1, level="fast")
    stream = read_bitstream(blob)

    def decoding():
        start = time.perf_counter()
        stream.latents()
        return time.perf_counter() - start

    took = min(decoding() for _ in range(3))
    assert took <= 2 * stream.header.tile_count() * tile_seconds(b.config["latent_dim"],
                                                                  b.modality)


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_hostile_claims_are_refused_and_a_good_sensor_goes_on(rgb_weights_bundle,
                                                              reference_dir, tmp_path):
    """A thin 8 x 2,000,000 claim and a 4096 x 4096 one (inside --max-pixels) are refused
    before decoding (the attacker hears ACK_REJECTED, the log names the budget); serve, kept
    under 6 GB of address space, stays up and writes a good sensor's next message within
    15 s. (The test model decodes fast, so its time budget is set low: what is checked is
    that a claim over the budget is refused, whatever the machine's speed.)"""
    thin = forged(rgb_weights_bundle, (8, 2_000_000, 3))
    square = forged(rgb_weights_bundle, (4096, 4096, 3))
    good = Encoder(rgb_weights_bundle, "numpy").encode(np.zeros((32, 40, 3), np.uint8))
    port, out = free_port(), tmp_path / "out"
    proc = subprocess.Popen(
        ["prlimit", "--as=6000000000", sys.executable, "-m", "walloc_edge.cli", "serve",
         str(reference_dir / "rgb_j3_l12.pth"), "--listen", f"tcp://127.0.0.1:{port}",
         "--out", str(out), "--device", "cpu",
         "--max-decode-seconds", "2"],  # the test model is small: 4096² takes ~9 s on a quiet CPU
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()

    def wait_for(condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.05)

    try:
        wait_for(lambda: any(line.startswith("listening") for line in lines), 120)
        with socket.create_connection(("127.0.0.1", port)) as attacker:
            for sequence, blob in enumerate((thin, square)):
                attacker.sendall(b"".join(frames_for(blob, 66, 1, sequence)))
            with socket.create_connection(("127.0.0.1", port)) as sensor:
                sensor.sendall(b"".join(frames_for(good, 7, 1, 0)))
                sent = time.monotonic()
                wait_for(lambda: any(" -> " in line for line in lines), 15)
                assert time.monotonic() - sent < 15
            attacker.settimeout(15)
            reader, acks = AckReader(), []
            while len(acks) < 2:
                acks += reader.feed(attacker.recv(4096))
        assert {(a.sequence, a.status) for a in acks} == {(0, ACK_REJECTED), (1, ACK_REJECTED)}
        text = "".join(lines)
        for sequence in (0, 1):
            assert re.search(rf"rejected message 0000000000000042-1-{sequence} .* over "
                             r"--max-decode-(mb|seconds)", text), text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0 and "decoded 1, rejected 2" in "".join(lines), "".join(lines)


class FakeReceiver:
    """Messages already arrived, as a receiver hands them out."""

    def __init__(self, items):
        self.items, self.stopped = list(items), threading.Event()

    def messages(self, timeout=None, hold=False):
        while self.items:
            yield self.items.pop(0)
        self.stopped.set()

    def stop(self):
        self.stopped.set()


def test_sensors_take_turns():
    """A sensor's five queued messages do not hold another's up: it is served second, and
    each sensor's own messages keep their order."""
    def item(sensor, sequence):
        return SimpleNamespace(sensor=sensor, sequence=sequence, key=f"{sensor}-{sequence}",
                               sender="test", release=lambda: None)

    order = []

    def handle(received):
        order.append(received.key)
        if received.sensor == 1 and received.sequence == 3:
            raise Rejected("heavy")

    receiver = FakeReceiver([item(1, s) for s in range(5)] + [item(2, 0), item(2, 1)])
    assert serve_messages(receiver, handle, log=lambda line: None) == (6, 1, 0)
    assert order == ["1-0", "2-0", "1-1", "2-1", "1-2", "1-3", "1-4"]


@pytest.mark.slow  # serve (or a broker, a store) started for it: seconds
def test_decoded_counts_only_what_was_written(rgb_weights_bundle, reference_dir, tmp_path,
                                              capsys):
    """The same message read again by a second serve on the same folder is acknowledged
    again, not counted as decoded."""
    from walloc_edge.firmware_bridge.transports import open_sender

    link = tmp_path / "link.frames"
    with open_sender(str(link), sensor=9) as sender:
        sender.send(Encoder(rgb_weights_bundle, "numpy").encode(np.zeros((32, 32, 3), np.uint8)))
    argv = ["serve", str(reference_dir / "rgb_j3_l12.pth"), "--listen", str(link), "--out",
            str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 0
    assert "decoded 1, rejected 0, not written 0, acknowledged again 0" in capsys.readouterr().out
    assert main(argv) == 0
    assert "decoded 0, rejected 0, not written 0, acknowledged again 1" in capsys.readouterr().out


def test_impossible_sample_rate_is_refused_by_the_reader(reference_dir, tmp_path):
    """A sample rate of 2^31 is refused when the header is read, naming the field."""
    from walloc_edge.codec import load
    from walloc_edge.codec.sensor import write_bundle

    write_bundle(load(reference_dir / "stereo_j4_l8.pth"), tmp_path / "bundle")
    blob = bytearray(forged(tmp_path / "bundle", (4096, 2), 44100, "int16")[:-4])
    at = bytes(blob).index(struct.pack("<I", 44100))
    blob[at:at + 4] = struct.pack("<I", 2 ** 31)
    with pytest.raises(BitstreamError, match="sample rate 2,147,483,648 Hz is out of range"):
        read_bitstream(bytes(blob) + struct.pack("<I", zlib.crc32(bytes(blob))))


MEASURE = textwrap.dedent("""
    import json, sys, numpy as np
    from walloc_edge.decoder import Decoder
    from walloc_edge.runtime import read_bitstream
    def peak():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    decoder = Decoder(sys.argv[1], "cpu")
    stream = read_bitstream(open(sys.argv[2], "rb").read())
    cost = decoder.cost(stream.header)
    open("/proc/self/clear_refs", "w").write("5")
    before = peak()
    decoder.decode(stream)
    print(json.dumps({"estimate": cost.bytes, "measured": peak() - before}))
""")


@pytest.mark.slow  # decodes two whole images in fresh processes (~35 s)
@pytest.mark.parametrize("shape", [(8, 200_000, 3), (1100, 700, 3)])
def test_memory_estimate_covers_the_measured_peak(shape, rgb_weights_bundle, reference_dir,
                                                  tmp_path):
    """The decode's peak resident memory (a fresh process, Linux's VmHWM) stays under the
    estimate serve refuses by, for a thin image and a tiled square one."""
    try:
        open("/proc/self/clear_refs", "w").close()
    except OSError:
        pytest.skip("peak memory cannot be reset here")
    (tmp_path / "claim.wlc").write_bytes(forged(rgb_weights_bundle, shape))
    run = subprocess.run([sys.executable, "-c", MEASURE, str(reference_dir / "rgb_j3_l12.pth"),
                          str(tmp_path / "claim.wlc")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.splitlines()[-1])
    assert got["estimate"] >= got["measured"], got
