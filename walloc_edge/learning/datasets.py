"""Latents datasets: a folder of images with one subfolder per class turned into Parquet rows
of what a sensor sends (its latents, computed by the sensor runtime), or of the same images
resized (the baseline a latents model is measured against). Torch-free.

A dataset is a folder: ``part-*.parquet`` (the rows) and ``dataset.json`` (what they are,
written last: a folder without it is not a dataset). It is built in a sibling folder and
renamed into place, so an interrupted or failed conversion leaves nothing under its name.

Rows (``SCHEMA``): ``index`` (the image's place in the sorted file list), ``label``,
``class_name``, ``source`` (its path under the image folder), ``shape`` and ``data`` (int8
latents (latent_dim, h, w), float32 for the encoder's continuous latents before rounding
(``latents`` "continuous" in dataset.json), or uint8 pixels (N, N, 3), C-order bytes),
``sent_bytes`` (what a sensor sends for it: the .wlc with rans, or the resized picture as
PNG).

Images of any size are first brought to ``size`` × ``size`` (224 by default): resized so the
shorter side is ``size`` (bicubic), then the centre square is cut.
"""
import io
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..runtime.io import IMAGE_SUFFIXES

__all__ = ["schema", "FORMAT", "find_images", "prepare", "Converter", "convert", "load",
           "arrays", "DatasetInfo"]

FORMAT = "walloc-edge-dataset"
VERSION = 1
ROWS_PER_PART = 1024


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ModuleNotFoundError("latents datasets need pyarrow", name="pyarrow") from None
    return pyarrow


def require_pyarrow():
    """Fail now, naming pyarrow, where it is not installed: a dataset a server grows checks
    when it opens, before any message could be taken and then not kept."""
    _pyarrow()


def schema():
    """The rows' Arrow schema (a function: pyarrow is imported only when it is needed)."""
    pa = _pyarrow()
    return pa.schema([("index", pa.int64()), ("label", pa.int32()), ("class_name", pa.string()),
                      ("source", pa.string()), ("shape", pa.list_(pa.int32())),
                      ("data", pa.binary()), ("sent_bytes", pa.int64())])


def find_images(root):
    """(sorted class names, [(path relative to root, label)]) of ``root``/CLASS/… images
    (subfolders searched recursively)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class subfolders: put each class's images in "
                         f"{root}/CLASS_NAME/")
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(str(p.relative_to(root)), label) for p in files]
    if not items:
        raise ValueError(f"{root}: the class folders hold no images "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return classes, items


def prepare(path, size):
    """uint8 (size, size, 3): the image resized so its shorter side is ``size``, centre cut."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            if (w, h) != (size, size):
                im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                               Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None


class Converter:
    """What turns one prepared image into a row's ``shape``, ``data`` and ``sent_bytes``:
    the sensor runtime's latents and .wlc size, or (``resize``) the picture at N × N and its
    PNG size. Picklable by its bundle path, so Ray workers rebuild it."""

    def __init__(self, bundle, size, resize=None, backend="numpy"):
        self.bundle, self.size, self.resize, self.backend = str(bundle), size, resize, backend
        self._encoder = None

    @property
    def latents(self):
        """Which latents its rows hold ("rounded": what sensors send), None for pixels; the
        dataset records it, and classifiers trained on it check it."""
        return None if self.resize else "rounded"

    def __getstate__(self):
        return {**self.__dict__, "_encoder": None}

    def __call__(self, image):
        if self.resize:
            from PIL import Image

            small = np.asarray(Image.fromarray(image).resize((self.resize, self.resize),
                                                             Image.BOX))
            buffer = io.BytesIO()
            Image.fromarray(small).save(buffer, "PNG")
            return list(small.shape), small.tobytes(), len(buffer.getvalue())
        from ..runtime import Encoder, write_bitstream

        if self._encoder is None:
            self._encoder = Encoder(self.bundle, self.backend)
        latents = self._encoder.latents(image)
        blob = write_bitstream(self._encoder.bundle, latents,
                               {"shape": image.shape, "dtype": image.dtype}, "rans")
        return list(latents.shape), latents.astype(np.int8).tobytes(), len(blob)


