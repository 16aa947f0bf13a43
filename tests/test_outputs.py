"""Outputs are never half-written, never silently replaced, never collapsed into one."""
import os

import numpy as np
import pytest
from PIL import Image

from walloc_edge.cli import main
from walloc_edge.runtime.io import write_atomic


def photo(seed):
    return np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_interrupted_write_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    target = tmp_path / "out.wlc"

    def interrupted(src, dst):
        raise KeyboardInterrupt  # Ctrl-C between writing and renaming

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_synced_is_an_error_unless_unsupported(tmp_path, monkeypatch):
    """The rename is durable only once its folder is synced: an I/O error there raises (so
    serve does not acknowledge), while a file system without folder syncs is let be."""
    import errno
    real = os.fsync

    def fsync_failing(code):
        def fsync(fd):
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                raise OSError(code, os.strerror(code))
            return real(fd)
        return fsync

    monkeypatch.setattr(os, "fsync", fsync_failing(errno.EIO))
    with pytest.raises(OSError, match="Input/output"):
        write_atomic(tmp_path / "a.wlc", b"x")
    monkeypatch.setattr(os, "fsync", fsync_failing(errno.EINVAL))
    write_atomic(tmp_path / "b.wlc", b"y")
    assert (tmp_path / "b.wlc").read_bytes() == b"y"


def test_encode_keeps_same_stems_apart_and_does_not_overwrite(rgb_bundle, tmp_path, capsys):
    Image.fromarray(photo(0)).save(tmp_path / "a.png")
    Image.fromarray(photo(1)).save(tmp_path / "a.jpg", quality=95)
    out = tmp_path / "wlc"
    argv = ["encode", str(rgb_bundle), str(tmp_path / "a.png"), str(tmp_path / "a.jpg"), "-o",
            str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a-jpg.wlc", "a-png.wlc"]
    before = (out / "a-png.wlc").read_bytes()
    stamp = (out / "a-png.wlc").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0  # a run again: both outputs are newer than their inputs
    assert "kept 2 existing output(s)" in capsys.readouterr().out
    assert (out / "a-png.wlc").stat().st_mtime_ns == stamp  # not written again
    (out / "a-png.wlc").write_bytes(b"another model's")  # newer, but not this model's
    assert main(argv) == 1
    said = capsys.readouterr().out
    assert "a-png.wlc exists, not made by this model" in said and "kept 1 existing" in said
    (out / "a-png.wlc").write_bytes(before)
    make_older(out / "a-png.wlc", than=tmp_path / "a.png")  # the input changed since
    assert main(argv) == 1
    said = capsys.readouterr().out
    assert "a-png.wlc exists and is older than" in said and "kept 1 existing" in said
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "a-png.wlc").read_bytes() == before
    for other in (["--coder", "webp"], ["--level", "fastest"]):  # other settings: said, not
        assert main(argv + other) == 1  # taken for this run's outputs
        said = capsys.readouterr().out
        assert "not made by this model and these settings" in said and "kept" not in said


def test_decode_keeps_same_stems_apart_and_does_not_overwrite(rgb_bundle, reference_dir,
                                                              tmp_path, capsys):
    from walloc_edge.decoder import Decoder
    from walloc_edge.runtime import Encoder

    encoder = Encoder(rgb_bundle, "numpy")
    for folder, seed in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.wlc").write_bytes(encoder.encode(photo(seed)))
    out = tmp_path / "decoded"
    argv = ["decode", str(reference_dir / "rgb_j3_l12.pth"), str(tmp_path / "a" / "x.wlc"),
            str(tmp_path / "b" / "x.wlc"), "-o", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_x.png", "b_x.png"]
    first = (out / "a_x.png").read_bytes()
    (out / "a_x.png").write_bytes(b"kept")
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:  # judged from the header: nothing decoded
        patch.setattr(Decoder, "decode", lambda *a, **k: pytest.fail("decoded"))
        assert main(argv) == 0  # a run again: both outputs are newer than their inputs
    assert "kept 2 existing output(s)" in capsys.readouterr().out
    assert (out / "a_x.png").read_bytes() == b"kept"
    make_older(out / "a_x.png", than=tmp_path / "a" / "x.wlc")
    assert main(argv) == 1
    assert "a_x.png exists and is older than" in capsys.readouterr().out
    assert (out / "a_x.png").read_bytes() == b"kept"
    assert main(argv + ["--overwrite"]) == 0 and (out / "a_x.png").read_bytes() == first


def make_older(path, than):
    """Give ``path`` a time before ``than``'s, as if its input had changed since."""
    stamp = than.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))


