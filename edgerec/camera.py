"""Text from camera frames: read a video source with OpenCV, crop fixed regions, recognize them, report changes.

A kiosk points a camera at a display, a label or a meter and wants to know *when the text changes*, not the text
of every frame. :class:`CameraWatcher` reads frames (``--every N`` skips frames without decoding them), crops each
ROI, recognizes the crops of one frame in one call, and yields a :class:`TextEvent` when a ROI's text differs from
the last one it reported and has been the same for ``stable`` recognized frames in a row (so a frame caught
mid-update does not produce an event). Whitespace is ignored when comparing (spaces are what a recognizer
flickers on most, and PaddleOCR's metrics ignore them too), so "Gate7" -> "Gate 7" is no change. A ROI starts
as "no text", so a blank ROI reports nothing until text appears; text disappearing is reported as ``''``.

Sources: a camera index (``0``), a device (``/dev/video0``), a video file, or a stream URL (``rtsp://...``).
A file ends the run at its last frame. A live source that stops delivering frames is reopened with exponential
backoff, a bounded number of times, before giving up with an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgerec.errors import InputError
from edgerec.utils.deadline import call_within

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
OPEN_TIMEOUT_S = 30.0  # opening a source that blocks (a named pipe with no writer, a stream that never answers)
LATENCY_WINDOW = 10_000  # percentiles cover the last this many recognized frames, so weeks of running stay bounded


# ---------------------------------------------------------------------------------------------------- regions
@dataclass(frozen=True)
class Roi:
    """A rectangle of the frame in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> Roi:
        """``"x,y,w,h"`` (integers, w and h positive) -> Roi; anything else raises InputError naming it."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4 or not all(re.fullmatch(r"\d+", p) for p in parts):
            raise InputError(f"--roi {text}", "expected x,y,w,h as four non-negative integers, e.g. 0,0,640,80")
        x, y, w, h = (int(p) for p in parts)
        if w <= 0 or h <= 0:
            raise InputError(f"--roi {text}", "width and height must be positive")
        return cls(x, y, w, h)

    def check(self, frame_w: int, frame_h: int, source: str) -> None:
        """Raise InputError unless the ROI lies inside a ``frame_w`` x ``frame_h`` frame."""
        if self.x + self.w > frame_w or self.y + self.h > frame_h:
            raise InputError(f"--roi {self}", f"reaches past the {frame_w}x{frame_h} frames of {source} "
                                              f"(x + w <= {frame_w} and y + h <= {frame_h} are needed)")

    def crop(self, frame: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(frame[self.y:self.y + self.h, self.x:self.x + self.w])

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"


# ---------------------------------------------------------------------------------------------------- sources
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


# ---------------------------------------------------------------------------------------------------- watching
@dataclass
class TextEvent:
    """A ROI's text changed and held for ``stable`` recognized frames; ``frame_index`` is where it held."""

    frame_index: int
    timestamp_ms: float
    roi_index: int
    roi: Roi
    rec_text: str
    rec_score: float
    first_frame: int  # the frame this text was first seen in (the change itself)
    crop: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"frame_index": self.frame_index, "timestamp_ms": round(self.timestamp_ms, 1),
                "roi_index": self.roi_index, "roi": self.roi.as_list(), "rec_text": self.rec_text,
                "rec_score": round(float(self.rec_score), 6), "first_frame": self.first_frame}

    def line(self) -> str:
        return (f"{self.frame_index}\t{self.timestamp_ms:.0f}ms\troi{self.roi_index}\t{self.rec_text}\t"
                f"{self.rec_score:.4f}")


@dataclass
class WatchStats:
    frames_read: int = 0
    frames_recognized: int = 0
    reconnects: int = 0
    elapsed_s: float = 0.0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def fps(self) -> float:
        return self.frames_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self.latencies_ms, float), q)) if self.latencies_ms else 0.0

    def to_json(self) -> dict:
        return {"frames_read": self.frames_read, "frames_recognized": self.frames_recognized,
                "elapsed_s": round(self.elapsed_s, 3), "fps": round(self.fps, 2),
                "latency_p50_ms": round(self.percentile(50), 2), "latency_p95_ms": round(self.percentile(95), 2),
                "reconnects": self.reconnects}

    def summary(self) -> str:
        text = (f"{self.frames_read} frames read, {self.frames_recognized} recognized in {self.elapsed_s:.2f} s "
                f"({self.fps:.1f} fps); latency per recognized frame p50 {self.percentile(50):.1f} ms, "
                f"p95 {self.percentile(95):.1f} ms")
        return text + (f"; {self.reconnects} reconnect(s)" if self.reconnects else "")


