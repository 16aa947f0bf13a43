"""The decoder's network: the part of a codec's decoder after the de-companding, which the
engines run and which is exported to ONNX (the de-companding's ``erfinv`` has no ONNX op and
wants fp32)."""
import inspect
from pathlib import Path

import torch

from ..runtime._quiet import quiet_output

__all__ = ["OPSET", "split_decoder", "is_2d", "in_channels", "export_network"]

OPSET = 19  # as the encoder graphs'


def split_decoder(decoder):
    """(de-companding, network) of a codec's decoder: ``Sequential(ToNormal, network)``, or
    a decoder without de-companding (identity, decoder)."""
    from ..codec.bottleneck import ToNormal

    if isinstance(decoder, torch.nn.Sequential) and isinstance(decoder[0], ToNormal):
        return decoder[0], decoder[1] if len(decoder) == 2 else decoder[1:]
    return torch.nn.Identity(), decoder


def is_2d(network):
    """Whether ``network`` decodes images (2-D convolutions)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in network.modules())


def in_channels(network):
    """The channels of the latents ``network`` takes (its first convolution's)."""
    return next(m for m in network.modules()
                if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))).in_channels


def export_network(network, path):
    """Trace the decoder ``network`` (normal-valued latents → wavelet coefficients) with
    symbolic sizes and batch, write ``path``, check it with onnx.checker; returns the path."""
    import onnx

    channels = in_channels(network)
    batch = {0: torch.export.Dim("batch", min=1, max=1 << 10)}
    if is_2d(network):  # a batch of 2 traced, so that the batch is not taken for a constant 1
        example = torch.randn(2, channels, 16, 24)
        dims = {**batch, 2: torch.export.Dim("h", min=4, max=1 << 14),
                3: torch.export.Dim("w", min=4, max=1 << 14)}
    else:
        example = torch.randn(2, channels, 66)
        dims = {**batch, 2: torch.export.Dim("l", min=8, max=1 << 24)}
    name = next(iter(inspect.signature(network.forward).parameters))  # dynamic_shapes' key
    with torch.no_grad(), quiet_output():
        program = torch.onnx.export(network, (example,), dynamo=True, opset_version=OPSET,
                                    input_names=["normal"], output_names=["coefficients"],
                                    dynamic_shapes={name: dims}, optimize=True, verbose=False)
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return Path(path)
