"""Frames from a camera index, a device, a video file or a stream URL, with OpenCV: opening with a deadline,
reopening a live source that drops (exponential backoff, bounded), and ``every=N`` frame skipping."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgerec.camera.quiet import quiet_opencv, stderr_silenced
from edgerec.errors import InputError
from edgerec.utils.deadline import Cancelled, call_within

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
OPEN_TIMEOUT_S = 30.0  # opening a source that blocks (a named pipe with no writer, a stream that never answers)
READ_TIMEOUT_S = 30.0  # a frame from a source that is no regular file (a pipe, a camera, a stream) that stalls
# OpenCV's own FFmpeg open and read timeouts for stream URLs: below OPEN_TIMEOUT_S, so that OpenCV gives up first and
# no open is left blocked in a thread (one that returns while the interpreter exits aborts the process)
STREAM_TIMEOUT_MS = 20_000
MAX_CAMERA_INDEX = 2**31 - 1  # OpenCV takes a C int (a camera's index plus an API's offset: 200 = V4L2 camera 0)
# text formats FFmpeg reads as media (an HLS playlist, an SDP session, a concat list, raw YUV4MPEG video); any
# other text file FFmpeg would render as a picture of its characters (its tty demuxer)
MEDIA_TEXT_MAGIC = (b"#EXTM3U", b"v=0", b"ffconcat", b"YUV4MPEG2")


def parse_source(text: str | int) -> str | int:
    """A camera index stays an int (``"0"`` -> 0); everything else is a path, device or URL string, as given
    (spaces around a file name are part of it)."""
    if isinstance(text, int):
        return text
    s = str(text)
    digits = s.strip()
    if re.fullmatch(r"[0-9]+", digits) and int(digits) <= MAX_CAMERA_INDEX:
        return int(digits)
    return s


def is_live(source: str | int) -> bool:
    """Cameras, devices and network streams are live (reopened when they drop); files are not, nor a pipe under
    /dev (``/dev/stdin``): a path under /dev is live when it is a character device, or does not exist (then it is
    reported as a camera that cannot be opened)."""
    if isinstance(source, int):
        return True
    s = str(source)
    if s.lower().startswith(LIVE_SCHEMES):
        return True
    if s.startswith("/dev/"):
        try:
            return stat.S_ISCHR(os.stat(s).st_mode)
        except (OSError, ValueError):
            return True
    return False


def _regular_file(source: str | int) -> bool:
    """A path to a regular file: its reads cannot stall (a pipe, a device, a camera or a stream can)."""
    if isinstance(source, int) or str(source).lower().startswith(LIVE_SCHEMES):
        return False
    try:
        return stat.S_ISREG(os.stat(source).st_mode)
    except (OSError, ValueError):
        return False


def _text_file(path: str) -> bool:
    """Whether ``path`` holds plain text that is no media format FFmpeg reads as text (MEDIA_TEXT_MAGIC)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if not head or head.lstrip().startswith(MEDIA_TEXT_MAGIC) or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the 4 KB is still text
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def _open_capture(source: str | int) -> Any:
    """cv2.VideoCapture for ``source``, with OpenCV's and FFmpeg's own messages silenced (edgerec reports the
    failure). A stream URL gets OpenCV's FFmpeg open and read timeouts (STREAM_TIMEOUT_MS); a file name that is
    not UTF-8 is given as bytes (OpenCV crashes on the str that holds it)."""
    with quiet_opencv():
        if isinstance(source, str) and source.lower().startswith(LIVE_SCHEMES):
            return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                             cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        if isinstance(source, str):
            try:
                source.encode("utf-8")
            except UnicodeEncodeError:
                return cv2.VideoCapture(os.fsencode(source))
        return cv2.VideoCapture(source)


def _read(cap: Any, decode: bool) -> tuple[bool, np.ndarray | None, BaseException | None]:
    """One frame (``decode``) or one grab: (ok, image, the exception OpenCV raised)."""
    try:
        if decode:
            ok, img = cap.read()
            return bool(ok) and img is not None and img.size > 0, img, None
        return bool(cap.grab()), None, None
    except Exception as exc:  # cv2.error: handed to the caller's thread
        return False, None, exc


def _release(cap: Any) -> None:
    with contextlib.suppress(Exception):
        cap.release()


