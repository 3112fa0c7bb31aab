"""The one loader: every input kind (array, PIL image, file, folder, PDF, URL, bytes, lists) -> BGR uint8 HxWx3.

Everything downstream (preprocess, engines, results) may then assume a single image layout. Bad items never
stop a run: ``iter_inputs`` yields them as ``LoadedItem``s with ``error`` set, naming the input and the problem,
and goes on with the next one.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgerec.errors import InputError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}
)
PDF_SUFFIX = ".pdf"
# Decoding more than this many pixels is refused: a few-KB file can claim gigapixels (decompression bomb).
MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000: ample for a line, a page or a 4K frame; bounds decode time

_SUPPORTED = ", ".join(sorted(IMAGE_SUFFIXES | {PDF_SUFFIX}))
_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_PIL_BOMB_RE = re.compile(r"\((\d+) pixels\)")
_PDF_MAGIC = b"%PDF-"
# pdfium is not thread-safe; a predictor may be fed from several threads.
_PDFIUM_LOCK = threading.RLock()


@dataclass
class LoadedItem:
    """One image (or one failure) in flattened input order, with where it came from."""

    input_path: str | None  # path / URL as given (folder items: the file's path); None for arrays, PIL, bytes
    page_index: int | None  # PDF page, 0-based; None otherwise
    image: np.ndarray | None  # BGR uint8 HxWx3, C-contiguous; None when error is set
    error: InputError | None
    index: int  # position in the flattened input order


# --------------------------------------------------------------------------------------------- arrays


def _to_uint8(a: np.ndarray, source: str) -> np.ndarray:
    """Bring any numeric dtype to uint8 without wrap-around: scale 16-bit and 0..1 floats, clip the rest."""
    kind, size = a.dtype.kind, a.dtype.itemsize  # by kind and size: big-endian '>u2' is 16-bit too
    if kind == "u" and size == 1:
        return a if a.dtype == np.uint8 else a.astype(np.uint8)
    if kind == "b":
        return a.astype(np.uint8) * np.uint8(255)
    if kind == "u" and size == 2:
        # x / 257 rounded; 257 is odd, so x / 257 never ends in exactly .5 and (x + 128) // 257 is exact
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        f = a
        if a.dtype not in (np.float32, np.float64):  # float16 -> float32; float128, big-endian -> float64
            with np.errstate(all="ignore"):  # NaN payloads, float128 past float64's range: refused just below
                f = a.astype(np.float32 if a.dtype.itemsize < 4 else np.float64)
        if not np.isfinite(f).all():
            raise InputError(source, f"array contains NaN or infinite values (dtype {a.dtype})")
        scale = 255.0 if float(f.max()) <= 1.0 else 1.0
        return np.rint(np.clip(f * scale, 0.0, 255.0)).astype(np.uint8)
    raise InputError(source, f"unsupported array dtype {a.dtype} (expected an integer, float or bool image)")


def _over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite uint8 colour over a white page, so transparent-background text stays dark on light."""
    if int(alpha.min()) == 255:
        return color
    a = alpha.astype(np.int32)
    if color.ndim == 3:
        a = a[..., None]
    out = (color.astype(np.int32) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def to_bgr(array: np.ndarray, source: str = "<ndarray>") -> np.ndarray:
    """Normalise one image array to BGR uint8 HxWx3, C-contiguous; raise InputError naming ``source`` if impossible.

    Colour arrays are taken as BGR(A), as cv2.imread gives them (the PaddleX convention). A uint8 BGR array that is
    already contiguous is returned as is, without a copy.
    """
    if not isinstance(array, np.ndarray):
        raise InputError(source, f"expected a numpy array, got {type(array).__name__}")
    shape = tuple(array.shape)
    if array.ndim not in (2, 3):
        raise InputError(source, f"array of shape {shape} is not an image (expected HxW or HxWxC)")
    if array.size == 0:
        raise InputError(source, f"array of shape {shape} is empty")
    channels = 1 if array.ndim == 2 else shape[2]
    if channels not in (1, 2, 3, 4):
        raise InputError(source, f"array of shape {shape} has {channels} channels (expected 1, 2, 3 or 4)")
    # converting means copies of the whole array: a frame this size is a mistake, not a text line
    _check_pixels(shape[1], shape[0], source)
    a = _to_uint8(array, source)
    if a.ndim == 3 and channels == 1:
        a = a[:, :, 0]
    if channels == 1:
        out = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_GRAY2BGR)
    elif channels == 2:
        gray = _over_white(a[:, :, 0], a[:, :, 1])
        out = cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)
    elif channels == 4:
        out = _over_white(a[:, :, :3], a[:, :, 3])
    else:
        out = a
    return np.ascontiguousarray(out)


