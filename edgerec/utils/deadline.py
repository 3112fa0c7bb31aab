"""Run a call that may block in the kernel for ever (opening a named pipe, a stream that never answers) with a
deadline, while the main thread stays able to take Ctrl-C and SIGTERM."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_stuck: set[threading.Thread] = set()  # calls given up on whose thread has not returned yet


def stuck_calls(wait_s: float = 0.0) -> int:
    """How many calls given up on still block their thread, after waiting up to ``wait_s`` for them to return. A
    process should leave with ``os._exit`` while any does (edgerec.cli.run does): such a thread, blocked in C++
    (OpenCV), that returns while the interpreter shuts down aborts the process ("terminate called without an
    active exception")."""
    end = time.monotonic() + wait_s
    for thread in list(_stuck):
        thread.join(max(0.0, end - time.monotonic()))
    return sum(t.is_alive() for t in list(_stuck))


class Cancelled(Exception):
    """``call_within``'s ``cancel`` event was set while it waited (the call is given up, as on a timeout)."""


def call_within(fn: Callable[[], T], timeout_s: float, *, discard: Callable[[Any], None] | None = None,
                name: str = "edgerec-call", cancel: threading.Event | None = None) -> T:
    """``fn()`` in a daemon thread, waited for in short steps; TimeoutError after ``timeout_s``, Cancelled as soon
    as ``cancel`` is set (another thread asking the caller to stop).

    The thread cannot be killed: it is left blocked (a daemon, so it does not hold the process up), and whatever
    it returns once we gave up is passed to ``discard`` (e.g. a capture's release) rather than leaked open.
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()
    abandoned = [False]

    def target() -> None:
        try:
            result, exc = fn(), None
        except BaseException as e:  # handed to the waiting thread
            result, exc = None, e
        with lock:
            box.update(result=result, exc=exc)
            done.set()
            late = abandoned[0]
        if late and discard is not None and result is not None:
            discard(result)
        _stuck.discard(threading.current_thread())

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not done.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer within {timeout_s:g} s")
            if cancel is not None and cancel.is_set():
                raise Cancelled()
    finally:
        with lock:
            abandoned[0] = not done.is_set()
            if abandoned[0]:
                _stuck.add(thread)
    if box["exc"] is not None:
        raise box["exc"]
    return box["result"]
