"""The rows that need torch: the torch encoder as the reference's users run it, the torch
decoder on each device, and the PSNR of the decoded input. Without torch (a sensor) they
show as skipped, with why."""
import numpy as np

from .timing import speed, timed

__all__ = ["load_codec", "quality", "torch_rows"]


def load_codec(model):
    """(the codec of ``model``, None), or (None, why it cannot be had here)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch is not installed (pip install 'walloc-edge[server]')"
    if model is None:
        return None, "no model given"
    from ..codec import load

    return load(model), None


def quality(codec, blob, sample, reason):
    """{"psnr"} of ``blob`` decoded against ``sample``, or why it was skipped."""
    if codec is None:
        return {"psnr": None, "psnr_note": f"skipped: {reason}"}
    from ..decoder import Decoder, psnr

    return {"psnr": psnr(sample, Decoder(codec, "cpu").decode(blob).reshape(sample.shape))}


def torch_rows(codec, sample, amount, repeat, reason, blob):
    """The torch encoder's row and a decoder row per device (the CPU, and CUDA if any)."""
    if codec is None:
        return [{"row": "torch encoder (Codec.encode)", "kind": "sensor",
                 "status": f"skipped: {reason}"},
                {"row": "torch decoder", "kind": "decoder", "status": f"skipped: {reason}"}]
    import torch

    from ..codec import pad
    from ..decoder import Decoder


    x = codec.config.modality.to_model(torch.from_numpy(np.array(sample))[None])
    x = pad(x, 2 ** codec.J)
    with torch.no_grad():
        times = timed(lambda: codec.encode(x), max(1, repeat // 2))
    rows = [{"row": "torch encoder (Codec.encode)", "kind": "sensor", "status": "reference math",
             "encode": speed(times, amount)}]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        decoder = Decoder(codec, device)
        times = timed(lambda: decoder.decode(blob), 1)
        rows.append({"row": f"torch decoder ({device})", "kind": "decoder", "status": "measured",
                     "decode": speed(times, amount)})
    return rows
