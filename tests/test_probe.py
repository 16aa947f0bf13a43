"""The detail probe (walloc-edge classify probe): a digit pasted in each photo, the digit the
class; deterministic, written whole or not at all, refused in one line when the input is bad."""
import json

import numpy as np
import pytest
from PIL import Image

from walloc_edge.cli import main
from walloc_edge.learning.datasets import prepare
from walloc_edge.learning.probe import CLASSES, glyph_mask, make_probe, probe_image


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """23 noise photos of varying sizes and formats, some in a nested folder."""
    root = tmp_path_factory.mktemp("photos")
    (root / "nested" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(23):
        h, w = rng.integers(40, 90, 2)
        folder = root / "nested" / "deeper" if i % 3 else root
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "notes.txt").write_text("not an image")
    return root


def test_every_digit_has_its_own_glyph():
    masks = {d: glyph_mask(d, 9) for d in CLASSES}
    assert all(m.shape == (9, 5) and 0 <= m.min() and m.max() <= 1 for m in masks.values())
    flat = [tuple((m > 0.5).ravel()) for m in masks.values()]
    assert len(set(flat)) == 10
    assert masks["8"].sum() > masks["0"].sum() > masks["1"].sum()  # 8 lights every segment
    with pytest.raises(ValueError, match="too small"):
        glyph_mask("3", 4)


def test_the_plate_is_the_only_change_and_contrast_sets_its_ink():
    photo = np.full((32, 32, 3), 40, np.uint8)
    out = probe_image(photo, "7", 10, 0.5, np.random.default_rng(3))
    rows, cols = np.nonzero((out != photo).any(axis=2))
    assert np.ptp(rows) + 1 == 10 + 2 * 2 and np.ptp(cols) + 1 == 6 + 2 * 2  # glyph and margin
    plate = out[rows.min():rows.max() + 1, cols.min():cols.max() + 1, 0]
    assert plate.max() == round(255 * 0.75) and plate.min() == round(255 * 0.25)
    light = probe_image(np.full((32, 32, 3), 220, np.uint8), "7", 10, 1.0,
                        np.random.default_rng(3))
    assert light.min() == 0  # a dark plate on a light photo, light ink on it
    assert (light[rows.min(), cols.min()] == 0).all()


def test_a_resize_erases_a_hatched_digit_but_not_a_solid_one():
    """What the probe measures: a hatched digit is gone after the sweep's resize to a
    quarter of the side (a box average), a solid one leaves a blob behind."""
    photo = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def quarter(image):
        return np.asarray(Image.fromarray(image).resize((16, 16), Image.BOX)).astype(int)

    for ink, cell, erased in (("hatched", 1, True), ("hatched", 2, True), ("hatched", 4, False),
                              ("solid", 1, False)):
        one, eight = (probe_image(photo, d, 16, 1.0, np.random.default_rng(2), ink, cell)
                      for d in ("1", "8"))
        assert np.abs(one.astype(int) - eight).max() >= 127  # full pixels tell them apart
        assert (np.abs(quarter(one) - quarter(eight)).max() <= 24) == erased  # edges leak a little


def test_make_probe_is_balanced_deterministic_and_readable_by_datasets(photos, tmp_path):
    counts = make_probe(photos, tmp_path / "a", size=32, glyph=7, seed=5)
    assert sorted(counts) == list(CLASSES) and sum(counts.values()) == 23
    assert max(counts.values()) - min(counts.values()) <= 1
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 23 and {f.parts[0] for f in files} == set(CLASSES)
    assert prepare(tmp_path / "a" / files[0], 32).shape == (32, 32, 3)
    make_probe(photos, tmp_path / "b", size=32, glyph=7, seed=5)
    make_probe(photos, tmp_path / "c", size=32, glyph=7, seed=6)
    same = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
            for f in files]
    assert all(same)
    other = sorted(p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.png"))
    assert other != files or any((tmp_path / "a" / f).read_bytes() !=
                                 (tmp_path / "c" / f).read_bytes() for f in files)
    assert make_probe(photos, tmp_path / "d", size=32, glyph=7, limit=10)["3"] == 1


def test_a_failed_probe_leaves_nothing(photos, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.new("RGB", (40, 40)).save(broken / "a.png")
    (broken / "b.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        make_probe(broken, tmp_path / "out", size=32, glyph=7)
    assert list(tmp_path.iterdir()) == [broken]


@pytest.mark.parametrize("argv, needle", [
    (["MISSING", "OUT"], "no such folder"),
    (["EMPTY", "OUT"], "no images"),
    (["PHOTOS", "OUT", "--glyph-size", "4"], "--glyph-size: a glyph of 4 pixels is too small"),
    (["PHOTOS", "OUT", "--size", "16", "--glyph-size", "16"],
     "--glyph-size: a glyph of 16 pixels does not fit"),
    (["PHOTOS", "OUT", "--contrast", "1.5"], "--contrast: contrast 1.5 must be"),
    (["PHOTOS", "TAKEN"], "exists and is not an empty folder"),
    (["PHOTOS", "OUT", "--contrast", "x"], "'x' is not a number"),
])
def test_bad_input_is_one_line_and_exit_2(photos, tmp_path, capsys, argv, needle):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "TAKEN").mkdir()
    (tmp_path / "TAKEN" / "keep.txt").write_text("mine")
    names = {"PHOTOS": str(photos), "MISSING": str(tmp_path / "missing")}
    argv = [names.get(a, str(tmp_path / a) if a.isupper() else a) for a in argv]
    try:
        code = main(["classify", "probe", *argv])
    except SystemExit as e:  # argparse refuses a malformed value itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert (tmp_path / "TAKEN" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "OUT").exists()


@pytest.mark.slow
def test_a_sweep_runs_on_the_probe(photos, rgb_weights_bundle, tmp_path, capsys):
    """The probe folder is what classify sweep takes: full and resized pixels and latents
    at the probe's size, one epoch."""
    assert main(["classify", "probe", str(photos), str(tmp_path / "probe"), "--size", "56",
                 "--glyph-size", "6"]) == 0
    assert "wrote 23 images" in capsys.readouterr().out
    rows_file = tmp_path / "rows.json"
    assert main(["classify", "sweep", str(tmp_path / "probe"), "--out", str(tmp_path / "s"),
                 "--sizes", "56", "--inputs", "latents-16x,resized,full", "--epochs", "1",
                 "--batch", "8", "--latents-16x", str(rgb_weights_bundle), "--json",
                 str(rows_file)]) == 0
    rows = json.loads(rows_file.read_text())
    assert [r["input"] for r in rows] == ["latents-16x", "resized", "full"]
    assert all(r["val_images"] + r["train_images"] == 23 for r in rows)
