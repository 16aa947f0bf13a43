"""The server's ledger looks its lines up in an index (SQLite) beside the text it appends,
so that neither a start nor the memory grows with what was written; the text stays the
record, and the index is made again from it whenever it is not the text's."""
import sqlite3

import pytest

from walloc_edge.server.delivery import Ledger


def lines_read(monkeypatch):
    """The byte ranges of the ledger a Ledger reads lines from (appended to the list)."""
    ranges, original = [], Ledger._lines

    def counted(self, begin, end):
        ranges.append((begin, end))
        return original(self, begin, end)

    monkeypatch.setattr(Ledger, "_lines", counted)
    return ranges


def test_a_start_reads_only_the_lines_added_since(tmp_path, monkeypatch):
    path = tmp_path / "ledger.txt"
    ledger = Ledger(path)
    for n in range(100):
        ledger.record(f"aaaa-1-{n}", f"{n}.png", f"d{n}", "n1")
    ledger.close()
    with open(path, "a") as f:  # a server that kept no index (an older walloc-edge)
        f.write("aaaa-1-100 100.png digest=d100 nonce=n1\n")
    ranges = lines_read(monkeypatch)
    again = Ledger(path)
    size = path.stat().st_size
    assert ranges == [(size - len("aaaa-1-100 100.png digest=d100 nonce=n1\n"), size)]
    assert all(f"aaaa-1-{n}" in again for n in range(101)) and "aaaa-1-101" not in again
    assert again.collision("aaaa-1-5", "other", "n1") and again.collision("aaaa-1-5", "d5",
                                                                          "n1") is None
    again.close()
    ranges.clear()
    Ledger(path).close()
    assert ranges == [(size, size)]  # nothing new: nothing read


def test_a_replaced_ledger_is_indexed_anew(tmp_path, monkeypatch):
    """A ledger restored from a backup (or another server's copied in) is not the text the
    index read: its keys, and none of the old ones, are known."""
    path = tmp_path / "ledger.txt"
    ledger = Ledger(path)
    ledger.record("aaaa-1-1", "x.png", "d1")
    ledger.close()
    path.write_text("bbbb-1-1 y.png digest=d2\nbbbb-1-2 z.png digest=d3\n")  # longer
    ranges = lines_read(monkeypatch)
    again = Ledger(path)
    assert ranges == [(0, path.stat().st_size)]
    assert "bbbb-1-1" in again and "bbbb-1-2" in again and "aaaa-1-1" not in again
    again.close()


def test_a_damaged_index_is_made_again(tmp_path):
    path = tmp_path / "ledger.txt"
    ledger = Ledger(path)
    ledger.record("aaaa-1-1", "x.png", "d1")
    ledger.close()
    (tmp_path / "ledger.txt.index").write_bytes(b"not a database" * 100)
    again = Ledger(path)
    assert "aaaa-1-1" in again
    again.close()
    assert (tmp_path / "ledger.txt.index").read_bytes().startswith(b"SQLite format 3")


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


def test_a_line_the_index_missed_is_known_and_indexed_later(tmp_path, monkeypatch):
    """The index failing (a full disk) after the line is synced: the line is the record;
    the key is known at once and indexed with the next line."""
    path = tmp_path / "ledger.txt"
    ledger = Ledger(path)
    ledger.record("aaaa-1-1", "x.png", "d1", "n1")
    original, failing = Ledger._mark, [True]

    def mark(self, index, read):
        if failing.pop() if failing else False:
            raise sqlite3.OperationalError("database or disk is full")
        return original(self, index, read)

    monkeypatch.setattr(Ledger, "_mark", mark)
    ledger.record("bbbb-1-1", "y.png", "d2", "n2")
    assert "bbbb-1-1" in ledger and ledger.pending
    assert "boot number" in ledger.collision("bbbb-1-9", "d9", "n3")
    ledger.record("cccc-1-1", "z.png", "d3")
    assert not ledger.pending
    ledger.close()
    monkeypatch.setattr(Ledger, "_mark", original)
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