def bomb_png(path, width=100_000, height=100_000):
    """A PNG whose header claims 10 gigapixels (a decompression bomb), a few bytes long."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" +
                     chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_one_bad_input_does_not_stop_the_batch(rgb_bundle, tmp_path, capsys):
    """A decompression bomb, a .npy whose header claims terabytes, an empty .npy (a writer
    that has made but not yet filled it: a traceback that ended the batch, and a watching
    sensor) and a truncated photo are each skipped with one line; the good photos around
    them are encoded (exit status 1)."""
    import struct

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo(0)).save(folder / "a.png")
    bomb_png(folder / "b-bomb.png")
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000000, 3), }"
    header += " " * (118 - len(header)) + "\n"
    (folder / "c-huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
                                        + header.encode() + bytes(64))
    (folder / "c-nothing.npy").write_bytes(b"")
    (folder / "d-cut.png").write_bytes((folder / "a.png").read_bytes()[:100])
    Image.fromarray(photo(1)).save(folder / "e.png")
    out = tmp_path / "wlc"
    assert main(["encode", str(rgb_bundle), str(folder), "-o", str(out)]) == 1
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.wlc", "e.wlc"]
    assert "decompression bomb" in text and "c-huge.npy: not a readable .npy" in text
    assert "c-nothing.npy: not a readable .npy" in text
    assert "d-cut.png" in text and "encoded 2 input(s)" in text


def test_an_input_copied_in_with_an_older_time_is_not_kept_as_encoded(rgb_bundle, tmp_path,
                                                                      capsys):
    """cp -p, rsync -a and unzip give a new file an old time: its .wlc looked newer and was
    kept, holding the old picture. The input's change time says it changed."""
    Image.fromarray(photo(0)).save(tmp_path / "a.png")
    out = tmp_path / "wlc"
    argv = ["encode", str(rgb_bundle), str(tmp_path / "a.png"), "-o", str(out)]
    assert main(argv) == 0
    stamp = (out / "a.wlc").stat().st_mtime_ns - 5 * 10**9  # seconds apart: coarse clocks
    os.utime(out / "a.wlc", ns=(stamp, stamp))
    Image.fromarray(photo(1)).save(tmp_path / "b.png")
    os.utime(tmp_path / "b.png", ns=(stamp - 5 * 10**9,) * 2)  # older than the .wlc
    os.replace(tmp_path / "b.png", tmp_path / "a.png")
    capsys.readouterr()
    assert main(argv) == 1
    assert "a.wlc exists and is older than" in capsys.readouterr().out


def test_a_full_output_disk_stops_the_batch_in_one_line(rgb_bundle, tmp_path, capsys,
                                                        monkeypatch):
    """Every input after the disk filled would fail the same way: the batch stops, says
    what was written and that a run again finishes it (it was a raw errno)."""
    import errno

    from walloc_edge.cli import encode as encode_command

    for i in range(3):
        Image.fromarray(photo(i)).save(tmp_path / f"p{i}.png")
    real, written = encode_command.write_atomic, []

    def filling(path, data):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(path)
        real(path, data)

    monkeypatch.setattr(encode_command, "write_atomic", filling)
    code = main(["encode", str(rgb_bundle), str(tmp_path), "-o", str(tmp_path / "wlc")])
    said = capsys.readouterr()
    assert code == 2 and "encoded 1 input(s)" in said.out, said
    assert said.err.count("\n") == 1 and "the disk is full (No space left on device)" in \
        said.err and "Errno" not in said.err, said.err


