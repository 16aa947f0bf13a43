"""Where each rANS lane's latents lie, when it codes them, and the zero-guarded buffer that
puts every neighbour a predictor reads at a fixed offset."""
import functools

import numpy as np

from ...errors import BitstreamError

TARGET_LANES = 512  # lanes advance together: more lanes, fewer numpy steps…
MIN_SPAN = 1024     # …but each lane costs a 4-byte final state, so ≥ 1024 latents each
HISTORY = 3         # previous samples an audio predictor reads


class Layout:
    """Lane ``c · groups + g`` codes part g of channel c, and channel c runs one step behind
    channel c − 1, so the earlier channels at a position are decoded before a later one
    needs them. The part length s is ``region``.

    - Images: part g is the column strip [g·s, (g + 1)·s), coded row by row, s steps a row;
      strip g starts g·s steps after strip g − 1, a wavefront: the west neighbour (in strip
      g − 1) and the north-east one (in strip g + 1) are decoded before a latent needs them,
      so every latent has its full causal context (this needs s ≥ 2). Own neighbours: W, N,
      NW, NE.
    - Audio: part g is the run of samples [g·s, (g + 1)·s); a run starts without history.
      Own neighbours: the three previous samples.

    The decoder keeps latents in a buffer: per channel the picture with a zero row above and
    zero columns beside it (audio: every run after three zeros), and channel c after an
    all-zero channel −1, so every neighbour reads zero outside the picture or the channels.
    """

    def __init__(self, shape, region):
        self.shape = tuple(shape)
        self.channels = C = shape[0]
        self.audio = len(shape) == 2
        self.width = w = shape[-1]
        self.rows = 1 if self.audio else shape[1]
        self.n = self.rows * w
        self.groups = G = -(-w // region) if 1 <= region <= w else 0
        if not G or (G > 1 and region < 2 and not self.audio):
            raise BitstreamError(f"rans region length {region} does not fit a width of {w}")
        self.region = s = region
        self.lanes = G * C
        lane = np.arange(self.lanes)
        self.lane_channel = lane // G
        self.lane_group = lane % G
        if self.audio:
            self.steps = s + C - 1
            self.stride = G * (s + HISTORY)  # one channel
            self.own_offsets = np.array([-1, -2, -3])
        else:
            self.steps = (C - 1) + (G - 1) * s + self.rows * s
            row = w + 2
            self.stride = (self.rows + 1) * row
            self.own_offsets = np.array([-1, -row, -row - 1, -row + 1])  # W, N, NW, NE
        self.size = (C + 1) * self.stride
        self.channel_base = (np.arange(C) + 1) * self.stride

    @classmethod
    def region_for(cls, shape):
        """The part length the format fixes for ``shape``: parts of at least MIN_SPAN
        latents, at most TARGET_LANES lanes in all (it bounds the decoder's steps)."""
        w, n = shape[-1], int(np.prod(shape[1:]))
        most = w if len(shape) == 2 else max(1, w // 2)  # strips at least 2 wide
        groups = max(1, min(most, TARGET_LANES // shape[0], n // MIN_SPAN))
        return -(-w // groups)

    def _grid(self, buffer, offset=0):
        """A view of ``buffer`` over the latents' slots, moved by ``offset``: each latent's
        neighbour at that offset."""
        start = self.stride + offset
        block = buffer[start:start + self.channels * self.stride]
        if self.audio:
            return block.reshape(self.channels, self.groups, -1)[:, :, HISTORY:]
        return block.reshape(self.channels, self.rows + 1, self.width + 2)[:, 1:, 1:-1]

    def gather(self, buffer, offset=0):
        """(channels, n): the latents held in ``buffer``, or their neighbours at ``offset``."""
        return self._grid(buffer, offset).reshape(self.channels, -1)[:, :self.n]

    def store(self, buffer, latents):
        """Write (channels, n) ``latents`` into their slots of ``buffer``."""
        grid = self._grid(buffer)
        if grid[0].size == self.n:  # images; audio's last run may be short
            grid[...] = latents.reshape(grid.shape)
            return
        padded = np.zeros((self.channels, grid[0].size), buffer.dtype)
        padded[:, :self.n] = latents
        grid[...] = padded.reshape(grid.shape)

    def slots(self, positions):
        """Each position's slot within its channel's part of the buffer."""
        if self.audio:
            run, local = np.divmod(positions, self.region)
            return run * (self.region + HISTORY) + local + HISTORY
        row, col = np.divmod(positions, self.width)
        return (row + 1) * (self.width + 2) + col + 1

    def schedule(self):
        """(steps, lanes) arrays: the position within its channel each lane codes at each
        step, that position's slot in the channel's part of the buffer, and whether the lane
        codes one at all (0 where it does not). Read-only, and kept for the last shapes seen
        (a sensor's frames are all one size; building them is a fifth of the encoder)."""
        return _schedule(self.shape, self.region)

    def steps_between(self, t0, t1):
        """(slot, valid) of every lane at steps t0 .. t1 - 1: rows of ``schedule`` (the
        decoder takes them a block at a time: the whole schedule is steps x lanes, which a
        header can make large)."""
        return self._lanes_at(np.arange(t0, min(t1, self.steps))[:, None])[1:]

    def _build_schedule(self):
        return self._lanes_at(np.arange(self.steps)[:, None])

    def _lanes_at(self, t):
        """(position, slot, valid) of every lane at the steps of the column ``t``."""
        s, w = self.region, self.width
        local = t - self.lane_channel
        if self.audio:
            position = self.lane_group * s + local
            valid = (local >= 0) & (local < s) & (position < w)
            slot = self.lane_group * (s + HISTORY) + local + HISTORY
        else:
            local = local - self.lane_group * s
            row, col = local // s, self.lane_group * s + local % s
            valid = (local >= 0) & (row < self.rows) & (col < w)
            position = row * w + col
            slot = (row + 1) * (w + 2) + col + 1
        return np.where(valid, position, 0), np.where(valid, slot, 0), valid

    def activity(self, own):
        """The local activity a latent's context is chosen by, from its own neighbours:
        |W − NW| + |N − NW| for images, the same on the three previous samples for audio."""
        a, b, c = own[0], own[1], own[2]
        return np.abs(a - b) + np.abs(b - c) if self.audio else np.abs(a - c) + np.abs(b - c)


@functools.lru_cache(maxsize=2)
def _schedule(shape, region):
    arrays = Layout(shape, region)._build_schedule()
    for a in arrays:
        a.flags.writeable = False
    return arrays