def _unblock_fifo(source: str | int) -> None:
    """End the open we gave up on a named pipe (a writer that comes and goes gives it end-of-file): until it
    returns it holds OpenCV's video I/O lock, and every later VideoCapture or VideoWriter would wait for it."""
    with contextlib.suppress(OSError, TypeError, ValueError):
        if isinstance(source, str) and stat.S_ISFIFO(os.stat(source).st_mode):
            os.close(os.open(source, os.O_WRONLY | os.O_NONBLOCK))


class _Stalled(Exception):
    """A watched read passed its deadline."""


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
    A source that is no regular file (a camera, a device, a pipe, a stream) is read with a deadline too
    (``read_timeout_s``), in a helper thread, so that the caller stays able to take Ctrl-C and SIGTERM: a stalled
    live source is reopened, a stalled pipe is an InputError. A stream URL whose container lists its frames (a
    video file served over HTTP) is read as a file: it ends at its last frame instead of being replayed.
    ``capture_factory`` and ``sleep`` let tests stand in for a camera.
    """

    def __init__(self, source: str | int, *, every: int = 1, max_reconnects: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, capture_factory: Callable[[str | int], Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep, live: bool | None = None,
                 open_timeout_s: float | None = None, read_timeout_s: float | None = None):
        if every < 1:
            raise ValueError("every must be >= 1")
        if isinstance(source, str) and not source.strip():
            raise InputError(repr(source), "no source given: a camera index (0), a device (/dev/video0), a video "
                                           "file or a stream URL")
        self.source = parse_source(source)
        self.name = str(source)
        self.every = int(every)
        self._live_given = live is not None
        self.live = is_live(self.source) if live is None else live
        # reads of a regular file cannot stall; a stand-in capture (tests) is read directly unless told otherwise
        self.watch_reads = read_timeout_s is not None or (capture_factory is None and not _regular_file(self.source))
        self.read_timeout_s = READ_TIMEOUT_S if read_timeout_s is None else float(read_timeout_s)
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
        # stop(): another thread ends the iteration; close() while a read is in progress only asks for it
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy = False  # a read is in progress on self._cap
        self._close_pending = False

    def open(self) -> CameraReader:
        """Open the source (again, after close() or stop()); InputError naming it if it cannot be opened."""
        self._stop.clear()
        if not self.live and not isinstance(self.source, int):
            self._check_file(str(self.source))
        try:
            cap = self._try_open()
        except Cancelled:  # stop() while it opened: nothing to read, and no error
            return self
        except TimeoutError:
            raise InputError(self.name, f"did not open within {self.open_timeout_s:g} s (a named pipe with no "
                                        "writer, or a stream that does not answer?)") from None
        if cap is None:
            what = "camera" if isinstance(self.source, int) or self.name.startswith("/dev/") else "video source"
            raise InputError(self.name, f"cannot open this {what} (is it connected, readable and not in use?)")
        self._cap = cap
        if (not self._live_given and self.live and isinstance(self.source, str) and self.frame_count is None
                and self.source.lower().startswith(LIVE_SCHEMES)):
            self._file_over_url(cap)
        return self

    def _check_file(self, path: str) -> None:
        """InputError for a file that cannot be a video: missing, a name OpenCV would read as another file, text."""
        try:
            os.stat(path)
        except FileNotFoundError:
            raise InputError(self.name, "no such video file") from None
        except (OSError, ValueError) as exc:  # a name too long, a NUL in it, a loop of links
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(self.name, f"cannot read this file ({why})") from None
        if "%" in os.path.basename(path):
            raise InputError(self.name, "OpenCV reads a '%' in a file name as an image-sequence pattern "
                                        "(shot%d.png = shot0.png, shot1.png, ...), not as this file: rename it, or "
                                        "give a link to it whose name has no '%'")
        if _regular_file(path) and _text_file(path):  # never opened to sniff: a pipe would lose what it reads
            raise InputError(self.name, "this is a text file, not a video (FFmpeg would read it as a picture of "
                                        "its characters)")

    def _file_over_url(self, cap: Any) -> None:
        """A stream URL whose container lists a frame count and a frame rate is a video file served over the
        network: read it to its end once (reopening it would replay it from the start, without end)."""
        with contextlib.suppress(Exception):
            count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
            if 0 < count < 2**62 and self.fps > 0:
                self.live = False
                self.frame_count = int(count)

    def _try_open(self) -> Any:
        """An open capture, or None; TimeoutError when opening hangs past ``open_timeout_s``."""
        silenced = stderr_silenced() if _regular_file(self.source) else contextlib.nullcontext()
        try:
            with silenced:
                cap = call_within(lambda: self._factory(self.source), self.open_timeout_s, discard=_release,
                                  name=f"edgerec-open-{self.name}", cancel=self._stop)
        except (TimeoutError, Cancelled):
            _unblock_fifo(self.source)
            raise
        except (cv2.error, OverflowError, ValueError, TypeError) as exc:  # OpenCV refusing the source itself
            raise InputError(self.name, f"cannot open this source ({type(exc).__name__}: "
                                        f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''})") from None
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

    def stop(self) -> None:
        """End the iteration from another thread (a kiosk's UI, a service's shutdown): at the next frame, and at once
        when it waits for a frame or a reconnect (a blocked read is given up; its capture is released when the
        read returns). Then close() releases the source."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Release the source. From another thread while a frame is being read, it stops the iteration instead,
        and the reading thread releases the capture once its read returns (releasing it under a read crashes
        OpenCV)."""
        with self._lock:
            self._stop.set()  # whoever iterates stops at its next step, and never reopens what was closed
            if self._busy:
                self._close_pending = True
                return
        self._drop()

    def _drop(self) -> None:
        """Release the capture (no read is in progress on it), without stopping the iteration (a reconnect)."""
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            _release(cap)

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
        """(ok, image) of the next frame; ``_Stalled`` when a watched read passed its deadline; (False, None) when
        stop() came meanwhile."""
        with self._lock:
            cap = self._cap
            if cap is None or self._stop.is_set():
                return False, None
            self._busy = True
        try:
            if not self.watch_reads:
                ok, img, exc = _read(cap, decode)
            else:
                try:
                    ok, img, exc = call_within(lambda: _read(cap, decode), self.read_timeout_s,
                                               discard=lambda _: _release(cap), name=f"edgerec-read-{self.name}",
                                               cancel=self._stop)
                except BaseException as stop:
                    # deadline passed, stop(), or Ctrl-C / SIGTERM while the read blocks: the capture is left to the
                    # blocked thread, which releases it once the read returns (releasing it under a read crashes
                    # OpenCV)
                    with self._lock:
                        self._cap = None
                    if isinstance(stop, Cancelled):
                        return False, None
                    if isinstance(stop, TimeoutError):
                        raise _Stalled() from None
                    raise
        finally:
            with self._lock:
                self._busy = False
                pending, self._close_pending = self._close_pending, False
            if pending:
                self.close()
        if exc is not None:
            raise exc
        return ok, img

    def _reopen(self) -> None:
        """After a live source dropped: reopen with exponential backoff, or raise InputError."""
        self._drop()
        for attempt in range(self.max_reconnects):
            wait = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
            if self._sleep is time.sleep:
                self._stop.wait(wait)  # stop() ends the wait at once
            else:
                self._sleep(wait)
            if self._stop.is_set():
                return
            try:
                cap = self._try_open()
            except (TimeoutError, Cancelled):
                cap = None
            if cap is not None:
                with self._lock:
                    stopped = self._stop.is_set()
                    if not stopped:
                        self._cap = cap
                if stopped:  # stop() or close() came while it reopened
                    _release(cap)
                    return
                self.reconnects += 1
                return
            if self._stop.is_set():
                return
        raise InputError(self.name, f"the stream stopped delivering frames and could not be reopened "
                                    f"({self.max_reconnects} attempts with backoff)")

    def __iter__(self) -> Iterator[Frame]:
        if self._cap is None:
            self.open()
        failures = 0  # reopen attempts since the last good frame: a source that opens but never delivers ends
        while not self._stop.is_set():
            index = self.frames_read
            try:
                ok, img = self._next(decode=index % self.every == 0)
            except _Stalled:
                if not self.live:
                    raise InputError(self.name, f"no frame came for {self.read_timeout_s:g} s (a pipe or device "
                                                "whose writer stalled?)") from None
                ok, img = False, None
            if not ok:
                if not self.live or self._stop.is_set():
                    return  # end of file, or stop()
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
