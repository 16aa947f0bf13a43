"""The rANS payload of one tile: its fields, and pack/unpack, which are its written
specification. Version 5 puts a mode byte before it (MODE_RANS; MODE_LZMA: ``lzma_mode``'s)."""
from dataclasses import dataclass

import numpy as np

from ...errors import BitstreamError
from .predictor import MAX_EARLIER

VERSIONS = (3, 4, 5)  # model versions this reader knows; 4 adds constant channels, 5 a mode
MODE_RANS, MODE_LZMA = 0, 1  # version 5: a tile's first byte, then that mode's payload
CONSTANT = 0x80     # a channel's taps byte (version 4): every latent of the channel is one value
LOWER = 1 << 16     # rANS states live in [2^16, 2^32)


@dataclass
class Payload:
    """Everything little-endian, in this order:

    u32 ``region`` (the part length: strip width, or samples for audio) · u8 ``reach``
    (residuals span −reach … reach) · u8 ``taps`` per channel: m, the number of earlier
    channels that predict it, or CONSTANT (version 4) · version 4: int8 ``constants``, the
    value of each constant channel · int16 ``coefficients``, per other channel its K own
    taps then m value, m west and m north taps of channels c − m … c − 1 · u32 ``states``,
    the final state of each lane of the other channels · u16 ``words``, the renormalisation
    output in decoding order."""

    version: int
    region: int
    reach: int
    taps: np.ndarray          # (C,) uint8
    constants: np.ndarray     # (constant channels,) int8
    coefficients: np.ndarray  # (Σ K + 3m,) int16
    states: np.ndarray        # (lanes of the coded channels,) uint32
    words: np.ndarray         # (words,) uint16

    def pack(self):
        head = [np.uint32(self.region).astype("<u4").tobytes(), bytes([self.reach]),
                self.taps.tobytes()]
        if self.version >= 4:
            head.append(self.constants.astype("i1").tobytes())
        return b"".join(head + [self.coefficients.astype("<i2").tobytes(),
                                self.states.astype("<u4").tobytes(),
                                self.words.astype("<u2").tobytes()])

    @property
    def coded(self):
        """The channels coded by rANS (not constant), in order."""
        return np.flatnonzero(self.taps != CONSTANT)

    @classmethod
    def unpack(cls, data, version, channels, own_taps, lanes_per_channel):
        """Parse and check the sizes of a payload of ``channels`` channels whose predictors
        read ``own_taps`` own neighbours and whose channels have ``lanes_per_channel`` lanes
        each (both fixed by the latent shape). Raises BitstreamError."""
        data = memoryview(data)
        head = 5
        if len(data) < head + channels:
            raise BitstreamError("rans payload shorter than its header")
        region = int(np.frombuffer(data[:4], "<u4")[0])
        reach = data[4]
        taps = np.frombuffer(data[head:head + channels], np.uint8)
        constant = taps == CONSTANT if version >= 4 else np.zeros(channels, bool)
        most = np.minimum(np.arange(channels), MAX_EARLIER)
        if ((taps > most) & ~constant).any():
            raise BitstreamError("rans payload names predictor taps that do not exist")
        at = head + channels
        n_constant = int(constant.sum())
        constants = np.frombuffer(data[at:at + n_constant], np.int8)
        at += n_constant
        n_coefficients = int((own_taps + 3 * taps[~constant].astype(np.int64)).sum())
        n_states = lanes_per_channel * (channels - n_constant)
        rest = len(data) - at - 2 * n_coefficients - 4 * n_states
        if len(constants) < n_constant or rest < 0 or rest % 2:
            raise BitstreamError(f"rans payload of {len(data)} bytes does not fit its "
                                 f"{n_states} lanes and predictors")
        coefficients = np.frombuffer(data[at:at + 2 * n_coefficients], "<i2")
        at += 2 * n_coefficients
        states = np.frombuffer(data[at:at + 4 * n_states], "<u4")
        if (states < LOWER).any():
            raise BitstreamError("rans payload has an invalid initial state")
        words = np.frombuffer(data[at + 4 * n_states:], "<u2")
        return cls(version, region, reach, taps, constants, coefficients, states, words)