def _pil_to_bgr(img: Any, source: str) -> np.ndarray:
    """PIL image (RGB/RGBA/L/LA/P/1/I;16/I/F/CMYK...) -> BGR uint8, honouring its EXIF orientation."""
    from PIL import ImageOps

    _check_pixels(img.size[0], img.size[1], source)
    if img.size[0] * img.size[1] == 0:
        raise InputError(source, f"image is empty ({img.size[0]}x{img.size[1]} pixels)")
    try:
        if img.getexif().get(0x0112, 1) not in (1, None):
            img = ImageOps.exif_transpose(img)
        if img.mode in ("La", "RGBa"):  # premultiplied alpha: PIL converts these to plain alpha only
            img = img.convert(img.mode.upper())
        mode = img.mode
        if mode == "1":
            img = img.convert("L")
        elif mode in ("P", "PA"):
            img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
        elif mode.startswith("I;16"):
            arr = np.asarray(img).astype(np.uint16)  # also turns big-endian I;16B into native order
            return to_bgr(arr, source)
        elif mode == "I":
            arr = np.asarray(img)
            # 32-bit integer images are nearly always 16-bit data (old Pillow opened 16-bit PNGs as "I")
            if int(arr.max()) > 255:
                arr = np.clip(arr, 0, 65535).astype(np.uint16)
            return to_bgr(arr, source)
        elif mode == "F":
            return to_bgr(np.asarray(img), source)
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
        arr = np.asarray(img)
    except InputError:
        raise
    except Exception as exc:  # truncated / corrupt lazily-opened file, unknown mode
        raise InputError(source, f"cannot read PIL image ({type(exc).__name__}: {exc})") from exc
    if img.mode == "RGB":
        arr = arr[:, :, ::-1]
    elif img.mode == "RGBA":
        arr = arr[:, :, [2, 1, 0, 3]]
    return to_bgr(np.ascontiguousarray(arr), source)


# --------------------------------------------------------------------------------------------- image files


def _check_pixels(width: int, height: int, source: str) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            source, f"image is too large ({width}x{height} = {width * height} pixels; the limit is "
                    f"{MAX_IMAGE_PIXELS}, a guard against decompression bombs)")


