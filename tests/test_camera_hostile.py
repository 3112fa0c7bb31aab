"""`edgerec camera` on hostile sources (an audit, 2026-12-07): a file name that is not UTF-8, a pipe that stalls,
a stream that never answers, a video file served over HTTP, frames that change size, text files, '%' in a name.
Each must end in bounded time with one line that names the source, never a crash inside OpenCV or a hang."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

import edgerec.camera.reader as cam
from edgerec.camera import CameraReader, CameraWatcher, Roi
from edgerec.camera.quiet import stderr_silenced
from edgerec.cli import main
from edgerec.errors import InputError

from conftest import write_video

V4 = "PP-OCRv4_mobile_rec"
PY = [sys.executable, "-m", "edgerec.cli"]


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> str:
    """12 frames at 10 fps, 320x64: "Gate 7" for 6 frames, then "Gate 12"."""
    from edgerec.io.fonts import render_line

    frames = []
    for i in range(12):
        frame = np.full((64, 320, 3), 255, np.uint8)
        line = render_line("Gate 7" if i < 6 else "Gate 12", height=48, font_kind="latin")
        frame[8:56, 8:8 + line.shape[1]] = line
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("hostile") / "small.avi", frames)


def _cli(*args: str):
    return CliRunner().invoke(main, ["camera", *args])


def test_sources_are_parsed_as_given():
    assert cam.parse_source(" 0 ") == 0 and cam.parse_source("200") == 200
    assert cam.parse_source(" ok.avi") == " ok.avi"  # a space is part of a file name
    assert cam.parse_source("99999999999999999999") == "99999999999999999999"  # no C int: a path, not a camera
    assert cam.parse_source("\u0663") == "\u0663"  # an Arabic-Indic digit is no camera index
    assert cam.is_live("rtsp://h/s") and cam.is_live(0) and cam.is_live("/dev/no-such-camera")
    assert not cam.is_live("clip.avi")
    with pytest.raises(InputError, match="no source given"):
        CameraReader("  ")


def test_a_pipe_under_dev_is_read_as_a_file_not_a_camera(small_video):
    """`cat clip.avi | edgerec camera --source /dev/stdin`: every frame once, the file's clock, no reconnects."""
    with open(small_video, "rb") as f:
        proc = subprocess.run([*PY, "camera", "--source", "/dev/stdin", "--model", V4, "--json"], stdin=f,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "12 frames read" in proc.stderr and "reconnect" not in proc.stderr and "reopen" not in proc.stderr
    assert proc.stdout.count("\n") >= 2 and '"timestamp_ms": 100.0' in proc.stdout  # the file's clock, not Unix time


def test_a_file_name_that_is_not_utf8_is_read(small_video, tmp_path):
    """OpenCV crashed (SIGSEGV) on the str that holds such a name; it gets the name's bytes."""
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/clip\xff.avi")
    with open(small_video, "rb") as src, open(name, "wb") as dst:
        dst.write(src.read())
    proc = subprocess.run([*PY, "camera", "--source", name, "--model", V4], capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"12 frames read" in proc.stderr and proc.stdout.count(b"\n") >= 2


def test_files_that_are_no_video_are_refused_naming_them(small_video, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("meeting notes\nnothing to see\n", "utf-8")
    pattern = tmp_path / "shot%d.avi"  # OpenCV would read shot0.avi, shot1.avi, ... instead
    pattern.write_bytes(open(small_video, "rb").read())
    long = tmp_path / ("a" * 300 + ".avi")
    for source, why in ((str(text), "this is a text file, not a video"),
                        (str(pattern), "OpenCV reads a '%' in a file name as an image-sequence pattern"),
                        (str(long), "cannot read this file (File name too long)"),
                        ("", "no source given")):
        res = _cli("--source", source)
        assert res.exit_code == 1 and res.stderr.count("\n") == 1 and why in res.stderr, res.stderr
    playlist = tmp_path / "list.m3u8"  # a text format FFmpeg reads as media is not refused as text
    playlist.write_text("#EXTM3U\n#EXT-X-ENDLIST\n", "utf-8")
    assert not cam._text_file(str(playlist)) and cam._text_file(str(text))


def test_a_video_without_frames_is_an_error(tmp_path):
    empty = tmp_path / "empty.avi"
    write_video(empty, [np.zeros((32, 64, 3), np.uint8)])
    data = empty.read_bytes()
    empty.write_bytes(data[: len(data) // 2])  # the header and no complete frame
    res = _cli("--source", str(empty), "--model", V4)
    assert res.exit_code == 1, res.output
    assert "cannot open" in res.stderr or "no frame could be read" in res.stderr


def test_frames_that_change_size_are_checked_against_the_rois(v4):
    big, small = np.full((64, 320, 3), 255, np.uint8), np.full((40, 200, 3), 255, np.uint8)
    reader = CameraReader(5, capture_factory=lambda s: _Frames([big] * 3 + [small] * 2), live=False)
    with pytest.raises(InputError, match=r"--roi 100,30,200,30: reaches past the 200x40 frames of 5 \(from frame 3\)"):
        list(CameraWatcher(v4, reader, [Roi(100, 30, 200, 30)], stable=1))
    reader = CameraReader(5, capture_factory=lambda s: _Frames([big] * 2 + [small] * 2), live=False)
    watcher = CameraWatcher(v4, reader, stable=1)  # the whole frame, whatever its size
    list(watcher)
    assert watcher.stats.frames_recognized == 4 and watcher.rois == [Roi(0, 0, 200, 40)]


def test_a_whole_frame_too_large_names_the_source_and_suggests_a_roi(v4, monkeypatch):
    import edgerec.io.images as images

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 10_000)
    frame = np.full((160, 640, 3), 255, np.uint8)
    reader = CameraReader(3, capture_factory=lambda s: _Frames([frame]), live=False)
    with pytest.raises(InputError, match=r"^3 frame 0: image is too large .* \(read a region of it with --roi"):
        list(CameraWatcher(v4, reader, stable=1))


class _Frames:
    """A stand-in capture that gives ``frames``, then ends (a camera that reopens at another size, say)."""

    def __init__(self, frames):
        self.frames = list(frames)

    def isOpened(self):
        return True

    def set(self, *a):
        return True

    def get(self, *a):
        return 0.0

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def grab(self):
        return bool(self.frames)

    def release(self):
        pass


def _feed_then_stall(fifo, data: bytes, hold: threading.Event) -> threading.Thread:
    """A writer that sends ``data`` into ``fifo``, then keeps it open without writing until ``hold`` is set."""
    def run():
        with open(fifo, "wb") as f:
            f.write(data)
            f.flush()
            hold.wait(120)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_pipe_that_stalls_mid_video_ends_with_an_error_naming_it(small_video, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = open(small_video, "rb").read()
    hold = threading.Event()
    writer = _feed_then_stall(fifo, data[: len(data) // 2], hold)
    reader = CameraReader(str(fifo), read_timeout_s=2.0)
    got, t0 = [], time.monotonic()
    try:
        with pytest.raises(InputError, match=r"pipe: no frame came for 2 s"):
            for fr in reader:
                got.append(fr.index)
        assert got and time.monotonic() - t0 < 60
    finally:
        hold.set()  # the writer closes: the read we gave up on returns and releases its capture
        writer.join(10)
        reader.close()


def test_sigterm_ends_a_run_stalled_on_a_pipe_with_the_summary(small_video, tmp_path):
    """The read blocks in OpenCV: it runs in a helper thread, so SIGTERM still ends the run, with the summary."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = open(small_video, "rb").read()
    hold = threading.Event()
    proc = subprocess.Popen([*PY, "camera", "--source", str(fifo), "--model", V4], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    writer = _feed_then_stall(fifo, data[: len(data) // 2], hold)
    try:
        first = []
        reading = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
        reading.start()
        reading.join(120)  # the model loads, the frames sent are read: the first event is out
        assert first and first[0].strip(), "no event came before the pipe stalled"
        time.sleep(2)  # now blocked reading the pipe
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("edgerec camera ignored SIGTERM while a read from a pipe was blocked")
    finally:
        hold.set()
        writer.join(10)
    assert proc.returncode == 0, err
    assert "frames read" in err and "Traceback" not in err and "terminate called" not in err


def test_a_stream_that_never_answers_ends_within_opencvs_timeout(monkeypatch):
    monkeypatch.setattr(cam, "STREAM_TIMEOUT_MS", 1500)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)  # accepts connections (the kernel's backlog), never answers
    port = server.getsockname()[1]
    try:
        t0 = time.monotonic()
        with pytest.raises(InputError, match=f"http://127.0.0.1:{port}/live: cannot open"):
            CameraReader(f"http://127.0.0.1:{port}/live").open()
        assert time.monotonic() - t0 < cam.OPEN_TIMEOUT_S  # OpenCV gave up first: no open left blocked
    finally:
        server.close()


def test_a_video_file_served_over_http_is_read_once_to_its_end(small_video):
    folder, name = os.path.split(small_video)
    handler = functools.partial(_QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reader = CameraReader(f"http://127.0.0.1:{server.server_address[1]}/{name}", max_reconnects=2)
        with reader:
            if reader.live:
                pytest.skip("this OpenCV's FFmpeg lists no frame count for the served file")
            frames = [fr.index for fr in reader]
        assert frames == list(range(12)) and reader.reconnects == 0
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_stderr_is_restored_after_overlapping_silenced_opens():
    """Two readers opening files in two threads: fd 2 comes back whatever the order their opens end in."""
    before = os.fstat(2)
    entered, release = threading.Barrier(2), threading.Event()

    def open_one(hold: float) -> None:
        with stderr_silenced():
            entered.wait(10)
            release.wait(10)
            time.sleep(hold)

    threads = [threading.Thread(target=open_one, args=(h,)) for h in (0.0, 0.2)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert os.fstat(2).st_ino != before.st_ino  # silenced while both are open
    release.set()
    for t in threads:
        t.join(10)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_a_watcher_in_a_worker_thread_stops_at_once_when_asked(v4, small_video, tmp_path):
    """stop() from another thread ends the iteration, also while a read from a stalled pipe blocks."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = open(small_video, "rb").read()
    hold = threading.Event()
    writer = _feed_then_stall(fifo, data[: len(data) // 2], hold)
    watcher = CameraWatcher(v4, str(fifo), stable=1)
    got: list = []
    runner = threading.Thread(target=lambda: got.extend(watcher), daemon=True)
    try:
        runner.start()
        deadline = time.monotonic() + 60
        while watcher.stats.frames_read < 3 and time.monotonic() < deadline:  # reading, then blocked on the pipe
            time.sleep(0.1)
        time.sleep(1.0)
        t0 = time.monotonic()
        watcher.stop()
        runner.join(5)
        assert not runner.is_alive() and time.monotonic() - t0 < 5
        assert got and watcher.reader.stopped
    finally:
        hold.set()
        writer.join(10)


def test_closing_a_reader_from_another_thread_mid_read_never_crashes(small_video):
    """close() while the other thread reads: it stops the iteration; the reader releases the capture after its read
    (this crashed OpenCV with a segfault, or hung, before). Run in a child: a crash must not take pytest along."""
    import subprocess
    import sys

    code = "\n".join([
        "import threading, time",
        "from edgerec.camera import CameraReader",
        "for k in range(30):",
        f"    r = CameraReader({small_video!r})",
        "    t = threading.Thread(target=lambda: [f for f in r], daemon=True)",
        "    t.start(); time.sleep(0.002 * (k % 10)); r.close(); t.join(10)",
        "    assert not t.is_alive(), 'the reading thread hung'",
        "print('ok')"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_close_from_another_thread_between_frames_stops_without_a_reconnect_and_open_reuses():
    frame = np.full((32, 64, 3), 255, np.uint8)
    reader = CameraReader(5, capture_factory=lambda s: _Frames([frame] * 100000), live=True, sleep=lambda t: None)
    seen = []

    def consume():
        for fr in reader:
            seen.append(fr.index)
            time.sleep(0.001)

    runner = threading.Thread(target=consume, daemon=True)
    runner.start()
    while len(seen) < 20:
        time.sleep(0.01)
    reader.close()
    runner.join(5)
    assert not runner.is_alive() and reader.reconnects == 0  # a live source closed on purpose is not reopened
    reader.open()  # usable again
    assert next(iter(reader)).index == reader.frames_read - 1
    reader.close()
