"""Two classifier families for latents and for pixels, each with one budget whatever the input.

Every input is first cut into a grid × grid map by a patchifying stem (a convolution whose
kernel and stride are the patch side, derived from the input: side / grid). The grid is a
parameter (training takes the source images' side / 8 by default, so a patch covers 8 × 8
source pixels): latents of a 224-pixel image at J = 3 are 28 × 28, their patch one latent;
56 × 56 pixels have patches of 2, 224 × 224 of 8. A patch thus covers the same image area
whatever the input, and everything after the stem is the same network:

- ``cnn``: four 3×3 conv–BN–ReLU stages, max-pooling between them while the map is at least
  2 × 2, a global mean, dropout, a linear layer. (A ConvNeXt-style and a ResNet-style body
  on 14 × 14 patches were tried first and overfitted the 4,000 training photos: 55% and 59%
  top-1 against 71%.)
- ``vit``: an isotropic patch transformer as in the WaLLoC paper's notebooks, shrunk for a
  CPU: learned position embeddings, pre-norm transformer blocks at one resolution, optional
  register tokens (extra learned tokens that attention may use as scratch space), the mean of
  the patch tokens, a linear layer.

At an operating point (16× latents against pixels resized to half the side, 4× against the
full side) even the parameter counts agree, since latent_dim × p² = 3 × (2p)² (but for the
input normalisation: 2 × (latent_dim − 3) more for latents).
"""
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ARCHITECTURES", "build_classifier", "save_classifier", "load_classifier",
           "predict", "check_compatible", "min_side"]

ARCHITECTURES = ("cnn", "vit")


