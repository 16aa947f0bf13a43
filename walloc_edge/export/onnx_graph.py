"""ONNX export of the sensor encoder: dynamic H/W (or L), opset 19, checked and optimised."""
import torch

from ..runtime._quiet import quiet_output
from ..runtime.backends import onnx_session  # graphs run as the sensor runs them

__all__ = ["OPSET", "export_onnx", "onnx_session"]

OPSET = 19  # Pad/Cast with the semantics we rely on; onnxruntime ≥ 1.17 runs it


def export_onnx(encoder, example, path):
    """Trace ``encoder`` at ``example`` with symbolic sizes, write ``path``, run onnx.checker."""
    import onnx

    from ..codec.sensor import SensorEncoder2D

    step = 2 ** encoder.J
    lo = encoder.min_size // step
    if isinstance(encoder, SensorEncoder2D):
        dims = {1: step * torch.export.Dim("h_blocks", min=lo, max=1 << 14),
                2: step * torch.export.Dim("w_blocks", min=lo, max=1 << 14)}
        names = (["image"], ["latents"])
    else:
        dims = {1: step * torch.export.Dim("l_blocks", min=lo, max=1 << 24)}
        names = (["pcm"], ["latents"])
    with torch.no_grad(), quiet_output():
        program = torch.onnx.export(encoder, (example,), dynamo=True, opset_version=OPSET,
                                    input_names=names[0], output_names=names[1],
                                    dynamic_shapes={"x": dims}, optimize=True, verbose=False)
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path
