"""Training and evaluating classifiers on latents or pixels (torch, server side).

Two recipes (``augment``), the same for latents and pixels:
- "flips": the dataset's stored tensors, flipped left-right at random (latents as well: a
  flipped image's latents are not exactly the flipped latents, but close).
- "paper": as the WaLLoC paper's training notebooks do: each batch is cut from the images in
  pixel space (random resized crops, flips) and then encoded on the fly with the model's
  sensor encoder (latents) or resized (pixels), so every epoch sees new inputs. It needs the
  images the dataset was made from.
Validation always uses the stored rows: what sensors send.
"""
import io
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .classifier import build_classifier
from .datasets import Converter, arrays, prepare

__all__ = ["split", "train_classifier", "evaluate_classifier", "confusion_png", "Inputs",
           "ContinuousConverter", "sensor_latents", "RECIPES", "BUDGETS"]

RECIPES = ("flips", "paper")
# What each family is at every input (the budget rule: the same grid, width and depth).
BUDGETS = {"cnn": {"widths": [32, 64, 128, 256]},
           "vit": {"width": 128, "depth": 4, "heads": 4, "registers": 0}}


def split(labels, fraction, seed=0):
    """(train, validation) indices: ``fraction`` of each class held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        val += members[:round(fraction * len(members))].tolist()
    val = np.array(sorted(val), np.int64)
    return np.setdiff1d(np.arange(len(labels)), val), val


def as_input(data, kind):
    """Stored rows as float (N, C, H, W): latents as they are, pictures channels first."""
    x = torch.from_numpy(np.array(data)).float()  # a copy: the rows are read-only
    return x.permute(0, 3, 1, 2).contiguous() if kind == "pixels" else x


def sensor_latents(model, continuous=False):
    """The torch sensor encoder of ``model`` (uint8 (N, S, S, 3) → latents, batched), or
    (``continuous``) the same math up to its rounding: latent_max · erf(y), clipped, as the
    WaLLoC paper's notebooks train on."""
    from ..codec import load
    from ..codec.sensor import sensor_encoder

    encoder = sensor_encoder(load(model)).eval()
    if continuous:
        encoder._quantize = lambda y: torch.clamp(encoder.latent_max * torch.erf(y),
                                                  -encoder.clip, encoder.clip)
    return encoder


class ContinuousConverter(Converter):
    """A dataset converter writing the encoder's continuous latents (float32) of ``model``;
    ``sent_bytes`` stays what a sensor sends (the .wlc of the rounded latents)."""

    def __init__(self, bundle, size, model, backend="numpy"):
        super().__init__(bundle, size, None, backend)
        self.model, self._torch = model, None

    latents = "continuous"

    def __getstate__(self):
        return {**super().__getstate__(), "_torch": None}

    @torch.no_grad()
    def __call__(self, image):
        shape, _, sent = super().__call__(image)
        if self._torch is None:
            self._torch = sensor_latents(self.model, continuous=True)
        # torch warns on read-only arrays (a decoded file's may be): copied only then
        pixels = np.require(image, requirements=("C", "W"))
        latents = self._torch(torch.from_numpy(pixels)[None])[0]
        return shape, latents.numpy().astype(np.float32).tobytes(), sent


class Inputs:
    """What a classifier of ``info``'s kind takes, made from uint8 images (N, S, S, 3): the
    latents of the dataset's model (its sensor encoder, batched; continuous or rounded as
    the dataset's) or the pictures resized to
    the dataset's N × N (area averaging, rounded to uint8 like the stored ones)."""

    def __init__(self, info):
        self.kind = info.kind
        if self.kind == "latents":
            continuous = info.fields.get("latents") == "continuous"
            self.encoder = sensor_latents(info.model, continuous)
        else:
            self.size = info.resize

    @torch.no_grad()
    def __call__(self, images):
        if self.kind == "latents":
            return self.encoder(images).float()
        x = images.permute(0, 3, 1, 2).float()
        return torch.round(F.interpolate(x, size=(self.size, self.size), mode="area"))


def random_resized_crops(images, generator, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3)):
    """uint8 (N, S, S, 3): a random crop of each image (area ``scale`` of it, aspect
    ``ratio``) resized back to S × S (bilinear: the crops are never larger than S, so this
    only enlarges), flipped left-right half the time; one affine sampling for the batch."""
    n = images.shape[0]
    area = torch.empty(n).uniform_(*scale, generator=generator)
    aspect = torch.exp(torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                               generator=generator))
    w = torch.sqrt(area * aspect).clamp(max=1)  # crop sides as fractions of S
    h = torch.sqrt(area / aspect).clamp(max=1)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)  # centres in [-1, 1]
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    x = images.permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _flips(x, generator):
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(3)
    return x


def source_images(info, table, indices, progress=None):
    """uint8 (N, S, S, 3) of the images rows ``indices`` were made from, prepared as the
    dataset was (the "paper" recipe's raw material)."""
    if not info.fields.get("images"):
        raise ValueError("the paper recipe needs the images a dataset was made from, and one a "
                         "server grows (serve --latents) has none: use the flips recipe")
    root = Path(info.images)
    sources = table.column("source").to_pylist()
    picked = [sources[i] for i in indices]
    if not (root / picked[0]).is_file():
        raise ValueError(f"the paper recipe needs the dataset's images, which are not at "
                         f"{root} here; use the flips recipe, or make the dataset where they are")
    items = progress(picked) if progress else picked
    return torch.from_numpy(np.stack([prepare(root / rel, info.size) for rel in items]))