@dataclass
class _Track:
    reported: str = ""  # what was last reported ("" = nothing yet)
    candidate: str | None = None
    count: int = 0
    first_frame: int = -1


class CameraWatcher:
    """Iterate to get :class:`TextEvent` s from ``source``; ``stats`` is kept up to date, also after Ctrl-C.

    ``model`` is a :class:`edgerec.api.TextRecognizer` (from ``create_model``). Without ``rois`` the whole frame
    is one line. ``keep_crops`` puts each event's crop on the event (for saving).
    """

    def __init__(self, model: Any, source: str | int | CameraReader, rois: Sequence[Roi | str] | None = None, *,
                 every: int = 1, stable: int = 2, keep_crops: bool = False, **reader_options: Any):
        if stable < 1:
            raise ValueError("stable must be >= 1")
        self.model = model
        self.reader = source if isinstance(source, CameraReader) else CameraReader(source, every=every,
                                                                                   **reader_options)
        self.rois = [r if isinstance(r, Roi) else Roi.parse(r) for r in (rois or [])]
        self.stable = int(stable)
        self.keep_crops = keep_crops
        self.stats = WatchStats()

    def _batch(self, frame: np.ndarray) -> list[np.ndarray]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            from edgerec.io.inputs import to_bgr

            frame = to_bgr(frame, self.reader.name)
        return [r.crop(frame) for r in self.rois]

    def __iter__(self) -> Iterator[TextEvent]:
        reader = self.reader
        start = time.perf_counter()
        tracks: list[_Track] = []
        try:
            with reader:
                for fr in reader:
                    if not tracks:  # first frame: now the frame size is known
                        h, w = fr.image.shape[:2]
                        if not self.rois:
                            self.rois = [Roi(0, 0, w, h)]
                        for roi in self.rois:
                            roi.check(w, h, reader.name)
                        tracks = [_Track() for _ in self.rois]
                    t0 = time.perf_counter()
                    crops = self._batch(fr.image)
                    results = self.model.recognize_batch(crops, batch_size=len(crops))
                    self.stats.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
                    self.stats.frames_recognized += 1
                    self._sync(reader, start)
                    for i, ((text, score), track) in enumerate(zip(results, tracks)):
                        key = "".join(text.split())
                        if key == track.candidate:
                            track.count += 1
                        else:
                            track.candidate, track.count, track.first_frame = key, 1, fr.index
                        if track.count == self.stable and key != track.reported:
                            track.reported = key
                            yield TextEvent(fr.index, fr.timestamp_ms, i, self.rois[i], text, score,
                                            track.first_frame, crops[i] if self.keep_crops else None)
        finally:
            self._sync(reader, start)

    def _sync(self, reader: CameraReader, start: float) -> None:
        self.stats.frames_read = reader.frames_read
        self.stats.reconnects = reader.reconnects
        self.stats.elapsed_s = time.perf_counter() - start


def watch(model: Any, source: str | int, rois: Sequence[Roi | str] | None = None, *, every: int = 1,
          stable: int = 2, **reader_options: Any) -> Iterator[TextEvent]:
    """Generator of text changes in ``source``'s ROIs: ``for ev in watch(model, 0, ["0,0,640,80"]): ...``."""
    return iter(CameraWatcher(model, source, rois, every=every, stable=stable, **reader_options))


