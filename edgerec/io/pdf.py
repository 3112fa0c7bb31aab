"""PDF pages -> BGR images, one page rendered at a time as the consumer asks for it.

Pages are rendered by pdfium in a helper process (edgerec/io/pdf_worker.py), one for the whole process: a page
that renders for longer than RENDER_TIMEOUT_S (a 700-byte PDF can ask for billions of pattern tiles) is given up
on by killing that process, and becomes that page's error; meanwhile this process waits in short steps, so Ctrl-C
and SIGTERM still work. Where no helper process can run (not POSIX, or it fails to start), pages render here, as
before, without that bound.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgerec.errors import InputError
from edgerec.io import images as _images
from edgerec.io import pdf_worker
from edgerec.io.images import _check_pixels, to_bgr

log = logging.getLogger(__name__)

_PDF_MAGIC = b"%PDF-"
# Pages rendered per PDF; the rest get one error. A 340-byte PDF can claim a million pages.
MAX_PDF_PAGES = 10_000
RENDER_TIMEOUT_S = 60.0  # one page; a text page at 144 dpi takes well under a second
OPEN_TIMEOUT_S = 30.0  # opening a document (pdfium reads its cross-reference table)
# pdfium is not thread-safe, and the helper serves one request at a time; a predictor may be fed from several
# threads
_PDFIUM_LOCK = threading.RLock()
MAX_REPLY_BYTES = 4 * 64_000_000 + (1 << 20)  # the largest page the pixel guard lets through, 4 bytes a pixel


class _RenderTimeout(Exception):
    """The helper process did not answer within the deadline (it was killed)."""


class _HelperDied(Exception):
    """The helper process ended while it worked on a request (pdfium crashed on the document, or it was killed)."""


class _HelperCannotStart(Exception):
    """No helper process can be started here (no interpreter to run it with)."""


class _Renderer:
    """The helper process and its open documents. ``generation`` counts restarts: a document opened before the
    last one is reopened before its next page."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.ids = itertools.count()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _start(self) -> subprocess.Popen:
        if not self.alive():
            self.kill()
            worker = Path(pdf_worker.__file__)
            # -c, not the file: the file's folder would come first on sys.path; '' (the working folder) is dropped
            code = ("import runpy, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
                    f"runpy.run_path({str(worker)!r}, run_name='__main__')")
            main = ["--main-thread"] if threading.current_thread() is threading.main_thread() else []
            try:
                if getattr(sys, "frozen", False) or not sys.executable:
                    raise OSError("no Python interpreter to run it with (a frozen or embedded application)")
                self.proc = subprocess.Popen([sys.executable, "-c", code, *main], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
                self.generation += 1
                # it answers before it is used: an interpreter that cannot run it (no pypdfium2 there, not Python)
                # is found here, not taken for a PDF that crashed pdfium
                if self._exchange(self.proc, ["hello"], OPEN_TIMEOUT_S)[0] != ["ok", 0]:
                    raise OSError("it did not answer as expected")
            except (OSError, ValueError, TypeError, _HelperDied, _RenderTimeout) as exc:
                self.kill()
                raise _HelperCannotStart(str(exc) or type(exc).__name__) from None
            except BaseException:  # Ctrl-C before its hello was read: that reply must never answer a later call
                self.kill()
                raise
        return self.proc

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(5)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    stream.close()

    def call(self, request: list, timeout_s: float, payload: bytes = b"") -> tuple[list, bytes]:
        """Send ``request``, return the reply (its list, its payload); _RenderTimeout (the process killed) after
        ``timeout_s``, _HelperDied when it ended meanwhile, _HelperCannotStart when none can be started."""
        try:
            proc = self._start()
            return self._exchange(proc, request, timeout_s, payload)
        except _HelperCannotStart:
            raise
        except BaseException:  # a timeout, a dead helper, Ctrl-C: its state is unknown, so it goes
            self.kill()
            raise

    def _exchange(self, proc: subprocess.Popen, request: list, timeout_s: float, payload: bytes = b""
                  ) -> tuple[list, bytes]:
        try:
            proc.stdin.write(pdf_worker.encode(request, payload))
            proc.stdin.flush()
        except OSError as exc:  # a broken pipe: it ended
            raise _HelperDied(str(exc)) from None
        return self._read(proc, time.monotonic() + timeout_s)

    @staticmethod
    def _read(proc: subprocess.Popen, deadline: float) -> tuple[list, bytes]:
        """One reply: (the JSON list, the payload), read in short steps until ``deadline``."""
        fd = proc.stdout.fileno()
        poller = select.poll()  # not select(): descriptors above 1024 (a busy server) are fine
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        buf = bytearray()

        def exactly(n: int) -> bytes:
            while len(buf) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _RenderTimeout()
                if not poller.poll(int(min(0.1, left) * 1000) + 1):  # short steps: Ctrl-C is taken here
                    continue
                chunk = os.read(fd, min(n - len(buf), 1 << 20))
                if not chunk:
                    raise _HelperDied("it ended")
                buf.extend(chunk)
            data = bytes(buf[:n])
            del buf[:n]
            return data

        parts = []
        for _ in range(2):
            (size,) = pdf_worker.HEADER.unpack(exactly(pdf_worker.HEADER.size))
            if size > MAX_REPLY_BYTES:  # a page is bounded by the pixel guard; anything larger is no reply
                raise _HelperDied(f"it announced a reply of {size} bytes")
            parts.append(exactly(size))
        try:
            message = json.loads(parts[0])
        except ValueError:
            raise _HelperDied("it sent something that is not a reply") from None
        if not isinstance(message, list) or not message:
            raise _HelperDied("it sent something that is not a reply")
        return message, parts[1]

    def stop(self) -> None:
        """At exit: end of input tells an idle helper to leave; a busy one is killed."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            proc.stdin.close()
            proc.wait(1)
        self.kill()


_RENDERER = _Renderer()
atexit.register(lambda: _RENDERER.stop())  # the current one: a forked child's own, never its parent's helper


def _after_fork_in_child() -> None:
    """A forked child owns neither the parent's helper nor a lock another thread of the parent held: fresh ones."""
    global _RENDERER, _PDFIUM_LOCK
    old = _RENDERER.proc
    if old is not None:  # a half-written request in the copied buffer would reach the parent's helper on flush
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, old.stdin.fileno())
            os.close(null)
    _PDFIUM_LOCK = threading.RLock()
    _RENDERER = _Renderer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
