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
    and a.png) takes the input's suffix; inputs that share name and suffix (a/x.wlc and
    b/x.wlc) take their folders' names, as many as tell them apart (a_x, b_x). A name so
    comes of its input's path, not of the order or the company it was given in: a run
    again with inputs added, left out or reordered never takes one input's output for
    another's (it kept by name). A number only where even that fails (a path given twice)."""
    suffixes = {}
    for path, name in files:
        suffixes.setdefault(name, []).append(path.suffix)
    named = []
    for path, name in files:
        group = suffixes[name]
        if len(group) > 1 and group.count(path.suffix) == 1:
            name = name.with_name(f"{name.name}-{path.suffix.lstrip('.') or 'file'}")
        named.append(name)
    alike = {}
    for i, name in enumerate(named):
        alike.setdefault(name, []).append(i)
    for name, members in alike.items():
        if len(members) < 2:
            continue
        folders = [Path(os.path.abspath(files[i][0])).parent.parts for i in members]
        for depth in range(1, max(map(len, folders)) + 1):
            prefixes = ["_".join(parts[-depth:]).lstrip("/") or "root" for parts in folders]
            if len(set(prefixes)) == len(prefixes):
                for i, prefix in zip(members, prefixes):
                    named[i] = name.with_name(f"{prefix}_{name.name}")
                break
    taken, out = set(), []
    for path, name in zip((p for p, _ in files), named):
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = name.with_name(f"{name.name}-{n}")
        taken.add(candidate)
        out.append((path, candidate))
    return out
