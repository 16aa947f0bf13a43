"""The decoder graph of a bundle: the decoder network in ONNX (``decoder.network``: between
the de-companding and the wavelet synthesis, dynamic H/W or L), validated against torch on
inputs of other sizes than the traced one (decode agreement ≥ 45 dB), with what the
de-companding and the synthesis around it need."""
from pathlib import Path

import numpy as np
import torch

from ..decoder.network import OPSET, export_network, split_decoder
from ..runtime.modality import IMAGE

__all__ = ["MIN_AGREEMENT_DB", "agreement_db", "validate_decoder", "export_decoder"]

MIN_AGREEMENT_DB = 45.0  # PSNR of a decode through the graph against the fp32 torch decode


def agreement_db(x, reference):
    """PSNR (dB) of ``x`` against ``reference``, signals in [-0.5, 0.5] (peak 1)."""
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@torch.no_grad()
def validate_decoder(codec, run):
    """Decode latents through ``run`` (normal-valued latents as numpy → coefficients) and
    through torch: random latents at two sizes and a real photo's; (passed, report)."""
    from ..data import sample_photo
    from .validate import as_channels

    cfg = codec.config
    span = 2 ** (cfg.latent_bits - 1) - 1
    rng = np.random.default_rng(0)
    decompand, _ = split_decoder(codec.decoder)
    image = cfg.modality is IMAGE
    shapes = [(9, 13), (20, 16)] if image else [(37,), (150,)]
    inputs = [(f"random latents {'x'.join(map(str, s))}",
               torch.from_numpy(rng.integers(-span, span + 1, (1, cfg.latent_dim, *s)))
               .float()) for s in shapes]
    if image:
        photo = as_channels(sample_photo("astronaut"), cfg.channels)[:128, :192]
        x = cfg.modality.to_model(torch.from_numpy(np.array(photo))[None])
        inputs.append(("photo astronaut 128x192 latents", codec.encode(x)))
    checks = []
    for label, z in inputs:
        normal = decompand(z)
        mine = codec.clamp(codec._synthesize(torch.from_numpy(run(normal.numpy()))))
        checks.append({"input": label,
                       "agreement_db": round(agreement_db(mine, codec.decode(z)), 2)})
    worst = min(c["agreement_db"] for c in checks)
    passed = worst >= MIN_AGREEMENT_DB
    return passed, {"status": "validated" if passed else "validation failed",
                    "agreement_db": worst, "checks": checks}


def export_decoder(codec, out_dir, log=print):
    """decoder.onnx (the network, validated), decoder.npz (the synthesis filters) and
    decoder.json (the compander constants, the report) in ``out_dir``: what a decode needs
    beside the bundle's model id. Returns (passed, decoder.json's content)."""
    import json

    from ..codec.sensor import model_id
    from ..runtime.backends import onnx_session
    from ..runtime.io import write_atomic

    out_dir = Path(out_dir)
    decompand, network = split_decoder(codec.decoder)
    path = export_network(network, out_dir / "decoder.onnx")
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    passed, report = validate_decoder(codec, lambda x: session.run(None, {name: x})[0])
    filters = {"iwt": codec.iwt, **({"post": codec.post} if getattr(codec, "post_filter", False)
                                    else {})}  # an audio codec's post-filter follows synthesis
    np.savez(out_dir / "decoder.npz", **{f"{m}.{k}": v.detach().cpu().double().numpy()
                                         for m, module in filters.items()
                                         for k, v in module.state_dict().items()})
    meta = {"model_id": model_id(codec), "graph": path.name, "opset": OPSET,
            "input": "normal-valued latents (after the de-companding), float32 NCHW / NCL",
            "compander": {"scale": getattr(decompand, "scale", None),
                          "latent_max": getattr(decompand, "latent_max", None),
                          "normal": "scale * sqrt(2) * erfinv(2 * clip(z / (2 * latent_max) "
                                    "+ 0.5, 1e-4, 1 - 1e-4) - 1)"},
            "synthesis": {"wavelet": codec.config.wavelet, "J": codec.J,
                          "filters": "decoder.npz"}, **report}
    write_atomic(out_dir / "decoder.json", (json.dumps(meta, indent=2) + "\n").encode())
    log(f"decoder onnx: {report['status']} — decodes agree with torch at "
        f"{report['agreement_db']:.1f} dB PSNR (at least {MIN_AGREEMENT_DB:g})")
    return passed, meta
