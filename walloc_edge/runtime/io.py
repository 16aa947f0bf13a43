"""Signal files without torch: reading what sensors encode (images through Pillow, .npy
cubes, audio through soundfile: WAV, FLAC, Ogg; WAV also through the standard library) and
writing what a server decodes (PNG/TIFF/NPY, WAV/FLAC), both atomically where they write.

Each reader returns what :class:`~walloc_edge.runtime.Encoder` takes (uint8 H×W×C images;
L×C audio as int16 for 8/16-bit PCM, as float in [-1, 1] for deeper and float layouts) or
raises ``ValueError`` naming the file and what to do about it.
"""
import contextlib
import errno
import hashlib
import io
import os
import threading
import wave
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .modality import AUDIO_SUFFIXES, IMAGE_SUFFIXES, Modality

__all__ = ["IMAGE_SUFFIXES", "AUDIO_SUFFIXES", "Source", "read_source", "read_input",
           "write_signal", "match_channels", "atomic_file", "write_atomic"]


class Source(NamedTuple):
    """An input as a model takes it: ``sample`` and ``rate`` (0 for images); ``raw_bytes``,
    the size of the file's own samples (8-bit pixels of its channels, 16-bit PCM of its
    channels: what a compression ratio is counted against); ``note``, how the sample was
    made to fit the model's channels (gray made RGB, alpha dropped, mono put on every
    channel), or None."""
    sample: np.ndarray
    rate: int
    raw_bytes: int
    note: "str | None"


def read_source(path: "str | Path", modality: Modality, channels: int) -> Source:
    """The :class:`Source` in ``path`` for a model of ``modality`` with ``channels``
    channels."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in modality.inputs:
        raise ValueError(f"{path}: not {modality.noun} this model takes (use "
                         f"{', '.join(sorted(modality.inputs))})")
    if suffix == ".npy":
        cube = _read_npy(path)
        return Source(cube, 0, cube.nbytes, None)
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path, channels)
    samples, rate = _read_audio(path)
    have = samples.shape[1]
    notes = [] if have == channels else \
        [f"{have} channel(s) mixed to mono"] if channels == 1 else \
        [f"mono, put on all {channels} channels: it decodes as {channels} channels"]
    matched = match_channels(samples, channels, path)
    if matched.dtype.kind == "f" and (over := np.abs(matched) > 1).any():  # what is encoded
        notes.append(f"{over.mean():.2%} of its samples are beyond full scale (peak "
                     f"{np.abs(matched).max():.2f}): clipped to it, as 16-bit PCM would be")
    return Source(matched, rate, samples.shape[0] * have * 2, "; ".join(notes) or None)


def read_input(path: "str | Path", modality: Modality, channels: int) -> "tuple[np.ndarray, int]":
    """(sample, sample rate) in ``path`` for a model of ``modality`` with ``channels``
    channels; the rate is 0 for images."""
    source = read_source(path, modality, channels)
    return source.sample, source.rate


ORIENTATION = 0x0112  # the EXIF tag


def _orientation(im):
    """The EXIF orientation tag (1: upright), quietly: a damaged EXIF block reads as none."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return im.getexif().get(ORIENTATION, 1)
        except Exception:  # Pillow's parser on a corrupt block: no orientation to apply
            return 1


def _read_image(path, channels):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            # 16 bits a sample: the top 8 kept, as Pillow keeps them of 16-bit RGB by itself
            deep = ";16" in im.mode or any(";16" in str(t.args) for t in im.tile or ())
            if im.mode.startswith("I;16"):
                im = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8), "L")
            elif im.mode.startswith("I") or im.mode == "F":
                depth = "float" if im.mode == "F" else "32-bit integer"
                raise ValueError(f"{path}: {depth} images ({im.mode}) are not supported; "
                                 "save it as 8-bit")
            frames = getattr(im, "n_frames", 1)  # a multi-page TIFF, an animation: frame 0
            turned = _orientation(im) in range(2, 9)
            if turned:  # as a viewer shows it: a phone's photo upright
                im = ImageOps.exif_transpose(im)
            # its colour samples a pixel (a palette image's: its palette's), alpha not encoded
            palette = im.mode in ("P", "PA")
            mode = im.palette.mode if palette and im.palette else im.mode
            colours = Image.getmodebands(mode) - ("A" in mode)
            alpha = "A" in im.mode or "A" in mode or "transparency" in im.info
            label = "a palette image" if palette else im.mode
            if channels not in (1, 3):
                bands = np.asarray(im)
                return Source(bands, 0, bands.nbytes, None)
            sample = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: refused as a likely decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    note = []
    if channels == 3 and colours == 1:
        note.append("gray, encoded as RGB: it decodes as RGB")
    elif channels == 1 and colours > 1:
        note.append(f"{label}, encoded as gray")
    elif channels == 3 and mode not in ("RGB", "RGBA"):
        note.append(f"{label}, converted to RGB")
    if deep:
        note.append("16 bits a sample, reduced to 8")
    if alpha:
        note.append("its alpha channel is not encoded")
    if turned:
        note.append("turned upright as its EXIF orientation says")
    if frames > 1:
        note.append(f"the first of its {frames} frames or pages only")
    raw = im.width * im.height * colours
    return Source(sample, 0, raw, "; ".join(note) or None)


