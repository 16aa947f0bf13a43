"""Compressed-domain learning: latents datasets (local and Ray Data), classifiers on latents
and pixels, and a server that keeps and labels latents without decoding."""
import json

import numpy as np
import pytest
from PIL import Image

from walloc_edge.cli import main
from walloc_edge.learning.datasets import Converter, arrays, convert, load, prepare
from walloc_edge.runtime import Encoder, load_bundle

SIZE = 224  # latents 28 x 28 at J = 3: one classifier patch a latent


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three classes told apart by colour (red, green, blue blobs on noise), 8 images each
    of varying sizes and formats."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir()
        for i in range(8):
            h, w = rng.integers(180, 320, 2)
            x = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            x[y0:y0 + h // 2, x0:x0 + w // 2, label] = 230
            Image.fromarray(x).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def bundle(rgb_weights_bundle):
    return rgb_weights_bundle


@pytest.fixture(scope="module")
def latents_data(images, bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "latents"
    assert main(["dataset", str(bundle), str(images), "--out", str(out),
                 "--size", str(SIZE)]) == 0
    return out


def test_rows_are_what_the_sensor_runtime_sends(images, bundle, latents_data):
    info, table = load(latents_data)
    assert (info.kind, info.classes, info.rows) == ("latents", ["blue", "green", "red"], 24)
    assert table.column("index").to_pylist() == list(range(24))
    data, labels = arrays(table, info.kind)
    assert data.shape == (24, 12, 28, 28) and data.dtype == np.int8
    encoder = Encoder(bundle, "numpy")
    for i in (0, 13, 23):
        source = table.column("source")[i].as_py()
        assert labels[i] == info.classes.index(source.split("/")[0])
        picture = prepare(images / source, SIZE)
        assert np.array_equal(data[i], encoder.latents(picture))
        assert table.column("sent_bytes")[i].as_py() == len(encoder.encode(picture))


def test_prepare_resizes_the_shorter_side_and_cuts_the_centre(tmp_path):
    x = np.zeros((100, 300, 3), np.uint8)
    x[:, 100:200] = 255  # the centre third is white
    Image.fromarray(x).save(tmp_path / "wide.png")
    square = prepare(tmp_path / "wide.png", 50)
    assert square.shape == (50, 50, 3) and square.min() > 200


def test_resized_pixels_baseline(images, bundle, tmp_path, capsys):
    out = tmp_path / "pixels"
    assert main(["dataset", str(bundle), str(images), "--out", str(out), "--size", str(SIZE),
                 "--resize", "56"]) == 0
    assert "9,408 values per image" in capsys.readouterr().out  # 56 x 56 x 3 = 12 x 28 x 28
    info, table = load(out)
    data, _ = arrays(table, info.kind)
    assert info.kind == "pixels" and data.shape == (24, 56, 56, 3) and data.dtype == np.uint8
    source = images / table.column("source")[5].as_py()
    expected = Image.fromarray(prepare(source, SIZE)).resize((56, 56), Image.BOX)
    assert np.array_equal(data[5], np.asarray(expected))


def test_bad_inputs_leave_nothing_behind(images, bundle, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (32, 32)).save(flat / "a.png")
    assert main(["dataset", str(bundle), str(flat), "--out", str(tmp_path / "d1")]) == 2
    assert "has no class subfolders" in capsys.readouterr().err
    broken = tmp_path / "broken"
    for name in ("cat", "dog"):
        (broken / name).mkdir(parents=True)
        Image.new("RGB", (64, 64), name == "cat" and "red" or "blue").save(broken / name / "a.png")
    (broken / "dog" / "b.jpg").write_bytes(b"not a jpeg")
    assert main(["dataset", str(bundle), str(broken), "--out", str(tmp_path / "d2")]) == 2
    err = capsys.readouterr().err
    assert "dog/b.jpg: not a readable image" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "flat"]  # no partial
    assert main(["dataset", str(bundle), str(broken), "--out", str(tmp_path / "d2"),
                 "--skip-unreadable"]) == 0
    assert "skipped dog/b.jpg" in capsys.readouterr().out
    assert load(tmp_path / "d2")[0].rows == 2
    assert main(["dataset", str(bundle), str(broken), "--out", str(tmp_path / "d2")]) == 2
    assert "exists (--overwrite replaces it)" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_data_writes_the_same_dataset(images, bundle, latents_data, tmp_path):
    """--engine ray on a local Ray started here: the same rows, the same dataset.json."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        info = {"kind": "latents", "model": bundle.name, "model_id": load(latents_data)[0].model_id,
                "size": SIZE, "resize": None}
        convert(images, tmp_path / "ray", Converter(bundle, SIZE), info, engine="ray")
    finally:
        ray.shutdown()
    local_info, local = load(latents_data)
    ray_info, rows = load(tmp_path / "ray")
    assert rows.equals(local)
    assert ray_info.fields == local_info.fields


@pytest.fixture(scope="module")
def classifier(latents_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf")
    path = out / "clf.safetensors"
    assert main(["classify", "train", str(latents_data), "--out", str(path), "--epochs", "12",
                 "--val", "0.25", "--batch", "8", "--json", str(out / "train.json")]) == 0
    return path, json.loads((out / "train.json").read_text())


def test_classifier_learns_from_latents(classifier, latents_data, tmp_path, capsys):
    path, report = classifier
    assert report["val_images"] == 6 and len(report["history"]) == 12
    assert report["top1"] >= 2 / 3  # colours are easy; chance is 1/3
    assert main(["classify", "eval", str(path), str(latents_data), "--json",
                 str(tmp_path / "eval.json"), "--confusion", str(tmp_path / "c.png")]) == 0
    assert "the held-out split" in capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["images"] == 6 and np.sum(result["confusion"]) == 6
    assert result["top1"] == report["top1"] and result["top5"] == 1.0  # 3 classes
    assert len(result["per_class"]) == 3 and Image.open(tmp_path / "c.png").size[0] > 100
    assert main(["classify", "eval", str(path), str(latents_data), "--all"]) == 0
    assert "24 images (every row)" in capsys.readouterr().out


def test_the_paper_recipe_encodes_crops_on_the_fly(latents_data, reference_dir, tmp_path):
    """Pixel-space crops encoded per batch with the sensor encoder: the inputs have the
    stored latents' shape and, without a crop, equal them."""
    import torch

    from walloc_edge.learning.training import Inputs, source_images, train_classifier

    info, table = load(latents_data)
    info.fields["model"] = str(reference_dir / "rgb_j3_l12.pth")  # the bundle's model
    images = source_images(info, table, [0, 1])
    stored, _ = arrays(table, "latents")
    assert torch.equal(Inputs(info)(images), torch.tensor(stored[:2], dtype=torch.float32))
    _, report = train_classifier(info, table, epochs=1, augment="paper", val_fraction=0.25,
                                 batch=8, log=lambda s: None)
    assert report["val_images"] == 6 and 0 <= report["top1"] <= 1


def test_eval_refuses_a_dataset_of_another_kind_or_model(classifier, images, tmp_path,
                                                          capsys):
    path, _ = classifier
    assert main(["dataset", "rgb-16x", str(images), "--out", str(tmp_path / "other"),
                 "--size", str(SIZE)]) == 0
    capsys.readouterr()
    assert main(["classify", "eval", str(path), str(tmp_path / "other")]) == 2
    assert "make the dataset with that model" in capsys.readouterr().err
    assert main(["classify", "eval", str(tmp_path / "other"), str(path)]) == 2  # swapped
    assert "a folder (a dataset?), not a classifier file" in capsys.readouterr().err
    assert main(["dataset", "rgb-16x", str(images), "--out", str(tmp_path / "pixels"),
                 "--size", str(SIZE), "--resize", "56"]) == 0
    capsys.readouterr()
    assert main(["classify", "eval", str(path), str(tmp_path / "pixels")]) == 2
    assert "holds pixels, but" in capsys.readouterr().err  # the kind, not the model


def test_mistakes_found_before_the_work(latents_data, images, tmp_path, capsys):
    """A dataset --size the model cannot cut into blocks, and a classifier --out no folder
    can be made for, are one line each before any conversion or training."""
    assert main(["dataset", "rgb-16x", str(images), "--out", str(tmp_path / "d"),
                 "--size", "100"]) == 2
    assert "--size 100 is not a multiple of 8" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    (tmp_path / "file").write_text("a file, not a folder")
    assert main(["classify", "train", str(latents_data), "--out",
                 str(tmp_path / "file" / "clf.safetensors"), "--epochs", "50"]) == 2
    assert "cannot make its folder" in capsys.readouterr().err


def test_torch_dataset(latents_data):
    from walloc_edge.learning.torch_dataset import WallocDataset

    dataset = WallocDataset(latents_data)
    x, label = dataset[3]
    assert len(dataset) == 24 and x.shape == (12, 28, 28) and label in (0, 1, 2)


def test_serve_keeps_and_labels_latents_without_decoding(classifier, bundle, images, tmp_path,
                                                         capsys):
    """A sensor streams three photos; serve --no-decode writes no picture, a latents row per
    message (the sensor's latents) and each frame's label in metrics.jsonl."""
    path, _ = classifier
    frames = sorted((images / "red").glob("*"))[:3]
    for f in frames:
        Image.fromarray(prepare(f, SIZE)).save(tmp_path / f"{f.stem}.png")
    link = tmp_path / "link.frames"
    assert main(["stream", str(bundle), *[str(tmp_path / f"{f.stem}.png") for f in frames],
                 "--to", f"file://{link}", "--backend", "numpy",
                 "--state", str(tmp_path / "state")]) == 0
    out = tmp_path / "received"
    assert main(["serve", str(bundle), "--listen", str(link), "--out", str(out),
                 "--no-decode", "--latents", str(out / "latents"), "--classify", str(path)]) == 0
    assert "kept 3, rejected 0" in capsys.readouterr().out
    assert not list(out.glob("*.png"))
    info, table = load(out / "latents")
    data, labels = arrays(table, "latents")
    assert len(table) == 3 and info.model_id == load_bundle(bundle).model_id
    encoder = Encoder(bundle, "numpy")
    sent = {table.column("source")[i].as_py().rsplit("-", 1)[-1]: data[i] for i in range(3)}
    for f in frames:
        assert np.array_equal(sent[f.stem], encoder.latents(prepare(f, SIZE)))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["label"] for line in lines] == [info.classes[i] for i in labels]
    assert all(0 < line["confidence"] <= 1 for line in lines)
    assert main(["serve", str(bundle), "--listen", str(link), "--out", str(out),
                 "--no-decode"]) == 2
    assert "--no-decode keeps nothing" in capsys.readouterr().err


