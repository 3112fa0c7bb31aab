"""A text change in one ROI (:class:`TextEvent`), and saving one as JSON plus an annotated crop."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerec.camera.roi import Roi


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
