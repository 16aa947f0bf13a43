"""The server's ledger looks its lines up in an index (SQLite) beside the text it appends,
so that neither a start nor the memory grows with what was written; the text stays the
record, and the index, a copy checked against it, is made again from it whenever it is not
the text's or is damaged."""
import os
import sqlite3

import pytest

from walloc_edge.server.delivery import Ledger


def lines_read(monkeypatch):
    """The byte ranges of the ledger a Ledger indexes lines from (appended to the list)."""
    ranges, original = [], Ledger._records

    def counted(self, begin, end, hasher=None):
        ranges.append((begin, end))
        return original(self, begin, end, hasher)

    monkeypatch.setattr(Ledger, "_records", counted)
    return ranges


def written(path, n, start=0):
    ledger = Ledger(path)
    for k in range(start, start + n):
        ledger.record(f"aaaa-1-{k}", f"{k}.png", f"d{k}", "n1")
    ledger.close()


def test_a_start_reads_only_the_lines_added_since(tmp_path, monkeypatch):
    path = tmp_path / "ledger.txt"
    written(path, 100)
    line = "aaaa-1-100 100.png digest=d100 nonce=n1\n"
    with open(path, "a") as f:  # a server that kept no index (an older walloc-edge)
        f.write(line)
    ranges = lines_read(monkeypatch)
    again = Ledger(path)
    size = path.stat().st_size
    assert ranges == [(size - len(line), size)]
    assert all(f"aaaa-1-{k}" in again for k in range(101)) and "aaaa-1-101" not in again
    assert again.collision("aaaa-1-5", "other", "n1")
    assert again.collision("aaaa-1-5", "d5", "n1") is None
    again.close()
    ranges.clear()
    Ledger(path).close()
    assert all(begin == end for begin, end in ranges)  # nothing new: nothing read


@pytest.mark.parametrize("change", ["restored", "edited in place"])
def test_a_ledger_not_the_one_indexed_is_indexed_anew(tmp_path, monkeypatch, change):
    """A ledger restored from a backup (longer than the one indexed), or one edited without
    changing its length: its keys, and none that it lacks, are known."""
    path = tmp_path / "ledger.txt"
    written(path, 3)
    text = path.read_text()
    if change == "restored":
        path.write_text(text.replace("aaaa-1-1 ", "bbbb-1-1 ") + "cccc-1-1 x.png digest=d\n")
    else:
        path.write_text(text.replace("aaaa-1-1 ", "bbbb-1-1 "))
    ranges = lines_read(monkeypatch)
    again = Ledger(path)
    assert ranges == [(0, path.stat().st_size)]
    assert "bbbb-1-1" in again and "aaaa-1-1" not in again and "aaaa-1-2" in again
    again.close()


def test_an_index_missing_rows_of_its_text_is_made_again(tmp_path):
    """An index whose rows and whose note of what it read are of two moments (a main file
    and a -wal copied at different times): lines sampled from the text are not all in it."""
    path = tmp_path / "ledger.txt"
    written(path, 2000)
    index = sqlite3.connect(tmp_path / "ledger.txt.index")
    index.execute("DELETE FROM messages WHERE rowid % 3 = 0")
    index.commit()
    index.close()
    again = Ledger(path)
    assert all(f"aaaa-1-{k}" in again for k in range(2000))
    again.close()


def test_a_value_that_does_not_decode_is_damage(tmp_path):
    """A damaged byte in a stored digest: its lookup raised (an OperationalError, which
    the index took for a busy or full disk) at every start."""
    path = tmp_path / "ledger.txt"
    written(path, 1000)
    index = tmp_path / "ledger.txt.index"
    data = index.read_bytes()
    at = data.index(b"d777")
    index.write_bytes(data[:at + 1] + b"\xff" + data[at + 2:])
    again = Ledger(path)
    assert all(f"aaaa-1-{k}" in again for k in range(1000))
    assert again.collision("aaaa-1-777", "d777", "n1") is None
    again.close()


@pytest.mark.parametrize("where", ["header", "pages"])
def test_a_damaged_index_is_made_again(tmp_path, where):
    """Damage where SQLite looks at opening (its header), or in pages it reads only when
    asked for a key (lookups failed, so those messages were never acknowledged)."""
    path = tmp_path / "ledger.txt"
    written(path, 3000)
    index = tmp_path / "ledger.txt.index"
    data = bytearray(index.read_bytes())
    at = 0 if where == "header" else len(data) // 2
    data[at:at + 8192] = os.urandom(8192)
    index.write_bytes(bytes(data))
    again = Ledger(path)
    assert all(f"aaaa-1-{k}" in again for k in range(3000))
    again.record("aaaa-1-3000", "x.png", "d", "n1")
    again.close()
    assert "aaaa-1-3000" in Ledger(path)


def test_an_index_that_cannot_be_kept_on_disk_is_kept_in_memory(tmp_path):
    path = tmp_path / "ledger.txt"
    path.write_text("aaaa-1-1 x.png digest=d1\n")
    (tmp_path / "ledger.txt.index").mkdir()  # cannot be opened, nor removed
    ledger = Ledger(path)
    assert "aaaa-1-1" in ledger
    ledger.record("aaaa-1-2", "y.png", "d2")
    assert "aaaa-1-2" in ledger
    ledger.close()
    assert path.read_text().splitlines()[1].startswith("aaaa-1-2 y.png")


def test_lines_the_index_could_not_take_are_known_and_taken_later(tmp_path, monkeypatch):
    """The index failing (a full disk, an unwritable file) after the line is synced: the
    line is the record; its key is known at once and indexed with a later batch, and the
    index is tried again after a pause, not at each record (each try re-read the lines
    waiting, and a busy index was waited for under the ledger's lock: ~100 records a
    second)."""
    path = tmp_path / "ledger.txt"
    monkeypatch.setattr(Ledger, "FLUSH_LINES", 1)  # a batch a line
    ledger = Ledger(path)
    ledger.record("aaaa-1-1", "x.png", "d1", "n1")
    original, tries = Ledger._index_tail, []

    def full(self, index, always=False):
        tries.append(1)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Ledger, "_index_tail", full)
    ledger.record("bbbb-1-1", "y.png", "d2", "n2")
    for k in range(300):
        ledger.record(f"dddd-1-{k}", "w.png", "d", "n4")
    assert len(tries) == 1 and "bbbb-1-1" in ledger and len(ledger.pending) == 301
    assert "boot number" in ledger.collision("bbbb-1-9", "d9", "n3")
    monkeypatch.setattr(Ledger, "_index_tail", original)
    ledger.record("cccc-1-1", "z.png", "d3")
    ledger.close()  # (takes what waits)
    again = Ledger(path)
    assert all(k in again for k in ("aaaa-1-1", "bbbb-1-1", "cccc-1-1"))
    assert again.collision("bbbb-1-1", "d2", "n2") is None
    again.close()


@pytest.mark.parametrize("text, kept", [
    (b"", b""),
    (b"aaaa-1-1 x.png\n", b"aaaa-1-1 x.png\n"),
    (b"aaaa-1-1 x.png", b""),  # no line ends
    (b"aaaa-1-1 x.png\n" + b"b" * 200_000, b"aaaa-1-1 x.png\n"),  # cut over many chunks
])
def test_a_cut_last_line_is_taken_off(tmp_path, monkeypatch, text, kept):
    monkeypatch.setattr("walloc_edge.server.delivery.CHUNK", 4096)
    path = tmp_path / "ledger.txt"
    path.write_bytes(text)
    Ledger(path).close()
    assert path.read_bytes() == kept