def _rows(items, root, classes, converter, skip_unreadable):
    """Column lists of ``items`` ((index, relative path, label) triples); an unreadable
    image is an error, or (``skip_unreadable``) left out."""
    columns = {name: [] for name in schema().names}
    for index, rel, label in items:
        try:
            image = prepare(Path(root) / rel, converter.size)
        except ValueError:
            if not skip_unreadable:
                raise
            continue
        shape, data, sent = converter(image)
        for name, value in zip(columns, (index, label, classes[label], rel, shape, data, sent)):
            columns[name].append(value)
    return columns


def convert(root, out, converter, info, engine="local", skip_unreadable=False,
            overwrite=False, progress=None, log=print):
    """Write the dataset of image folder ``root`` into folder ``out``; returns the
    ``DatasetInfo`` written. ``info``: the dataset.json fields that describe the rows
    (kind, model, model_id, size, resize). ``engine``: "local" (this process) or "ray" (Ray
    Data: a local Ray, or the cluster RAY_ADDRESS names; the images and the bundle must be
    readable by every worker)."""
    pa = _pyarrow()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists")
    classes, items = find_images(root)
    jobs = [(i, rel, label) for i, (rel, label) in enumerate(items)]
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if engine == "ray":
            _convert_ray(jobs, root, classes, converter, partial, skip_unreadable)
        elif engine == "local":
            pending = iter(progress(jobs) if progress else jobs)  # a bar over the images
            for number in itertools.count():
                chunk = list(itertools.islice(pending, ROWS_PER_PART))
                if not chunk:
                    break
                table = pa.table(_rows(chunk, root, classes, converter, skip_unreadable),
                                 schema=schema())
                pa.parquet.write_table(table, partial / f"part-{number:05d}.parquet")
        else:
            raise ValueError(f"unknown engine {engine!r}; use local or ray")
        written = set(_indices(partial))
        skipped = [rel for index, rel, _ in jobs if index not in written]
        if not written:
            raise ValueError(f"{root}: no image could be read")
        latents = {"latents": converter.latents} if converter.latents else {}
        meta = DatasetInfo({"format": FORMAT, "version": VERSION, **info, **latents,
                            "classes": classes,
                            "rows": len(written), "images": str(Path(root).resolve()),
                            "crop": f"shorter side resized to {converter.size}, centre "
                                    f"{converter.size}x{converter.size}"})
        (partial / "dataset.json").write_text(json.dumps(meta.fields, indent=2) + "\n")
        _replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for rel in skipped:
        log(f"skipped {rel}: not a readable image")
    return meta


def _replace(partial, out):
    """Rename the finished folder into place (an existing one is moved aside first)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    partial.rename(out)
    if old is not None:
        shutil.rmtree(old)


def _convert_ray(jobs, root, classes, converter, partial, skip_unreadable):
    """The conversion on Ray Data: one task per batch of images, each writing Parquet."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ModuleNotFoundError("the ray engine needs Ray Data", name="ray") from None
    pa = _pyarrow()
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per finished stage
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False,
                 include_dashboard=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False

        def convert_batch(batch):
            items = zip(batch["index"].tolist(), batch["source"].tolist(),
                        batch["label"].tolist())
            return pa.table(_rows(items, root, classes, converter, skip_unreadable),
                            schema=schema())

        source = pa.table({"index": [j[0] for j in jobs], "source": [j[1] for j in jobs],
                           "label": [j[2] for j in jobs]})
        (ray.data.from_arrow(source)
         .map_batches(convert_batch, batch_size=64, batch_format="numpy")
         .write_parquet(str(partial)))
    finally:
        if started:
            ray.shutdown()


def _indices(folder):
    """The ``index`` column of a folder's Parquet parts (the rows that were written)."""
    pa = _pyarrow()
    return [i for p in sorted(Path(folder).glob("*.parquet"))
            for i in pa.parquet.read_table(p, columns=["index"]).column("index").to_pylist()]


