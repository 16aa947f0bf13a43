"""The decoder's network: the part of a codec's decoder after the de-companding, which the
engines run and the decoder graph exports (the de-companding's ``erfinv`` has no ONNX op and
wants fp32)."""
import torch

__all__ = ["split_decoder", "is_2d", "in_channels"]


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
