"""Re-split a MSTextRecDataset: pool the lines of train.txt and val.txt and deal them out again by percentages.

Nothing a user had may disappear: the split is all-or-nothing (both new files are staged beside the old ones,
then both renamed; on a failure the old files are put back), the user's own files are kept once as
``train.txt.bak`` / ``val.txt.bak`` and never overwritten (a later split backs up nothing: the files it finds
are an earlier split's output, and a ``val.txt`` the user never had gets no ``.bak``), and a read-only list file
is refused rather than replaced.

A split killed outright (``kill -9``: no cleanup code runs) is made whole by the next one. Before
it writes a backup or renames a list file, a split writes a journal, ``.edgerec-split/`` in the dataset folder
(one atomic folder write): copies of the old list files and ``state.json`` (each list's old and new SHA-256,
its mode, its staged file, and whether this is the first split, whose backups are due). The order is: stage the
new files, write the journal, write the backups (first split only), rename the staged files, drop the journal
(``state.json`` first). :func:`recover_split`, run at the start of every split, finds a journal left behind,
writes the backups it still owes, and then keeps the new lists when both were renamed, or else puts the old
lists back from the journal; so after a kill at any point the lists are either the user's old ones or a
complete new split, never one of each. A lock on the folder keeps two splits (or a split and a recovery) apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from edgerec.data.dataset import not_regular, raw_lines
from edgerec.errors import InputError
from edgerec.utils.fs import STALE_TMP_S, atomic_dir, atomic_write_bytes, stage_bytes

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
LISTS = tuple(f"{split}.txt" for split in SPLITS)
JOURNAL = ".edgerec-split"
JOURNAL_FILES = ("state.json", *LISTS)
JOURNAL_VERSION = 1
# what stage_bytes (mkstemp) leaves beside a list file or a backup when killed: .train.txt.k3j_x9a2.tmp
_OUR_TMP = re.compile(r"\.(?:train|val)\.txt(?:\.bak)?\.[a-z0-9_]{8}\.tmp")


def _stage(folder: Path, name: str, data: bytes, mode: int) -> Path:
    """Write ``data`` to a temporary file beside ``folder/name`` (flushed to disk, ``mode``); its path."""
    return stage_bytes(folder / name, data, mode)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` at ``mode`` in one rename (a reader sees the old file or the new one)."""
    tmp = stage_bytes(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(folder: Path, wait_s: float = 0.0) -> Iterator[None]:
    """An exclusive advisory lock on the dataset folder itself (no lock file is left behind; POSIX only; local to
    one machine on NFS), waited for up to ``wait_s``."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one split per folder at a time is then the user's to keep
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(folder, f"cannot open the dataset folder ({exc.strerror or exc})") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # EWOULDBLOCK: another process holds it
                if time.monotonic() >= deadline:
                    raise InputError(folder, "another edgerec --split is working on this dataset; wait for it "
                                             "to finish") from None
                time.sleep(0.1)
            except OSError as exc:
                raise InputError(folder, f"cannot lock the dataset folder ({exc.strerror or exc})") from None
        yield
    finally:
        os.close(fd)  # releases the lock; a killed process's lock goes with its descriptors


def _remove_stale_tmp(folder: Path) -> None:
    """Remove the staged files of a split killed over an hour ago (their names are ours: ``.train.txt.*.tmp``)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not _OUR_TMP.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TMP_S:
                os.unlink(entry.path)
        except OSError:
            pass


def _write_journal(folder: Path, state: dict, originals: dict[str, bytes]) -> None:
    """The journal folder, complete or absent (``atomic_dir``): the old lists and ``state.json``, on disk."""
    def write(path: Path, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    with atomic_dir(folder / JOURNAL, owned=JOURNAL_FILES, what="--split") as tmp:
        for split, data in originals.items():
            write(tmp / f"{split}.txt", data)
        write(tmp / "state.json", json.dumps(state, indent=1).encode("utf-8"))


def _drop_journal(journal: Path) -> None:
    """Remove the journal: ``state.json`` first (one unlink: from then on it is void), then the rest."""
    (journal / "state.json").unlink(missing_ok=True)
    shutil.rmtree(journal, ignore_errors=True)


def _write_backups(folder: Path, originals: dict[str, bytes], made: list[str]) -> None:
    """``NAME.bak`` for every original list that has none yet (never overwriting one); appends to ``made``."""
    for split, data in originals.items():
        bak = folder / f"{split}.txt.bak"
        if bak.exists() or bak.is_symlink():
            continue
        try:
            atomic_write_bytes(bak, data)
        except OSError as exc:
            raise InputError(bak, f"cannot write the backup ({exc.strerror or exc}); nothing was "
                                  "changed") from exc
        made.append(bak.name)


def _commit(folder: Path, staged: dict[str, Path]) -> None:
    """Rename every staged file over its list file (the caller puts the old lists back on a failure)."""
    for name, tmp in staged.items():
        try:
            os.replace(tmp, folder / name)
        except OSError as exc:
            raise InputError(folder / name, f"cannot replace it ({exc.strerror or exc}); nothing was "
                                            "changed") from exc


def _current_sha(path: Path) -> str | None:
    """The SHA-256 of list file ``path``; None when it is missing, ``"?"`` when it is not a readable file."""
    why = not_regular(path)
    if why == "missing":
        return None
    if why is not None:
        return "?"
    try:
        return _sha(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError:
        return "?"


def _load_journal(journal: Path) -> tuple[dict, dict[str, bytes | None]]:
    """``state.json`` and the old list bytes (None: the list did not exist) of a journal, checked."""
    def bad(why: str) -> InputError:
        return InputError(journal, f"an interrupted --split left this journal, but {why}; it holds the list "
                                   "files from before that split: compare them with train.txt / val.txt, then "
                                   "remove the folder")

    try:
        state = json.loads((journal / "state.json").read_text("utf-8"))
        lists = state["lists"]
        if state.get("version") != JOURNAL_VERSION or not isinstance(lists, dict) or not set(lists) <= set(LISTS):
            raise ValueError("unknown layout")
        for ent in lists.values():
            mode = ent["mode"]  # a list file's permission bits only: never setuid, setgid or sticky
            if not (isinstance(ent["new"], str) and isinstance(mode, int) and not isinstance(mode, bool)
                    and 0 <= mode <= 0o777 and (ent["old"] is None or isinstance(ent["old"], str))):
                raise ValueError("unknown layout")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise bad(f"its state.json cannot be read ({exc})") from None
    olds: dict[str, bytes | None] = {}
    for name, ent in lists.items():
        if ent["old"] is None:
            olds[name] = None
            continue
        try:
            data = (journal / name).read_bytes()
        except OSError as exc:
            raise bad(f"its copy of {name} cannot be read ({exc.strerror or exc})") from None
        if _sha(data) != ent["old"]:
            raise bad(f"its copy of {name} does not match its SHA-256")
        olds[name] = data
    return state, olds


def _recover(folder: Path, undo: list[str] | None = None) -> list[str]:
    """Finish or undo the split whose journal is in ``folder``; the backups an interrupted first split owns.

    ``undo`` None: a split killed earlier; its missing backups are written first, then the lists are kept when
    every one is already the new split, else all put back from the journal. ``undo`` a list: this process's
    own split failed (Ctrl-C, a full disk); when the lists are put back the backups it made (``undo``) go too.
    """
    journal = folder / JOURNAL
    if not journal.exists() and not journal.is_symlink():
        return []
    if journal.is_symlink() or not journal.is_dir():
        raise InputError(journal, "is not the folder an interrupted --split leaves; move it away")
    if not (journal / "state.json").exists():
        # a journal is complete or absent, so this is one whose removal was cut short: its split was finished
        # or undone
        foreign = sorted(set(os.listdir(journal)) - set(JOURNAL_FILES))
        if foreign:
            raise InputError(journal, f"holds files edgerec did not write ({', '.join(foreign[:5])}); move them "
                                      "away")
        shutil.rmtree(journal)
        return []
    state, olds = _load_journal(journal)
    lists: dict[str, dict] = state["lists"]
    first = bool(state.get("first_split"))
    backups = [f"{name}.bak" for name, data in olds.items() if data is not None] if first else []
    if first and undo is None:  # the user's originals are in their .bak files before anything else happens
        _write_backups(folder, {name[:-4]: data for name, data in olds.items() if data is not None}, [])
    current = {name: _current_sha(folder / name) for name in lists}
    if not all(current[name] == ent["old"] for name, ent in lists.items()) and \
            all(current[name] == ent["new"] for name, ent in lists.items()):
        done = "completed"  # every rename happened (and the backups, written before them, are there)
    else:
        changed = [name for name, ent in lists.items() if current[name] not in (ent["old"], ent["new"])]
        if changed:
            raise InputError(journal, f"an interrupted --split left this journal, but {', '.join(changed)} "
                                      "changed since (neither the list from before that split nor the one it "
                                      "wrote); the journal holds the lists from before it: compare, then remove "
                                      "the folder")
        for name, ent in lists.items():
            if current[name] == ent["old"]:
                continue
            data = olds[name]
            if data is None:  # the user had no such list: the split made it
                (folder / name).unlink(missing_ok=True)
            else:
                _put(folder / name, data, ent["mode"])
        done = "rolled back"
        if undo is not None:  # the list files are the user's again: so is the backups' absence
            for bak in undo:
                (folder / bak).unlink(missing_ok=True)
            backups = []
    for ent in lists.values():
        staged = ent.get("staged")
        if isinstance(staged, str) and _OUR_TMP.fullmatch(staged):
            (folder / staged).unlink(missing_ok=True)
    _drop_journal(journal)
    if undo is None:
        log.warning("%s: found an interrupted --split; %s", folder,
                    "it had renamed both list files, so they are kept" if done == "completed"
                    else "the list files from before it are back")
    return backups


def recover_split(dataset_dir: str | Path) -> list[str]:
    """Make a dataset whole after a split that was killed: keep its new lists if both were renamed, else put
    the old ones back, and write the ``.bak`` files an interrupted first split owed. Cheap when there is nothing
    to do (no journal); readers of ``train.txt`` / ``val.txt`` may call it first. Returns the backup names of
    an interrupted first split (all present now)."""
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir() or not (folder / JOURNAL).exists():  # nothing to do: no lock taken, nobody waits
        return []
    with _locked(folder, wait_s=10.0):
        return _recover(folder)


def split_dataset(dataset_dir: str | Path, train_percent: int, val_percent: int, seed: int = 0) -> dict:
    """Pool the lines of train.txt and val.txt, shuffle them with ``seed`` and deal them out by percentages.

    The result depends only on the set of lines and the seed (the pool is sorted before the shuffle), so the
    same split is made again whatever the current train/val arrangement. Returns
    ``{"train": n, "val": n, "backups": [...]}`` (the ``.bak`` files of the first split: made by this call, or
    by an interrupted first split that this call completed or rolled back first).
    """
    for name, pct in (("train_percent", train_percent), ("val_percent", val_percent)):
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise InputError(f"{name}={pct!r}", "must be an integer from 0 to 100")
    if train_percent + val_percent != 100:
        raise InputError(f"train_percent={train_percent}, val_percent={val_percent}", "must sum to 100")
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir():
        raise InputError(dataset_dir, "not a dataset folder")
    with _locked(folder):
        _remove_stale_tmp(folder)
        recovered = _recover(folder)
        done = _split_locked(folder, train_percent, val_percent, seed)
    done["backups"] = recovered + [b for b in done["backups"] if b not in recovered]
    return done


def _split_locked(folder: Path, train_percent: int, val_percent: int, seed: int) -> dict:
    originals: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        why = not_regular(path)
        if why == "missing":
            continue
        if why is not None:
            raise InputError(path, why)
        st = path.stat()
        if not st.st_mode & 0o222:
            raise InputError(path, f"read-only (mode {stat.S_IMODE(st.st_mode):04o}); --split would replace it: "
                                   "make it writable first")
        try:
            originals[split] = path.read_bytes()
        except OSError as exc:
            raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
        modes[split] = stat.S_IMODE(st.st_mode)
    if not originals:
        raise InputError(folder, "nothing to split: no train.txt or val.txt")
    for split, data in originals.items():  # a line the reader refuses would be shuffled into both new files
        for no, ln in enumerate(raw_lines(data), 1):
            try:
                text = ln.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{folder / split}.txt:{no}", "not UTF-8 (save the list file as UTF-8); --split "
                                                               "changed nothing") from None
            if not text.strip():  # blank (Unicode spaces too): skipped by the reader
                continue
            tabs = text.count("\t")
            if tabs != 1:
                raise InputError(f"{folder / split}.txt:{no}", f"expected 'path<TAB>label', found {tabs} tabs; "
                                                               "--split changed nothing")
    pool = sorted(ln for data in originals.values() for ln in raw_lines(data) if ln.decode("utf-8").strip())
    if not pool:
        raise InputError(folder, "nothing to split: train.txt and val.txt have no lines")
    random.Random(seed).shuffle(pool)
    n = len(pool)
    n_train = int(n * train_percent / 100 + 0.5)
    if val_percent and n_train == n and n >= 2:
        n_train = n - 1  # a non-zero share gets at least one line
    if train_percent and n_train == 0 and n >= 2:
        n_train = 1

    default_mode = 0o666 & ~_umask()
    staged: dict[str, Path] = {}
    new: dict[str, bytes] = {}
    backups: list[str] = []
    try:
        for split, part in (("train", pool[:n_train]), ("val", pool[n_train:])):
            name = f"{split}.txt"
            new[name] = b"".join(ln + b"\n" for ln in part)
            try:
                staged[name] = _stage(folder, name, new[name], modes.get(split, default_mode))
            except OSError as exc:
                raise InputError(folder / name, f"cannot write it ({exc.strerror or exc}); nothing was "
                                                "changed") from exc
        # backups only on the first split: once any .bak exists, the list files are an earlier split's output
        first = not any((folder / f"{split}.txt.bak").exists() for split in SPLITS)
        state = {"version": JOURNAL_VERSION, "first_split": first, "lists": {
            name: {"old": _sha(originals[name[:-4]]) if name[:-4] in originals else None, "new": _sha(new[name]),
                   "mode": modes.get(name[:-4], default_mode), "staged": staged[name].name}
            for name in staged}}
        try:
            _write_journal(folder, state, originals)
        except OSError as exc:
            raise InputError(folder / JOURNAL, f"cannot write the split's journal ({exc.strerror or exc}); "
                                               "nothing was changed") from exc
        if first:
            _write_backups(folder, originals, backups)
        _commit(folder, staged)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        _recover(folder, undo=backups)  # the journal (when written) puts back any list already renamed
        raise
    _drop_journal(folder / JOURNAL)
    log.info("%s: %d lines -> train %d, val %d (seed %d)", folder, n, n_train, n - n_train, seed)
    return {"train": n_train, "val": n - n_train, "backups": backups}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
