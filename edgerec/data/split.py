"""Re-split a MSTextRecDataset: pool the lines of train.txt and val.txt and deal them out again by percentages.

Nothing a user had may disappear: the split is all-or-nothing (both new files are staged beside the old ones,
then both renamed; on a failure the old files are put back), the user's own files are kept once as
``train.txt.bak`` / ``val.txt.bak`` and never overwritten (a later split backs up nothing: the files it finds
are an earlier split's output, and a ``val.txt`` the user never had gets no ``.bak``), and a read-only list file
is refused rather than replaced.
"""

from __future__ import annotations

import logging
import os
import random
import stat
from pathlib import Path

from edgerec.data.dataset import not_regular, raw_lines
from edgerec.errors import InputError
from edgerec.utils.fs import atomic_write_bytes, stage_bytes

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


def _stage(folder: Path, name: str, data: bytes, mode: int) -> Path:
    """Write ``data`` to a temporary file beside ``folder/name`` (flushed to disk, ``mode``); its path."""
    return stage_bytes(folder / name, data, mode)


def _commit(folder: Path, staged: dict[str, Path], originals: dict[str, bytes], modes: dict[str, int]) -> None:
    """Rename every staged file over its list file; when one rename fails, put back those already renamed."""
    done: list[str] = []
    try:
        for name, tmp in staged.items():
            try:
                os.replace(tmp, folder / name)
            except OSError as exc:
                raise InputError(folder / name, f"cannot replace it ({exc.strerror or exc}); nothing was "
                                                "changed") from exc
            done.append(name)
    except BaseException:
        for name in done:  # roll back: the user's bytes are still in memory
            split = name[:-4]
            if split in originals:
                atomic_write_bytes(folder / name, originals[split])
                os.chmod(folder / name, modes[split])
            else:
                (folder / name).unlink(missing_ok=True)
        raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def split_dataset(dataset_dir: str | Path, train_percent: int, val_percent: int, seed: int = 0) -> dict:
    """Pool the lines of train.txt and val.txt, shuffle them with ``seed`` and deal them out by percentages.

    The result depends only on the set of lines and the seed (the pool is sorted before the shuffle), so the
    same split is made again whatever the current train/val arrangement. Returns
    ``{"train": n, "val": n, "backups": [...]}`` (the ``.bak`` files made by this call).
    """
    for name, pct in (("train_percent", train_percent), ("val_percent", val_percent)):
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise InputError(f"{name}={pct!r}", "must be an integer from 0 to 100")
    if train_percent + val_percent != 100:
        raise InputError(f"train_percent={train_percent}, val_percent={val_percent}", "must sum to 100")
    folder = Path(dataset_dir).expanduser()
    if not folder.is_dir():
        raise InputError(dataset_dir, "not a dataset folder")
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
    pool = sorted(ln for data in originals.values() for ln in raw_lines(data) if ln.strip())
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
    backups: list[str] = []
    try:
        for split, part in (("train", pool[:n_train]), ("val", pool[n_train:])):
            name = f"{split}.txt"
            try:
                staged[name] = _stage(folder, name, b"".join(ln + b"\n" for ln in part),
                                      modes.get(split, default_mode))
            except OSError as exc:
                raise InputError(folder / name, f"cannot write it ({exc.strerror or exc}); nothing was "
                                                "changed") from exc
        # backups only on the first split: once any .bak exists, the list files are an earlier split's output
        if not any((folder / f"{split}.txt.bak").exists() for split in SPLITS):
            for split, data in originals.items():
                bak = folder / f"{split}.txt.bak"
                try:
                    atomic_write_bytes(bak, data)
                except OSError as exc:
                    raise InputError(bak, f"cannot write the backup ({exc.strerror or exc}); nothing was "
                                          "changed") from exc
                backups.append(bak.name)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        for name in backups:
            (folder / name).unlink(missing_ok=True)
        raise
    try:
        _commit(folder, staged, originals, modes)
    except BaseException:
        for name in backups:  # the list files are the user's again: so are the backups' absence
            (folder / name).unlink(missing_ok=True)
        raise
    log.info("%s: %d lines -> train %d, val %d (seed %d)", folder, n, n_train, n - n_train, seed)
    return {"train": n_train, "val": n - n_train, "backups": backups}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
