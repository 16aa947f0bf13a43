"""The entropy coder rows: how fast each coder packs and unpacks the input's latents."""
from .timing import speed, timed

__all__ = ["coder_rows"]


def coder_rows(latents, bits, amount, repeat, coders):
    """Encode and decode speed of each entropy coder on the latents of the input: rans with
    its C loops (where built) and with the numpy reference, the WebP and PNG mosaics."""
    from ..runtime.coders.rans import native

    def row(label, coder, status="measured"):
        payload = coder.encode(latents, bits)
        params = coder.params(bits)
        return {"row": label, "kind": "coder", "status": status, "coder": coder.name,
                "encode": speed(timed(lambda: coder.encode(latents, bits), repeat), amount),
                "decode": speed(timed(lambda: coder.decode(payload, latents.shape, bits,
                                                           params), repeat), amount),
                "compression_ratio": None, "bytes": len(payload)}

    status = "measured" if native.available() else f"measured; C: {native.reason()}"
    with native.turned_off():
        rows = [row("rans coder (numpy)", coders["rans"], status)]
    if native.available():  # first, so that the coder column reads the C loops
        rows.insert(0, row("rans coder (C)", coders["rans"]))
    return rows + [row("webp mosaic coder (libwebp)", coders["webp"]),
                   row("png mosaic coder (zlib)", coders["png"])]
