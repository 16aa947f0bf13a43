"""The sensor bundle: encoder graphs + ``encoder.json`` (metadata) + ``encoder.npz`` (weights).

``encoder.json`` is what the sensor runtime reads; its fields are documented in
docs/sensor-bundle.md. ``encoder.npz`` holds the encoder weights and wavelet filters that
the numpy backend and the C export compute from.
"""
from ..codec.models import encoder_arrays
from ..runtime.bundle import BUNDLE_FORMAT, BUNDLE_VERSION
from ..runtime.modality import AUDIO, IMAGE
from ..runtime.bundle import model_id as _model_id

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "model_id", "encoder_arrays", "bundle_arrays",
           "bundle_metadata"]


def bundle_arrays(codec, encoder):
    """The content of encoder.npz: the model's encoder arrays, the fused filter bank along one
    axis (``fused_bank``, float64) and the sensor graph's folded weights (``graph.*``)."""
    arrays = encoder_arrays(codec)
    arrays["fused_bank"] = encoder.bank.numpy()
    arrays.update({f"graph.{k}": v.numpy() for k, v in encoder.state_dict().items()})
    return arrays


def model_id(codec):
    """The codec's model id (see :func:`walloc_edge.runtime.bundle.model_id`)."""
    return _model_id(codec.config.to_dict(), encoder_arrays(codec))


def bundle_metadata(codec, encoder, graphs):
    """The content of encoder.json for a codec, its sensor encoder module and graph reports."""
    cfg = codec.config
    step = 2 ** cfg.J
    latent_range = 2 ** (cfg.latent_bits - 1) - 1
    latent_dtype = "int8" if cfg.latent_bits <= 8 else "int16"
    if cfg.modality == "image":
        inputs = {"dtype": "uint8", "layout": "NHWC", "shape": [1, "H", "W", cfg.channels],
                  "normalisation": IMAGE.normalisation}
        latents = {"dtype": latent_dtype, "layout": "NCHW",
                   "shape": [1, cfg.latent_dim, f"H/{step}", f"W/{step}"]}
    else:
        inputs = {"dtype": "int16", "layout": "NLC", "shape": [1, "L", cfg.channels],
                  "normalisation": AUDIO.normalisation}
        latents = {"dtype": latent_dtype, "layout": "NCL",
                   "shape": [1, cfg.latent_dim, f"L/{step} + 2"]}
    inputs.update({"multiple": step, "min_size": encoder.min_size,
                   "padding": "reflect; before = (padded - size) // 2, the rest after",
                   "receptive_field": {"left": encoder.left, "right": encoder.right}})
    latents["range"] = [-latent_range, latent_range]
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "model_id": model_id(codec),
        "config": cfg.to_dict(),
        "input": inputs,
        "latents": latents,
        "compander": {"scale": codec.encoder[1].scale, "latent_max": codec.latent_max,
                      "formula": "clip(round(latent_max * erf(y / (scale * sqrt(2)))))"},
        "weights": "encoder.npz",
        "graphs": graphs,
    }
