"""Keeping OpenCV's and FFmpeg's own output off the terminal while edgerec reads a video source: edgerec reports
failures in its own words. Readers in several threads share each quieting: the first to enter sets it, the last
to leave restores what was there (a per-thread save and restore would restore the wrong value)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import cv2

# FFmpeg's own log lines ("[mov,mp4,...] moov atom not found", "[mjpeg @ 0x...] overread 8") go straight to
# stderr. OpenCV reads this once, when its FFmpeg backend first opens a video in the process, so it is set before
# every open (a value the user set is kept). -8 is AV_LOG_QUIET.
FFMPEG_LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"


class _Shared:
    """A process-wide setting held while any block is inside: ``apply()`` on the first entry returns what
    ``restore(saved)`` puts back on the last exit."""

    def __init__(self, apply: Callable[[], Any], restore: Callable[[Any], None]):
        self._apply, self._restore = apply, restore
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Any = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = self._apply()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._restore(self._saved)
                    self._saved = None


def _quiet_logs() -> tuple[int, bool]:
    ours = FFMPEG_LOGLEVEL_ENV not in os.environ  # a level the user set is kept
    if ours:
        os.environ[FFMPEG_LOGLEVEL_ENV] = "-8"
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return level, ours


def _restore_logs(saved: tuple[int, bool]) -> None:
    level, ours = saved
    cv2.utils.logging.setLogLevel(level)
    if ours:
        os.environ.pop(FFMPEG_LOGLEVEL_ENV, None)


def _silence_fd2() -> int | None:
    """fd 2 pointed at /dev/null; the saved descriptor, or None when there is none to silence (none kept then)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        return None
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
    except OSError:  # cannot silence: leave stderr as it is, and keep no descriptor
        os.close(saved)
        return None
    return saved


def _restore_fd2(saved: int | None) -> None:
    if saved is not None:
        os.dup2(saved, 2)
        os.close(saved)


# OpenCV's and FFmpeg's log lines silenced for the block
quiet_opencv = _Shared(_quiet_logs, _restore_logs)
# file descriptor 2 pointed at /dev/null for the block (a file's open, milliseconds): OpenCV's own AVI parser
# prints what it found in a damaged file ("Unexpected element ... Got: <bytes of the file>") straight to stderr,
# past its log level
stderr_silenced = _Shared(_silence_fd2, _restore_fd2)
