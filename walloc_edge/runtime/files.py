"""Inputs found in folders, and output names that never collide: what encoding or decoding
many files at once needs (torch-free, so that a sensor encodes whole folders)."""
import os
from pathlib import Path

__all__ = ["expand_inputs", "distinct_names"]


def expand_inputs(inputs, suffixes, what):
    """Files named in ``inputs``, folders searched recursively for ``suffixes``.

    Returns (files, skipped): files as (path, relative output name without suffix) pairs,
    skipped as {reason: count} for what a folder held that this model does not take, and
    its hidden files and folders (".name": a writer's temporary files, a tool's state),
    which are not searched. Missing inputs raise ValueError naming them.
    """
    files, skipped = [], {}

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    for item in map(Path, inputs):
        if item.is_dir():
            for top, folders, names in os.walk(item):
                for name in [f for f in folders if f.startswith(".")]:
                    folders.remove(name)
                    skip("hidden folder(s), not searched")
                folders.sort()
                for path in sorted(Path(top) / name for name in names):
                    if path.name.startswith("."):
                        skip("hidden (.name)")
                    elif not path.is_file():
                        continue
                    elif path.suffix.lower() in suffixes:
                        files.append((path, path.relative_to(item).with_suffix("")))
                    else:
                        skip(f"not {what} ({path.suffix or 'no suffix'})")
        elif item.is_file():
            files.append((item, Path(item.stem)))
        elif item.exists():
            raise ValueError(f"{item}: not a regular file or folder")
        else:
            raise ValueError(f"{item}: no such file or folder")
    return files, skipped


def distinct_names(files):
    """``files`` ((path, name) pairs) with names made unique: a name two inputs share (a.jpg
    and a.png, or photos/a.jpg and more/a.jpg) takes the input's suffix, then a number,
    given in the order of the inputs' absolute paths, not of the arguments: the same
    inputs in another order get the same names (a run again keeps outputs by name)."""
    suffixes = {}
    for path, name in files:
        suffixes.setdefault(name, []).append(path.suffix)
    named = []
    for path, name in files:
        group = suffixes[name]
        if len(group) > 1 and group.count(path.suffix) == 1:
            name = name.with_name(f"{name.name}-{path.suffix.lstrip('.') or 'file'}")
        named.append(name)
    taken, out = set(), [None] * len(files)
    for i in sorted(range(len(files)), key=lambda i: (str(named[i]),
                                                      os.path.abspath(files[i][0]))):
        candidate, n = named[i], 1
        while candidate in taken:
            n += 1
            candidate = named[i].with_name(f"{named[i].name}-{n}")
        taken.add(candidate)
        out[i] = (files[i][0], candidate)
    return out
