"""The real photos and music the parity benchmarks read (``--photos``, ``--music``), as the
sensor runtime reads them: RGB uint8 frames, stereo int16 PCM."""
from walloc_edge.runtime.encoder import as_sensor_sample
from walloc_edge.runtime.io import read_input
from walloc_edge.runtime.modality import AUDIO, IMAGE


def add_options(parser):
    """--photos and --music, as every parity benchmark takes them."""
    parser.add_argument("--photos", nargs="+", required=True)
    parser.add_argument("--music", nargs="+", required=True)


def photos(paths):
    return [read_input(f, IMAGE, 3)[0] for f in paths]


def music(paths, seconds=None, rate=44100):
    """Each file's samples, or ``seconds`` from its middle (None: the whole file)."""
    out = []
    for f in paths:
        x = as_sensor_sample(read_input(f, AUDIO, 2)[0], AUDIO, 2)[0]
        out.append(x if seconds is None else
                   x[len(x) // 2:len(x) // 2 + int(seconds * rate)])
    return out
