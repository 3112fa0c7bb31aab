"""Recognize the ROIs of each frame in one call and yield a :class:`TextEvent` when a ROI's text changed and
held for ``stable`` recognized frames (whitespace ignored: see the package docstring)."""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerec.camera.events import TextEvent
from edgerec.camera.reader import CameraReader
from edgerec.camera.roi import Roi
from edgerec.errors import InputError

LATENCY_WINDOW = 10_000  # percentiles cover the last this many recognized frames, so weeks of running stay bounded


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

    def stop(self) -> None:
        """End the iteration from another thread (the generator itself cannot be closed while it runs): at the next
        frame, and at once while it waits for a frame or a reconnect."""
        self.reader.stop()

    def _batch(self, frame: np.ndarray) -> list[np.ndarray]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            from edgerec.io.inputs import to_bgr

            frame = to_bgr(frame, self.reader.name)
        return [r.crop(frame) for r in self.rois]

    def __iter__(self) -> Iterator[TextEvent]:
        reader = self.reader
        start = time.perf_counter()
        tracks: list[_Track] = []
        whole = not self.rois  # no ROI given: the whole frame, whatever its size
        size: tuple[int, int] | None = None
        last: dict[int, tuple] = {}  # per ROI: the last frame's index, time, text, score and crop
        try:
            with reader:
                for fr in reader:
                    if fr.image.shape[:2] != size:  # the first frame, or a source that changed its frame size
                        size = fr.image.shape[:2]
                        h, w = size
                        if whole:
                            self.rois = [Roi(0, 0, w, h)]
                        where = reader.name if not tracks else f"{reader.name} (from frame {fr.index})"
                        for roi in self.rois:
                            roi.check(w, h, where)
                        tracks = tracks or [_Track() for _ in self.rois]
                    t0 = time.perf_counter()
                    crops = self._batch(fr.image)
                    try:
                        results = self.model.recognize_batch(crops, batch_size=len(crops))
                    except InputError as exc:  # named images[k] by recognize_batch: name the source and frame
                        raise self._frame_error(exc, fr.index, whole) from None
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
                        last[i] = (fr.index, fr.timestamp_ms, text, score, crops[i])
                # a file that ended before ``stable`` frames (a still image, a clip of one frame): a text it showed
                # on every frame it had held as long as it could (a live source stopped early reports nothing)
                for i, track in enumerate(tracks):
                    if not reader.live and track.count == self.stats.frames_recognized < self.stable and \
                            track.candidate != track.reported and i in last:
                        index, ms, text, score, crop = last[i]
                        track.reported = track.candidate
                        yield TextEvent(index, ms, i, self.rois[i], text, score, track.first_frame,
                                        crop if self.keep_crops else None)
        finally:
            self._sync(reader, start)

    def _frame_error(self, exc: InputError, index: int, whole: bool) -> InputError:
        k = re.fullmatch(r"images\[(\d+)\]", exc.source)
        where = f"{self.reader.name} frame {index}"
        if k and not whole and int(k.group(1)) < len(self.rois):
            where += f" --roi {self.rois[int(k.group(1))]}"
        hint = " (read a region of it with --roi X,Y,W,H)" if whole and "too large" in exc.reason else ""
        return InputError(where, exc.reason + hint)

    def _sync(self, reader: CameraReader, start: float) -> None:
        self.stats.frames_read = reader.frames_read
        self.stats.reconnects = reader.reconnects
        self.stats.elapsed_s = time.perf_counter() - start


def watch(model: Any, source: str | int, rois: Sequence[Roi | str] | None = None, *, every: int = 1,
          stable: int = 2, **reader_options: Any) -> Iterator[TextEvent]:
    """Generator of text changes in ``source``'s ROIs: ``for ev in watch(model, 0, ["0,0,640,80"]): ...``."""
    return iter(CameraWatcher(model, source, rois, every=every, stable=stable, **reader_options))
