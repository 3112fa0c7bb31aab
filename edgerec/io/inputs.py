"""The one loader: every input kind (array, PIL image, file, folder, PDF, URL, bytes, lists) -> BGR uint8 HxWx3.

Everything downstream (preprocess, engines, results) may then assume a single image layout. Bad items never
stop a run: ``iter_inputs`` yields them as ``LoadedItem``s with ``error`` set, naming the input and the problem,
and goes on with the next one.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerec.errors import InputError, InputNotFoundError, redact
from edgerec.io.images import (  # noqa: F401  (re-exported: the public loader API lives here)
    _SUPPORTED,
    IMAGE_SUFFIXES,
    INPUT_SUFFIXES,
    MAX_IMAGE_PIXELS,
    PDF_SUFFIX,
    _apply_orientation,
    _decode,
    _pil_to_bgr,
    _read_file,
    decode_tiff_page,
    load_image,
    open_regular,
    tiff_pages,
    to_bgr,
)
from edgerec.io.pdf import _pdf_pages, is_pdf
from edgerec.io.prefetch import ordered_prefetch
from edgerec.io.url import _download
from edgerec.io.walk import walk_files

# files read in order by the consumer, one page at a time, not decoded whole in the reader pool
_PAGED_SUFFIXES = frozenset({PDF_SUFFIX, ".tif", ".tiff"})
URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


@dataclass
class LoadedItem:
    """One image (or one failure) in flattened input order, with where it came from."""

    input_path: str | None  # path / URL as given (folder items: the file's path); None for arrays, PIL, bytes
    page_index: int | None  # PDF page, 0-based; None otherwise
    image: np.ndarray | None  # BGR uint8 HxWx3, C-contiguous; None when error is set
    error: InputError | None
    index: int  # position in the flattened input order


# --------------------------------------------------------------------------------------------- iter_inputs


class _IterFailed:
    """Stands in for an element whose ``next()`` raised: it becomes an error result, and iteration goes on."""

    def __init__(self, exc: Exception):
        self.exc = exc


_MAX_ITER_FAILURES = 100  # consecutive raising next() calls before an iterator is given up (a broken one)


def _flatten(inputs: Any) -> Iterator[Any]:
    if isinstance(inputs, (list, tuple)):
        for x in inputs:
            yield from _flatten(x)
    elif isinstance(inputs, Iterator):
        failures = 0
        while True:
            try:
                x = next(inputs)
            except StopIteration:
                return
            except Exception as exc:  # one element failed; an iterator that can go on (not a generator) does
                failures += 1
                yield _IterFailed(exc)
                if failures >= _MAX_ITER_FAILURES:
                    return
                continue
            failures = 0
            yield from _flatten(x)
    else:
        yield inputs


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8, held with surrogate escapes
        return False
    return True


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(obj, Image.Image)


def _paged_content(path: str) -> bool:
    """A PDF or TIFF (pages) whatever its name says: sniffed from its first bytes."""
    try:
        with open_regular(path) as fh:  # a FIFO is never opened blocking: the loader reports it
            head = fh.read(5) if fh is not None else b""
    except OSError:
        return False  # the loader reports it
    return head.startswith((b"%PDF-", b"II*\x00", b"MM\x00*"))


def cannot_load(source: str, exc: BaseException) -> InputError:
    return InputError(source, f"cannot load ({type(exc).__name__}: {exc})")


class _Loader:
    """Turns one flattened input into LoadedItems and numbers them."""

    def __init__(self, url_timeout: float, max_url_bytes: int, pdf_dpi: int, max_image_bytes: int | None = None,
                 max_pdf_pages: int | None = None, workers: int = 1, skip: Callable[[str], bool] | None = None):
        self.workers = max(1, int(workers))
        self.skip = skip
        self.max_image_bytes = max_image_bytes
        self.max_pdf_pages = max_pdf_pages
        self.url_timeout = url_timeout
        self.max_url_bytes = max_url_bytes
        self.pdf_dpi = pdf_dpi
        self.index = 0

    def _item(self, path: str | None, page: int | None, image: np.ndarray | None,
              error: InputError | None) -> LoadedItem:
        return self._number(LoadedItem(path, page, image, error, -1))

    def _number(self, item: LoadedItem) -> LoadedItem:
        """Give ``item`` the next position in the input order (in the consuming thread only)."""
        item.index = self.index
        self.index += 1
        return item

    def _guard(self, path: str | None, source: str, fn: Any, *args: Any) -> LoadedItem:
        try:
            return self._item(path, None, fn(*args), None)
        except InputError as exc:
            return self._item(path, None, None, exc)
        except Exception as exc:  # never let one bad item stop the run
            return self._item(path, None, None, cannot_load(source, exc))

    def _from_encoded(self, buf: np.ndarray, path: str | None, source: str, pdf_input: str | bytes | None, *,
                      name: str | None = None) -> Iterator[LoadedItem]:
        """``name``: what the file is called, for its suffix (a URL's path, not its query); default ``path``."""
        name = path if name is None else name
        if is_pdf(buf, name):
            doc = pdf_input if pdf_input is not None else buf.tobytes()
            for page, img, err in _pdf_pages(doc, source, self.pdf_dpi, self.max_pdf_pages):
                yield self._item(path, page, img, err)
        else:
            try:
                pages = tiff_pages(buf, source)
            except InputError as exc:
                yield self._item(path, None, None, exc)
                return
            except Exception as exc:  # a damaged TIFF directory: PIL raises all sorts; it is this file's error
                yield self._item(path, None, None, InputError(source, f"cannot read the image ({type(exc).__name__}:"
                                                                      f" {exc})"))
                return
            if pages <= 1:
                item = self._guard(path, source, _decode, buf, source)
                if item.error is not None and name and str(name).lower().endswith(PDF_SUFFIX):
                    item.error = InputError(source, "not a PDF (it does not start with %PDF-), nor an image")
                yield item
                return
            for page in range(pages):  # a multi-page TIFF: every page, decoded one at a time as consumed
                item = self._guard(path, f"{source} page {page}", decode_tiff_page, buf, page,
                                   f"{source} page {page}")
                item.page_index = page
                yield item

    def _from_file(self, path: str) -> Iterator[LoadedItem]:
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in IMAGE_SUFFIXES and suffix != PDF_SUFFIX and not os.path.isdir(path):
            shown = f"'{suffix}'" if suffix else "(no suffix)"
            if os.path.exists(path) or os.path.islink(path):
                yield self._item(path, None, None, InputError(path, f"unsupported file type {shown} "
                                                                    f"(supported: {_SUPPORTED})"))
            else:
                yield self._item(path, None, None, InputNotFoundError(path, "no such file or directory"))
            return
        try:
            buf = _read_file(path, path, self.max_image_bytes)
        except InputError as exc:
            yield self._item(path, None, None, exc)
            return
        yield from self._from_encoded(buf, path, path, path if suffix == PDF_SUFFIX and _utf8(path) else None)

    def _from_folder(self, folder: str) -> Iterator[LoadedItem]:
        """The folder's files in sorted path order, streamed (the first comes before the tree is listed); plain
        image files are decoded ``workers`` at a time ahead of the consumer, PDFs and TIFFs (many pages each) one
        page at a time in order. Items are numbered as they are yielded, so the pool never reorders them."""
        found = False

        def load(entry: str | InputError) -> list[LoadedItem] | str | InputError:
            if isinstance(entry, InputError) or os.path.splitext(entry)[1].lower() in _PAGED_SUFFIXES \
                    or _paged_content(entry):
                return entry  # done in order by the consumer, one page at a time
            # a loader of its own per file: numbering happens below, in order, in this thread
            worker = _Loader(self.url_timeout, self.max_url_bytes, self.pdf_dpi, self.max_image_bytes,
                             self.max_pdf_pages)
            try:
                return list(worker._from_file(entry))
            except Exception as exc:  # a loader bug on one file must not end the folder (nor the pool)
                return [worker._item(entry, None, None, cannot_load(entry, exc))]

        listed = [False]  # the walk found something (before --resume's skip): else "no images"

        def walked() -> Iterator[str | InputError]:
            for entry in walk_files(folder, INPUT_SUFFIXES):
                listed[0] = True
                yield entry

        entries = walked()
        if self.skip is not None:  # --resume: files already in the results are not even read
            entries = (e for e in entries if isinstance(e, InputError) or not self.skip(e))
        for got in ordered_prefetch(entries, load, workers=self.workers, ahead=4 * self.workers):
            found = True
            if isinstance(got, InputError):
                yield self._item(got.source, None, None, got)
            elif isinstance(got, str):
                try:
                    yield from self._from_file(got)
                except Exception as exc:  # this file's error; the folder goes on
                    yield self._item(got, None, None, cannot_load(got, exc))
            else:
                for item in got:
                    yield self._number(item)
        if not found and not listed[0]:
            yield self._item(folder, None, None, InputError(folder, "folder contains no images"))

    def _from_url(self, url: str) -> Iterator[LoadedItem]:
        try:
            data = _download(url, self.url_timeout, self.max_url_bytes)
        except InputError as exc:
            yield self._item(redact(url), None, None, exc)
            return
        shown = redact(url)
        yield from self._from_encoded(np.frombuffer(data, dtype=np.uint8), shown, shown, data,
                                      name=urllib.parse.urlsplit(url).path)

    def load(self, obj: Any) -> Iterator[LoadedItem]:
        if isinstance(obj, np.ndarray):
            if obj.ndim == 4:
                if obj.shape[0] == 0:
                    src = f"<ndarray #{self.index}>"
                    yield self._item(None, None, None, InputError(src, f"array of shape {obj.shape} is empty"))
                for frame in obj:
                    yield self._guard(None, f"<ndarray #{self.index}>", to_bgr, frame, f"<ndarray #{self.index}>")
            else:
                yield self._guard(None, f"<ndarray #{self.index}>", to_bgr, obj, f"<ndarray #{self.index}>")
        elif _is_pil(obj):
            src = f"<PIL.Image #{self.index}>"
            yield self._guard(None, src, _pil_to_bgr, obj, src)
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            src = f"<bytes #{self.index}>"
            yield from self._from_encoded(np.frombuffer(obj, dtype=np.uint8), None, src, bytes(obj))
        elif isinstance(obj, (str, os.PathLike)):
            path = os.fspath(obj)
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if not path:
                yield self._item(path, None, None, InputError(repr(path), "empty path"))
                return
            if "\0" in path:
                yield self._item(path, None, None, InputError(repr(path), "path contains a NUL byte"))
                return
            m = URL_RE.match(path)
            if m:
                scheme = m.group(1).lower()
                if scheme in ("http", "https"):
                    if self.skip is None or not self.skip(redact(path)):  # resume: not downloaded again
                        yield from self._from_url(path)
                else:
                    yield self._item(path, None, None, InputError(
                        path, f"unsupported URL scheme '{scheme}' (only http and https URLs are downloaded)"))
            elif path[:5].lower() == "data:" and not os.path.exists(path):
                yield self._item(path[:40], None, None, InputError(
                    path[:40] + ("..." if len(path) > 40 else ""),
                    "unsupported URL scheme 'data' (only http and https URLs are downloaded; give the bytes)"))
            elif os.path.isdir(path):
                yield from self._from_folder(path)
            elif self.skip is None or not self.skip(path):
                yield from self._from_file(path)
        elif isinstance(obj, dict) and set(obj) == {"img"}:  # PaddleX's documented {"img": path or array}
            yield from self.load(obj["img"])
        else:
            shown = repr(obj)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            yield self._item(None, None, None, InputError(
                shown, f"unsupported input type {type(obj).__name__} (expected a path, folder, PDF, http(s) URL, "
                       "bytes, numpy array, PIL image, or a list of these)"))


def iter_inputs(inputs: Any, *, url_timeout: float = 20.0, max_url_bytes: int = 50 * 2**20,
                pdf_dpi: int = 144, max_image_bytes: int | None = None, max_pdf_pages: int | None = None,
                workers: int = 1, skip: Callable[[str], bool] | None = None) -> Iterator[LoadedItem]:
    """Yield one LoadedItem per image, lazily and in input order; never raises for a bad item.

    ``inputs``: ndarray (HxW[xC]; a 4-D NxHxWxC array is N images), PIL image, path to an image or PDF, folder
    (recursive, sorted), http(s) URL, encoded image bytes, or a (nested) list/tuple/iterator of these. PDFs give one
    item per page, rendered at ``pdf_dpi`` one at a time as they are consumed (at most ``max_pdf_pages``, default
    edgerec.io.pdf.MAX_PDF_PAGES, then one error for the rest); a multi-page TIFF gives one item per page too.
    Files over ``max_image_bytes`` (default edgerec.io.images.MAX_IMAGE_BYTES) are refused before they are read.
    A failed item has ``image=None`` and ``error`` naming it. Folders are walked as a stream (edgerec.io.walk);
    ``workers`` > 1 decodes their image files that many at a time ahead of the consumer, in order. ``skip``: a
    folder's file paths for which it returns True are left out unread (``predict --resume``).
    """
    loader = _Loader(url_timeout, max_url_bytes, pdf_dpi, max_image_bytes, max_pdf_pages, workers, skip)
    try:
        flat = _flatten(inputs)
        for obj in flat:
            if isinstance(obj, _IterFailed):
                exc = obj.exc
                loader_item = loader._item(None, None, None, InputError(
                    "<inputs>", f"cannot get the next input ({type(exc).__name__}: {exc})"))
                yield loader_item
                continue
            try:
                yield from loader.load(obj)
            except Exception as exc:  # a loader bug on one odd input: report that input, go on with the next
                shown = repr(obj) if not isinstance(obj, np.ndarray) else f"<ndarray #{loader.index}>"
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                yield loader._item(obj if isinstance(obj, str) else None, None, None, cannot_load(shown, exc))
    except Exception as exc:  # e.g. a user iterator that raises midway: report it, keep the promise not to raise
        yield loader._item(None, None, None, InputError("<inputs>", f"cannot iterate inputs ({type(exc).__name__}:"
                                                                    f" {exc})"))
