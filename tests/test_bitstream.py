"""The .wlc bitstream: round trips with every coder, records what the input was, refuses bad
bytes with BitstreamError only (truncation, bit flips, huge fields, random bytes), and the
golden files pin its format."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walloc_edge.data import sample_photo, synthetic_music
from walloc_edge.export.validate import as_channels
from walloc_edge.runtime import (BitstreamError, Encoder, load_bundle, read_bitstream,
                                 read_latents)


@pytest.mark.parametrize("coder", ["rans", "webp", "png", "raw"])
def test_bitstream_round_trip(rgb, stereo, coder):
    photo = sample_photo("coffee")[:95, :131]
    encoder = Encoder(rgb[1], "numpy")
    header, latents = read_latents(encoder.encode(photo, coder=coder, tile=(5, 7)))
    assert header.shape == photo.shape and header.dtype == np.uint8
    assert header.model_id == load_bundle(rgb[1]).model_id and header.coder == coder
    assert np.array_equal(latents, encoder.latents(photo))
    square = encoder.encode(photo, coder=coder, tile=6)  # one number: a side (a TypeError)
    assert read_latents(square)[0].tile == (6, 6) and square == \
        encoder.encode(photo, coder=coder, tile=(6, 6))
    audio = synthetic_music(4001, 2).astype(np.float32) / 32768
    encoder = Encoder(stereo[1], "numpy")
    header, latents = read_latents(encoder.encode(audio, coder=coder))
    assert header.shape == (4001, 2) and header.dtype == np.float32
    assert np.array_equal(latents, encoder.latents(audio))


def test_gray_without_channel_axis_is_recorded(gray):
    image = as_channels(sample_photo("coffee"), 1)[:33, :47, 0]
    header, _ = read_latents(Encoder(gray[1], "numpy").encode(image))
    assert header.shape == (33, 47) and header.channels == 1


# --- malformed bitstreams -----------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_streams(rgb, stereo):
    photo = sample_photo("coffee")[:45, :61]
    streams = [Encoder(rgb[1], "numpy").encode(photo, coder=c, tile=(3, 4))
               for c in ("rans", "webp", "png", "raw")]
    audio = synthetic_music(2001, 2)
    streams += [Encoder(stereo[1], "numpy").encode(audio, coder=c) for c in ("rans", "raw")]
    return streams


def _with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body))


def _expect_bitstream_error(data):
    try:
        read_latents(data)
    except BitstreamError:
        pass


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(which=st.integers(0, 5), cut=st.floats(0, 1))
def test_truncation(valid_streams, which, cut):
    data = valid_streams[which]
    with pytest.raises(BitstreamError):
        read_latents(data[:int(cut * (len(data) - 1))])


@FUZZ
@given(which=st.integers(0, 5), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                                  min_size=1, max_size=4), fix_crc=st.booleans())
def test_bit_flips(valid_streams, which, flips, fix_crc):
    """Without a fixed CRC every flip is caught; with one, the field checks and the coders
    must still only ever raise BitstreamError (or decode something)."""
    data = bytearray(valid_streams[which])
    for where, bit in flips:
        data[int(where * (len(data) - 5))] ^= 1 << bit
    if fix_crc:
        _expect_bitstream_error(_with_crc(bytes(data[:-4])))
    elif bytes(data) != valid_streams[which]:
        with pytest.raises(BitstreamError):
            read_latents(bytes(data))


@FUZZ
@given(which=st.integers(0, 5), where=st.floats(0, 1), value=st.integers(0, 2 ** 32 - 1))
def test_huge_length_fields(valid_streams, which, where, value):
    data = bytearray(valid_streams[which][:-4])
    at = int(where * (len(data) - 4))
    data[at:at + 4] = struct.pack("<I", value)
    _expect_bitstream_error(_with_crc(bytes(data)))


@FUZZ
@given(data=st.binary(max_size=300), magic=st.booleans())
def test_random_bytes(data, magic):
    if magic:
        data = _with_crc(b"\x89WLC\x01" + data)
    with pytest.raises(BitstreamError):
        read_latents(data)


def test_claims_beyond_the_limit_are_refused(valid_streams):
    with pytest.raises(BitstreamError, match="limit"):
        read_bitstream(valid_streams[0], max_latents=100)


def claim(stream, size, tile):
    """The image ``stream``'s header made to claim ``size`` (H, W) in tiles of ``tile``
    latents (the axis fields at byte 33 + P, docs/bitstream.md), and a 4-byte length (0)
    for all but one of at most 1,000 tiles: a small file that claims much, its tile table
    short."""
    P = stream[32]
    axes = struct.pack("<IIII", size[0], tile[0], size[1], tile[1])
    tiles = -(-size[0] // 8 // tile[0]) * -(-size[1] // 8 // tile[1])
    return _with_crc(stream[:33 + P] + axes + bytes(4 * min(tiles - 1, 1000)))


def test_many_tiles_and_a_reader_s_own_limits_are_refused_before_the_tile_table(
        valid_streams):
    """A 32000 x 40000 claim in tiles of one latent (20 million tiles, 4 bytes each on the
    wire) is refused by its tile count; a reader's ``accept`` sees the header before any
    tile (here the table is short: accept's refusal comes first)."""
    with pytest.raises(BitstreamError, match="20,000,000 tiles, more than the limit"):
        read_bitstream(claim(valid_streams[0], (32000, 40000), (1, 1)))
    big = claim(valid_streams[0], (32000, 40000), (256, 256))
    seen = []

    def accept(header):
        seen.append(header.shape)
        raise ValueError("over this reader's limit")

    with pytest.raises(ValueError, match="over this reader's limit"):
        read_bitstream(big, accept=accept)
    assert seen == [(32000, 40000, 3)]
    with pytest.raises(BitstreamError, match="shorter than its tile table"):
        read_bitstream(big)


def test_decode_skips_a_claim_beyond_this_machine_s_memory(valid_streams, reference_dir,
                                                           tmp_path, capsys, monkeypatch):
    """A 595 KB file could claim a 1.3-gigapixel image: decode estimates the memory from the
    header and skips it with one line, before allocating (here the machine has 2 GiB free)."""
    from walloc_edge.cli import main
    from walloc_edge.decoder import cost

    monkeypatch.setattr(cost, "available_memory", lambda: 2 << 30)
    (tmp_path / "bomb.wlc").write_bytes(claim(valid_streams[0], (32768, 40000), (256, 256)))
    assert main(["decode", str(reference_dir / "rgb_j3_l12.pth"), str(tmp_path / "bomb.wlc"),
                 "-o", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "bomb.wlc: decoding its 32768x40000x3 image would take about" in out, out
    assert "more than the 2.0 GiB available here" in out and not list((tmp_path / "out").iterdir())


# --- golden files -------------------------------------------------------------------------

@pytest.mark.parametrize("name,bundle_fixture", [("rgb_j3_l12", "rgb"),
                                                 ("stereo_j4_l8", "stereo")])
def test_golden_files(request, reference_dir, name, bundle_fixture):
    golden = reference_dir.parent / "golden"
    _, bundle = request.getfixturevalue(bundle_fixture)
    data = np.load(golden / f"{name}.npz")
    encoder = Encoder(bundle, "numpy")
    assert np.array_equal(encoder.latents(data["input"]), data["latents"])
    files = sorted(golden.glob(f"{name}.*.wlc"))
    assert files
    for path in files:
        header, latents = read_latents(path.read_bytes())
        assert header.model_id == encoder.model_id
        assert header.sample_rate == (44100 if name.startswith("stereo") else 0)
        assert header.shape == data["input"].shape and header.dtype == data["input"].dtype
        assert np.array_equal(latents, data["latents"])
        if header.coder in ("rans", "raw"):  # pure numpy: byte-identical on every platform
            again = encoder.encode(data["input"], coder=header.coder,
                                   sample_rate=header.sample_rate)
            assert again == path.read_bytes()


@pytest.mark.parametrize("name", ["rgb_j3_l12", "stereo_j4_l8"])
@pytest.mark.parametrize("version", [3, 4])
def test_older_rans_model_versions_still_read(reference_dir, name, version):
    """Files written before the mode byte (version 4) and before constant channels (version
    3, what the C encoder still writes) decode to the same latents."""
    golden = reference_dir.parent / "golden"
    data = np.load(golden / f"{name}.npz")
    path = golden / f"rans-v{version}" / f"{name}.rans.wlc"
    header, latents = read_latents(path.read_bytes())
    assert header.coder_params == bytes([15, version])
    assert np.array_equal(latents, data["latents"])