def _open_header(data: bytes | memoryview, source: str) -> Any:
    """Read only the image header with PIL (cheap): size for the bomb guard and EXIF orientation; None if PIL can't."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb warnings (our own limit applies) and corrupt-EXIF chatter
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        m = _PIL_BOMB_RE.search(str(exc))
        pixels = int(m.group(1)) if m else None
        if pixels is None or pixels > MAX_IMAGE_PIXELS:
            shown = f"{pixels} pixels" if pixels is not None else "too many pixels"
            raise InputError(source, f"image is too large ({shown}; the limit is {MAX_IMAGE_PIXELS}, a guard "
                                     "against decompression bombs)") from exc
        return None  # over Pillow's own limit but under ours: decode with cv2, no EXIF orientation to read
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    except Exception:  # a PIL plugin choking on crafted bytes (struct.error, IndexError...): cv2 may still cope
        return None
    _check_pixels(img.size[0], img.size[1], source)
    return img


def _orientation(header: Any) -> int:
    """EXIF orientation (1..8) from a lazily opened PIL image, without decoding pixels."""
    if header is None:
        return 1
    try:
        # PNG keeps eXIf after the pixels sometimes; getexif() would then decode the image to find it: skip that
        if header.format == "PNG" and "exif" not in header.info:
            return 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": then there is no orientation to apply
            value = header.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:
        return 1


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip a decoded array the way its EXIF orientation says (same result as PIL's exif_transpose)."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return np.swapaxes(img, 0, 1)
    if orientation == 6:
        return np.swapaxes(img, 0, 1)[:, ::-1]  # 90 degrees clockwise
    if orientation == 7:
        return np.swapaxes(img[::-1, ::-1], 0, 1)
    if orientation == 8:
        return np.swapaxes(img, 0, 1)[::-1]  # 90 degrees counter-clockwise
    return img


def _quiet_imdecode(buf: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own ``[ERROR] ... grfmt_*.cpp`` lines: a bad file gets one InputError."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    get, set_ = logging.getLogLevel, logging.setLogLevel
    level = get()
    set_(logging.LOG_LEVEL_SILENT)  # for this call only
    try:
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    finally:
        set_(level)


def _decode(buf: np.ndarray, source: str) -> np.ndarray:
    """Decode encoded image bytes (uint8 1-D array) -> BGR uint8; cv2 first (16-bit, alpha), PIL if cv2 cannot."""
    if buf.size == 0:
        raise InputError(source, "file is empty (0 bytes)")
    data = memoryview(buf)
    header = _open_header(data, source)
    img = _quiet_imdecode(buf)
    if img is None or img.size == 0:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bomb and corrupt-EXIF warnings: the error below says it
                pil = Image.open(io.BytesIO(data))
                _check_pixels(pil.size[0], pil.size[1], source)
                pil.load()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(source, "not a decodable image (corrupt or unsupported format)") from exc
        return _pil_to_bgr(pil, source)
    _check_pixels(img.shape[1], img.shape[0], source)
    img = _apply_orientation(img, _orientation(header))
    return to_bgr(img, source)


def _read_file(path: str, source: str) -> np.ndarray:
    """Read a regular file's bytes (np.fromfile: non-ASCII paths work on every OS), with plain-words errors."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(source, "broken symbolic link") from None
        raise InputError(source, "no such file or directory") from None
    except PermissionError:
        raise InputError(source, "permission denied") from None
    except OSError as exc:
        raise InputError(source, f"cannot access file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(source, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(source, "not a regular file")
    if st.st_size == 0:
        raise InputError(source, "file is empty (0 bytes)")
    try:
        return np.fromfile(path, dtype=np.uint8)
    except PermissionError:
        raise InputError(source, "permission denied") from None
    except OSError as exc:
        raise InputError(source, f"cannot read file ({exc.strerror or exc})") from None


def load_image(path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview, source: str | None = None
               ) -> np.ndarray:
    """Decode one image file or encoded image bytes to BGR uint8 HxWx3; raise InputError naming ``source``.

    The format is found from the content, not the suffix. 16-bit, alpha, EXIF orientation and non-ASCII paths are
    handled; PDFs are refused here (``iter_inputs`` renders their pages).
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        src = source or "<bytes>"
        buf = np.frombuffer(path_or_bytes, dtype=np.uint8)
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        path = os.fspath(path_or_bytes)
        src = source or str(path)
        buf = _read_file(str(path), src)
    else:
        raise InputError(source or repr(path_or_bytes)[:80],
                         f"expected a path or bytes, got {type(path_or_bytes).__name__}")
    if _is_pdf(buf):
        raise InputError(src, "is a PDF document, not an image (iter_inputs renders its pages)")
    return _decode(buf, src)


# --------------------------------------------------------------------------------------------- PDF


def _is_pdf(buf: np.ndarray | bytes) -> bool:
    # the PDF spec allows the header anywhere in the first 1024 bytes
    head = bytes(buf[:1024])
    return head.startswith(_PDF_MAGIC) or _PDF_MAGIC in head


def _pdf_pages(doc_input: str | bytes, source: str, dpi: int) -> Iterator[tuple[int | None, np.ndarray | None,
                                                                                  InputError | None]]:
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
        detail = str(exc).split("(")[0].strip() or type(exc).__name__
        yield None, None, InputError(source, f"not a readable PDF, or a PDF with no pages ({detail})")
        return
    try:
        if n_pages == 0:
            yield None, None, InputError(source, "PDF has no pages")
            return
        for i in range(n_pages):
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


# --------------------------------------------------------------------------------------------- URLs


def _chunks(resp: Any, size: int) -> Iterator[bytes]:
    """The body as it arrives. ``read1`` returns whatever one socket read brings.

    requests' ``iter_content`` waits for a full chunk instead. A server that drips one byte a second then never
    trips the per-read timeout, and the whole-download deadline is never checked.
    """
    raw = resp.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.3
        yield from resp.iter_content(chunk_size=size)
        return
    while True:
        chunk = raw.read1(size, decode_content=True)  # decodes gzip at most ``size`` bytes at a time
        if not chunk:  # end of the body
            return
        yield chunk


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET an http(s) URL, streamed, with a size cap and a deadline for the whole download (slow-drip servers).

    Redirects stay on http(s) (requests refuses other schemes). The deadline is checked after every socket
    read, so a download ends by ``2 * timeout``.
    """
    import requests

    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, stream=True, timeout=timeout) as resp:
            if resp.status_code >= 400:
                raise InputError(url, f"download failed: HTTP {resp.status_code} {resp.reason or ''}".rstrip())
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise InputError(url, f"download is too large ({int(length)} bytes; the limit is {max_bytes})")
            chunks: list[bytes] = []
            total = 0
            for chunk in _chunks(resp, 1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise InputError(url, f"download is too large (over {max_bytes} bytes)")
                if time.monotonic() > deadline:
                    raise InputError(url, f"download timed out after {timeout:g} s")
                chunks.append(chunk)
    except InputError:
        raise
    except requests.Timeout:
        raise InputError(url, f"download timed out after {timeout:g} s") from None
    except requests.RequestException as exc:
        raise InputError(url, f"download failed ({type(exc).__name__}: {exc})") from None
    data = b"".join(chunks)
    if not data:
        raise InputError(url, "download is empty (0 bytes)")
    return data


# --------------------------------------------------------------------------------------------- folders


def _folder_files(folder: str) -> tuple[list[str], list[InputError]]:
    """Image and PDF files under ``folder``, recursive, sorted by path; symlinked folders are visited once only."""
    found: list[tuple[tuple[str, ...], str]] = []
    errors: list[InputError] = []
    visited: set[tuple[int, int]] = set()

    # an explicit stack, not recursion: a folder nested a thousand deep must not hit Python's recursion limit
    stack: list[tuple[str, tuple[str, ...]]] = [(folder, ())]
    while stack:
        path, rel = stack.pop()
        try:
            st = os.stat(path)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:  # a symlink loop or a second link to a folder already walked
            continue
        visited.add(key)
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            errors.append(InputError(path, f"cannot list folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symlinks; loops are cut by ``visited``
            except OSError:
                is_dir = False
            if is_dir:
                stack.append((entry.path, (*rel, entry.name)))
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES | {PDF_SUFFIX}:
                found.append(((*rel, entry.name), entry.path))

    found.sort(key=lambda t: t[0])
    return [p for _, p in found], errors


# --------------------------------------------------------------------------------------------- iter_inputs


def _flatten(inputs: Any) -> Iterator[Any]:
    if isinstance(inputs, (list, tuple, Iterator)):
        for x in inputs:
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


class _Loader:
    """Turns one flattened input into LoadedItems and numbers them."""

    def __init__(self, url_timeout: float, max_url_bytes: int, pdf_dpi: int):
        self.url_timeout = url_timeout
        self.max_url_bytes = max_url_bytes
        self.pdf_dpi = pdf_dpi
        self.index = 0

    def _item(self, path: str | None, page: int | None, image: np.ndarray | None,
              error: InputError | None) -> LoadedItem:
        item = LoadedItem(path, page, image, error, self.index)
        self.index += 1
        return item

    def _guard(self, path: str | None, source: str, fn: Any, *args: Any) -> LoadedItem:
        try:
            return self._item(path, None, fn(*args), None)
        except InputError as exc:
            return self._item(path, None, None, exc)
        except Exception as exc:  # never let one bad item stop the run
            return self._item(path, None, None, InputError(source, f"cannot load ({type(exc).__name__}: {exc})"))

    def _from_encoded(self, buf: np.ndarray, path: str | None, source: str, pdf_input: str | bytes | None
                      ) -> Iterator[LoadedItem]:
        if _is_pdf(buf):
            doc = pdf_input if pdf_input is not None else buf.tobytes()
            for page, img, err in _pdf_pages(doc, source, self.pdf_dpi):
                yield self._item(path, page, img, err)
        else:
            yield self._guard(path, source, _decode, buf, source)

    def _from_file(self, path: str) -> Iterator[LoadedItem]:
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in IMAGE_SUFFIXES and suffix != PDF_SUFFIX and not os.path.isdir(path):
            shown = f"'{suffix}'" if suffix else "(no suffix)"
            if os.path.exists(path) or os.path.islink(path):
                yield self._item(path, None, None, InputError(path, f"unsupported file type {shown} "
                                                                    f"(supported: {_SUPPORTED})"))
            else:
                yield self._item(path, None, None, InputError(path, "no such file or directory"))
            return
        try:
            buf = _read_file(path, path)
        except InputError as exc:
            yield self._item(path, None, None, exc)
            return
        yield from self._from_encoded(buf, path, path, path if suffix == PDF_SUFFIX and _utf8(path) else None)

    def _from_folder(self, folder: str) -> Iterator[LoadedItem]:
        files, errors = _folder_files(folder)
        for err in errors:
            yield self._item(err.source, None, None, err)
        if not files and not errors:
            yield self._item(folder, None, None, InputError(folder, "folder contains no images"))
        for path in files:
            yield from self._from_file(path)

    def _from_url(self, url: str) -> Iterator[LoadedItem]:
        try:
            data = _download(url, self.url_timeout, self.max_url_bytes)
        except InputError as exc:
            yield self._item(url, None, None, exc)
            return
        yield from self._from_encoded(np.frombuffer(data, dtype=np.uint8), url, url, data)

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
            m = _URL_RE.match(path)
            if m:
                scheme = m.group(1).lower()
                if scheme in ("http", "https"):
                    yield from self._from_url(path)
                else:
                    yield self._item(path, None, None, InputError(
                        path, f"unsupported URL scheme '{scheme}' (only http and https URLs are downloaded)"))
            elif os.path.isdir(path):
                yield from self._from_folder(path)
            else:
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
                pdf_dpi: int = 144) -> Iterator[LoadedItem]:
    """Yield one LoadedItem per image, lazily and in input order; never raises for a bad item.

    ``inputs``: ndarray (HxW[xC]; a 4-D NxHxWxC array is N images), PIL image, path to an image or PDF, folder
    (recursive, sorted), http(s) URL, encoded image bytes, or a (nested) list/tuple/iterator of these. PDFs give one
    item per page, rendered at ``pdf_dpi``. A failed item has ``image=None`` and ``error`` naming it.
    """
    loader = _Loader(url_timeout, max_url_bytes, pdf_dpi)
    try:
        flat = _flatten(inputs)
        for obj in flat:
            try:
                yield from loader.load(obj)
            except Exception as exc:  # a loader bug on one odd input: report that input, go on with the next
                shown = repr(obj) if not isinstance(obj, np.ndarray) else f"<ndarray #{loader.index}>"
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                yield loader._item(obj if isinstance(obj, str) else None, None, None, InputError(
                    shown, f"cannot load ({type(exc).__name__}: {exc})"))
    except Exception as exc:  # e.g. a user iterator that raises midway: report it, keep the promise not to raise
        yield loader._item(None, None, None, InputError("<inputs>", f"cannot iterate inputs ({type(exc).__name__}:"
                                                                    f" {exc})"))
