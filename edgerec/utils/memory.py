"""Hand freed heap memory back to the OS, so a long-running process's RSS tracks what it really holds.

OpenVINO's CPU plugin allocates and frees tens of MB of kernels, scratch buffers and shape-inference state each
time an input shape changes. glibc keeps freed chunks in its arenas (one per thread that called malloc) rather
than returning them, so a kiosk that sees many crop widths reads as "growing" although it holds no more:
``malloc_trim`` returns the free pages. It costs ~0.1-0.3 ms, so it is called only where a lot was just freed
(after loading a model, after a call whose input shape changed), not on every call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

_lock = threading.Lock()
_trim = None
_looked = False


def _malloc_trim():
    global _trim, _looked
    with _lock:
        if not _looked:
            _looked = True
            if sys.platform.startswith("linux"):
                try:
                    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                    fn = libc.malloc_trim  # glibc only: musl has no such symbol
                    fn.argtypes = [ctypes.c_size_t]
                    fn.restype = ctypes.c_int
                    _trim = fn
                except (OSError, AttributeError):
                    _trim = None
        return _trim


def trim_heap() -> bool:
    """Return free heap pages of every malloc arena to the OS; True when glibc's ``malloc_trim`` ran."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