def _default_grid(info, data):
    """The source side / 8; a dataset a server grows (serve --latents) records no side: its
    rows' own (the latents' width, a picture's side / 8)."""
    if info.size:
        return info.size // 8
    return data.shape[1] // 8 if info.kind == "pixels" else data.shape[-1]


def train_classifier(info, table, epochs=20, seed=0, augment="flips", val_fraction=0.2,
                     split_seed=0, batch=128, lr=2e-3, arch="cnn", grid=None, threads=None,
                     progress=None, log=print, **shape):
    """Train a classifier of family ``arch`` on a dataset (``info``, rows ``table``) at
    ``grid`` × ``grid`` patches (default: the source side / 8); returns (model, report) with
    the validation metrics, the per-epoch history, times and the parameter count. ``shape``
    overrides the family's budget (``BUDGETS``), the same for every input."""
    if augment not in RECIPES:
        raise ValueError(f"unknown recipe {augment!r}; use {' or '.join(RECIPES)}")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data, labels = arrays(table, info.kind)
    train_idx, val_idx = split(labels, val_fraction, split_seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"{len(labels)} rows are too few to hold out {val_fraction:.0%} "
                         "of each class")
    x_val, y_val = as_input(data[val_idx], info.kind), torch.from_numpy(labels[val_idx])
    y_train = torch.from_numpy(labels[train_idx])
    if augment == "paper":
        images = source_images(info, table, train_idx, progress)
        make_input = Inputs(info)
        sample = make_input(images[:2])
    else:
        x_train = as_input(data[train_idx], info.kind)
        sample = x_train[:2]
    if arch not in BUDGETS:
        raise ValueError(f"unknown classifier family {arch!r}; use {' or '.join(BUDGETS)}")
    config = {"kind": info.kind, "model": info.model, "model_id": info.model_id,
              "resize": info.fields.get("resize"), "size": info.size,
              "in_channels": sample.shape[1], "in_size": sample.shape[2],
              "grid": grid or _default_grid(info, data), "classes": info.classes, "arch": arch,
              **BUDGETS[arch], **shape, "recipe": augment, "epochs": epochs, "seed": seed}
    if info.kind == "latents":
        config["latents"] = info.fields.get("latents", "rounded")
    model = build_classifier(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * math.ceil(len(train_idx) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                   pct_start=0.1)
    history = []
    start = time.perf_counter()
    epochs_shown = progress(range(epochs)) if progress else range(epochs)
    for epoch in epochs_shown:
        model.train()
        order = torch.randperm(len(train_idx), generator=generator)
        total, seen = 0.0, 0
        for i in range(0, len(order), batch):
            pick = order[i:i + batch]
            if augment == "paper":
                x = make_input(random_resized_crops(images[pick], generator))
            else:
                x = _flips(x_train[pick], generator)
            loss = F.cross_entropy(model(x), y_train[pick], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(pick)
            seen += len(pick)
        accuracy = evaluate_classifier(model, x_val, y_val)["top1"]
        history.append({"epoch": epoch + 1, "train_loss": total / seen, "val_top1": accuracy})
        log(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.3f}, validation top-1 "
            f"{accuracy:.1%}")
    train_s = time.perf_counter() - start
    report = evaluate_classifier(model, x_val, y_val, len(info.classes))
    report.update(history=history, train_seconds=train_s, train_images=len(train_idx),
                  val_images=len(val_idx), parameters=sum(p.numel() for p in model.parameters()))
    return model.eval(), report


@torch.no_grad()
def evaluate_classifier(model, x, y, classes=None, batch=256):
    """top-1, top-5, and (with ``classes``) per-class accuracy, the confusion matrix (rows:
    true class) and inference time per image."""
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    seconds = time.perf_counter() - start
    model.train(was_training)
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    report = {"top1": float((top[:, 0] == y).float().mean()),
              "top5": float((top == y[:, None]).any(dim=1).float().mean())}
    if classes:
        confusion = np.zeros((classes, classes), np.int64)
        np.add.at(confusion, (y.numpy(), top[:, 0].numpy()), 1)
        report.update(confusion=confusion.tolist(),
                      per_class=(confusion.diagonal() / np.maximum(confusion.sum(1), 1)).tolist(),
                      inference_ms_per_image=1e3 * seconds / len(x))
    return report


def confusion_png(confusion, classes, path):
    """The confusion matrix as a PNG: rows the true class, columns the predicted one, shade
    the share of the row, the count written in each cell."""
    from PIL import Image, ImageDraw

    from ..runtime.io import write_atomic

    confusion = np.asarray(confusion)
    n, cell = len(classes), 36
    label_w = 8 + 7 * max(len(c) for c in classes)
    image = Image.new("RGB", (label_w + n * cell + 8, 28 + n * cell + 8), "white")
    draw = ImageDraw.Draw(image)
    draw.text((label_w, 6), "predicted class ->  (rows: true class)", fill="black")
    share = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    for i in range(n):
        draw.text((4, 28 + i * cell + cell // 3), classes[i], fill="black")
        for j in range(n):
            shade = int(255 * (1 - share[i, j]))
            x0, y0 = label_w + j * cell, 28 + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1],
                           fill=(shade, shade, 255), outline=(200, 200, 200))
            draw.text((x0 + 4, y0 + cell // 3), str(confusion[i, j]),
                      fill="white" if share[i, j] > 0.5 else "black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    write_atomic(path, buffer.getvalue())
