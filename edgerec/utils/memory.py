"""Hand freed heap memory back to the OS, so a long-running process's RSS tracks what it really holds.

OpenVINO's CPU plugin allocates and frees tens of MB of kernels, scratch buffers and shape-inference state each
time an input shape changes. glibc keeps freed chunks in its arenas (up to 8 per core, shared by threads) rather
than returning them, so a kiosk that sees many crop widths reads as "growing" although it holds no more:
``malloc_trim`` returns the free pages. The call itself takes ~0.1-0.3 ms, but the pages it returns must be
faulted in again by the next allocations (trimming after every shape change measured -6 % to +9 % per call on
ever-changing widths, under load). So it runs where a lot was just freed (after loading a model, after a call
whose input shape changed), and at most once per ``min_interval`` seconds there; a trim skipped for that reason
stays pending (``trim_pending``) so that the next call can do it once the interval has passed.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time

_lock = threading.Lock()
_trim = None
_looked = False
_last = float("-inf")
_pending = False


def _malloc_trim():
    global _trim, _looked
    if _looked:
        return _trim
    with _lock:
        if not _looked:
            _looked = True
            if sys.platform.startswith("linux"):
                try:
                    # the C library this Python runs on, without find_library's ldconfig subprocess
                    fn = ctypes.CDLL(None).malloc_trim  # glibc only: musl has no such symbol
                    fn.argtypes = [ctypes.c_size_t]
                    fn.restype = ctypes.c_int
                    _trim = fn
                except (OSError, AttributeError):
                    _trim = None
        return _trim


def trim_heap(min_interval: float = 0.0) -> bool:
    """Return free heap pages of every malloc arena to the OS; True when glibc's ``malloc_trim`` ran.

    With ``min_interval`` > 0 it does nothing (returns False) when the last trim was less than that many
    seconds ago.
    """
    global _last, _pending
    fn = _malloc_trim()
    if fn is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < min_interval:
            _pending = True
            return False
        _last, _pending = now, False
    fn(0)
    return True


def trim_pending() -> bool:
    """True when a trim was skipped for its interval and has not run since (a cheap flag read)."""
    return _pending


def proc_status_kb(pid: int | str = "self", keys: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[str, int] | None:
    """``keys`` of /proc/PID/status in kB (VmHWM: the kernel's peak RSS of that process); None when there is no
    such file to read (the process has gone, or the system has no /proc: not Linux). One reader for the report's
    own children and the peers it samples."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            return {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in f) if k in keys}
    except (OSError, ValueError, IndexError):
        return None