def test_classifiers_train_and_evaluate_on_a_dataset_a_server_grew(classifier, bundle, images,
                                                                  tmp_path, capsys):
    """A dataset serve --latents grows records no size, no row count and no images: classify
    eval ended in AttributeError: rows, and classify train in a TypeError."""
    path, _ = classifier
    sent = []
    for name in ("red", "green", "blue"):
        for f in sorted((images / name).glob("*"))[:2]:
            Image.fromarray(prepare(f, SIZE)).save(tmp_path / f"{name}{f.stem}.png")
            sent.append(str(tmp_path / f"{name}{f.stem}.png"))
    link, out = tmp_path / "link.frames", tmp_path / "received"
    assert main(["stream", str(bundle), *sent, "--to", f"file://{link}", "--backend", "numpy",
                 "--state", str(tmp_path / "state")]) == 0
    assert main(["serve", str(bundle), "--listen", str(link), "--out", str(out),
                 "--no-decode", "--latents", str(out / "latents"), "--classify", str(path)]) == 0
    capsys.readouterr()
    assert main(["classify", "eval", str(path), str(out / "latents")]) == 0
    assert "6 images (every row)" in capsys.readouterr().out
    trained = tmp_path / "grown.safetensors"
    assert main(["classify", "train", str(out / "latents"), "--out", str(trained), "--epochs",
                 "1", "--batch", "4", "--val", "0.5"]) == 0
    assert f"cnn on a {SIZE // 8}x{SIZE // 8} grid" in capsys.readouterr().out  # their width
    assert main(["classify", "train", str(out / "latents"), "--out", str(trained), "--epochs",
                 "1", "--augment", "paper", "--val", "0.5"]) == 2
    assert "use the flips recipe" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_data(images, bundle, tmp_path_factory):
    """56-pixel squares: 16x latents (12 x 7 x 7), pixels resized to 14 (as many values) and
    the full 56 x 56 pixels."""
    root = tmp_path_factory.mktemp("small")
    for name, extra in (("latents", []), ("resized", ["--resize", "14"]),
                        ("full", ["--resize", "56"])):
        assert main(["dataset", str(bundle), str(images), "--out", str(root / name),
                     "--size", "56", *extra]) == 0
    return root


