"""``walloc-edge demo``: the whole path on one photo, as a deployment runs it.

export the model's sensor encoder to ONNX (validated) → encode a bundled photo with the
torch-free runtime → .wlc bytes → decode with the torch decoder → a report and a
side-by-side picture (original | reconstruction | error × 4).
"""
import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo"]


def _median_seconds(fn, repeat=3):
    from .bench import timed

    return float(np.median(timed(fn, repeat)))


def side_by_side(original, reconstruction):
    """original | reconstruction | error amplified 4× around mid-grey."""
    error = 128 + 4 * (reconstruction.astype(np.int16) - original.astype(np.int16))
    gap = np.full((original.shape[0], 8, original.shape[2]), 255, np.uint8)
    return np.concatenate([original, gap, reconstruction, gap,
                           np.clip(error, 0, 255).astype(np.uint8)], axis=1)


def run_demo(model, out, photo_name="astronaut", audio_model=None, log=print):
    """Run the demo with ``model`` (path or embedded name), writing into ``out``, and with
    ``audio_model`` on a generated music clip when given; returns the report (a dict)."""
    from PIL import Image

    from .codec import load
    from .data import sample_photo
    from .decoder import Decoder, ms_ssim, psnr
    from .export import export_bundle
    from .runtime import Encoder
    from .runtime.modality import IMAGE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    codec = load(model)
    cfg = codec.config
    if cfg.modality is not IMAGE or cfg.channels != 3:
        raise ValueError(f"the demo takes an RGB image model; {model} is a {cfg.channels}-"
                         f"channel {cfg.modality} model")
    log(f"1/4 export {model} (J={cfg.J}, latent_dim={cfg.latent_dim}) to ONNX and validate it")
    start = time.perf_counter()
    export_bundle(codec, out / "bundle", ("onnx",), log=lambda s: log("    " + s.splitlines()[0]))
    log(f"    {time.perf_counter() - start:.1f} s")

    photo = sample_photo(photo_name)
    encoder = Encoder(out / "bundle")  # auto: the C core where it was built
    log(f"2/4 encode the bundled photo '{photo_name}' ({photo.shape[1]}x{photo.shape[0]}) "
        f"with the sensor runtime ({encoder.describe()}, no torch)")
    blob = encoder.encode(photo)
    wlc = out / f"{photo_name}.wlc"
    wlc.write_bytes(blob)
    encode_s = _median_seconds(lambda: encoder.encode(photo))
    latents_s = _median_seconds(lambda: encoder.latents(photo))

    log("3/4 decode the .wlc with the torch decoder")
    decoder = Decoder(codec)
    reconstruction = decoder.decode(blob)
    decode_s = _median_seconds(lambda: decoder.decode(blob), repeat=1)

    log("4/4 measure and write the pictures")
    picture = out / f"{photo_name}-side-by-side.png"
    Image.fromarray(side_by_side(photo, reconstruction)).save(picture)
    decoded_png = out / f"{photo_name}-decoded.png"
    Image.fromarray(reconstruction).save(decoded_png)
    megapixels = photo.shape[0] * photo.shape[1] / 1e6
    report = {
        "model": str(model),
        "dimensionality_reduction": cfg.dimensionality_reduction,
        "bytes": len(blob),
        "compression_ratio": photo.nbytes / len(blob),
        "bpp": 8 * len(blob) / (megapixels * 1e6),
        "psnr": psnr(photo, reconstruction),
        "ms_ssim": ms_ssim(photo, reconstruction),
        "encoder": encoder.describe(),
        "encoder_MPps": megapixels / latents_s,
        "encode_with_rans_MPps": megapixels / encode_s,
        "decode_MPps": megapixels / decode_s,
        "decoder_device": decoder.device,
        "files": {"bitstream": str(wlc), "decoded": str(decoded_png), "side_by_side": str(picture),
                  "bundle": str(out / "bundle")},
    }
    log("")
    log(f"  dimensionality reduction  {report['dimensionality_reduction']:.0f}x "
        f"({3 * 4 ** cfg.J} wavelet coefficients -> {cfg.latent_dim} latents per block)")
    log(f"  bitstream                 {report['bytes']:,} bytes: compression ratio "
        f"{report['compression_ratio']:.1f}, {report['bpp']:.3f} bits per pixel")
    log(f"  quality                   PSNR {report['psnr']:.2f} dB, MS-SSIM {report['ms_ssim']:.4f}")
    log(f"  sensor encoder            {report['encoder_MPps']:.1f} MP/s ({report['encoder']}), "
        f"{report['encode_with_rans_MPps']:.1f} MP/s with rans coding")
    log(f"  torch decoder ({decoder.device})       {report['decode_MPps']:.2f} MP/s")
    log("")
    log(f"  wrote {wlc}, {decoded_png},")
    log(f"        {picture} (original | reconstruction | error x4),")
    log(f"        and the bundle in {out / 'bundle'}")
    if audio_model is not None:
        report["audio"] = _audio_demo(audio_model, out, log)
    return report


def _audio_demo(model, out, log):
    """The same path for 5 s of generated stereo music; writes both WAV files."""
    from .codec import load
    from .data import synthetic_music
    from .decoder import Decoder, psnr
    from .runtime.io import write_signal
    from .export import export_bundle
    from .runtime import Encoder, read_bitstream
    from .runtime.modality import AUDIO

    codec = load(model)
    if codec.config.modality is not AUDIO:
        raise ValueError(f"{model} is not an audio model")
    log("")
    log(f"audio: export {model} (J={codec.config.J}, latent_dim={codec.config.latent_dim}), "
        "encode 5 s of generated stereo music, decode")
    export_bundle(codec, out / "audio-bundle", ("onnx",), log=lambda s: None)
    clip = synthetic_music(5 * 44100, codec.config.channels, seed=1)
    encoder = Encoder(out / "audio-bundle")
    blob = encoder.encode(clip, sample_rate=44100)
    (out / "music.wlc").write_bytes(blob)
    stream = read_bitstream(blob)
    decoder = Decoder(codec)
    reconstruction = decoder.decode(stream)
    encode_s = _median_seconds(lambda: encoder.encode(clip, sample_rate=44100))
    decode_s = _median_seconds(lambda: decoder.decode(stream), repeat=1)
    original = write_signal(clip, stream.header, out / "music-original")
    decoded = write_signal(reconstruction, stream.header, out / "music-decoded")
    megasamples = len(clip) / 1e6
    report = {"compression_ratio": clip.nbytes / len(blob), "psnr": psnr(clip, reconstruction),
              "dimensionality_reduction": codec.config.dimensionality_reduction,
              "encode_MSps": megasamples / encode_s, "decode_MSps": megasamples / decode_s,
              "files": {"original": str(original), "decoded": str(decoded)}}
    log(f"  {report['dimensionality_reduction']:.2f}x fewer values, compression ratio "
        f"{report['compression_ratio']:.1f}, PSNR {report['psnr']:.2f} dB; encode "
        f"{report['encode_MSps']:.1f} MS/s, decode {report['decode_MSps']:.2f} MS/s")
    log(f"  wrote {out / 'music.wlc'}, {original} and {decoded},")
    log(f"        and the bundle in {out / 'audio-bundle'}")
    return report