_helper_failed = False  # the helper could not run here: render in this process from then on


def _use_helper() -> bool:
    return os.name == "posix" and hasattr(select, "poll") and not _helper_failed


def _helper_unusable(exc: BaseException) -> None:
    global _helper_failed
    _helper_failed = True
    log.warning("PDF pages render in this process, without a time bound per page: the helper process cannot run "
                "(%s)", exc)


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
        import pypdfium2  # noqa: F401 - the helper needs it too; say so here, once
    except ImportError:
        yield None, None, InputError(source, "reading PDFs needs pypdfium2: pip install pypdfium2")
        return
    if _use_helper():
        pages = _pages_in_helper(doc_input, source, dpi, max_pages)
        try:
            first = next(pages)
        except StopIteration:
            return
        except _HelperCannotStart as exc:  # a frozen app, an embedded interpreter
            _helper_unusable(exc)
        else:
            yield first
            yield from pages
            return
    yield from _pages_here(doc_input, source, dpi, max_pages)


def _open_error(source: str, detail: str) -> InputError:
    return InputError(source, f"not a readable PDF, or a PDF with no pages ({detail})")


def _pages_in_helper(doc_input: str | bytes, source: str, dpi: int, max_pages: int | None) -> Iterator[_Page]:
    """_pdf_pages through the helper process; _HelperCannotStart before the first page when none can run."""
    scale = float(dpi) / 72.0
    doc_id = next(_RENDERER.ids)
    opened_in = None  # the helper generation the document is open in
    if isinstance(doc_input, str):  # the helper keeps the folder it started in: never a relative path
        doc_input = os.path.abspath(doc_input)

    def ensure_open() -> int:
        nonlocal opened_in
        if opened_in != _RENDERER.generation or not _RENDERER.alive():
            path = doc_input if isinstance(doc_input, str) else None
            reply, _ = _RENDERER.call(["open", doc_id, path], OPEN_TIMEOUT_S,
                                      payload=b"" if path is not None else bytes(doc_input))
            if reply[0] != "ok":
                raise _OpenFailed(str(reply[1]) if len(reply) > 1 else "no reason given")
            opened_in = _RENDERER.generation
            try:
                return int(reply[1])
            except (IndexError, TypeError, ValueError):
                raise _HelperDied("it sent a malformed reply") from None
        return -1

    try:
        failed: InputError | None = None
        with _PDFIUM_LOCK:  # nothing is yielded while it is held: a consumer that stops must not keep it
            try:
                n_pages = ensure_open()
            except _RenderTimeout:
                failed = InputError(source, f"not a readable PDF: opening it took more than {OPEN_TIMEOUT_S:g} s")
            except _OpenFailed as exc:
                failed = _open_error(source, str(exc))
            except _HelperDied:
                failed = InputError(source, "not a readable PDF: pdfium crashed reading it")
        if failed is not None:
            yield None, None, failed
            return

        def render(i: int) -> _Page:
            where = f"{source} page {i}"
            try:
                with _PDFIUM_LOCK:
                    ensure_open()  # again after the helper was restarted (a page that timed out, anyone's)
                    reply, data = _RENDERER.call(["render", doc_id, i, scale, _images.MAX_IMAGE_PIXELS],
                                                 RENDER_TIMEOUT_S)
                try:
                    if reply[0] == "too_large":
                        _check_pixels(int(reply[1]), int(reply[2]), where)  # raises the guard's own error
                        raise InputError(where, "page too large")
                    if reply[0] != "page":
                        raise InputError(where, f"cannot render PDF page ({reply[1]})")
                    _, mode, shape = reply
                    arr = np.frombuffer(data, dtype=np.uint8).reshape(shape)
                except (ValueError, TypeError, IndexError) as exc:
                    if isinstance(exc, InputError):
                        raise
                    raise InputError(where, "cannot render PDF page (the render helper's reply is malformed)") \
                        from None
                return i, _pdf_bitmap_to_bgr(arr, mode, where), None
            except _RenderTimeout:
                return i, None, InputError(where, f"rendering took more than {RENDER_TIMEOUT_S:g} s (given up; "
                                                  "edgerec.io.pdf.RENDER_TIMEOUT_S)")
            except _HelperDied:
                return i, None, InputError(where, "cannot render PDF page (pdfium crashed on it)")
            except _HelperCannotStart as exc:  # it was killed (a page that timed out) and cannot come back
                return i, None, InputError(where, f"cannot render PDF page (the render helper cannot restart: "
                                                  f"{exc})")
            except _OpenFailed as exc:  # reopening after a restart failed: the rest of the document is lost
                raise _DocumentLost(_open_error(source, str(exc))) from None
            except InputError as exc:
                return i, None, exc

        yield from _each_page(source, n_pages, max_pages, render)
    finally:
        if opened_in is not None and opened_in == _RENDERER.generation and _RENDERER.alive():
            with _PDFIUM_LOCK, contextlib.suppress(Exception):
                _RENDERER.call(["close", doc_id], OPEN_TIMEOUT_S)


