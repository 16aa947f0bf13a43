"""Frames from video files, cameras and network streams, as the RGB uint8 arrays the
encoder takes; no torch.

OpenCV's ``VideoCapture`` (``pip install 'walloc-edge[camera]'``) opens a device index
(``0``), a video file or a stream URL (``rtsp://...``) and yields BGR frames; picamera2 on a
Raspberry Pi yields arrays whose byte order its format names in little-endian words, so
that ``RGB888`` is stored B, G, R and ``XBGR8888`` is R, G, B, X. :func:`to_rgb` puts each
layout right; getting it wrong swaps red and blue silently, so the layout is always named.
"""
import time
from pathlib import Path

import numpy as np

__all__ = ["LAYOUTS", "to_rgb", "open_video", "video_frames", "picamera2_frames",
           "VideoSource"]

_CAP_PROP_FPS = 5  # cv2.CAP_PROP_FPS, named here so that captures can be stand-ins

# layout name → (channels per pixel, indices of R, G, B within a pixel)
LAYOUTS = {
    "RGB": (3, (0, 1, 2)),
    "BGR": (3, (2, 1, 0)),          # OpenCV
    "RGBX": (4, (0, 1, 2)),
    "BGRX": (4, (2, 1, 0)),
    "RGB888": (3, (2, 1, 0)),       # picamera2: stored [B, G, R]
    "BGR888": (3, (0, 1, 2)),       # picamera2: stored [R, G, B]
    "XBGR8888": (4, (0, 1, 2)),     # picamera2's default: stored [R, G, B, 255]
    "XRGB8888": (4, (2, 1, 0)),     # picamera2: stored [B, G, R, 255]
}


def to_rgb(frame: np.ndarray, layout: str) -> np.ndarray:
    """An H×W×3 RGB uint8 copy of ``frame`` stored in ``layout`` (see ``LAYOUTS``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown pixel layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    channels, order = LAYOUTS[layout]
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != channels or frame.dtype != np.uint8:
        raise ValueError(f"a {layout} frame is H x W x {channels} uint8, got "
                         f"{frame.shape} {frame.dtype}")
    return np.ascontiguousarray(frame[:, :, list(order)])


class VideoSource:
    """Where video frames come from: a camera index, a file, a stream URL, or ``picamera2``."""

    def __init__(self, spec):
        self.spec = str(spec)
        self.name = ("camera" + self.spec if self.spec.isdigit() else
                     "picamera2" if self.spec == "picamera2" else
                     self.spec.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "stream")

    @property
    def file(self):
        """The video file it reads (the same frames at every run), or None for a camera or a
        stream (new ones), told by the spec alone, as ``open_video`` tells them."""
        live = self.spec.isdigit() or self.spec == "picamera2" or "://" in self.spec
        return None if live else Path(self.spec)

    def frames(self, fps=None, limit=None):
        """RGB frames, at most ``fps`` a second and ``limit`` in all."""
        if self.spec == "picamera2":
            return picamera2_frames(fps=fps, limit=limit)
        return video_frames(open_video(self.spec), fps=fps, limit=limit)


def open_video(spec):
    """An opened ``cv2.VideoCapture`` for a device index, file or URL; ValueError if not."""
    try:
        import cv2
    except ImportError:
        raise ValueError("video and cameras need OpenCV: pip install 'walloc-edge[camera]'") \
            from None
    source = int(spec) if str(spec).isdigit() else str(spec)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        kind = "camera" if isinstance(source, int) else "video"
        raise ValueError(f"{spec}: cannot open this {kind} (check the device index, path or "
                         "URL)")
    return capture


def video_frames(capture, fps=None, limit=None, layout="BGR", live=None):
    """RGB frames from an opened capture (``read()`` → (ok, frame)) until it ends, ``limit``
    frames, or Ctrl-C; the capture is released in every case. With ``fps``, frames less than
    1/fps after the last one kept are dropped, timed by the file's own frame rate for a
    video file and by the clock for a camera or stream (``live``; default: a capture that
    reports no frame rate is live)."""
    rate = capture.get(_CAP_PROP_FPS)
    live = not rate or rate <= 0 if live is None else live

    def timed():
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield (time.monotonic() if live else index / rate), to_rgb(frame, layout)
            index += 1
    try:
        yield from _paced(timed(), fps, limit)
    finally:
        capture.release()


def picamera2_frames(fps=None, limit=None, camera=None, layout="XBGR8888"):
    """RGB frames from a Raspberry Pi camera (picamera2's ``capture_array``), until ``limit``
    frames or Ctrl-C; ``camera`` is an already configured and started Picamera2."""
    own = camera is None
    if own:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise ValueError("picamera2: not installed (on Raspberry Pi OS: sudo apt install "
                             "python3-picamera2)") from None
        camera = Picamera2()
        camera.configure(camera.create_video_configuration(main={"format": layout}))
        camera.start()
    try:
        timed = ((time.monotonic(), to_rgb(camera.capture_array(), layout))
                 for _ in iter(int, 1))
        yield from _paced(timed, fps, limit)
    finally:
        if own:
            camera.stop()


def _paced(timed_frames, fps, limit):
    """At most ``limit`` of the (time, frame) pairs, and with ``fps`` none sooner than 1/fps
    after the last one kept (a source that falls behind is not made to catch up)."""
    period = 1 / fps if fps else 0
    kept, due = 0, None
    if limit is not None and limit < 1:
        return
    for t, frame in timed_frames:
        if period and due is not None and t < due - 1e-9:
            continue
        due = t + period if due is None or t >= due + period else due + period
        kept += 1
        yield frame
        if limit is not None and kept >= limit:
            return