def _read_npy(path):
    """The array, read only once its header has been checked against the file's size (a
    header may claim terabytes)."""
    try:
        mapped = np.load(path, allow_pickle=False, mmap_mode="r")
        return np.array(mapped)
    except (OSError, ValueError, MemoryError, EOFError) as e:  # EOFError: an empty file
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None


def match_channels(samples: np.ndarray, channels: int, path: str = "the input") -> np.ndarray:
    """Audio with the model's channel count, as images are converted to gray or RGB: a mono
    model takes the mean of the channels (a downmix), a multi-channel one takes a mono file
    on every channel; any other mismatch is an error naming both counts."""
    have = samples.shape[1]
    if have == channels:
        return samples
    if channels == 1:
        mixed = samples.astype(np.float64).mean(axis=1, keepdims=True)
        return np.round(mixed).astype(np.int16) if samples.dtype == np.int16 else \
            mixed.astype(samples.dtype)
    if have == 1:
        return np.repeat(samples, channels, axis=1)
    raise ValueError(f"{path}: {have} audio channels, and this model takes {channels}; "
                     "mix it to mono or to the model's channel count first")


def _read_audio(path):
    """(samples, rate): int16 for 8- and 16-bit PCM (exact), float in [-1, 1] for every
    deeper or float layout (24/32-bit PCM, float32/64, Ogg/Vorbis), so that no layout is
    cut to the wrong scale. soundfile reads every format; without it, WAV goes through the
    standard library."""
    if path.suffix.lower() == ".wav":
        _check_wav_sizes(path)
    try:
        import soundfile
    except ImportError:
        if path.suffix.lower() == ".wav":
            return _read_wav(path)
        raise ValueError(f"{path}: reading {path.suffix} needs soundfile: "
                         "pip install soundfile") from None
    try:
        subtype = soundfile.info(str(path)).subtype
        dtype = "int16" if subtype in SHALLOW_PCM else \
            "float64" if subtype == "DOUBLE" else "float32"
        samples, rate = soundfile.read(str(path), dtype=dtype, always_2d=True)
    except RuntimeError as e:  # libsndfile's errors
        raise ValueError(f"{path}: not readable audio ({e})") from None
    if not len(samples):
        raise ValueError(f"{path}: the file holds no samples")
    return samples, rate


SHALLOW_PCM = {"PCM_S8", "PCM_U8", "PCM_16"}  # read as int16 without loss