def _conv(inputs, outputs, kernel=3, stride=1):
    return [nn.Conv2d(inputs, outputs, kernel, stride, padding=kernel // 2 if stride == 1 else 0,
                      bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


def _patch(config):
    size, grid = config["in_size"], config["grid"]
    if size % grid:
        raise ValueError(f"inputs of side {size} do not cut into a {grid} x {grid} grid of "
                         "patches")
    return size // grid


class ConvClassifier(nn.Module):
    """(N, in_channels, S, S) float → (N, classes) logits. ``config`` holds what rebuilds it
    (and what data it takes: kind, model id, input shape, grid, classes)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        c, widths, patch = config["in_channels"], config["widths"], _patch(config)
        layers = [nn.BatchNorm2d(c), *_conv(c, widths[0], patch, patch)]
        side = config["grid"]
        for i, width in enumerate(widths):
            if i and side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            layers += _conv(widths[i - 1] if i else widths[0], width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(config.get("dropout", 0.3)),
                                  nn.Linear(widths[-1], len(config["classes"])))

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class PatchTransformer(nn.Module):
    """The isotropic family: same input and output as ConvClassifier."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        c, width, grid, patch = config["in_channels"], config["width"], config["grid"], _patch(config)
        self.norm_in = nn.BatchNorm2d(c)
        self.stem = nn.Conv2d(c, width, patch, patch)
        self.position = nn.Parameter(torch.randn(1, width, grid, grid) * 0.02)
        self.registers = nn.Parameter(torch.randn(1, config["registers"], width) * 0.02)
        self.blocks = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(width, config["heads"], 2 * width, dropout=0.1,
                                       activation="gelu", batch_first=True, norm_first=True),
            config["depth"], enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(width)
        self.head = nn.Sequential(nn.Dropout(config.get("dropout", 0.3)),
                                  nn.Linear(width, len(config["classes"])))

    def forward(self, x):
        x = self.stem(self.norm_in(x))
        position = self.position
        if x.shape[2:] != position.shape[2:]:  # a larger frame: the embedding stretched to it
            position = F.interpolate(position, size=x.shape[2:], mode="bilinear",
                                     align_corners=False)
        tokens = (x + position).flatten(2).transpose(1, 2)
        r = self.registers.shape[1]
        tokens = self.blocks(torch.cat([self.registers.expand(len(x), -1, -1), tokens], 1))
        return self.head(self.norm_out(tokens[:, r:].mean(dim=1)))


def build_classifier(config):
    """The network ``config["arch"]`` names, untrained."""
    families = {"cnn": ConvClassifier, "vit": PatchTransformer}
    if config.get("arch") not in families:
        raise ValueError(f"unknown classifier family {config.get('arch')!r}; use "
                         f"{' or '.join(ARCHITECTURES)}")
    return families[config["arch"]](config)


def min_side(config):
    """The smallest input side ``predict`` takes: a CNN's poolings must leave 1 × 1."""
    patch = config["in_size"] // config["grid"]
    if config["arch"] == "vit":
        return patch
    pools, side = 0, config["grid"]
    for _ in config["widths"][1:]:
        if side >= 2:
            pools, side = pools + 1, side // 2
    return patch * 2 ** pools


@torch.no_grad()
def predict(model, latents):
    """(class index, probability) for one input (C, H, W) of the training size or larger: the
    networks end in a global mean, so a larger frame is classified whole (cropped to whole
    patches)."""
    cfg = model.config
    patch = cfg["in_size"] // cfg["grid"]
    h, w = latents.shape[1] // patch * patch, latents.shape[2] // patch * patch
    if min(h, w) < min_side(cfg):
        raise ValueError(f"latents {tuple(latents.shape)} are too small for the classifier "
                         f"(trained on {cfg['in_size']} x {cfg['in_size']}, a {cfg['grid']} x "
                         f"{cfg['grid']} grid)")
    x = torch.as_tensor(latents[:, :h, :w], dtype=torch.float32)[None]
    probabilities = torch.softmax(model(x), dim=1)[0]
    label = int(probabilities.argmax())
    return label, float(probabilities[label])


def save_classifier(model, path):
    """One safetensors file: the weights, and the config as metadata (no pickle)."""
    from safetensors.torch import save

    from ..runtime.io import write_atomic

    write_atomic(path, save({k: v.contiguous() for k, v in model.state_dict().items()},
                            metadata={"walloc_edge_classifier": json.dumps(model.config)}))


def load_classifier(path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    if Path(path).is_dir():  # classify eval DATA CLASSIFIER: the two swapped
        raise ValueError(f"{path}: a folder (a dataset?), not a classifier file")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ValueError(f"{path}: not a classifier file ({e})") from None
    if "walloc_edge_classifier" not in meta:
        raise ValueError(f"{path}: not a walloc-edge classifier (made by walloc-edge classify "
                         "train)")
    model = build_classifier(json.loads(meta["walloc_edge_classifier"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _what(kind, latents):
    return f"{latents} latents" if kind == "latents" else kind


def check_compatible(model, name, data, kind, data_model, model_id, classes=None,
                     latents="rounded", shape=None):
    """Refuse to run classifier ``model`` (read from ``name``) on what it was not trained
    for: ``data`` (as the message calls it) holds ``kind`` (latents or pixels; ``latents``
    "rounded" as sensors send them, or "continuous") of the model ``data_model`` whose id is
    ``model_id``, and, where given, ``classes`` in their order and inputs of ``shape``
    (C, H, W)."""
    cfg = model.config
    if kind != cfg["kind"]:
        make = "without --resize" if cfg["kind"] == "latents" else "with --resize"
        raise ValueError(f"{data} holds {kind}, but {name} was trained on {cfg['kind']}; "
                         f"make the dataset {make}, or evaluate a classifier trained on "
                         f"{kind}")
    if model_id != cfg["model_id"]:
        raise ValueError(f"{data} holds {kind} of model {data_model} ({model_id[:8]}), but "
                         f"{name} was trained on {cfg['kind']} of {cfg['model']} "
                         f"({cfg['model_id'][:8]}); make the dataset with that model, or "
                         f"train the classifier on one made with {data_model}")
    trained = cfg.get("latents", "rounded")
    if kind == "latents" and latents != trained:
        raise ValueError(f"{data} holds {latents} latents, but {name} was trained on "
                         f"{trained} latents")
    if shape is not None and tuple(shape) != (cfg["in_channels"], cfg["in_size"],
                                              cfg["in_size"]):
        raise ValueError(f"{data} holds {_what(kind, latents)} of {' x '.join(map(str, shape))}"
                         f", but {name} takes {cfg['in_channels']} x {cfg['in_size']} x "
                         f"{cfg['in_size']} (a {cfg['grid']} x {cfg['grid']} grid)")
    if classes is not None and list(classes) != cfg["classes"]:
        raise ValueError(f"{data}'s classes ({', '.join(classes)}) are not the "
                         f"classifier's ({', '.join(cfg['classes'])})")
