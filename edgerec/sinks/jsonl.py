"""A JSON Lines results file that survives a kill: whole lines only, written in flushed chunks, resumable.

Each result is one line ``{"input_path", "page_index", "rec_text", "rec_score", "error"}``. Lines are buffered
and written ``chunk`` at a time with one ``write`` and an ``fsync``, so a kill loses at most the last chunk. A
kill inside a write can leave a torn last line: :func:`open_results` with ``resume=True`` cuts the file back to
its last newline, and the inputs already in the file are skipped (``done``) on the rerun.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from edgerec.errors import EdgeRecError

FIELDS = ("input_path", "page_index", "rec_text", "rec_score", "error")


def result_key(input_path: str | None, page_index: int | None) -> tuple[str | None, int | None]:
    """What identifies one input in the file: its path and, for PDF or TIFF pages, its page."""
    return (input_path, page_index)


def repair_and_read(path: Path, errors: list | None = None) -> set[tuple[str | None, int | None]]:
    """Cut a torn last line (a kill mid-write) and return the keys of the complete lines; the keys of lines that
    record a failed input are appended to ``errors`` when given."""
    done: set[tuple[str | None, int | None]] = set()
    with open(path, "r+b") as fh:
        data = fh.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: dropped here, redone by the rerun
            fh.truncate(end)
    for k, raw in enumerate(data[:end].splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            key = result_key(rec["input_path"], rec["page_index"])
            done.add(key)
            if errors is not None and rec.get("error"):
                errors.append(key)
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgeRecError(f"{path}:{k}: not a results line written by edgerec ({exc}); "
                               "pass another --output file") from None
    return done


def _lock(fh, path: Path) -> None:
    """An exclusive advisory lock on the open results file, held until it is closed (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one run per file is then the user's to keep
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise EdgeRecError(f"--output {path}: another edgerec run is writing this file; wait for it or pick "
                           "another file") from None


class JsonlSink:
    """Append results to ``path``; ``done`` holds the keys already there (with ``resume``)."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                 chunk: int = 64, max_delay_s: float = 2.0, errors: list | None = None):
        """``errors``: with ``resume``, collects the keys of failed inputs already in the file."""
        self.path = Path(path)
        self.chunk, self.max_delay_s = max(1, chunk), max_delay_s
        self.done: set[tuple[str | None, int | None]] = set()
        if self.path.is_dir():
            raise EdgeRecError(f"--output {self.path}: is a folder; give a file name such as results.jsonl")
        existed = self.path.exists()
        if existed and not (resume or overwrite):
            raise EdgeRecError(f"--output {self.path}: exists; pass --resume to continue it or --overwrite "
                               "to start it again")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # never truncated before we hold the lock
        except OSError as exc:
            raise EdgeRecError(f"--output {self.path}: cannot write ({exc.strerror or exc})") from None
        _lock(self._fh, self.path)  # a second run on the same file would write every remaining input twice
        if existed and resume:
            self.done = repair_and_read(self.path, errors)
        elif existed:
            self._fh.truncate(0)  # --overwrite, asked for
        self._buf: list[bytes] = []
        self._last = time.monotonic()
        self.written = 0

    def add(self, record: dict[str, Any]) -> None:
        rec = {k: record.get(k) for k in FIELDS}
        try:
            data = json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes): \udcXX, read back alike
            data = json.dumps(rec, ensure_ascii=True).encode("ascii")
        self._buf.append(data + b"\n")
        if len(self._buf) >= self.chunk or time.monotonic() - self._last >= self.max_delay_s:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            pos = self._fh.tell()
            try:
                self._fh.write(b"".join(self._buf))  # one write per chunk: lines of a chunk land together
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError:  # e.g. a full disk: cut what landed, so a retry never leaves a torn line mid-file
                try:
                    self._fh.seek(pos)
                    self._fh.truncate(pos)
                except (OSError, ValueError):
                    pass
                raise
            self.written += len(self._buf)
            self._buf = []
        self._last = time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._fh.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