def _check_wav_sizes(path):
    """Refuse a RIFF WAV whose data chunk claims more bytes than the file holds: readers
    take what is there without a word, and a clip cut short must not pass for whole."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"RIFF" or len(f.read(4)) != 4 or f.read(4) != b"WAVE":
                return  # not RIFF (RF64, or not a WAV): the reader judges it
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return
                name, length = head[:4], int.from_bytes(head[4:], "little")
                if name == b"data":
                    have = size - f.tell()
                    if length > have:
                        raise ValueError(f"{path}: its data chunk claims {length:,} bytes but "
                                         f"the file holds {have:,} after it (cut short, or a "
                                         "header that lies); repair or export it again")
                    return
                f.seek(length + (length & 1), os.SEEK_CUR)
    except OSError as e:
        raise ValueError(f"{path}: not a readable WAV file ({e})") from None


def _read_wav(path):
    """PCM WAV through the standard library: 8/16-bit as int16, 24/32-bit as float32."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except wave.Error as e:  # e.g. float WAV, which the wave module refuses
        raise ValueError(f"{path}: this WAV layout needs soundfile ({e}): "
                         "pip install soundfile") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable WAV file ({e})") from None
    raw = np.frombuffer(frames, np.uint8)
    raw = raw[:len(raw) // (width * channels) * width * channels].reshape(-1, width)
    if not len(raw):
        raise ValueError(f"{path}: the file holds no samples")
    if width == 1:  # unsigned 8-bit
        pcm = (raw[:, 0].astype(np.int16) - 128) << 8
    elif width == 2:
        pcm = raw.copy().view("<i2")[:, 0]
    else:  # little-endian signed 24/32-bit: placed in the top bytes of an int32
        wide = np.zeros((len(raw), 4), np.uint8)
        wide[:, 4 - width:] = raw
        pcm = (wide.view("<i4")[:, 0] / 2.0 ** 31).astype(np.float32)
    return pcm.reshape(-1, channels), rate


@contextlib.contextmanager
def atomic_file(path):
    """A binary file to write ``path`` through: written beside it, synced, renamed over it,
    and the folder synced, so that the file appears under its name whole or not at all (a
    crash, Ctrl-C or a full disk leaves no partial file behind)."""
    path = Path(path)
    name = path.name if len(os.fsencode(path.name)) <= 200 else \
        hashlib.sha256(os.fsencode(path.name)).hexdigest()[:32]  # a long name: under 255 bytes
    tmp = path.with_name(f".{name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path, data):
    """``data`` (bytes) under ``path`` whole or not at all (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


# A folder sync that fails so means the rename may not survive a crash; other failures are
# file systems that cannot sync a folder at all (EINVAL, ENOTSUP, ENOSYS, EACCES: some
# network, FUSE and shared-folder mounts), where a rename is as durable as it gets.
_SYNC_FAILED = {errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _sync_folder(folder):
    """The rename made durable; OSError where the sync failed (so that nothing is
    acknowledged that a crash could lose), nothing where the file system has no such sync."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # no folder fds here (Windows)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno in _SYNC_FAILED:
            raise
    finally:
        os.close(fd)


PNG_LEVEL = 1


def write_signal(signal, header, stem, fmt=None, overwrite=True):
    """Write a decoded signal next to ``stem`` in ``fmt`` (default: PNG for gray/RGB images,
    NPY for other band counts, WAV for audio: 16-bit PCM for int16 input, 32-bit float for
    float input); returns the path. The file appears whole or not at all; without
    ``overwrite`` an existing one is a FileExistsError."""
    path = signal_path(header, stem, fmt)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists")
    with atomic_file(path) as f:
        _write(f, signal, header, path.suffix[1:])
    return path


def signal_path(header, stem, fmt=None):
    """The file ``write_signal`` writes for a bitstream of ``header``: known before its
    decode, so an output there can be judged first; ValueError for a format its signal
    cannot be written as."""
    stem = Path(stem)
    channels = header.channels
    if fmt is None:
        fmt = header.modality.output_format
        if fmt == "png" and channels not in (1, 3):
            fmt = "npy"  # hyperspectral
    if fmt not in header.modality.output_formats:
        raise ValueError(f"cannot write {header.modality} as {fmt}; choose from "
                         f"{', '.join(header.modality.output_formats)}")
    if fmt in ("png", "tiff") and channels not in (1, 3):
        raise ValueError(f"a {channels}-band image cannot be a {fmt}; write it as npy")
    if fmt == "flac" and (why := flac_cannot_hold(header)):
        raise ValueError(f"FLAC cannot hold {why}; write it as wav")
    return stem.with_name(stem.name + "." + fmt)


FLAC_MAX_CHANNELS = 8  # what a FLAC stream holds


def flac_cannot_hold(header):
    """What of the audio of ``header`` a FLAC file cannot hold (libsndfile refuses it, and
    the format's frame headers cannot say it): more than 8 channels, or a sample rate over
    65,535 Hz that is not a multiple of 10 up to 655,350; None where it can."""
    rate = header.sample_rate or 44100  # (what _write writes for an unknown rate)
    if header.channels > FLAC_MAX_CHANNELS:
        return f"{header.channels} channels ({FLAC_MAX_CHANNELS} at most)"
    if rate > 65535 and (rate > 655350 or rate % 10):
        return f"a sample rate of {rate:,} Hz"
    return None


def _write(f, signal, header, fmt):
    if fmt == "npy":
        np.save(f, signal)
        return
    if fmt in ("png", "tiff"):
        from PIL import Image

        picture = signal.squeeze(-1) if signal.ndim == 3 and header.channels == 1 else signal
        # zlib level 1: a decoded photo's PNG about 9% larger than at PIL's default 6, and
        # written 3-4x faster (at 224x224 it cost a server about as much as the decode)
        options = {"compress_level": PNG_LEVEL} if fmt == "png" else {}
        Image.fromarray(picture).save(f, format=fmt.upper(), **options)
        return
    rate = header.sample_rate or 44100
    audio = signal.reshape(len(signal), -1)
    if audio.dtype.kind == "f":  # float input: keep float (WAV) or the deepest PCM (FLAC)
        f.write(_soundfile_bytes(audio, rate, fmt, "FLOAT" if fmt == "wav" else "PCM_24"))
        return
    pcm = audio.astype("<i2")
    if fmt == "wav":
        with wave.open(f, "wb") as w:
            w.setnchannels(pcm.shape[1])
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.tobytes())
    else:
        f.write(_soundfile_bytes(pcm, rate, fmt, "PCM_16"))


def _soundfile_bytes(audio, rate, fmt, subtype):
    """``audio`` encoded by soundfile in memory. Written to a file, soundfile writes through
    a callback that swallows the write's OSError: a full disk became an AssertionError (a
    server refused the message for good instead of keeping it unacknowledged), or even a
    damaged file and no error at all."""
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, audio, rate, format=fmt.upper(), subtype=subtype)
    return out.getvalue()
