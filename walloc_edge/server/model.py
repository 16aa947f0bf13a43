"""What the server runs for the model the sensors encode with: its id (every bitstream must
carry it), its decoder, and a classifier of its latents. torch is imported only for the
decoder and the classifier."""
from pathlib import Path

import numpy as np

from ..firmware_bridge.loops import Rejected
from ..runtime import Bitstream, Header

__all__ = ["ServedModel"]


class ServedModel:
    """``model`` (an embedded name, a model file, or its sensor bundle folder) as the server
    needs it. For a bundle it needs no torch: without ``decode`` it runs no decoder, with
    it the bundle's decoder graph (``decoder.bundle``). ``classifier``: a file from
    ``walloc-edge classify train``, which must classify latents of this model.
    ``decoder_options``: the Decoder's engine keywords (engine, precision, providers,
    compile; for a bundle onnxruntime fp32 only). ``threads``: what each message is decoded
    and classified on (serve's workers share the cores), the engine chosen and measured on
    as many (default: all cores)."""

    def __init__(self, model: str, decode: bool = True, device: str = "auto",
                 tile: "int | None" = None, classifier: "str | None" = None,
                 decoder_options: "dict | None" = None, threads: "int | None" = None):
        self.name, self.classifier_name = str(model), classifier
        self.decoder, self.classifier, self.threads = None, None, threads
        self.per_tile = None  # without a decoder: a tile's entropy decoding, in seconds
        options = {**({} if tile is None else {"tile": tile}), **(decoder_options or {}),
                   "threads": threads}
        self.torch_free = Path(model, "encoder.json").is_file()  # a bundle's decoder graph
        if decode and self.torch_free:
            from ..decoder.bundle import BundleDecoder

            self.decoder = BundleDecoder(model, **options)
        elif decode:
            from ..decoder import Decoder

            self.use_threads()  # auto measures the torch engines as they will run
            self.decoder = Decoder(model, device, **options)
        if decode:  # what each message's budget scales: measured once, then kept
            from ..decoder.cost import cached_calibration

            cached_calibration(self.decoder)
        if self.decoder is not None:
            self.model_id, self.fields = self.decoder.model_id, self.decoder.model_fields
        elif Path(model, "encoder.json").is_file():  # a bundle: no torch needed
            from ..runtime import load_bundle

            bundle = load_bundle(model)
            self.model_id, c = bundle.model_id, bundle.config
            self.fields = (bundle.modality, c["channels"], c["latent_dim"], c["J"],
                           c["latent_bits"])
        else:
            from ..codec import load
            from ..codec.sensor import model_id

            codec = load(model)
            self.model_id, c = model_id(codec), codec.config
            self.fields = (c.modality, c.channels, c.latent_dim, c.J, c.latent_bits)
        if classifier:
            from ..learning.classifier import check_compatible, load_classifier

            self.classifier = load_classifier(classifier)
            check_compatible(self.classifier, classifier, "each message", "latents", self.name,
                             self.model_id)

    @property
    def classes(self) -> "list[str]":
        """The classifier's class names (none without a classifier)."""
        return self.classifier.config["classes"] if self.classifier is not None else []

    def check(self, header: Header) -> None:
        """Refuse a bitstream made by another model, or whose header says other shapes than
        the model's (with or without a decoder: a server that keeps latents must not take a
        forged claim of gigabytes either)."""
        if header.model_id != self.model_id:
            raise Rejected(f"made by model {header.model_id}, this server takes "
                           f"{self.model_id}")
        if header.model_fields != self.fields:
            raise Rejected("the bitstream's shape fields do not match its model id")

    def cost(self, header: Header) -> "tuple[int, float]":
        """(peak bytes, seconds) that decoding a bitstream of this model with ``header``
        would take on this machine, from the header alone; without a decoder, what its
        entropy decoding takes (a claim of many tiny tiles costs seconds). A header this
        decoder cannot decode (shape fields that do not match the model) is refused here."""
        if self.decoder is None:
            from ..decoder.cost import entropy_cost, tile_seconds

            if self.per_tile is None:  # measured once, at the first message (under a second)
                self.per_tile = tile_seconds(self.fields[2], self.fields[0])
            cost = entropy_cost(header, self.per_tile)
            return cost.bytes, cost.seconds
        try:
            cost = self.decoder.cost(header)
        except ValueError as e:
            raise Rejected(str(e)) from None
        return cost.bytes, cost.seconds

    def use_threads(self) -> None:
        """Let torch use ``threads`` for what the calling thread decodes or classifies (a
        bundle's decoder runs on onnxruntime: its session was made with them)."""
        if self.threads and (not self.torch_free or self.classifier is not None):
            import torch

            torch.set_num_threads(self.threads)

    def decode(self, stream: Bitstream) -> np.ndarray:
        """The signal of a verified bitstream."""
        return self.decoder.decode(stream)

    def classify(self, latents: np.ndarray) -> "tuple[int, str, float]":
        """(class index, class name, probability) of one frame's latents."""
        from ..learning.classifier import predict

        label, confidence = predict(self.classifier, latents)
        return label, self.classes[label], confidence
