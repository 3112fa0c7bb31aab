"""Image decoding: arrays, PIL images, encoded bytes and image files -> BGR uint8 HxWx3, with memory guards."""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import warnings
from typing import Any

import cv2
import numpy as np

from edgerec.errors import InputError, InputNotFoundError
from edgerec.io.decoder_log import quiet_decode
from edgerec.utils.fs import open_fd_regular

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}
)
PDF_SUFFIX = ".pdf"
# Decoding more than this many pixels is refused: a few-KB file can claim gigapixels (decompression bomb).
MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000: ample for a line, a page or a 4K frame; bounds decode time

# Reading more than this many bytes for one image (or PDF) file is refused before it is read: a sparse 3 GB file
# named .png must not cost 3 GB. Set edgerec.io.images.MAX_IMAGE_BYTES (or iter_inputs(max_image_bytes=)).
MAX_IMAGE_BYTES = 256 * 2**20
# Decoded size (pixels x channels x bytes per sample) refused before decoding: 64 MP of 8-bit BGRA. The pixel count
# alone does not bound memory (an 8000x8000 16-bit RGBA PNG is 512 MB decoded, more once converted).
MAX_DECODED_BYTES = 256 * 2**20
INPUT_SUFFIXES = IMAGE_SUFFIXES | {PDF_SUFFIX}  # what a folder walk picks up
_SUPPORTED = ", ".join(sorted(INPUT_SUFFIXES))
_PIL_BOMB_RE = re.compile(r"\((\d+) pixels\)")


# --------------------------------------------------------------------------------------------- arrays


# a float image whose values stay at or below this is 0..1 (a resize may overshoot 1.0 a little); above it 0..255,
# as PaddleX reads floats and PIL's "F" mode holds them. A 0..255 image that never exceeds 1.5 is black to the eye;
# read as 0..1 it is stretched to full contrast, which is the one reading that can show anything.
FLOAT_UNIT_MAX = 1.5


def _to_uint8(a: np.ndarray, source: str, value_range: float | None = None) -> np.ndarray:
    """Bring any numeric dtype to uint8 without wrap-around: scale 16-bit, scale floats, clip the rest.

    Floats: 0..1 when no value exceeds FLOAT_UNIT_MAX, else 0..255 (what PaddleX assumes for every float array, so
    a PaddleX script's float images read the same; a 0..1 image, which PaddleX reads as black, reads right too).
    ``value_range`` 1 or 255 says which instead.
    """
    kind, size = a.dtype.kind, a.dtype.itemsize  # by kind and size: big-endian '>u2' is 16-bit too
    if kind == "u" and size == 1:
        return a if a.dtype == np.uint8 else a.astype(np.uint8)
    if kind == "b":
        return a.astype(np.uint8) * np.uint8(255)
    if kind == "u" and size == 2:
        # x / 257 rounded; 257 is odd, so x / 257 never ends in exactly .5 and (x + 128) // 257 is exact
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if kind == "i" and int(a.min()) < 0:
            warnings.warn(f"{source}: negative values in a {a.dtype} image are clipped to 0", stacklevel=3)
        return np.clip(a, 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        f = a
        if a.dtype not in (np.float32, np.float64):  # float16 -> float32; float128, big-endian -> float64
            with np.errstate(all="ignore"):  # NaN payloads, float128 past float64's range: refused just below
                f = a.astype(np.float32 if a.dtype.itemsize < 4 else np.float64)
        if not np.isfinite(f).all():
            raise InputError(source, f"array contains NaN or infinite values (dtype {a.dtype})")
        if value_range is None:
            value_range = 1.0 if (f.size == 0 or float(f.max()) <= FLOAT_UNIT_MAX) else 255.0
        if value_range not in (1.0, 255.0):
            raise InputError(source, f"value_range must be 1 or 255, not {value_range!r}")
        scale = 255.0 / float(value_range)
        with np.errstate(over="ignore"):  # huge values overflow to inf and are clipped to 255
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


def to_bgr(array: np.ndarray, source: str = "<ndarray>", value_range: float | None = None) -> np.ndarray:
    """Normalise one image array to BGR uint8 HxWx3, C-contiguous; raise InputError naming ``source`` if impossible.

    Colour arrays are taken as BGR(A), as cv2.imread gives them (the PaddleX convention). A uint8 BGR array that is
    already contiguous is returned as is, without a copy. Float arrays are 0..1 when no value exceeds 1.5, else
    0..255 (as PaddleX), unless ``value_range`` (1 or 255) says which.
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
    a = _to_uint8(array, source, value_range)
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
            return to_bgr(np.asarray(img), source)  # float: the one rule for floats (PIL's "F" holds 0..255)
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
    _check_decoded_bytes(img, source)
    return img


def _check_decoded_bytes(header: Any, source: str) -> None:
    """Refuse an image whose decoded pixels (width x height x channels x bytes per sample) exceed MAX_DECODED_BYTES."""
    try:
        bands = len(header.getbands())
        args = header.tile[0].args if header.tile else None  # PNG: the raw mode as a string, e.g. "RGBA;16B"
        raw = str(args if isinstance(args, str) else args[0] if args else header.mode)
    except Exception:
        bands, raw = 4, header.mode
    mode = header.mode
    per_sample = 4 if mode in ("I", "F") else 2 if (";16" in raw or mode.startswith("I;16")) else 1
    # cv2 keeps 16-bit samples and alpha: count 4 channels for any image that has alpha or a palette
    channels = max(bands, 4 if "A" in mode or mode == "P" else bands)
    need = header.size[0] * header.size[1] * channels * per_sample
    if need > MAX_DECODED_BYTES:
        raise InputError(source, f"image is too large to decode ({header.size[0]}x{header.size[1]}, {channels} "
                                 f"channels of {8 * per_sample} bits = {need / 2**20:.0f} MiB; the limit is "
                                 f"{MAX_DECODED_BYTES / 2**20:.0f} MiB, edgerec.io.images.MAX_DECODED_BYTES)")


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


def _quiet_imdecode(buf: np.ndarray, source: str) -> np.ndarray | None:
    """cv2.imdecode without stray stderr: OpenCV's ``[ERROR] ... grfmt_*.cpp`` lines are silenced (a bad file gets
    one InputError) and libpng/libjpeg's warnings are logged under the input's name (decoder_log)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)

    def decode() -> np.ndarray | None:
        if logging is None:
            return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # for this call only (decodes are serialised)
        try:
            return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        finally:
            logging.setLogLevel(level)

    return quiet_decode(decode, source)


