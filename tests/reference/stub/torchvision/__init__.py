"""Stand-in torchvision for running the reference package; see make_reference.py."""
