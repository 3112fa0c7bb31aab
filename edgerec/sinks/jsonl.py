"""A JSON Lines results file that survives a kill: whole lines only, written in flushed chunks, resumable.

Each result is one line ``{"input_path", "page_index", "rec_text", "rec_score", "error"}``, plus ``"cwd"`` (the
folder a relative ``input_path`` is relative to) when the writer gives one. Lines are buffered and written
``chunk`` at a time with one ``write`` and an ``fsync``, so a kill loses at most the last chunk. A kill inside a
write can leave a torn last line: :class:`JsonlSink` with ``resume=True`` cuts the file back to its last
newline, and the inputs already in the file are skipped (``done``) on the rerun. A file is only ever cut once
every complete line in it has been checked to be an edgerec results line: any other file is refused untouched.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgerec.errors import EdgeRecError
from edgerec.utils.fs import file_kind, open_fd_regular

FIELDS = ("input_path", "page_index", "rec_text", "rec_score", "error")
# written after FIELDS when the record has them: the folder a relative input_path is relative to, and what read
# the line (``model``: name, precision and width options; a --resume with another is refused)
OPTIONAL = ("cwd", "model")
# every line edgerec writes starts with this (json.dumps of FIELDS in order): a torn last line is a prefix of it
# or starts with it; any other tail means the file is not ours
LINE_START = b'{"input_path": '


def result_key(input_path: str | None, page_index: int | None) -> tuple[str | None, int | None]:
    """What identifies one input in the file: its path and, for PDF or TIFF pages, its page."""
    return (input_path, page_index)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_record(rec: object) -> dict[str, Any]:
    """``rec`` if it is a results line edgerec writes (the fields and their types), else ValueError saying why."""
    if not isinstance(rec, dict):
        raise ValueError(f"a JSON {type(rec).__name__}, not an object")
    missing = [k for k in FIELDS if k not in rec]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    checks = (("input_path", lambda v: v is None or isinstance(v, str), "a string or null"),
              ("page_index", lambda v: v is None or (_is_int(v) and v >= 0), "a whole number >= 0 or null"),
              ("rec_text", lambda v: isinstance(v, str), "a string"),
              ("rec_score", lambda v: _is_int(v) or isinstance(v, float), "a number"),
              ("error", lambda v: v is None or isinstance(v, str), "a string or null"),
              ("cwd", lambda v: isinstance(v, str) and os.path.isabs(v), "an absolute path"),
              ("model", lambda v: isinstance(v, str), "a string"))
    for key, ok, want in checks:
        if key in rec and not ok(rec[key]):
            raise ValueError(f"{key} is {json.dumps(rec[key])[:60]}, not {want}")
    return rec


def _torn_tail(tail: bytes, after_lines: bool) -> bool:
    """Whether ``tail`` (what follows the last newline) is what a kill inside a write leaves: the start of a line
    edgerec writes, possibly followed by the zeros a crash can leave in a file's last block (zeros alone only
    after lines of ours: a file of nothing but zeros is not recognisably ours)."""
    head = tail.rstrip(b"\0")
    if not head:
        return after_lines
    return head.startswith(LINE_START) or LINE_START.startswith(head)


def read_results(path: str | os.PathLike, *, repair: bool = True,
                 each: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Check every complete line of the results file ``path`` (``each`` gets each record, in order); then, with
    ``repair``, cut a torn last line (a kill mid-write; its input is redone by the rerun). Returns the line count.

    A file with any complete line that is not an edgerec results line, or with a last line that is not the start
    of one, is refused with ``FILE:LINE`` and left exactly as it was. Records are not kept: a resume over
    millions of lines holds only what ``each`` keeps.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read()
    end = data.rfind(b"\n") + 1
    count = 0
    for k, raw in enumerate(data[:end].splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = _check_record(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            raise EdgeRecError(f"{path}:{k}: not a results line written by edgerec ({_short(exc)}); nothing was "
                               "changed in it; pass another --output file") from None
        count += 1
        if each is not None:
            each(rec)
    tail = data[end:]
    if tail:
        if not _torn_tail(tail, count > 0):
            k = data[:end].count(b"\n") + 1
            raise EdgeRecError(f"{path}:{k}: not a results line written by edgerec (its last line does not start "
                               "like one); nothing was changed in it; pass another --output file")
        if repair:  # a torn last line: dropped here, redone by the rerun
            with open(path, "r+b") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() == len(data):  # unchanged since we read it (the caller holds the lock anyway)
                    fh.truncate(end)
                    fh.flush()
                    os.fsync(fh.fileno())
    return count


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def repair_and_read(path: Path, errors: list | None = None,
                    key: Callable[[dict[str, Any]], Any] = lambda rec: result_key(rec["input_path"],
                                                                                  rec["page_index"]),
                    models: set | None = None) -> set:
    """Check every complete line, cut a torn last line (a kill mid-write) and return the ``key`` of each complete
    line (a key of None: a line with no identity, left out); the keys of lines that record a failed input are
    appended to ``errors`` when given. A file that is not an edgerec results file is refused (EdgeRecError
    naming ``FILE:LINE``) and never modified."""
    done: set = set()

    def each(rec: dict[str, Any]) -> None:
        if models is not None and rec.get("model"):
            models.add(rec["model"])
        k = key(rec)
        if k is None:
            return
        done.add(k)
        if errors is not None and rec.get("error"):
            errors.append(k)

    read_results(path, each=each)
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


def _not_regular(path: Path, mode: int) -> EdgeRecError:
    if stat.S_ISDIR(mode):
        return EdgeRecError(f"--output {path}: is a folder; give a file name such as results.jsonl")
    return EdgeRecError(f"--output {path}: is {file_kind(mode)}, not a regular file; give a file name such as "
                        "results.jsonl")


def _open_append(path: Path):
    """``path`` opened for appending, created if absent; refused (never blocking) unless it is a regular file."""
    try:
        fh, mode = open_fd_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "ab")
    except OSError:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            raise _not_regular(path, mode) from None
        raise
    if fh is None:
        raise _not_regular(path, mode)
    return fh


class JsonlSink:
    """Append results to ``path``; with ``resume``, ``done`` holds the ``key`` of each line already there (default
    ``result_key``; a key function returning None leaves a line out)."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                 chunk: int = 64, max_delay_s: float = 2.0, errors: list | None = None,
                 key: Callable[[dict[str, Any]], Any] | None = None):
        """``errors``: with ``resume``, collects the keys of failed inputs already in the file."""
        self.path = Path(path)
        self.chunk, self.max_delay_s = max(1, chunk), max_delay_s
        self.done: set = set()  # the key (``key``, default result_key) of each line already there
        self.models: set[str] = set()  # with ``resume``: the ``model`` values of the lines already there
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise EdgeRecError(f"--output {self.path}: cannot read it ({exc.strerror or exc})") from None
        if st is not None and not stat.S_ISREG(st.st_mode):  # a FIFO would block the open below for ever
            raise _not_regular(self.path, st.st_mode)
        existed = st is not None
        if existed and not (resume or overwrite):
            raise EdgeRecError(f"--output {self.path}: exists; pass --resume to continue it or --overwrite "
                               "to start it again")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = _open_append(self.path)  # never truncated before we hold the lock
        except OSError as exc:
            raise EdgeRecError(f"--output {self.path}: cannot write ({exc.strerror or exc})") from None
        _lock(self._fh, self.path)  # a second run on the same file would write every remaining input twice
        try:
            if existed and resume:  # checked before anything is cut; refused: untouched
                self.done = repair_and_read(self.path, errors, **({"key": key} if key is not None else {}),
                                            models=self.models)
            elif existed:
                self._fh.truncate(0)  # --overwrite, asked for
            self._fh.seek(0, os.SEEK_END)  # where the file now ends: a failed chunk write is cut back to here
        except BaseException:
            self._fh.close()
            raise
        self._buf: list[bytes] = []
        self._last = time.monotonic()
        self.written = 0

    def add(self, record: dict[str, Any]) -> None:
        rec = {k: record.get(k) for k in FIELDS}
        rec.update({k: record[k] for k in OPTIONAL if record.get(k) is not None})
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