def _decode(buf: np.ndarray, source: str) -> np.ndarray:
    """Decode encoded image bytes (uint8 1-D array) -> BGR uint8; cv2 first (16-bit, alpha), PIL if cv2 cannot."""
    if buf.size == 0:
        raise InputError(source, "file is empty (0 bytes)")
    data = memoryview(buf)
    header = _open_header(data, source)
    img = _quiet_imdecode(buf, source)
    if img is None or img.size == 0:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bomb and corrupt-EXIF warnings: the error below says it
                pil = Image.open(io.BytesIO(data))
                _check_pixels(pil.size[0], pil.size[1], source)
                quiet_decode(pil.load, source)  # Pillow's libtiff prints to fd 2 too
        except InputError:
            raise
        except Exception as exc:
            raise InputError(source, "not a decodable image (corrupt or unsupported format)") from exc
        return _pil_to_bgr(pil, source)
    _check_pixels(img.shape[1], img.shape[0], source)
    if header is None or header.format != "TIFF":  # cv2 applies a TIFF's orientation itself: not twice
        img = _apply_orientation(img, _orientation(header))
    return to_bgr(img, source)


def tiff_pages(buf: np.ndarray, source: str) -> int:
    """How many pages a TIFF has (1 for any other image): a multi-page TIFF gives one item per page."""
    if bytes(buf[:4]) not in (b"II*\x00", b"MM\x00*"):
        return 1
    header = _open_header(memoryview(buf), source)
    return int(getattr(header, "n_frames", 1) or 1) if header is not None else 1


def decode_tiff_page(buf: np.ndarray, page: int, source: str) -> np.ndarray:
    """Decode page ``page`` of a multi-page TIFF (PIL, lazily: one page in memory at a time)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pil = Image.open(io.BytesIO(memoryview(buf)))
            pil.seek(page)
            _check_pixels(pil.size[0], pil.size[1], source)
            _check_decoded_bytes(pil, source)
            quiet_decode(pil.load, source)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(source, f"cannot decode TIFF page ({type(exc).__name__}: {exc})") from exc
    return _pil_to_bgr(pil, source)


def open_regular(path: str) -> Any:
    """Open ``path`` for reading only if it is a regular file (None otherwise): opened non-blocking, then checked on
    the open descriptor, so a FIFO (or one swapped in after a stat) can never block the caller."""
    fh, _ = open_fd_regular(path, os.O_RDONLY | getattr(os, "O_BINARY", 0), "rb")
    return contextlib.nullcontext(None) if fh is None else fh


def _read_file(path: str, source: str, max_bytes: int | None = None) -> np.ndarray:
    """Read a regular file's bytes (np.fromfile: non-ASCII paths work on every OS), with plain-words errors."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(source, "broken symbolic link") from None
        raise InputNotFoundError(source, "no such file or directory") from None
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
    limit = MAX_IMAGE_BYTES if max_bytes is None else max_bytes
    if st.st_size > limit:
        raise InputError(source, f"file is too large ({st.st_size} bytes; the limit is {limit}, "
                                 "edgerec.io.images.MAX_IMAGE_BYTES)")
    try:
        with open_regular(path) as fh:  # read at most limit + 1 bytes: a file may grow after the stat
            if fh is None:
                raise InputError(source, "not a regular file")  # swapped for a FIFO or device after the stat
            buf = np.frombuffer(fh.read(limit + 1), dtype=np.uint8)
        if buf.size > limit:
            raise InputError(source, f"file is too large (over {limit} bytes)")
        return buf
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
    from edgerec.io.pdf import is_pdf

    if is_pdf(buf, src):
        raise InputError(src, "is a PDF document, not an image (iter_inputs renders its pages)")
    return _decode(buf, src)


