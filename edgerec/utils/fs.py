"""Atomic file and folder writes (a reader sees the old content or the new one, never half) and process locks."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import functools
import glob
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from edgerec.errors import OutputError, OutputExistsError

STALE_TMP_S = 3600  # a temp folder this old belongs to a writer that died


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``os.umask`` sets it for a moment, and
    a file another thread makes in that moment gets mode 0666)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _umask()


def sha256_file(path: str | Path, chunk: int = 1 << 20, *, fresh: bool = False) -> str:
    """A file's SHA-256, hashed once per version of the file in this process (a model load asks for its weights'
    digest several times: the IR key, the staleness check, the export record). A version is the file's inode,
    size, mtime and ctime (ctime cannot be set back by cp -p, tar or utime). ``fresh``: read the bytes again (an
    integrity check against disk errors, which change no timestamp)."""
    if fresh:
        return _sha256_of.__wrapped__(os.fspath(path), 0, 0, 0, 0, 0, chunk)
    st = os.stat(path)
    return _sha256_of(os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, chunk)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int, chunk: int) -> str:
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
    """Write ``data`` to ``path`` through a temporary file beside it and a rename: never half a file. An error
    names ``path`` (not the temporary file)."""
    path = Path(path)
    try:
        tmp = stage_bytes(path, data)
    except OSError as exc:  # the folder: read-only, full, missing; named by the target, not the temporary file
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def utf8(text: str) -> bytes:
    """``text`` as UTF-8; a file name that is not UTF-8 (surrogate escapes) is written as ``\\udcXX``, which in
    JSON is the escape that reads back as the same string."""
    return text.encode("utf-8", "backslashreplace")


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, utf8(text))


def _ours(entry: os.DirEntry, owned: Collection[str]) -> bool:
    """Whether ``entry`` is what a writer that writes ``owned`` puts there.

    ``owned`` holds file names or patterns (``model.xml``, ``*.json``: a file, never a folder, of that name) and
    folder patterns (``images/*.png``: a folder holding only such files), plus the half-written files a kill
    leaves beside an owned file (``.NAME.*.tmp``, from ``stage_bytes``). A folder in a file's place, a folder
    holding anything else, and a user's dot-files are not ours."""
    name = entry.name
    is_dir = entry.is_dir(follow_symlinks=False)
    for pattern in owned:
        folder, _, inner = pattern.partition("/")
        if inner:
            if name == folder and is_dir:
                return all(child.is_file(follow_symlinks=False) and fnmatch.fnmatch(child.name, inner)
                           for child in os.scandir(entry.path))
        elif not is_dir and ((fnmatch.fnmatch(name, pattern) and not (name.startswith(".") and "*" in pattern))
                             or (name.startswith(f".{pattern}.") and name.endswith(".tmp"))):
            return True
    return False


def foreign_entries(folder: str | Path, owned: Collection[str]) -> list[str]:
    """Names in ``folder`` that are not what a writer of ``owned`` puts there (``_ours``), sorted."""
    with os.scandir(folder) as entries:
        return sorted(e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries
                      if not _ours(e, owned))


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


def output_problem(folder: Path, names: Collection[str]) -> tuple[Path, str] | None:
    """Why the files ``names`` could not be written into ``folder`` (made if missing), as (the path, the reason),
    or None: checked before long work (evaluate, report), each caller raising its own error type."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return folder, f"cannot make the output folder ({exc.strerror or exc})"
    if not folder.is_dir():
        return folder, "the output is not a folder"
    for name in names:
        if (folder / name).exists() and not (folder / name).is_file():
            return folder / name, "is in the way of a file written there (not a regular file)"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=folder))
    except OSError as exc:
        return folder, f"the output folder is not writable ({exc.strerror or exc})"
    return None


def probe_writable(final: str | Path, what: str) -> None:
    """Fail now, with an OutputError naming ``final``, where ``atomic_dir(final)`` could not write (a read-only or
    missing parent): before minutes of work, not after them."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{final.name}.probe-", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"{final}: {what} cannot write there ({exc.strerror or exc})") from None


_RENAME_EXCHANGE = 2  # renameat2's flag: swap two paths in one step (Linux 3.15+)
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or the file system cannot, so the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _restore_old(final: Path) -> None:
    """A writer killed between its two renames (no ``renameat2``) left ``final`` missing and the old content in
    ``.NAME.old-PID``: put it back, so the folder holds the old content until a write succeeds."""
    olds = sorted(final.parent.glob(f".{glob.escape(final.name)}.old-*"), key=lambda p: -p.lstat().st_mtime)
    for old in olds:
        if not final.exists() and not final.is_symlink():
            with contextlib.suppress(OSError):
                os.replace(old, final)
                continue
        with contextlib.suppress(OSError):
            if time.time() - old.lstat().st_mtime > STALE_TMP_S:
                _remove(old)


@contextlib.contextmanager
def atomic_dir(final: str | Path, owned: Collection[str] | None = None, what: str = "edgerec") -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it takes ``final``'s place in one step.

    ``owned``: the names the writer puts in ``final``; an existing ``final`` holding anything else is refused
    (``check_replaceable``) before anything is written, and again just before the swap. None: ``final`` is the
    writer's own (the model home), replaced whatever it holds.
    The swap is one ``renameat2(RENAME_EXCHANGE)`` where Linux has it, so a kill at any moment leaves the old
    folder or the new one. Elsewhere it is two renames; Ctrl-C between them puts the old folder back, and a kill
    between them leaves it as ``.NAME.old-PID``, which the next write to ``final`` puts back first.
    An interrupted write leaves only a ``.tmp-*`` folder, which later writes ignore and, once it is an hour
    old (its writer is gone), remove.
    """
    final = Path(final)
    if owned is not None and final.is_symlink():  # a user's link to their output folder: the folder is replaced,
        final = Path(os.path.realpath(final))     # the link keeps pointing at it
    final.parent.mkdir(parents=True, exist_ok=True)
    _restore_old(final)
    if owned is not None:
        check_replaceable(final, owned, what)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.tmp-*"):
        try:
            if time.time() - stale.lstat().st_mtime > STALE_TMP_S:
                _remove(stale)
        except OSError:
            pass
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if owned is not None:
            check_replaceable(final, owned, what)  # the folder may have been filled while we wrote
        if not final.exists():
            os.replace(tmp, final)
        elif _exchange(tmp, final):
            _remove(tmp)  # it holds the old content now (a link, where final was one)
        else:
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            moved = False
            try:
                os.replace(final, old)
                moved = True
                os.replace(tmp, final)
                moved = False
            except BaseException:  # Ctrl-C or a failure between the renames: the old folder goes back
                if moved:
                    os.replace(old, final)
                raise
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    """Remove a folder tree, or a link (rmtree refuses links, and ignore_errors would leave it)."""
    if path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, from its ``st_mode`` (for errors that refuse it)."""
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "a special file")


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