def save_event(event: TextEvent, save_dir: str | Path, *, overwrite: bool = True) -> list[Path]:
    """Write ``frameNNNNNN_roiK.json`` (the event) and ``..._res.png`` (crop + text) into ``save_dir``, atomically.

    With ``overwrite=False`` (``edgerec camera`` without ``--overwrite``) a file already there is never replaced:
    the event is saved as ``frameNNNNNN_roiK_2.json`` (``_3``, ...) instead. Frame numbers start again at 0 each
    run, so a kiosk restarted with the same folder keeps every run's events.
    """
    from edgerec.results import TextRecResult, write_new
    from edgerec.utils.fs import atomic_write_bytes

    folder = Path(save_dir)
    base = f"frame{event.frame_index:06d}_roi{event.roi_index}"
    doc = json.dumps(event.to_json(), ensure_ascii=False, indent=2).encode("utf-8")
    img = None
    if event.crop is not None and event.crop.size:
        res = TextRecResult(None, None, event.rec_text, event.rec_score, input_img=event.crop, name=base)
        img = res.img_bytes(".png")

    def files(stem: str) -> list[tuple[Path, bytes]]:
        out = [(folder / f"{stem}.json", doc)]
        if img is not None:
            out.append((folder / f"{stem}_res{img[1]}", img[0]))
        return out

    folder.mkdir(parents=True, exist_ok=True)
    if overwrite:
        return [atomic_write_bytes(path, data) for path, data in files(base)]
    for k in range(1, 10_000):
        names = files(base if k == 1 else f"{base}_{k}")
        if any(os.path.lexists(p) for p, _ in names):
            continue
        written: list[Path] = []
        try:
            for path, data in names:
                written.append(write_new(path, data))
        except FileExistsError:  # another writer took the name meanwhile: undo ours, try the next number
            for path in written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            continue
        return written
    raise FileExistsError(f"{folder}: {base}_2 ... {base}_9999 are all taken; pick another --save-dir")


# ---------------------------------------------------------------------------------------------------- CLI body
class _Stop(Exception):
    """SIGTERM (a kiosk's service manager stopping us): end like Ctrl-C, with the summary."""


def run(source: str, rois: Sequence[Roi], *, every: int = 1, stable: int = 2, as_json: bool = False,
        save_dir: str | None = None, max_reconnects: int = 5, echo: Callable[[str], None] = print,
        echo_err: Callable[[str], None] = print, model_options: dict | None = None, overwrite: bool = False) -> int:
    """The body of ``edgerec camera``: returns the exit status (0 at end of file or Ctrl-C; 1 when an event could
    not be saved in ``save_dir``: each such event is one error line, and the run goes on).

    Opens the source before loading the model, so a missing camera is an error at once. A file already in
    ``save_dir`` is replaced only with ``overwrite`` (else the event takes the next free ``_2``, ``_3`` name). A
    video file that ends before the frames its container lists ends with a warning line saying how many were read.
    OpenCV's and FFmpeg's own log lines are silenced.
    """
    from edgerec.api import create_model
    from edgerec.commands.shell import plain

    reader = CameraReader(source, every=every, max_reconnects=max_reconnects)
    watcher: CameraWatcher | None = None
    ended = False  # end of file, Ctrl-C or SIGTERM (not an error): the summary is always printed then
    at_end = False  # the source itself ended (a file's last frame), not Ctrl-C
    failed = 0
    old_term = None
    try:
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: no handler, the caller stops us
        pass
    try:
        with quiet_opencv():
            try:
                reader.open()  # SIGTERM and Ctrl-C already end us while a source is slow to open
            except (KeyboardInterrupt, _Stop):
                echo_err(f"edgerec camera: stopped while opening {plain(reader.name)}")
                raise
            model = create_model(**(model_options or {}))
            watcher = CameraWatcher(model, reader, rois, stable=stable, keep_crops=bool(save_dir))
            for ev in watcher:
                echo(json.dumps(ev.to_json(), ensure_ascii=False) if as_json else ev.line())
                if save_dir:
                    try:  # an event that cannot be saved is an error line; the run and the other events go on
                        save_event(ev, save_dir, overwrite=overwrite)
                    except Exception as exc:  # the disk, the encoder, or a file that is already there
                        failed += 1
                        why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror \
                            else str(exc)
                        echo_err(f"edgerec: error: frame {ev.frame_index} roi{ev.roi_index}: cannot save it in "
                                 f"{plain(save_dir)}: {plain(why)}")
            ended = at_end = True
    except (KeyboardInterrupt, _Stop):
        ended = True
    finally:
        reader.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if watcher is not None and (ended or watcher.stats.frames_recognized):
            echo_err(f"edgerec camera: {plain(watcher.stats.summary())}")
        early = reader.ended_early() if at_end else None
        if early:
            echo_err(f"edgerec camera: warning: {plain(early)}")
    return 1 if failed else 0


def _on_sigterm(*_: object) -> None:
    raise _Stop()