@pytest.mark.parametrize("family", ["cnn", pytest.param("vit", marks=pytest.mark.slow)])
def test_classifiers_take_any_grid_with_one_budget(small_data, latents_data, family, tmp_path,
                                                   capsys):
    """At 56 px every input is cut into a 7 x 7 grid; latents and the resized pixels (the
    same number of values) get the same parameter count; a classifier meets only inputs of
    its grid."""
    capsys.readouterr()
    counts = {}
    for name in ("latents", "resized", "full"):
        out = tmp_path / f"{name}.safetensors"
        assert main(["classify", "train", str(small_data / name), "--out", str(out),
                     "--epochs", "1", "--batch", "8", "--val", "0.25", "--model", family,
                     "--json", str(tmp_path / f"{name}.json")]) == 0
        assert f"{family} on a 7x7 grid" in capsys.readouterr().out
        counts[name] = json.loads((tmp_path / f"{name}.json").read_text())["parameters"]
        assert main(["classify", "eval", str(out), str(small_data / name)]) == 0
    assert counts["latents"] - counts["resized"] == 18 < counts["full"] - counts["latents"]
    # (the input normalisation of 12 channels against 3)
    assert main(["classify", "eval", str(tmp_path / "latents.safetensors"),
                 str(latents_data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "12 x 28 x 28" in err and "12 x 7 x 7 (a 7 x 7 grid)" in err


def test_continuous_latents_are_recorded_and_checked(images, bundle, reference_dir, small_data,
                                                     tmp_path, capsys):
    """--continuous stores the encoder's latents before rounding (they round to what the
    sensor runtime sends); a classifier trained on them is refused rounded latents, by eval
    and by serve --classify, in one line."""
    from walloc_edge.server.model import ServedModel

    out = tmp_path / "continuous"
    assert main(["dataset", str(reference_dir / "rgb_j3_l12.pth"), str(images), "--out",
                 str(out), "--size", "56", "--continuous"]) == 0
    info, table = load(out)
    data, _ = arrays(table, info.kind)
    rounded = arrays(load(small_data / "latents")[1], "latents")[0]
    assert info.latents == "continuous" and data.dtype == np.float32
    assert data.shape == rounded.shape and np.abs(data - rounded).max() <= 0.5 + 1e-3
    assert (np.round(data) == rounded).mean() > 0.99 and (data != np.round(data)).any()
    clf = tmp_path / "c.safetensors"
    assert main(["classify", "train", str(out), "--out", str(clf), "--epochs", "1",
                 "--batch", "8", "--val", "0.25"]) == 0
    assert main(["classify", "eval", str(clf), str(out)]) == 0
    capsys.readouterr()
    assert main(["classify", "eval", str(clf), str(small_data / "latents")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds rounded latents" in err and "continuous" in err
    with pytest.raises(ValueError, match="rounded latents, but .* on continuous latents"):
        ServedModel(str(bundle), decode=False, classifier=str(clf))
    assert main(["dataset", str(bundle), str(images), "--out", str(tmp_path / "x"),
                 "--continuous"]) == 2
    assert "not a bundle" in capsys.readouterr().err


def test_sweep_writes_rows_a_table_and_a_plot_and_resumes(images, bundle, tmp_path, capsys):
    """Sizes 112 and 56, the four inputs, one seed, one epoch: a JSON row per run, the
    table and the SVG; run again, every run is kept."""
    out, rows_file = tmp_path / "sweep", tmp_path / "sweep.json"
    argv = ["classify", "sweep", str(images), "--out", str(out), "--sizes", "112,56",
            "--epochs", "1", "--batch", "8", "--latents-16x", str(bundle), "--json",
            str(rows_file), "--table", str(tmp_path / "sweep.md")]
    assert main(argv) == 0
    rows = json.loads(rows_file.read_text())
    assert [(r["size"], r["input"]) for r in rows] == [
        (size, kind) for size in (56, 112)
        for kind in ("latents-16x", "latents-4x", "resized", "full")]
    for row in rows:
        assert {"size", "input", "model", "seed", "top1", "top5", "bytes_per_image",
                "train_s"} <= set(row) and 0 <= row["top1"] <= 1
    by = {(r["size"], r["input"]): r for r in rows}
    assert by[56, "latents-16x"]["values_per_image"] == by[56, "resized"]["values_per_image"]
    assert by[112, "latents-4x"]["values_per_image"] == 4 * by[112, "resized"]["values_per_image"]
    assert by[112, "full"]["values_per_image"] == 16 * by[112, "resized"]["values_per_image"]
    assert (out / "sweep.svg").read_text().startswith("<svg")
    assert "| 112 | full | cnn |" in (tmp_path / "sweep.md").read_text()
    capsys.readouterr()
    assert main(argv) == 0
    assert "kept 8 finished runs of 8" in capsys.readouterr().out
    assert json.loads(rows_file.read_text()) == rows
    wider = ["--sizes", "224,112,56", "--models", "cnn,vit", "--seeds", "2", "--finished-only"]
    assert main(argv + wider) == 0  # trains nothing, makes no dataset: reports what is done
    assert "kept 8 finished runs of 48" in capsys.readouterr().out
    assert json.loads(rows_file.read_text()) == rows and not (out / "data" / "224").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--sizes", "60"], "--sizes 60 is not a multiple of 8"),
    (["--latents-16x", "stereo-5x"], "stereo-5x is not an RGB image model"),
    (["FLAT"], "has no class subfolders"),
])
def test_sweep_refuses_bad_input_in_one_line(images, bundle, tmp_path, capsys, argv, needle):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (32, 32)).save(flat / "a.png")
    folder = str(flat) if argv == ["FLAT"] else str(images)
    options = [] if argv == ["FLAT"] else argv
    assert main(["classify", "sweep", folder, "--out", str(tmp_path / "o"), *options]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


@pytest.mark.parametrize("family", ["cnn", "vit"])
@pytest.mark.parametrize("grid, side", [(7, 7), (14, 14), (28, 28), (7, 14)])
def test_predict_takes_frames_of_the_grid_and_larger(family, grid, side):
    """What serve --classify runs: one frame of the training size or larger is classified
    whole; a smaller one is refused in plain words."""
    import torch

    from walloc_edge.learning.classifier import build_classifier, predict
    from walloc_edge.learning.training import BUDGETS

    model = build_classifier({"in_channels": 12, "in_size": side, "grid": grid,
                              "classes": ["a", "b"], "arch": family, **BUDGETS[family]}).eval()
    assert model(torch.zeros(2, 12, side, side)).shape == (2, 2)
    for frame in (side, side + 5, 2 * side):
        label, p = predict(model, np.ones((12, frame, frame), np.int8))
        assert label in (0, 1) and 0.5 <= p <= 1
    if family == "cnn" and grid >= 14:
        with pytest.raises(ValueError, match="too small for the classifier"):
            predict(model, np.ones((12, side // 4, side // 4), np.int8))
