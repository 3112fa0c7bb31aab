"""Render the sample lines that `make demo` recognizes (English and Chinese), with fonts from packages.

    python scripts/render_samples.py samples/

Writes one PNG per line plus `labels.txt` (`<file>\\t<text>`); seeded, so the files are reproducible.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from edgerec.io.fonts import render_line
from edgerec.utils.fs import atomic_write_bytes, atomic_write_text

LINES = [
    ("en_hello.png", "Hello World", "latin", {}),
    ("en_price.png", "Total: $1,299.00", "latin", {}),
    ("en_sentence.png", "OpenVINO runs PP-OCR on the edge", "cjk", {"fg": (40, 40, 160), "bg": (225, 240, 250)}),
    ("zh_country.png", "中华人民共和国", "cjk", {}),
    ("zh_module.png", "文字识别模块", "cjk", {"fg": (255, 255, 255), "bg": (60, 60, 60)}),
    ("mixed_date.png", "2026年11月23日 星期一", "cjk", {}),
]


def main(out: str = "samples") -> None:
    folder = Path(out)
    rng = np.random.default_rng(0)
    labels = []
    for name, text, font, style in LINES:
        img = render_line(text, height=48, font_kind=font, **style)
        noise = rng.normal(0, 4, img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        ok, png = cv2.imencode(".png", img)
        assert ok
        atomic_write_bytes(folder / name, png.tobytes())
        labels.append(f"{name}\t{text}")
    atomic_write_text(folder / "labels.txt", "\n".join(labels) + "\n")
    print(f"wrote {len(LINES)} sample lines to {folder}/")


if __name__ == "__main__":
    main(*sys.argv[1:2])
