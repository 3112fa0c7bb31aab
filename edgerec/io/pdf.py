"""PDF pages -> BGR images, one page rendered at a time as the consumer asks for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from edgerec.errors import InputError
from edgerec.io.images import _check_pixels, to_bgr

_PDF_MAGIC = b"%PDF-"
# Pages rendered per PDF; the rest get one error. A 340-byte PDF can claim a million pages.
MAX_PDF_PAGES = 10_000
# pdfium is not thread-safe; a predictor may be fed from several threads.
_PDFIUM_LOCK = threading.RLock()


def is_pdf(buf: np.ndarray | bytes, name: str | None = None) -> bool:
    """A PDF starts with ``%PDF-``. Only a ``.pdf`` file may have it later in its first KB (as the spec allows):
    a PNG or JPEG with ``%PDF-`` in a metadata chunk stays an image."""
    head = bytes(buf[:1024])
    if head.startswith(_PDF_MAGIC):
        return True
    return bool(name) and str(name).lower().endswith(".pdf") and _PDF_MAGIC in head


_Page = tuple[int | None, np.ndarray | None, InputError | None]


def _pdf_pages(doc_input: str | bytes, source: str, dpi: int, max_pages: int | None = None) -> Iterator[_Page]:
    """Yield (page_index, BGR image, None) per page, or (index, None, error) for a page / document that fails."""
    try:
        import pypdfium2 as pdfium
    except ImportError:
        yield None, None, InputError(source, "reading PDFs needs pypdfium2: pip install pypdfium2")
        return
    scale = float(dpi) / 72.0
    try:
        with _PDFIUM_LOCK:
            doc = pdfium.PdfDocument(doc_input)
            n_pages = len(doc)
    except Exception as exc:
        detail = str(exc).strip().rstrip(".") or type(exc).__name__  # keeps pdfium's reason: "Incorrect password"
        yield None, None, InputError(source, f"not a readable PDF, or a PDF with no pages ({detail})")
        return
    try:
        if n_pages == 0:
            yield None, None, InputError(source, "PDF has no pages")
            return
        limit = MAX_PDF_PAGES if max_pages is None else max_pages
        for i in range(min(n_pages, limit)):
            try:
                with _PDFIUM_LOCK:
                    page = doc[i]
                    try:
                        w_pt, h_pt = page.get_size()
                        _check_pixels(round(w_pt * scale), round(h_pt * scale), f"{source} page {i}")
                        bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
                        arr = bitmap.to_numpy()
                        mode = bitmap.mode
                        arr = np.array(arr, copy=True)  # own the memory before the bitmap is freed
                        bitmap.close()
                    finally:
                        page.close()
                yield i, _pdf_bitmap_to_bgr(arr, mode, f"{source} page {i}"), None
            except InputError as exc:
                yield i, None, exc
            except Exception as exc:
                yield i, None, InputError(f"{source} page {i}", f"cannot render PDF page ({type(exc).__name__}: "
                                                                f"{exc})")
        if n_pages > limit:
            yield limit, None, InputError(source, f"PDF has {n_pages} pages; only the first {limit} are read "
                                                  f"(edgerec.io.pdf.MAX_PDF_PAGES)")
    finally:
        with _PDFIUM_LOCK:
            doc.close()


def _pdf_bitmap_to_bgr(arr: np.ndarray, mode: str, source: str) -> np.ndarray:
    if mode in ("RGB", "RGBA", "RGBX"):
        arr = arr[:, :, [2, 1, 0] + ([3] if mode == "RGBA" else [])]
    elif mode == "BGRX":
        arr = arr[:, :, :3]
    elif mode not in ("BGR", "BGRA", "L"):
        raise InputError(source, f"unexpected pdfium bitmap mode {mode!r}")
    return to_bgr(np.ascontiguousarray(arr), source)


