"""Frames from a camera index, a device, a video file or a stream URL, with OpenCV: opening with a deadline,
reopening a live source that drops (exponential backoff, bounded), and ``every=N`` frame skipping."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgerec.errors import InputError
from edgerec.utils.deadline import call_within

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
OPEN_TIMEOUT_S = 30.0  # opening a source that blocks (a named pipe with no writer, a stream that never answers)


def parse_source(text: str | int) -> str | int:
    """A camera index stays an int (``"0"`` -> 0); everything else is a path, device or URL string."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    return int(s) if re.fullmatch(r"\d+", s) else s


def is_live(source: str | int) -> bool:
    """Cameras, devices and network streams are live (reopened when they drop); regular files are not."""
    if isinstance(source, int):
        return True
    s = str(source)
    return s.lower().startswith(LIVE_SCHEMES) or s.startswith("/dev/")


# FFmpeg's own log lines ("[mov,mp4,...] moov atom not found", "[mjpeg @ 0x...] overread 8") go straight to
# stderr; edgerec says what went wrong itself. OpenCV reads this once, when its FFmpeg backend first opens a video
# in the process, so it is set before every open (a value the user set is kept). -8 is AV_LOG_QUIET.
FFMPEG_LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's and FFmpeg's own log lines silenced for the block (edgerec reports failures in its own words)."""
    ours = FFMPEG_LOGLEVEL_ENV not in os.environ  # a level the user set is kept; ours is removed after the block
    if ours:
        os.environ[FFMPEG_LOGLEVEL_ENV] = "-8"
    old = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)
        if ours:
            os.environ.pop(FFMPEG_LOGLEVEL_ENV, None)


def _open_capture(source: str | int) -> Any:
    """cv2.VideoCapture for ``source``, with OpenCV's and FFmpeg's own messages silenced (edgerec reports the
    failure)."""
    with quiet_opencv():
        return cv2.VideoCapture(source)


def _release(cap: Any) -> None:
    with contextlib.suppress(Exception):
        cap.release()


def _unblock_fifo(source: str | int) -> None:
    """End the open we gave up on a named pipe (a writer that comes and goes gives it end-of-file): until it
    returns it holds OpenCV's video I/O lock, and every later VideoCapture or VideoWriter would wait for it."""
    with contextlib.suppress(OSError, TypeError, ValueError):
        if isinstance(source, str) and stat.S_ISFIFO(os.stat(source).st_mode):
            os.close(os.open(source, os.O_WRONLY | os.O_NONBLOCK))


@dataclass
class Frame:
    index: int  # position in the source, counting every frame read (skipped ones too) across reconnects
    timestamp_ms: float  # the file's position, or Unix time in ms for a live source
    image: np.ndarray