@pytest.mark.parametrize("fmt, dtype", [("flac", np.int16), ("flac", np.float32),
                                        ("wav", np.float32)])
def test_a_full_disk_under_an_audio_output_is_an_os_error(fmt, dtype, monkeypatch, tmp_path):
    """soundfile writes through a callback that swallowed the disk's ENOSPC and raised an
    AssertionError instead (or wrote a damaged file without a word), so serve took a full
    disk for a bad message and refused it for good. The error is the disk's now."""
    import contextlib
    import errno

    from types import SimpleNamespace

    from walloc_edge.runtime import io
    from walloc_edge.runtime.modality import AUDIO

    class FullDisk:
        def __init__(self):
            self.written = 0

        def write(self, data):
            if self.written + len(data) > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return len(data)

    monkeypatch.setattr(io, "atomic_file", lambda path: contextlib.nullcontext(FullDisk()))
    signal = (np.random.default_rng(0).standard_normal((44100, 2)) * 3000).astype(dtype)
    header = SimpleNamespace(modality=AUDIO, channels=2, sample_rate=44100)
    with pytest.raises(OSError) as raised:
        io.write_signal(signal, header, tmp_path / "music", fmt)
    assert raised.value.errno == errno.ENOSPC


def test_a_metrics_line_cut_short_is_ended_at_the_next_start(tmp_path):
    """A full disk left half a line in metrics.jsonl, and a crash kept it: the next start
    joined its first record to it, so that neither could be read. The cut line is ended
    (never cut: servers may share the log), and the log of no regular file is appended to
    as it is."""
    import json

    from walloc_edge.server.outputs import open_log

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b", "fi')
    with open_log(path) as log:
        log.write(json.dumps({"key": "c"}) + "\n")
    assert path.read_text().splitlines() == ['{"key": "a"}', '{"key": "b", "fi', '{"key": "c"}']
    path.write_text('{"key": "a"}\n')
    open_log(path).close()
    assert path.read_text() == '{"key": "a"}\n'  # a whole log is left as it is
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with open_log(fifo) as log:  # it tried to read and seek it
            log.write("x\n")
        assert os.read(reader, 10) == b"x\n"
    finally:
        os.close(reader)


def test_inputs_sharing_a_name_are_named_by_their_paths_alone(tmp_path):
    """a/x.wlc b/x.wlc made x.png and x-2.png in the order given: given the other way, or
    with c/x.wlc before them, a run again kept x.png for an input whose picture it did not
    hold, and said all was done. Their folders tell them apart now, whatever the order or
    the company."""
    from pathlib import Path

    from walloc_edge.runtime.files import distinct_names

    a, b, c = ((tmp_path / f / "x.wlc", Path("x")) for f in "abc")
    png = (tmp_path / "a" / "x.png", Path("x"))
    names = dict(distinct_names([a, b, png]))
    assert names == dict(distinct_names([png, b, a]))
    assert names[a[0]] == Path("a_x") and names[b[0]] == Path("b_x")
    assert names[png[0]] == Path("x-png")
    more = dict(distinct_names([c, b, a]))  # one more: the others' names stay
    assert more[a[0]] == Path("a_x") and more[b[0]] == Path("b_x") and more[c[0]] == Path("c_x")
    deeper = dict(distinct_names([(tmp_path / "p" / "s" / "y.wlc", Path("y")),
                                  (tmp_path / "q" / "s" / "y.wlc", Path("y"))]))
    assert sorted(map(str, deeper.values())) == ["p_s_y", "q_s_y"]