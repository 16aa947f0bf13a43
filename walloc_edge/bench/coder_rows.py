"""The entropy coder rows: how fast each coder packs and unpacks the input's latents."""
from .timing import speed, timed

__all__ = ["coder_rows"]


def coder_rows(latents, bits, amount, repeat, coders, level=None):
    """Encode and decode speed of each entropy coder on the latents of the input: rans (at
    ``level``) with its C loops (where built) and with the numpy reference, the WebP and PNG
    mosaics. A rans row says when the input's tile took the LZMA mode (audio that repeats,
    as the generated music does): its decode is then LZMA's, far faster than rANS's."""
    from ..runtime.coders.rans import native
    from ..runtime.coders.rans.payload import MODE_LZMA

    rans = coders["rans"].at_level(level)
    named = "" if rans is coders["rans"] else f", level {rans.level}"

    def row(label, coder, status="measured"):
        payload = coder.encode(latents, bits)
        params = coder.params(bits)
        if coder is rans and rans.version >= 5 and payload[:1] == bytes([MODE_LZMA]):
            label += ", LZMA mode"  # this input repeats: its tile copies (decoded fast)
        return {"row": label, "kind": "coder", "status": status, "coder": coder.name,
                "encode": speed(timed(lambda: coder.encode(latents, bits), repeat), amount),
                "decode": speed(timed(lambda: coder.decode(payload, latents.shape, bits,
                                                           params), repeat), amount),
                "compression_ratio": None, "bytes": len(payload)}

    status = "measured" if native.available() else f"measured; C: {native.reason()}"
    with native.turned_off():
        rows = [row(f"rans coder (numpy{named})", rans, status)]
    if native.available():  # first, so that the coder column reads the C loops
        rows.insert(0, row(f"rans coder (C{named})", rans))
    return rows + [row("webp mosaic coder (libwebp)", coders["webp"]),
                   row("png mosaic coder (zlib)", coders["png"])]