class CameraReader:
    """Frames from a camera index, a device, a video file or a stream URL.

    ``every=N`` returns every Nth frame; the others are grabbed but not decoded into images. A live source that
    fails to deliver a frame is reopened after ``backoff_s``, then twice that, ... (capped at ``max_backoff_s``),
    at most ``max_reconnects`` times in a row before InputError. An opening that takes longer than
    ``open_timeout_s`` is given up (InputError on the first one, a failed attempt on a reconnect).
    ``capture_factory`` and ``sleep`` let tests stand in for a camera.
    """

    def __init__(self, source: str | int, *, every: int = 1, max_reconnects: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, capture_factory: Callable[[str | int], Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep, live: bool | None = None,
                 open_timeout_s: float | None = None):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.source = parse_source(source)
        self.name = str(source)
        self.every = int(every)
        self.live = is_live(self.source) if live is None else live
        self.max_reconnects = int(max_reconnects)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._factory = capture_factory or _open_capture
        self._sleep = sleep
        self.open_timeout_s = OPEN_TIMEOUT_S if open_timeout_s is None else float(open_timeout_s)
        self._cap: Any = None
        self.frames_read = 0
        self.reconnects = 0
        self.fps = 0.0
        self.frame_count: int | None = None  # what a video file's container says it holds (None: not known)

    def open(self) -> CameraReader:
        """Open the source; InputError naming it if it cannot be opened."""
        if not self.live and not isinstance(self.source, int) and not Path(self.source).exists():
            raise InputError(self.name, "no such video file")
        try:
            cap = self._try_open()
        except TimeoutError:
            raise InputError(self.name, f"did not open within {self.open_timeout_s:g} s (a named pipe with no "
                                        "writer, or a stream that does not answer?)") from None
        if cap is None:
            what = "camera" if isinstance(self.source, int) or self.name.startswith("/dev/") else "video source"
            raise InputError(self.name, f"cannot open this {what} (is it connected, readable and not in use?)")
        self._cap = cap
        return self

    def _try_open(self) -> Any:
        """An open capture, or None; TimeoutError when opening hangs past ``open_timeout_s``."""
        try:
            cap = call_within(lambda: self._factory(self.source), self.open_timeout_s, discard=_release,
                              name=f"edgerec-open-{self.name}")
        except TimeoutError:
            _unblock_fifo(self.source)
            raise
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        if self.live:
            with contextlib.suppress(Exception):  # keep the driver's queue short, so frames are fresh
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        with contextlib.suppress(Exception):
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not self.live:
            with contextlib.suppress(Exception):
                count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
                self.frame_count = int(count) if 0 < count < 2**62 else None
        return cap

    def ended_early(self) -> str | None:
        """After a video file's last frame: a warning when fewer frames were read than its container says it holds
        (a truncated or damaged file), else None. A count that is an estimate may be off by a frame or two (or 1 %)."""
        if self.live:
            return None
        if self.frames_read == 0:
            return f"{self.name}: no frame could be read from this video (truncated or damaged?)"
        total = self.frame_count
        if total and total - self.frames_read > max(2, total // 100):
            return (f"{self.name}: the video ended after {self.frames_read} of the {total} frames its container "
                    "lists (truncated or damaged?)")
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> CameraReader:
        return self.open() if self._cap is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timestamp(self, index: int) -> float:
        if self.live:
            return time.time() * 1000.0
        ms = 0.0
        with contextlib.suppress(Exception):
            ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        if ms <= 0.0 and index > 0 and self.fps > 0:  # some containers report no position
            ms = index * 1000.0 / self.fps
        return ms

    def _next(self, decode: bool) -> tuple[bool, np.ndarray | None]:
        if decode:
            ok, img = self._cap.read()
            return bool(ok) and img is not None and img.size > 0, img
        return bool(self._cap.grab()), None

    def _reopen(self) -> None:
        """After a live source dropped: reopen with exponential backoff, or raise InputError."""
        self.close()
        for attempt in range(self.max_reconnects):
            self._sleep(min(self.max_backoff_s, self.backoff_s * 2 ** attempt))
            try:
                cap = self._try_open()
            except TimeoutError:
                cap = None
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                return
        raise InputError(self.name, f"the stream stopped delivering frames and could not be reopened "
                                    f"({self.max_reconnects} attempts with backoff)")

    def __iter__(self) -> Iterator[Frame]:
        if self._cap is None:
            self.open()
        failures = 0  # reopen attempts since the last good frame: a source that opens but never delivers ends
        while True:
            index = self.frames_read
            ok, img = self._next(decode=index % self.every == 0)
            if not ok:
                if not self.live:
                    return  # end of file
                if failures >= self.max_reconnects:
                    raise InputError(self.name, f"the stream stopped delivering frames ({failures} reopen(s) "
                                                "did not bring it back)")
                failures += 1
                self._reopen()  # raises once it cannot even be opened
                continue
            failures = 0
            self.frames_read += 1
            if img is not None:
                yield Frame(index, self._timestamp(index), img)
