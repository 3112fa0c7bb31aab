"""Atomic file and folder writes (a reader sees the old content or the new one, never half) and process locks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from edgerec.errors import OutputExistsError

STALE_TMP_S = 3600  # a temp folder this old belongs to a writer that died


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stage_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """``data`` in a temporary file beside ``path``, flushed to disk, with ``mode`` (default: what open() would
    give); the caller renames it into place (or several at once, all or nothing) or removes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    tmp = stage_bytes(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def foreign_entries(folder: str | Path, owned: Collection[str]) -> list[str]:
    """Names in ``folder`` other than ``owned`` and our own leftovers (``.NAME.tmp-*``, ``.NAME.old-*``), sorted."""
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.name not in owned and not (p.name.startswith(".") and (".tmp" in p.name or ".old-" in p.name)))


def check_replaceable(folder: str | Path, owned: Collection[str], what: str) -> None:
    """Refuse to replace ``folder`` when it holds anything but ``owned`` (what ``what`` writes there).

    A folder write replaces the whole folder (``atomic_dir``), so a user's other files in it would be deleted: a
    new, empty or earlier output folder is fine, anything else is an ``OutputExistsError`` naming what is in it.
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise OutputExistsError(f"{folder}: exists and is not a folder; {what} writes a whole folder there, so give "
                                "a new or empty folder")
    try:
        foreign = foreign_entries(folder, owned)
    except OSError as exc:
        raise OutputExistsError(f"{folder}: cannot list it ({exc.strerror or exc})") from None
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputExistsError(f"{folder}: holds files {what} did not write ({shown}); {what} replaces the whole "
                                "folder, so give a new or empty folder (or move those files)")


@contextlib.contextmanager
def atomic_dir(final: str | Path, owned: Collection[str] | None = None, what: str = "edgerec") -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename.

    ``owned``: the names the writer puts in ``final``; an existing ``final`` holding anything else is refused
    (``check_replaceable``) before anything is written, and again just before the swap. None: ``final`` is the
    writer's own (the model home), replaced whatever it holds.
    An interrupted write leaves only a ``.tmp-*`` folder, which later writes ignore and, once it is an hour
    old (its writer is gone), remove.
    """
    final = Path(final)
    if owned is not None:
        check_replaceable(final, owned, what)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if owned is not None:
            check_replaceable(final, owned, what)  # the folder may have been filled while we wrote
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def open_fd_regular(path: str | Path, flags: int, fdmode: str, perm: int = 0o666):
    """(file object, None) for ``path`` opened with ``flags`` | O_NONBLOCK if it is a regular file, else (None, its
    st_mode): checked on the open descriptor, so a FIFO (or one swapped in after a stat) never blocks the caller."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0), perm)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            return None, mode
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, fdmode), None
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def file_lock(path: str | Path, timeout: float = -1):
    """An inter-process lock on ``path`` (a ``filelock.FileLock``), its folder created first; ``timeout`` in
    seconds, -1 waits for ever."""
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=timeout)
