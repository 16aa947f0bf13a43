"""One small convolutional classifier family for latents and for pixels, with the same budget.

Every input is first cut into a GRID × GRID map by its stem (a convolution whose kernel and
stride are the patch side): latents of a 224-pixel image at J = 3 are already 28 × 28, so
their patch is one latent (8 × 8 pixels); 56 × 56 pixels have patches of 2, 112 × 112 of 4,
224 × 224 of 8. A patch thus covers the same image area whatever the input, and everything
after the stem is the same network (four 3×3 conv–BN–ReLU stages, max-pooling between them,
a global mean, dropout, a linear layer). At an operating point (16× latents against
56 × 56 pixels, 4× against 112 × 112) even the parameter counts agree, since
latent_dim × 1² = 3 × patch². (A ConvNeXt-style and a ResNet-style body on 14 × 14 patches
were tried first and overfitted the 4,000 training photos: 55% and 59% top-1 against 71%.)
"""
import json

import torch
import torch.nn as nn

__all__ = ["Classifier", "GRID", "save_classifier", "load_classifier", "predict",
           "check_compatible"]

GRID = 28


def _conv(inputs, outputs, kernel=3, stride=1):
    return [nn.Conv2d(inputs, outputs, kernel, stride, padding=kernel // 2 if stride == 1 else 0,
                      bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


class Classifier(nn.Module):
    """(N, in_channels, in_size, in_size) float → (N, classes) logits. ``config`` holds what
    rebuilds it (and what data it takes: kind, model id, input shape, classes)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        c, size, widths = config["in_channels"], config["in_size"], config["widths"]
        if size % GRID:
            raise ValueError(f"inputs of side {size} do not cut into {GRID} x {GRID} patches")
        patch = size // GRID
        layers = [nn.BatchNorm2d(c), *_conv(c, widths[0], patch, patch)]
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            layers += _conv(widths[i - 1] if i else widths[0], width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(config.get("dropout", 0.3)),
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
    if h < 8 * patch or w < 8 * patch:  # three halvings leave at least 1 x 1
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


def check_compatible(model, name, data, kind, data_model, model_id, classes=None):
    """Refuse to run classifier ``model`` (read from ``name``) on what it was not trained
    for: ``data`` (as the message calls it) holds ``kind`` (latents or pixels) of the model
    ``data_model`` whose id is ``model_id``, and, where given, ``classes`` in their order."""
    cfg = model.config
    if (kind, model_id) != (cfg["kind"], cfg["model_id"]):
        raise ValueError(f"{data} holds {kind} of model {data_model} ({model_id[:8]}), but "
                         f"{name} was trained on {cfg['kind']} of {cfg['model']} "
                         f"({cfg['model_id'][:8]}); make the dataset with that model, or "
                         f"train the classifier on one made with {data_model}")
    if classes is not None and list(classes) != cfg["classes"]:
        raise ValueError(f"{data}'s classes ({', '.join(classes)}) are not the "
                         f"classifier's ({', '.join(cfg['classes'])})")
