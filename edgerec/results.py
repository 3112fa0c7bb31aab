"""TextRecResult: the result for one text line, with PaddleX 3.x's surface (print, json, img, save_to_*)."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import logging
import mimetypes
import os
import random
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

from .errors import EdgeRecError
from .io.fonts import font_path, load_font
from .utils.fs import atomic_write_bytes, stage_bytes

__all__ = ["TextRecResult", "IMAGE_SUFFIXES", "ImageTooLargeError", "write_new"]

log = logging.getLogger(__name__)

KEYS = ("input_path", "page_index", "rec_text", "rec_score")
# in the dict, as in PaddleX's, but never in .json / .str / saved JSON (PaddleX pops them there too)
HIDDEN = ("input_img", "vis_font")
IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".gif": "GIF"}
# the largest side each format's encoder takes (libwebp's WEBP_MAX_DIMENSION, libjpeg's JPEG_MAX_DIMENSION); PNG,
# BMP and TIFF have none a text line reaches
MAX_SIDE = {"WEBP": 16383, "JPEG": 65500}
_FORMAT_NAMES = {"WEBP": "WebP"}
_BLANK_SIZE = (320, 48)  # the canvas under the label of a result without an image (an error, keep_image=False)
# PaddleX draws the label at 6 % of the image's width, smaller until it fits; capped here, so that a 100,000-pixel
# line does not get a 6,000-pixel font (PaddleX's would be a canvas of gigabytes)
_FONT_SHARE, _MAX_FONT = 0.06, 256
_names = {"second": -1, "used": set()}  # this second's names: a name of an earlier second cannot come again
_names_lock = threading.Lock()


def array_name() -> str:
    """A file stem for an input without a path, in PaddleX's form ``<unix time>_<1000-9999>``; never one this
    process gave before (PaddleX's may repeat within a second, and saves then overwrite each other). Made when a
    result is first saved; past 9,000 in one second, ``_<n>`` is added."""
    with _names_lock:
        second = int(time.time())
        if second != _names["second"]:
            _names["second"], _names["used"] = second, set()
        used = _names["used"]
        for _ in range(20):
            name = f"{second}_{random.randint(1000, 9999)}"
            if name not in used:
                break
        else:
            name = f"{second}_{random.randint(1000, 9999)}_{len(used)}"
        used.add(name)
        return name


def is_image_path(path: str | Path) -> bool:
    """Whether ``path`` names an image file by its suffix, as PaddleX decides it (``mimetypes``: ``image/*``); the
    suffixes this writes count whatever the system's MIME table holds (Python's own has no .webp)."""
    text = os.fspath(path)
    if os.path.splitext(text)[1].lower() in IMAGE_SUFFIXES:
        return True
    mime, _ = mimetypes.guess_type(text)
    return mime is not None and mime.startswith("image/")


class ImageTooLargeError(EdgeRecError, ValueError):
    """The visualisation is larger than the format ``save_to_img`` was asked for can hold (WebP, JPEG)."""


def write_new(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, but only if ``path`` does not exist: a FileExistsError otherwise, and
    the existing file is left as it was (even one that appears while we write)."""
    path = Path(path)
    tmp = stage_bytes(path, data)
    try:
        try:
            os.link(tmp, path)  # fails with EEXIST, never replaces: the check and the write are one step
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        except OSError:  # a file system without hard links: reserve the name, then move the data in
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _plain(obj: Any) -> Any:
    """NumPy scalars/arrays, paths, tuples -> plain JSON-able Python values."""
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _is_url(s: str) -> bool:
    try:
        parts = urlsplit(s)
    except ValueError:  # e.g. "http://[::1/x.png" (a malformed IPv6 host): name it like a path
        return False
    return bool(parts.scheme) and len(parts.scheme) > 1 and bool(parts.netloc)


class TextRecResult(dict):
    """PaddleX's result for one text line: ``{input_path, page_index, rec_text, rec_score}``.

    The dict also holds ``input_img`` (BGR uint8, feeds the visualisation) and ``vis_font`` (the font it is drawn
    with, ``.path``) as PaddleX's does; neither is part of ``.json``, ``.str`` or saved JSON. ``name`` is the
    file stem used for saving when there is no ``input_path`` (PaddleX's form, ``"1765112400_4821"``:
    :func:`array_name`). ``word_box`` (PaddleX's
    ``return_word_box``) makes ``rec_text`` the pair ``(text, [columns, runs, run columns, run states])``.
    """

    def __init__(
        self,
        input_path: str | Path | None,
        page_index: int | None,
        rec_text: str,
        rec_score: float,
        *,
        input_img: np.ndarray | None = None,
        name: str | None = None,
        error: str | None = None,
        word_box: list | None = None,
    ) -> None:
        super().__init__()
        self["input_path"] = None if input_path is None else str(input_path)
        self["page_index"] = None if page_index is None else int(page_index)
        self["input_img"] = input_img  # keys in PaddleX's order
        # word_box=[]: asked for, but the line was read in windows (no CTC columns): (text, None)
        self["rec_text"] = str(rec_text) if word_box is None else (str(rec_text), word_box or None)
        self["rec_score"] = float(rec_score)
        self["vis_font"] = VisFont()
        self.name = name
        # set when this input could not be read: the message names the input; rec_text is '' and rec_score 0.0
        self.error = error

    @property
    def input_img(self) -> np.ndarray | None:
        return self.get("input_img")

    @input_img.setter
    def input_img(self, value: np.ndarray | None) -> None:
        self["input_img"] = value

    @property
    def ok(self) -> bool:
        return self.error is None

    def __eq__(self, other: object) -> bool:
        """Dict equality, with the image compared by content (``==`` on arrays has no single truth value)."""
        if not isinstance(other, dict) or list(self) != list(other):
            return False
        for key, value in self.items():
            theirs = other[key]
            if isinstance(value, np.ndarray) or isinstance(theirs, np.ndarray):
                if not (isinstance(value, np.ndarray) and isinstance(theirs, np.ndarray)
                        and np.array_equal(value, theirs)):
                    return False
            elif value != theirs:
                return False
        return True

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # a dict: unhashable

    # dict subclasses pickle their __dict__ and items by default; spell it out so copy/pickle never call __init__
    # with missing arguments and always keep input_img and name.
    def __reduce__(self):
        return (_rebuild, (type(self), dict(self), dict(self.__dict__)))

    def __reduce_ex__(self, protocol):
        return self.__reduce__()

    def __copy__(self) -> TextRecResult:
        new = type(self).__new__(type(self))
        dict.update(new, self)
        new.__dict__.update(self.__dict__)
        return new

    # ------------------------------------------------------------------ representations
    def _res(self) -> dict[str, Any]:
        """The four keys (and any a caller added); a result whose input could not be read also carries its
        ``error``, so that a saved JSON of it never reads as a line recognized as empty."""
        known = {k: _plain(self.get(k)) for k in KEYS}
        extra = {k: _plain(v) for k, v in self.items() if k not in KEYS and k not in HIDDEN}
        failed = {"error": self.error} if getattr(self, "error", None) else {}
        return {**known, **extra, **failed}

    @property
    def json(self) -> dict[str, dict[str, Any]]:
        """``{"res": {input_path, page_index, rec_text, rec_score}}`` with plain Python values."""
        return {"res": self._res()}

    def _to_str(self, json_format: bool = False, indent: int = 4, ensure_ascii: bool = False) -> str:
        if json_format:
            return json.dumps({"res": self._res()}, indent=indent, ensure_ascii=ensure_ascii)
        return repr({"res": self._res()})

    @property
    def str(self) -> dict[str, dict[str, Any]]:
        """``{"res": {input_path, page_index, rec_text, rec_score}}`` (PaddleX's: the result without ``input_img``
        and ``vis_font``)."""
        return {"res": self._res()}

    def print(self, json_format: bool = False, indent: int = 4, ensure_ascii: bool = False) -> None:
        """Print ``{'res': ...}`` as the Python dict repr (PaddleX's default) or, with ``json_format=True``, as JSON."""
        builtins.print(self._to_str(json_format=json_format, indent=indent, ensure_ascii=ensure_ascii))

    # ------------------------------------------------------------------ visualisation
    def _crop_rgb(self) -> Image.Image | None:
        img = self.input_img
        if img is None:
            return None
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 2:
            return Image.fromarray(np.ascontiguousarray(arr), "L").convert("RGB")
        if arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.shape[0] > 0 and arr.shape[1] > 0:
            return Image.fromarray(np.ascontiguousarray(arr[:, :, 2::-1]), "RGB")  # BGR(A) -> RGB
        return None

    def _label(self) -> str:
        """PaddleX's label, ``f"{rec_text} ({rec_score})"`` (the score in full), on one line."""
        return f"{self.get('rec_text', '')} ({self.get('rec_score')})".replace("\r", " ").replace("\n", " ")

    def _to_img(self) -> Image.Image:
        """PaddleX's layout: the crop at its own width, and under it the label in a font of 6 % of that width, made
        smaller until it fits (at least 1 pixel: a label too long for a narrow crop is cut at its right edge)."""
        crop = self._crop_rgb() or Image.new("RGB", _BLANK_SIZE, (255, 255, 255))
        width, height = crop.size
        label = self._label()
        font = _fitting_font(label, width)
        row = font.getbbox(label)[3]
        canvas = Image.new("RGB", (width, height + int(row * 1.2)), (255, 255, 255))
        canvas.paste(crop, (0, 0))
        ImageDraw.Draw(canvas).text((0, height), label, fill=(0, 0, 0), font=font)
        return canvas

    @property
    def img(self) -> dict[str, Image.Image]:
        """``{"res": PIL.Image}``: the crop above a white strip with ``text (score)``."""
        return {"res": self._to_img()}

    # ------------------------------------------------------------------ saving
    def _stem(self) -> str:
        path = self.get("input_path")
        stem = ""
        if path:
            path = str(path)
            if _is_url(path):
                stem = PurePosixPath(urlsplit(path).path).stem
            else:
                stem = Path(path).stem
        if not stem:
            if not self.name and not path:  # an array, PIL image or bytes: PaddleX's <time>_<rand>, once per result
                self.name = array_name()
            stem = str(self.name) if self.name else "res"
        # a file name holds 255 bytes and no NUL: long URLs and odd paths still give a name that can be written
        raw = os.fsencode(stem.replace("\0", "_"))
        stem = os.fsdecode(_cut_utf8(raw, 200)) if len(raw) > 200 else stem.replace("\0", "_")
        page = self.get("page_index")
        if page is not None:
            stem = f"{stem}_{page}"
        return stem

    def _target(self, save_path: str | Path, named: bool, default_suffix: str) -> Path:
        """``save_path`` itself when it ``named`` a file, else ``<save_path>/<stem>_res<default_suffix>``."""
        save_path = Path(save_path)
        if named:
            return save_path
        save_path.mkdir(parents=True, exist_ok=True)
        return save_path / f"{self._stem()}_res{default_suffix}"

    def _image_suffix(self) -> str:
        """The input's suffix when it names an image format this can write (a .jpg input gives _res.jpg, as
        PaddleX), else .png."""
        path = self.get("input_path")
        if not path:
            return ".png"
        path = str(path)
        suffix = PurePosixPath(urlsplit(path).path).suffix if _is_url(path) else Path(path).suffix
        return suffix if suffix.lower() in IMAGE_SUFFIXES else ".png"

    def json_bytes(self, indent: int = 4, ensure_ascii: bool = False) -> bytes:
        """What ``save_to_json`` writes."""
        text = json.dumps(self._res(), indent=indent, ensure_ascii=ensure_ascii)
        # a non-UTF-8 file name arrives with surrogate escapes: write them as JSON \uXXXX escapes, not a crash
        return text.encode("utf-8", "backslashreplace")

    def img_bytes(self, suffix: str, *, where: str | Path | None = None, fallback: bool = False) -> tuple[bytes, str]:
        """The visualisation encoded for ``suffix`` (an IMAGE_SUFFIXES key), and the suffix it was encoded for.

        A picture larger than the format takes (WebP: 16383 pixels a side, JPEG: 65500) is an ImageTooLargeError
        naming ``where``, the size and the limit; with ``fallback`` it is encoded as PNG instead (suffix ``.png``),
        with a warning.
        """
        img = self._to_img()
        fmt = IMAGE_SUFFIXES[suffix.lower()]
        limit = MAX_SIDE.get(fmt)
        if limit is not None and max(img.size) > limit:
            size = f"{img.size[0]}x{img.size[1]}"
            name = _FORMAT_NAMES.get(fmt, fmt)
            if not fallback:
                raise ImageTooLargeError(f"{where or 'the visualisation'}: the visualisation is {size} pixels, "
                                         f"larger than {name} allows ({limit} pixels a side); save it as .png")
            log.warning("%s: the visualisation is %s pixels, larger than %s allows (%d pixels a side): saved as PNG",
                        where or self._stem(), size, name, limit)
            suffix, fmt = ".png", "PNG"
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return buf.getvalue(), suffix

    def save_to_json(self, save_path: str | Path, indent: int = 4, ensure_ascii: bool = False) -> Path:
        """Write the result as JSON: to ``save_path`` if it ends with .json, else to ``<save_path>/<stem>_res.json``.

        The file is replaced atomically (a reader sees the old content or the new, never half), as PaddleX
        replaces it."""
        target = self._target(save_path, Path(save_path).suffix.lower() == ".json", ".json")
        return atomic_write_bytes(target, self.json_bytes(indent, ensure_ascii))

    def save_to_img(self, save_path: str | Path) -> Path:
        """Write the visualisation: to ``save_path`` if it has an image suffix, else ``<save_path>/<stem>_res<suffix>``.

        ``<suffix>`` is the input's image suffix (a .jpg input gives ``_res.jpg``, as PaddleX), else ``.png``. A
        picture larger than WebP or JPEG can hold (16383 / 65500 pixels a side, a very long line) is saved as
        ``_res.png`` in the folder form (with a warning; the returned path says so), and is an
        :class:`ImageTooLargeError` naming the path, the size and the limit when ``save_path`` names the file.
        ``save_path`` names a file when its suffix is an image type (``mimetypes``, as PaddleX decides); one this
        cannot write (.svg, .ico, ...) is a ValueError, not a folder of that name.
        Replaced atomically, as :meth:`save_to_json`.
        """
        save_path = Path(save_path)
        named = is_image_path(save_path)
        if named and save_path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{save_path}: cannot write {save_path.suffix} images; give a path ending in one of "
                             f"{', '.join(IMAGE_SUFFIXES)}, or a folder")
        target = self._target(save_path, named, self._image_suffix())
        data, suffix = self.img_bytes(target.suffix, where=target, fallback=not named)
        if suffix != target.suffix:
            target = target.with_name(f"{self._stem()}_res{suffix}")
        return atomic_write_bytes(target, data)

    def save_all(self, save_path: str | Path) -> list[Path]:
        """Save JSON and visualisation into the folder ``save_path``."""
        return [self.save_to_json(save_path), self.save_to_img(save_path)]


class VisFont:
    """The font the visualisation draws with; ``.path`` as on PaddleX's ``vis_font`` (resolved when read)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VisFont)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "VisFont(cjk)"

    @property
    def path(self) -> str:
        return str(font_path("cjk"))

    def __deepcopy__(self, memo: dict) -> VisFont:
        return self


def _cut_utf8(raw: bytes, limit: int) -> bytes:
    """``raw[:limit]``, shortened to the last whole UTF-8 character (a name cut mid-character would not be UTF-8);
    a name that is not UTF-8 anyway is cut at ``limit``."""
    cut = raw[:limit]
    try:
        cut.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(cut) - 3:
            return cut[:exc.start]
    return cut


def _fitting_font(label: str, width: int):
    """The largest font of at most 6 % of ``width`` (and _MAX_FONT) whose ``label`` fits ``width``: PaddleX's
    shrink-until-it-fits, reached in a few steps instead of one size at a time."""
    def fits(size: int) -> bool:
        return load_font(size).getbbox(label)[2] <= width

    start = max(1, min(_MAX_FONT, int(width * _FONT_SHARE)))
    if fits(start):
        return load_font(start)
    size = max(1, min(start - 1, int(start * width / max(1, load_font(start).getbbox(label)[2]))))
    while size > 1 and not fits(size):
        size -= 1
    while size + 1 < start and fits(size + 1):
        size += 1
    return load_font(size)


def _rebuild(cls: type, items: dict, attrs: dict) -> TextRecResult:
    obj = cls.__new__(cls)
    dict.update(obj, items)
    obj.__dict__.update(attrs)
    return obj
