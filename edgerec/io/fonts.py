"""Fonts that come with installed packages (never downloaded) and a clean text-line renderer.

``"cjk"``   NotoSansCJKsc-Regular.otf from the ``mplfonts`` package (Latin + Chinese/Japanese kana + more);
            falls back to matplotlib's DejaVuSans.ttf (Latin only) with a one-time warning.
``"latin"`` matplotlib's DejaVuSans.ttf.

``render_line`` makes real text-line images for tests and demos: black on white by default, height fixed,
width fitted to the text, identical pixels for identical arguments.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import EdgeRecError

__all__ = ["font_path", "load_font", "render_line", "FONT_KINDS"]

FONT_KINDS = ("cjk", "latin")
_CJK_FILE = "NotoSansCJKsc-Regular.otf"
_LATIN_FILE = "DejaVuSans.ttf"

_warn_lock = threading.Lock()
_warned_fallback = False


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (mplfonts' import has side effects)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _latin_path() -> Path:
    pkg = _package_dir("matplotlib")
    candidates = []
    if pkg is not None:
        candidates.append(pkg / "mpl-data" / "fonts" / "ttf" / _LATIN_FILE)
    for cand in candidates:
        if cand.is_file():
            return cand
    try:  # unusual layouts: ask matplotlib itself
        import matplotlib

        cand = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _LATIN_FILE
    except ImportError as exc:
        raise EdgeRecError(f"font 'latin': matplotlib is not installed, so {_LATIN_FILE} is missing") from exc
    if not cand.is_file():
        raise EdgeRecError(f"font 'latin': {cand} does not exist")
    return cand


def _cjk_path() -> Path | None:
    pkg = _package_dir("mplfonts")
    if pkg is None:
        return None
    for cand in (pkg / "fonts" / _CJK_FILE, pkg / _CJK_FILE):
        if cand.is_file():
            return cand
    hits = sorted(pkg.rglob(_CJK_FILE))
    return hits[0] if hits else None


def font_path(kind: str = "cjk") -> Path:
    """Path of a font file shipped by an installed package.

    ``kind`` is ``"cjk"`` or ``"latin"``; the path of an existing font file is also accepted and returned as is.
    """
    global _warned_fallback
    if kind == "cjk":
        path = _cjk_path()
        if path is not None:
            return path
        with _warn_lock:
            first = not _warned_fallback
            _warned_fallback = True
        if first:
            warnings.warn(
                f"font 'cjk': {_CJK_FILE} not found (install mplfonts==0.0.11); "
                f"falling back to {_LATIN_FILE}, which covers Latin only",
                RuntimeWarning,
                stacklevel=2,
            )
        return _latin_path()
    if kind == "latin":
        return _latin_path()
    if isinstance(kind, (str, os.PathLike)) and Path(kind).suffix.lower() in (".ttf", ".otf", ".ttc"):
        if Path(kind).is_file():
            return Path(kind)
        raise EdgeRecError(f"font {kind!s}: file does not exist")
    raise ValueError(f"font kind {kind!r}: expected one of {FONT_KINDS} or a .ttf/.otf/.ttc file")


@functools.lru_cache(maxsize=64)
def _load_font_cached(size: int, path: str) -> ImageFont.FreeTypeFont:
    # BASIC layout: the same pixels whether or not this Pillow build has libraqm.
    return ImageFont.truetype(path, size=size, layout_engine=ImageFont.Layout.BASIC)


def load_font(size: int, kind: str = "cjk") -> ImageFont.FreeTypeFont:
    """A cached FreeType font of ``size`` pixels (em size) for ``kind`` (see :func:`font_path`)."""
    size = int(size)
    if size < 1:
        raise ValueError(f"font size {size}: must be at least 1")
    return _load_font_cached(size, str(font_path(kind)))


def _color(c: int | tuple[int, ...], what: str) -> tuple[int, int, int]:
    if isinstance(c, (int, np.integer)):
        v = int(c)
        return (v, v, v)
    t = tuple(int(x) for x in c)
    if len(t) != 3 or not all(0 <= x <= 255 for x in t):
        raise ValueError(f"{what}={c!r}: expected a (B, G, R) tuple of 0..255")
    return t  # type: ignore[return-value]


# Where the em box sits: top of the em at 80 % of the size above the baseline (typical ascender/descender split).
_EM_ABOVE_BASELINE = 0.8


def render_line(
    text: str,
    *,
    height: int = 48,
    font_kind: str = "cjk",
    fg: tuple[int, int, int] = (0, 0, 0),
    bg: tuple[int, int, int] = (255, 255, 255),
    pad: int = 8,
) -> np.ndarray:
    """Render one line of text to a BGR uint8 image of shape ``(height, W, 3)``.

    The font's em size is ~70 % of ``height`` and the em box is centred vertically, so every string shares one
    baseline (``"ggg"`` and ``"AAA"`` line up as in real text); the size shrinks only if some glyph's ink would
    leave the image. ``W`` is the text's advance width (or ink, whichever is wider) plus ``pad`` on both sides.
    ``fg``/``bg`` are (B, G, R) like the returned array. Deterministic: same arguments, same pixels.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    if "\n" in text or "\r" in text:
        raise ValueError(f"render_line renders one line; text {text!r} has a line break")
    height = int(height)
    pad = int(pad)
    if height < 4:
        raise ValueError(f"height {height}: must be at least 4")
    if pad < 0:
        raise ValueError(f"pad {pad}: must be >= 0")
    fg_bgr, bg_bgr = _color(fg, "fg"), _color(bg, "bg")

    size = max(1, round(0.7 * height))
    while True:
        font = load_font(size, font_kind)
        baseline = round((height - size) / 2 + _EM_ABOVE_BASELINE * size)
        x0, y0, x1, y1 = font.getbbox(text, anchor="ls") if text else (0, 0, 0, 0)
        if (baseline + y0 >= 0 and baseline + y1 <= height) or size <= 4:
            break
        size -= 1

    advance = math.ceil(font.getlength(text)) if text else 0
    left = pad - min(0, x0)  # a glyph with a negative left bearing (e.g. 'j') still gets its full pad
    width = max(1, left + max(x1, advance) + pad)

    img = Image.new("RGB", (width, height), bg_bgr[::-1])
    if text:
        ImageDraw.Draw(img).text((left, baseline), text, font=font, fill=fg_bgr[::-1], anchor="ls")
    rgb = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])
