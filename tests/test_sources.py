"""Video files, cameras and picamera2 as sources: colour order, frame count, rate, limit,
Ctrl-C."""
import cv2
import numpy as np
import pytest

from walloc_edge.cli import main
from walloc_edge.firmware_bridge.transports import open_receiver
from walloc_edge.runtime import Encoder, read_latents
from walloc_edge.runtime.sources import (LAYOUTS, VideoSource, picamera2_frames, to_rgb,
                                         video_frames)

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # RGB, one per frame in turn


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """20 frames at 10 fps, 96x128, solid colours cycling through COLOURS (written BGR)."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for i in range(20):
        rgb = np.zeros((96, 128, 3), np.uint8) + np.uint8(COLOURS[i % 4])
        writer.write(rgb[:, :, ::-1])  # OpenCV takes BGR
    writer.release()
    return path


def test_frames_come_out_rgb_and_all_of_them(video):
    frames = list(VideoSource(video).frames())
    assert len(frames) == 20
    for i, frame in enumerate(frames):
        assert frame.shape == (96, 128, 3) and frame.dtype == np.uint8
        assert np.abs(frame.mean(axis=(0, 1)) - COLOURS[i % 4]).max() < 8, i


def test_rate_and_limit(video):
    assert len(list(VideoSource(video).frames(fps=5))) == 10  # every other frame of 10 fps
    kept = list(VideoSource(video).frames(fps=2.5))
    assert len(kept) == 5 and all(np.abs(f.mean((0, 1)) - COLOURS[0]).max() < 8 for f in kept)
    assert len(list(VideoSource(video).frames(limit=7))) == 7


def test_unopenable_video_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="cannot open"):
        list(VideoSource(tmp_path / "missing.mp4").frames())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_converts_to_rgb(layout):
    channels, order = LAYOUTS[layout]
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    stored = np.full((4, 5, channels), 255, np.uint8)
    stored[:, :, list(order)] = rgb
    assert np.array_equal(to_rgb(stored, layout), rgb)


def test_picamera2_default_layout_is_rgbx():
    """picamera2's XBGR8888 arrays hold [R, G, B, 255] per pixel."""
    class Camera:  # what Picamera2.capture_array returns, on a stand-in
        calls = 0

        def capture_array(self):
            Camera.calls += 1
            frame = np.zeros((8, 8, 4), np.uint8)
            frame[..., 0], frame[..., 3] = 200, 255  # red
            return frame

    frames = list(picamera2_frames(limit=3, camera=Camera()))
    assert len(frames) == 3 and Camera.calls == 3
    assert frames[0].shape == (8, 8, 3) and tuple(frames[0][0, 0]) == (200, 0, 0)


def test_ctrl_c_releases_the_capture():
    class Capture:
        released, reads = False, 0

        def get(self, prop):
            return 30.0

        def read(self):
            Capture.reads += 1
            if Capture.reads > 2:
                raise KeyboardInterrupt
            return True, np.zeros((4, 4, 3), np.uint8)

        def release(self):
            Capture.released = True

    got = []
    with pytest.raises(KeyboardInterrupt):
        for frame in video_frames(Capture()):
            got.append(frame)
    assert len(got) == 2 and Capture.released


def test_encode_and_stream_a_video(rgb_bundle, video, tmp_path, capsys):
    out = tmp_path / "wlc"
    assert main(["encode", str(rgb_bundle), "--video", str(video), "--frames", "4", "-o",
                 str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.wlc"))
    assert names == [f"clip-{i:06d}.wlc" for i in range(4)]
    assert main(["encode", str(rgb_bundle), "--video", str(video), "--frames", "4", "-o",
                 str(out)]) == 0  # a run again: the same frames, kept (it failed each)
    assert "kept 4 existing output(s)" in capsys.readouterr().out
    assert main(["encode", str(rgb_bundle), "--video", str(video), "--frames", "2", "--fps",
                 "5", "-o", str(out)]) == 0  # other frames: other names
    assert sorted(p.name for p in out.glob("clip-5fps-*.wlc")) == \
        ["clip-5fps-000000.wlc", "clip-5fps-000001.wlc"]
    first = next(VideoSource(video).frames())
    _, latents = read_latents((out / "clip-000000.wlc").read_bytes())
    assert np.array_equal(latents, Encoder(rgb_bundle, "numpy").latents(first))  # RGB order
    frames = tmp_path / "frames.bin"
    assert main(["stream", str(rgb_bundle), "--video", str(video), "--fps", "5", "--to",
                 f"file://{frames}"]) == 0
    receiver = open_receiver(f"file://{frames}")
    assert len(list(receiver.messages())) == 10
    assert "sent 10 message(s)" in capsys.readouterr().out


def test_a_camera_run_again_keeps_every_new_frame(rgb_bundle, tmp_path, monkeypatch, capsys):
    """A camera's frames were named from 0 at every run, so a second run into the same
    folder found each name taken and dropped every frame it captured."""
    rng = np.random.default_rng(0)
    monkeypatch.setattr(VideoSource, "frames", lambda self, fps=None, limit=None: iter(
        [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]))
    out = tmp_path / "wlc"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "0").write_bytes(b"")  # a file named as the camera: still the camera
    for _ in range(2):
        assert main(["encode", str(rgb_bundle), "--video", "0", "-o", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.wlc"))
    assert len(names) == 6 and all(n.startswith("camera0-20") for n in names), names
    assert len({n.rsplit("-", 1)[0] for n in names}) == 2  # a prefix a run
