"""Compressed-domain learning: datasets of what sensors send (latents) or of resized pictures,
and classifiers trained on them, so that a server learns and infers without decoding.

``datasets`` is torch-free (pyarrow, and Ray Data for ``engine="ray"``); ``classifier``,
``training`` and ``torch_dataset`` need torch (the server side); ``sweep`` (latents against
pixels on a fleet's own photos) needs it to train.
"""
