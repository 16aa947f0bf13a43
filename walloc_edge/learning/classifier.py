"""One small convolutional classifier family for latents and for pixels, with the same budget.

Every input is cut into a GRID × GRID map of patches by its stem (a convolution whose kernel
and stride are the patch side): latents of a 224-pixel image at J = 3 are 28 × 28, so their
patches are 2 latents; 56 × 56 pixels have patches of 4, 112 × 112 of 8, 224 × 224 of 16. A
patch thus covers the same image area whatever the input, and everything after the stem is
the same network: at an operating point (16× latents against 56 × 56 pixels, 4× against
112 × 112) even the parameter counts agree, since latent_dim × 2² = 3 × patch².
"""
import json

import torch
import torch.nn as nn

__all__ = ["Classifier", "GRID", "save_classifier", "load_classifier", "predict"]

GRID = 14


class _Block(nn.Module):
    """x + MLP(norm(depthwise 3×3 conv(x))): a ConvNeXt-style residual block."""

    def __init__(self, width, expansion=2):
        super().__init__()
        self.spatial = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.norm = nn.BatchNorm2d(width)
        self.mlp = nn.Sequential(nn.Conv2d(width, expansion * width, 1), nn.GELU(),
                                 nn.Conv2d(expansion * width, width, 1))

    def forward(self, x):
        return x + self.mlp(self.norm(self.spatial(x)))


class Classifier(nn.Module):
    """(N, in_channels, in_size, in_size) float → (N, classes) logits. ``config`` holds what
    rebuilds it (and what data it takes: kind, model id, input shape, classes)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        c, size = config["in_channels"], config["in_size"]
        if size % GRID:
            raise ValueError(f"inputs of side {size} do not cut into {GRID} x {GRID} patches")
        widths, depth = config["widths"], config["depth"]
        patch = size // GRID
        layers = [nn.BatchNorm2d(c), nn.Conv2d(c, widths[0], patch, stride=patch)]
        for i, width in enumerate(widths):
            if i:
                layers += [nn.BatchNorm2d(widths[i - 1]),
                           nn.Conv2d(widths[i - 1], width, 2, stride=2)]
            layers += [_Block(width) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.LayerNorm(widths[-1]),
                                  nn.Linear(widths[-1], len(config["classes"])))

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@torch.no_grad()
def predict(model, latents):
    """(class index, probability) for one input (C, H, W) of any size: the network is
    convolutional up to a global mean, so a frame larger than the training images is
    classified whole (cropped to whole patches)."""
    patch = model.config["in_size"] // GRID
    h, w = latents.shape[1] // patch * patch, latents.shape[2] // patch * patch
    if h < 4 * patch or w < 4 * patch:
        raise ValueError(f"latents {tuple(latents.shape)} are too small for the classifier")
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

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ValueError(f"{path}: not a classifier file ({e})") from None
    if "walloc_edge_classifier" not in meta:
        raise ValueError(f"{path}: not a walloc-edge classifier (made by walloc-edge classify "
                         "train)")
    model = Classifier(json.loads(meta["walloc_edge_classifier"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()