def read_rows(folder):
    """The rows of a dataset folder's Parquet parts, in ``index`` order."""
    pa = _pyarrow()
    parts = sorted(Path(folder).glob("*.parquet"))
    if not parts:
        return schema().empty_table()
    table = pa.concat_tables([pa.parquet.read_table(p, schema=schema()) for p in parts])
    return table.sort_by("index")


class DatasetInfo:
    """dataset.json: kind ("latents" or "pixels"), model, model_id, size, resize, classes."""

    def __init__(self, fields):
        self.fields = fields

    def __getattr__(self, name):
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


def load(folder):
    """(DatasetInfo, rows as a pyarrow Table in index order) of a dataset folder."""
    folder = Path(folder)
    meta = folder / "dataset.json"
    if not meta.is_file():
        raise ValueError(f"{folder} is not a walloc-edge dataset (no dataset.json; make one "
                         "with walloc-edge dataset)")
    fields = json.loads(meta.read_text())
    if fields.get("format") != FORMAT or fields.get("version") != VERSION:
        raise ValueError(f"{folder}: dataset format {fields.get('format')!r} version "
                         f"{fields.get('version')!r} is not {FORMAT} {VERSION}")
    return DatasetInfo(fields), read_rows(folder)


def arrays(table, kind):
    """(data as a numpy array (N, *shape), labels (N,)) of rows that share one shape: int8
    latents (float32 where they are continuous: four bytes a value), or (``kind`` "pixels")
    uint8 pictures."""
    shapes = {tuple(s) for s in table.column("shape").to_pylist()}
    if len(shapes) != 1:
        raise ValueError(f"the dataset's rows have {len(shapes)} different shapes")
    (shape,) = shapes
    blob = b"".join(table.column("data").to_pylist())
    wide = len(table) and len(blob) == 4 * len(table) * int(np.prod(shape))
    dtype = np.uint8 if kind == "pixels" else np.float32 if wide else np.int8
    data = np.frombuffer(blob, dtype).reshape(len(table), *shape)
    return data, np.asarray(table.column("label").to_pylist(), np.int64)


class LiveDataset:
    """A dataset that grows while a server receives: dataset.json is written when it opens
    (``kind`` latents), and each row arrives as its own Parquet part, written whole (temporary
    name, fsync, rename) before the message is acknowledged, so a restart loses nothing and
    reading the folder at any time gives every row written so far."""

    shared = False  # a local folder: one server's rows (see the server's Outputs.take_back)

    @staticmethod
    def row_name(name):
        """The file of the row of message ``name``."""
        return f"part-{name}.parquet"

    def __init__(self, folder, fields):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "dataset.json"
        if meta.is_file():
            old = json.loads(meta.read_text())
            if old.get("model_id") != fields["model_id"]:
                raise ValueError(f"{folder} holds latents of another model "
                                 f"({old.get('model')}, {str(old.get('model_id'))[:8]}); "
                                 "give another folder")
        else:
            from ..runtime.io import write_atomic

            write_atomic(meta, (json.dumps({"format": FORMAT, "version": VERSION, **fields},
                                           indent=2) + "\n").encode())
        self.next_index = len(list(self.folder.glob("part-*.parquet")))

    def add(self, name, latents, sent_bytes, label=-1, class_name="", source=""):
        """Write one row as ``part-NAME.parquet``; returns its path."""
        pa = _pyarrow()
        table = pa.table({"index": [self.next_index], "label": [label],
                          "class_name": [class_name], "source": [source],
                          "shape": [list(latents.shape)],
                          "data": [latents.astype(np.int8).tobytes()],
                          "sent_bytes": [sent_bytes]}, schema=schema())
        buffer = pa.BufferOutputStream()
        pa.parquet.write_table(table, buffer)
        path = self._put(self.row_name(name), buffer.getvalue().to_pybytes())
        self.next_index += 1
        return path

    def _put(self, name, data):
        """``data`` as the dataset's file ``name``, whole; returns where it is."""
        from ..runtime.io import write_atomic

        path = self.folder / name
        write_atomic(path, data)
        return path

    def remove(self, name):
        """Take back the row ``name`` (its message was not recorded: see the server's
        ``Outputs.take_back``)."""
        (self.folder / name).unlink(missing_ok=True)
