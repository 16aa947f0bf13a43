"""``walloc-edge info``: what a sensor bundle, a model or a .wlc bitstream holds, and which
decoder engines and precisions run on this machine (and why the others do not)."""
import json
import math
from pathlib import Path

from ._shared import check_model

EXAMPLES = """examples:
  walloc-edge info bundle/          a sensor bundle (works without torch)
  walloc-edge info rgb-16x          an embedded model (needs [server])
  walloc-edge info photo.wlc        a bitstream's header, verified (works without torch)"""


def configure(p):
    p.add_argument("target", metavar="BUNDLE_OR_MODEL",
                   help="a sensor bundle folder (from walloc-edge export), an embedded model "
                        "name (walloc-edge models), a .safetensors model, a reference X.pth "
                        "with X.json beside it, or a .wlc bitstream")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.epilog = EXAMPLES


def run(args):
    target = Path(args.target)
    if target.is_dir():
        return _bundle_info(args)
    if target.suffix.lower() == ".wlc" and target.is_file():
        return _bitstream_info(args)
    if target.is_file() and target.suffix.lower() not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"{args.target}: not a bundle folder, a model file (.safetensors, "
                         ".pth, .pt) or a bitstream (.wlc); info reads those")
    check_model(args.target)
    return _model_info(args)


def _bitstream_info(args):
    """A .wlc's header (its CRC and structure verified; the payload is not decoded)."""
    from ..runtime import read_bitstream
    from ..runtime.coders.rans.levels import level_of
    from ..runtime.coders.rans.payload import VERSIONS

    from ..runtime.errors import BitstreamError

    blob = Path(args.target).read_bytes()
    try:
        h = read_bitstream(blob).header
    except BitstreamError as e:
        raise BitstreamError(f"{args.target}: {e}") from None
    version, level = level_of(h.coder_params) if h.coder == "rans" else (None, None)
    fields = {"file": args.target, "bytes": len(blob), "model_id": h.model_id,
              "modality": str(h.modality), "shape": list(h.shape), "dtype": str(h.dtype),
              "J": h.J, "latent_dim": h.latent_dim, "latent_bits": h.latent_bits,
              "coder": h.coder, "rans_version": version, "level": level,
              "tile": list(h.tile), "sample_rate": h.sample_rate,
              f"bits_per_{h.modality.per}": 8 * len(blob) / math.prod(h.sizes)}
    if h.modality.per == "sample":  # audio: per frame (a sample of every channel), and per
        fields["bits_per_frame"] = fields.pop("bits_per_sample")  # one channel's sample
        fields["bits_per_channel_sample"] = fields["bits_per_frame"] / h.channels
    if version is not None and version < max(VERSIONS):  # no levels then
        fields["level"] = level = None
        how = ("no level: what the C encoder, RansCoder('planar') and earlier walloc-edge "
               "write" if version == 3 else "no level: an earlier walloc-edge's format")
    else:
        how = f"level {level}" if level else None
    if args.json:
        print(json.dumps(fields, indent=2))
        return
    per = "bits_per_channel_sample" if "bits_per_frame" in fields else f"bits_per_{h.modality.per}"
    print(f"bitstream    {args.target}, {len(blob):,} bytes (verified)")
    print(f"model id     {h.model_id}")
    print(f"signal       {h.modality} {' x '.join(map(str, h.shape))} {h.dtype}"
          + (f", {h.sample_rate} Hz" if h.sample_rate else ""))
    print(f"latents      {h.latent_dim} channels, {h.latent_bits}-bit, J={h.J}, tiles of "
          f"{' x '.join(map(str, h.tile))}")
    rate = f"{fields[per]:.3f} {per.replace('_', ' ')}"
    if "bits_per_frame" in fields:
        rate += f" ({fields['bits_per_frame']:.3f} per frame of {h.channels} channels)"
    print(f"coder        {h.coder}" + (f", model version {version}" if version else "")
          + (f" ({how})" if how else "") + f"; {rate}")


def _bundle_info(args):
    from ..runtime import load_bundle
    from ..runtime.backends import BACKENDS

    bundle = load_bundle(args.target)
    meta, c = bundle.meta, bundle.config
    weights = bundle.weights_problem
    why_not = {name: cls.usable(bundle) for name, cls in BACKENDS.items()}
    usable = [name for name, why in why_not.items() if why is None]
    decoder = _bundle_decoder(bundle)
    if args.json:
        print(json.dumps({**meta, "weights_problem": weights, "usable_backends": usable,
                          "unusable_backends": {n: w for n, w in why_not.items() if w},
                          "decoder": decoder}, indent=2))
        return
    graphs = ", ".join(f"{fmt} ({info.get('file') or info.get('program')})"  # C: a program
                       for fmt, info in meta.get("graphs", {}).items())
    print(f"bundle       {bundle.path}")
    print(f"model id     {bundle.model_id}")
    print(f"modality     {bundle.modality}, {c['channels']} {bundle.modality.channel_words}")
    print(f"transform    {c.get('wavelet', 'bior4.4')} wavelet packet, J={c['J']} "
          f"(inputs are padded to multiples of {bundle.block})")
    print(f"latents      {c['latent_dim']} channels, {c['latent_bits']}-bit")
    print(f"graphs       {graphs or 'none (the numpy backend runs encoder.npz)'}")
    if weights:
        print(f"weights      {weights}")
    if usable:
        print(f"backends     usable here: {', '.join(usable)} (auto takes {usable[0]})")
        for name, why in why_not.items():  # (the weights' problem is said above)
            if why and why != weights:
                print(f"             not {name}: {why}")
    else:
        print("backends     none usable here: export the bundle again")
    from ..runtime.coders.rans import native

    print("rans coder   " + ("C loops (native)" if native.available() else
                             f"numpy ({native.reason()})"))
    print("decoder      " + ("onnxruntime fp32 (decoder.onnx): runs here" if decoder["runs"]
                             else f"none here: {decoder['why_not']}"))


