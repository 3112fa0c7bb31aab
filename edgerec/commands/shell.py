"""How the ``edgerec`` command behaves as a Unix tool: quiet on a closed pipe, 130 on Ctrl-C, one-line fields.

``edgerec predict dir/ | head -1`` closes our stdout early; a Unix tool then ends quietly (SIGPIPE's 141), not
with "Broken pipe" on stderr. Ctrl-C is the user stopping the run, not a bad input: exit 130 with one line, where
click alone would print "Aborted!" and exit 1 like an error.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Callable

import click

EXIT_SIGPIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool the closed pipe stopped
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def quiet_broken_pipe() -> None:
    """Point stdout at /dev/null (so the interpreter's last flush cannot fail again) and exit 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(EXIT_SIGPIPE)


EXIT_TERMINATED = 143  # 128 + SIGTERM


def on_sigterm(exc: type[BaseException] | Callable[[], BaseException]):
    """SIGTERM (a service manager, ``timeout``) raises ``exc()`` in the main thread, so a command ends through its
    cleanup (temporary folders removed, half-written files never renamed into place) instead of vanishing mid-write.
    Returns the handler it replaced (None off the main thread, or where the host owns the signals)."""
    import signal
    import threading

    def stop(*_: object) -> None:
        raise exc()

    if threading.current_thread() is threading.main_thread():
        try:
            return signal.signal(signal.SIGTERM, stop)
        except (ValueError, OSError):  # an embedding host that owns the signals
            pass
    return None


class EdgeRecGroup(click.Group):
    """The top-level click group, with the closed-pipe and Ctrl-C exits above for every command."""

    def invoke(self, ctx: click.Context):
        import signal

        before = on_sigterm(lambda: SystemExit(EXIT_TERMINATED))  # camera and train install their own over it
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            quiet_broken_pipe()
        except KeyboardInterrupt:
            try:
                click.echo("edgerec: interrupted", err=True)
            except OSError:
                pass
            sys.exit(EXIT_INTERRUPTED)
        finally:
            if before is not None:  # a process that goes on (tests, embedding) gets its own handler back
                signal.signal(signal.SIGTERM, before)


def ignore_late_interrupts() -> None:
    """For the console script, once its command has returned or exited: a Ctrl-C while the interpreter shuts down
    (joining threads, closing progress bars) would print a traceback from inside that and still exit 0; the work
    is done, so it ends the process at once, quietly, with 130 (output flushed first). Not for ``main`` called in
    a process that goes on (tests, embedding)."""
    import signal
    import threading

    def leave(signum, frame) -> None:  # no traceback from inside the shutdown; a hung one still stops
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(EXIT_INTERRUPTED)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, leave)


def exit_if_stuck(code: object) -> None:
    """For the console script, once its command exited with ``code``: when a call given up on (an open or a read
    of a stalled pipe or stream, edgerec.utils.deadline) still blocks a thread inside OpenCV after 2 s, end the
    process at once with ``os._exit`` (output flushed first): that thread returning into an interpreter that shuts
    down would abort the process ("terminate called without an active exception"). Not for ``main`` called in a
    process that goes on."""
    from edgerec.utils.deadline import stuck_calls

    if not stuck_calls(2.0):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def plain(text: object) -> str:
    """``text`` with control characters (newline, CR, tab, ESC, ...) written as ``\\n``, ``\\x1b`` as repr does.

    Plain output is one tab-separated line per result: a file name with a newline or a tab would otherwise forge
    lines or fields, and an ESC would drive the terminal. ``--json`` keeps the exact strings.
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(repr(c)[1:-1] if _control(c) else c for c in s)


def _control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Zl", "Zp") or c == "\x7f"
