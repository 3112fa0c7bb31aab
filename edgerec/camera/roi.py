"""A rectangle of the camera frame, given on the command line as ``x,y,w,h``."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgerec.errors import InputError


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