class _OpenFailed(Exception):
    """pdfium could not open the document (its reason is the message)."""


class _DocumentLost(Exception):
    """The rest of a document cannot be read; ``args[0]`` is the error for the page where that was found."""


def _each_page(source: str, n_pages: int, max_pages: int | None, render) -> Iterator[_Page]:
    """What both renderers share: no pages is an error, pages up to the limit are ``render(i)`` (which may raise
    _DocumentLost), and the pages past the limit are one error."""
    if n_pages == 0:
        yield None, None, InputError(source, "PDF has no pages")
        return
    limit = MAX_PDF_PAGES if max_pages is None else max_pages
    for i in range(min(n_pages, limit)):
        try:
            yield render(i)
        except _DocumentLost as lost:
            yield i, None, lost.args[0]
            return
    if n_pages > limit:
        yield limit, None, InputError(source, f"PDF has {n_pages} pages; only the first {limit} are read "
                                              f"(edgerec.io.pdf.MAX_PDF_PAGES)")


def _pages_here(doc_input: str | bytes, source: str, dpi: int, max_pages: int | None = None) -> Iterator[_Page]:
    """_pdf_pages in this process (no time bound per page): where the helper process cannot run."""
    import pypdfium2 as pdfium

    scale = float(dpi) / 72.0
    try:
        with _PDFIUM_LOCK:
            doc = pdfium.PdfDocument(doc_input)
            n_pages = len(doc)
    except Exception as exc:
        detail = str(exc).strip().rstrip(".") or type(exc).__name__  # keeps pdfium's reason: "Incorrect password"
        yield None, None, _open_error(source, detail)
        return

    def render(i: int) -> _Page:
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
            return i, _pdf_bitmap_to_bgr(arr, mode, f"{source} page {i}"), None
        except InputError as exc:
            return i, None, exc
        except Exception as exc:
            return i, None, InputError(f"{source} page {i}", f"cannot render PDF page ({type(exc).__name__}: "
                                                             f"{exc})")

    try:
        yield from _each_page(source, n_pages, max_pages, render)
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


