"""Messages that C image libraries print to fd 2 (libpng, libjpeg, libtiff), captured and logged per input.

libpng and libjpeg write warnings ("libpng warning: iCCP: known incorrect sRGB profile", "Corrupt JPEG data: 3
extraneous bytes") with their default handlers straight to file descriptor 2; OpenCV exposes no hook for them and
its own log level does not reach them. For an image that decodes they are noise with no input name on it, so a decode
runs with fd 2 pointed at an in-memory file, and what the libraries wrote is logged (DEBUG, ``-v``) under the input's
name. Anything else written to fd 2 in that window (another thread's output) is passed on to the real stderr.
Decodes are serialised by one lock: a line crop decodes in well under a millisecond, inference is what takes time.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("edgerec.io")
_LOCK = threading.Lock()
_capture_fd: int | None = None
# lines the image libraries print; everything else captured in the window goes back to stderr as it was
_DECODER_PREFIXES = (
    rb"libpng (warning|error)",  # libpng's default handlers
    rb"Corrupt JPEG data|Premature end of JPEG|Warning: unknown JFIF|Invalid SOS|Unsupported marker|"
    rb"JPEG datastream|Bogus|Quantization table|Huffman table",  # libjpeg(-turbo)'s output_message
    # libtiff: "<module>: <text>", the module a libtiff function or codec name (or the file name OpenCV gives it)
    rb"_?TIFF\w*: |[^:\n]*\.tiff?: |\w*(Decode|Required|Strip|Tag|Directory)\w*: |"
    rb"(Predictor|Fax3|Fax4|OJPEG|JPEG|ZIP|LZW|PixarLog|LogLuv|NeXT|Thunder|DumpMode|PackBits|ChopUp|Estimate|"
    rb"Missing|LERC|WebP|ZSTD|LZMA)\w*: ",
)
_DECODER_LINE = re.compile(rb"^(" + rb"|".join(_DECODER_PREFIXES) + rb")")


def _capture_file() -> int | None:
    global _capture_fd
    if _capture_fd is None:
        try:
            _capture_fd = os.memfd_create("edgerec-decoder-log") if hasattr(os, "memfd_create") else None
        except OSError:
            _capture_fd = None
        if _capture_fd is None:
            try:
                handle = tempfile.TemporaryFile()
                _capture_fd = os.dup(handle.fileno())
                handle.close()
            except OSError:
                return None
    return _capture_fd


def quiet_decode(fn: Callable[[], T], source: str) -> T:
    """Run ``fn`` (a cv2 decode) with fd 2 captured; log what the image libraries printed under ``source``."""
    with _LOCK:
        capture = _capture_file()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing can reach it either
            return fn()
        if capture is None:
            os.close(saved)
            return fn()
        os.ftruncate(capture, 0)
        os.lseek(capture, 0, os.SEEK_SET)
        os.dup2(capture, 2)
        try:
            return fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            _forward(capture, source)


def _forward(capture: int, source: str) -> None:
    size = os.lseek(capture, 0, os.SEEK_CUR)
    if not size:
        return
    os.lseek(capture, 0, os.SEEK_SET)
    data = os.read(capture, min(size, 1 << 20))
    other = []
    for line in data.splitlines(keepends=True):
        if _DECODER_LINE.match(line):
            log.info("%s: %s", source, line.decode("utf-8", "replace").rstrip())
        else:
            other.append(line)
    if other:
        try:
            os.write(2, b"".join(other))
        except OSError:
            pass
