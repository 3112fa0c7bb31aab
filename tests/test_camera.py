"""`edgerec camera` and edgerec.camera on a video the test writes: rendered text that changes at known frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.cli import main

from conftest import write_video

# what each ROI shows from a frame on (30 frames at 10 fps, 640x160)
TOP = {0: "Hello World", 10: "ABC-123", 20: "Total: $1,299.00"}
BOTTOM = {0: "Now serving 41", 15: "Now serving 42"}
ROIS = ["8,8,560,64", "8,88,560,64"]  # a line of height 48 is pasted at y=16 and y=96, x=16
N_FRAMES, FPS = 30, 10


def shown(schedule: dict[int, str], frame: int) -> str:
    return schedule[max(k for k in schedule if k <= frame)]


def make_frame(i: int) -> np.ndarray:
    from edgerec.io.fonts import render_line

    frame = np.full((160, 640, 3), 255, np.uint8)
    for y, schedule in ((16, TOP), (96, BOTTOM)):
        line = render_line(shown(schedule, i), height=48, font_kind="latin")
        frame[y:y + 48, 16:16 + line.shape[1]] = line
    return frame


@pytest.fixture(scope="module")
def frames():
    return [make_frame(i) for i in range(N_FRAMES)]


@pytest.fixture(scope="module")
def video(tmp_path_factory, frames):
    return write_video(tmp_path_factory.mktemp("video") / "kiosk.avi", frames)


def events(stdout: str) -> list[tuple[int, int, str, int]]:
    out = [json.loads(line) for line in stdout.splitlines()]
    for ev in out:
        assert set(ev) == {"frame_index", "timestamp_ms", "roi_index", "roi", "rec_text", "rec_score", "first_frame"}
        assert ev["timestamp_ms"] == pytest.approx(ev["frame_index"] * 1000 / FPS)  # the file's own clock
        assert ev["roi"] == [int(v) for v in ROIS[ev["roi_index"]].split(",")] and 0.5 < ev["rec_score"] <= 1
    return [(e["frame_index"], e["roi_index"], e["rec_text"].strip(), e["first_frame"]) for e in out]


def camera(*args: str):
    return CliRunner().invoke(main, ["camera", *args])


def test_json_reports_each_change_once_it_held(v4, video):
    res = camera("--source", video, "--roi", ROIS[0], "--roi", ROIS[1], "--json", "--stable", "2")
    assert res.exit_code == 0, res.output
    # a change at frame F held at F+1 with --stable 2; the events come in frame order, ROIs in order within one
    assert events(res.stdout) == [
        (1, 0, "Hello World", 0), (1, 1, "Now serving 41", 0),
        (11, 0, "ABC-123", 10),
        (16, 1, "Now serving 42", 15),
        (21, 0, "Total: $1,299.00", 20),
    ]
    summary = res.stderr.strip().splitlines()[-1]
    assert "30 frames read, 30 recognized" in summary and "fps" in summary and "p95" in summary


def test_every_n_skips_frames(v4, video):
    res = camera("--source", video, "--roi", ROIS[0], "--roi", ROIS[1], "--json", "--every", "2")
    assert res.exit_code == 0, res.output
    # only even frames are recognized: the change at 15 is first seen at 16 and holds at 18
    assert events(res.stdout) == [
        (2, 0, "Hello World", 0), (2, 1, "Now serving 41", 0),
        (12, 0, "ABC-123", 10),
        (18, 1, "Now serving 42", 16),
        (22, 0, "Total: $1,299.00", 20),
    ]
    assert "30 frames read, 15 recognized" in res.stderr


def test_plain_lines_and_save_dir(v4, video, tmp_path):
    out = tmp_path / "events"
    res = camera("--source", video, "--roi", ROIS[1], "--stable", "3", "--save-dir", str(out))
    assert res.exit_code == 0, res.output
    lines = [line.split("\t") for line in res.stdout.splitlines()]
    assert [(f, roi, text.strip()) for f, _, roi, text, _ in lines] == [("2", "roi0", "Now serving 41"),
                                                                       ("17", "roi0", "Now serving 42")]
    assert lines[1][1] == "1700ms"
    saved = json.loads((out / "frame000017_roi0.json").read_text("utf-8"))
    assert saved["rec_text"].strip() == "Now serving 42" and saved["first_frame"] == 15
    assert cv2.imread(str(out / "frame000017_roi0_res.png")) is not None


def test_whole_frame_is_one_line_without_roi(v4, tmp_path):
    from edgerec.io.fonts import render_line

    a, b = (render_line(t, height=48, font_kind="latin") for t in ("Gate 7", "Gate 12 closed"))
    canvas = np.full((64, 320, 3), 255, np.uint8)
    frames = []
    for i in range(8):
        f = canvas.copy()
        line = a if i < 4 else b
        f[8:56, 8:8 + line.shape[1]] = line
        frames.append(f)
    res = camera("--source", write_video(tmp_path / "line.avi", frames), "--json")
    assert res.exit_code == 0, res.output
    got = [(e["frame_index"], e["rec_text"].strip(), e["roi"]) for e in map(json.loads, res.stdout.splitlines())]
    assert got == [(1, "Gate 7", [0, 0, 320, 64]), (5, "Gate 12 closed", [0, 0, 320, 64])]


def test_a_still_image_reports_its_text_whatever_stable_asks(v4, tmp_path):
    """A one-frame file cannot hold a text for --stable 2 frames: its text is reported at its end. A clip whose
    text changes on its last frame still reports only what held."""
    frame = make_frame(0)
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), frame)
    for stable in ("1", "2", "5"):
        res = camera("--source", str(still), "--roi", ROIS[0], "--json", "--stable", stable)
        assert res.exit_code == 0, res.output
        got = [(e["frame_index"], e["rec_text"].strip()) for e in map(json.loads, res.stdout.splitlines())]
        assert got == [(0, "Hello World")], (stable, res.output)
    res = camera("--source", write_video(tmp_path / "short.avi", [make_frame(0)] * 3 + [make_frame(10)]),
                 "--roi", ROIS[0], "--json", "--stable", "2")
    assert res.exit_code == 0, res.output
    got = [(e["frame_index"], e["rec_text"].strip()) for e in map(json.loads, res.stdout.splitlines())]
    assert got == [(1, "Hello World")]  # ABC-123 showed on one frame only: not reported


def test_missing_source_fails_cleanly(tmp_path):
    missing = tmp_path / "nope.mp4"
    res = camera("--source", str(missing), "--roi", ROIS[0])
    assert res.exit_code == 1
    assert res.stderr.strip() == f"edgerec: error: {missing}: no such video file"
    res = camera("--source", "/dev/video99")
    assert res.exit_code == 1 and "/dev/video99: cannot open this camera" in res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize("roi", ["1,2,3", "a,b,c,d", "0,0,0,10", "-1,0,10,10"])
def test_bad_roi_syntax_is_a_usage_error(video, roi):
    res = camera("--source", video, "--roi", roi)
    assert res.exit_code == 2 and "--roi" in res.stderr and roi in res.stderr


def test_roi_outside_the_frame_names_the_frame_size(v4, video):
    res = camera("--source", video, "--roi", ROIS[0], "--roi", "600,0,100,80")
    assert res.exit_code == 1
    assert "--roi 600,0,100,80: reaches past the 640x160 frames" in res.stderr
    assert "Traceback" not in res.output


def test_ctrl_c_ends_cleanly_with_the_summary(v4, video, monkeypatch):
    import edgerec.camera.reader as cam

    class Interrupted:
        """The real file, but the user presses Ctrl-C while frame 6 is read."""

        def __init__(self, source):
            self.cap, self.reads = cv2.VideoCapture(source), 0

        def read(self):
            self.reads += 1
            if self.reads == 7:
                raise KeyboardInterrupt
            return self.cap.read()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cam, "_open_capture", Interrupted)
    res = camera("--source", video, "--roi", ROIS[0], "--json")
    assert res.exit_code == 0, res.output
    assert [e[:3] for e in events(res.stdout)] == [(1, 0, "Hello World")]
    assert "6 frames read, 6 recognized" in res.stderr


class FakeCamera:
    """A live camera: each opening delivers its list of frames, then the stream drops; None is an opening that
    fails (the camera is not back yet); once the list of openings is used up, every opening fails."""

    def __init__(self, openings: list[list[np.ndarray] | None]):
        self.openings = list(openings)

    def __call__(self, source) -> FakeCapture:
        return FakeCapture(self.openings.pop(0) if self.openings else None)


class FakeCapture:
    def __init__(self, frames: list[np.ndarray] | None):
        self.frames = None if frames is None else list(frames)

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self.frames is not None

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def grab(self) -> bool:
        return self.read()[0]

    def set(self, prop, value) -> bool:
        return True

    def get(self, prop) -> float:
        return 0.0

    def release(self) -> None:
        self.frames = None


def test_live_stream_is_reopened_with_backoff(v4, frames):
    from edgerec.camera import CameraWatcher
    from edgerec.errors import InputError

    sleeps: list[float] = []
    # 12 frames; the stream drops; two openings fail; 12 more frames; it drops for good
    cam = FakeCamera([frames[:12], None, None, frames[12:24]])
    watcher = CameraWatcher(v4, 0, ROIS, stable=2, capture_factory=cam, sleep=sleeps.append, max_reconnects=3,
                            backoff_s=0.5)
    got = []
    with pytest.raises(InputError, match="^0: the stream stopped delivering frames and could not be reopened"):
        for ev in watcher:
            got.append((ev.frame_index, ev.roi_index, ev.rec_text.strip()))
    # frame indices run on across the reconnect, so the change at frame 15 is seen at 15 and holds at 16
    assert got == [(1, 0, "Hello World"), (1, 1, "Now serving 41"), (11, 0, "ABC-123"), (16, 1, "Now serving 42"),
                   (21, 0, "Total: $1,299.00")]
    assert watcher.stats.frames_read == 24 and watcher.stats.reconnects == 1
    # exponential backoff: first drop 0.5, 1 (two failed openings), 2 -> back; second drop 0.5, 1, 2 -> give up
    assert sleeps == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]


def test_camera_that_cannot_be_opened():
    from edgerec.camera import CameraReader
    from edgerec.errors import InputError

    with pytest.raises(InputError, match="^3: cannot open this camera"):
        CameraReader(3, capture_factory=FakeCamera([None])).open()


def test_python_watch_generator(v4, video):
    from edgerec.camera import watch

    got = [(e.frame_index, e.roi_index, e.rec_text.strip()) for e in watch(v4, video, [ROIS[0]], stable=4)]
    assert got == [(3, 0, "Hello World"), (13, 0, "ABC-123"), (23, 0, "Total: $1,299.00")]