def _bundle_decoder(bundle):
    """Whether the bundle's decoder graph runs here, and if not why (torch-free)."""
    import importlib.util

    from ..decoder.bundle import DECODER_FILES

    path = bundle.path
    missing = [name for name in DECODER_FILES if not (path / name).is_file()]
    if missing:
        why = f"no decoder graph ({', '.join(missing)} missing; export it with --decoder)"
    elif (of := _decoder_model(path)) != bundle.model_id:
        why = ("decoder.json " + (f"is of model {of}, not this bundle's" if of else
                                  "is not readable") + "; export the model again with --decoder")
    elif importlib.util.find_spec("onnxruntime") is None:
        why = "onnxruntime is not installed (pip install 'walloc-edge[decode]')"
    else:
        why = _decoder_loads(path)
    return {"engine": "onnxruntime", "precision": "fp32", "runs": why is None, "why_not": why}


def _decoder_loads(path):
    """None where the bundle's decoder loads (its files read, its graph opened), else why."""
    from ..decoder.bundle import BundleDecoder

    try:
        BundleDecoder(path, threads=1)
    except ValueError as e:  # BundleError, a graph's BackendError
        return str(e)
    except Exception as e:  # noqa: BLE001 - whatever stops it loading: info says, not crashes
        return f"the decoder does not load ({type(e).__name__}: {e}); export it again"
    return None


def _decoder_model(path):
    """The model id decoder.json names (None where it is unreadable)."""
    try:
        return json.loads((path / "decoder.json").read_text()).get("model_id")
    except (OSError, ValueError, AttributeError):
        return None


def _decoder_engines(audio):
    """[{engine, precision, device, runs, why_not}] for the model's torch decoder: every row
    of the engine table on the CPU (and a CUDA GPU where torch sees one)."""
    from ..decoder.engines import choices_here, devices_here

    rows = []
    for device in devices_here():
        for engine, precision, why in choices_here(device):
            if audio and precision != "fp32":
                why = "audio decoders run fp32 only"
            rows.append({"engine": engine, "precision": precision, "device": device,
                         "runs": why is None, "why_not": why})
    return rows


def _model_info(args):
    from ..codec import load

    model = load(args.target)
    c = model.config
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    latent_shape = " x ".join(c.modality.latent_axes(2 ** c.J))
    info = {
        "model": str(args.target),
        **c.to_dict(),
        "subbands": c.subbands,
        "dimensionality_reduction": round(c.dimensionality_reduction, 3),
        "latent_range": 2 ** (c.latent_bits - 1) - 1,
        "encoder_parameters": count(model.encoder),
        "decoder_parameters": count(model.decoder) + (count(model.post) if c.post_filter else 0),
        "decoder_engines": _decoder_engines(c.modality.spatial_axes != 2),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"model        {args.target}")
    print(f"modality     {c.modality}, {c.channels} {c.modality.channel_words}")
    print(f"transform    {c.wavelet} wavelet packet, J={c.J} -> {c.subbands} subbands")
    print(f"latents      {c.latent_dim} x ({latent_shape}), {c.latent_bits}-bit "
          f"(integers in +-{info['latent_range']})")
    print(f"reduction    {info['dimensionality_reduction']:g}x fewer values than the input")
    print(f"encoder      {info['encoder_parameters']:,} parameters"
          f"{' (one 1x1 conv)' if c.lightweight_encode else f' (Ne={c.Ne})'}")
    print(f"decoder      {info['decoder_parameters']:,} parameters (Nd={c.Nd}"
          f"{', post filter' if c.post_filter else ''})")
    for device in dict.fromkeys(r["device"] for r in info["decoder_engines"]):
        rows = [r for r in info["decoder_engines"] if r["device"] == device]
        runs = ", ".join(f"{r['engine']} {r['precision']}" for r in rows if r["runs"])
        print(f"engines      {device}: {runs} (and auto)")
        for r in rows:
            if not r["runs"]:
                print(f"             not {r['engine']} {r['precision']}: {r['why_not']}")
