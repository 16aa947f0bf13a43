"""Measuring a model: rate, distortion and speed over files as a deployment sends them
(``evaluate``, both protocols: this project's and the WaLLoC paper's), and standard codecs
beside it at the same size (``baselines``: Opus and FLAC).

It stands on the decoder, the codec and the runtime; nothing on the sensor side needs it.
"""
