"""check-dataset --split killed outright (kill -9: no cleanup code runs) at every step: the next split, or a read
through recover_split, finds the user's old lists or a whole new split, and the first split's .bak copies.

Each kill is real: a child process patches the step, calls split_dataset and SIGKILLs itself there; the test
checks it died by SIGKILL, looks at what it left, then runs the split again in this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgerec.data.split as split_mod
from edgerec.data.split import JOURNAL, recover_split, split_dataset
from edgerec.errors import InputError

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL on this platform")

ROOT = Path(__file__).resolve().parents[1]
LISTS = ("train.txt", "val.txt")

# the child: patch one step so that the process SIGKILLs itself there, then split
DRIVER = r"""
import os, signal, sys
from pathlib import Path
import edgerec.data.split as m

step, folder, train_pct, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after(fn, when=lambda *a, **k: True):
    def wrapped(*a, **k):
        out = fn(*a, **k)
        if when(*a, **k):
            die()
        return out
    return wrapped

if step == "before_journal":          # both new files staged, no journal yet
    m._write_journal = lambda *a, **k: die()
elif step == "after_journal":         # journal written, no backup, no rename
    m._write_journal = after(m._write_journal)
elif step == "after_first_backup":    # train.txt.bak written, val.txt.bak not
    m.atomic_write_bytes = after(m.atomic_write_bytes, lambda path, data: Path(path).name == "train.txt.bak")
elif step == "between_renames":       # the first staged file renamed over its list, the second not
    first = {"done": False}
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if Path(src).name.endswith(".tmp") and Path(dst).name in ("train.txt", "val.txt") and not first["done"]:
            first["done"] = True
            die()
    m.os.replace = replace
elif step == "after_commit":          # both renamed, journal still there
    m._commit = after(m._commit)
elif step == "during_journal_drop":   # state.json gone, the journal's copies not yet
    def drop(journal):
        (journal / "state.json").unlink()
        die()
    m._drop_journal = drop
elif step == "during_rollback":       # recovering an earlier kill: the first list put back, then killed
    m._put = after(m._put)
else:
    raise SystemExit("unknown step " + step)
m.split_dataset(folder, train_pct, 100 - train_pct, seed=seed)
raise SystemExit("the split finished: step " + step + " was never reached")
"""


def kill_at(step: str, ds: Path, train_pct: int = 70, seed: int = 0) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, "-c", DRIVER, step, str(ds), str(train_pct), str(seed)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stdout, res.stderr)


def make_ds(root: Path, train: int = 4, val: int = 3, mode: int | None = None) -> Path:
    root.mkdir()
    lines = [f"images/w{i}.png\tword {i}\n" for i in range(train + val)]
    for name, part in (("train.txt", lines[:train]), ("val.txt", lines[train:])):
        if part:
            (root / name).write_text("".join(part), "utf-8")
            if mode is not None:
                (root / name).chmod(mode)
    return root


def lists(ds: Path) -> dict[str, bytes | None]:
    return {n: (ds / n).read_bytes() if (ds / n).exists() else None for n in LISTS}


def pool(files: dict[str, bytes | None]) -> list[str]:
    return sorted(ln for data in files.values() if data for ln in data.decode().splitlines())


def clean_split(ds: Path, tmp_path: Path, train_pct: int = 70, seed: int = 0) -> dict[str, bytes | None]:
    """What an uninterrupted split of the same lists gives."""
    ref = tmp_path / f"ref-{ds.name}-{train_pct}-{seed}"
    ref.mkdir()
    for n, data in lists(ds).items():
        if data is not None:
            (ref / n).write_bytes(data)
    split_dataset(ref, train_pct, 100 - train_pct, seed=seed)
    return lists(ref)


def leftovers(ds: Path) -> list[str]:
    return sorted(p.name for p in ds.iterdir() if p.name.endswith(".tmp") or JOURNAL in p.name)


def assert_whole_new_split(ds: Path, before: dict[str, bytes | None], want: dict[str, bytes | None]) -> None:
    now = lists(ds)
    assert now == want  # the same files an uninterrupted split makes
    assert pool(now) == pool(before) and len(set(pool(now))) == len(pool(now))  # no line lost or doubled
    assert leftovers(ds) == []


@pytest.mark.parametrize("step", ["after_journal", "after_first_backup", "between_renames", "after_commit",
                                  "during_journal_drop", "before_journal"])
def test_first_split_killed_at_any_step_is_made_whole_by_the_next(tmp_path, step):
    ds = make_ds(tmp_path / "d")
    before = lists(ds)
    want = clean_split(ds, tmp_path)
    kill_at(step, ds)

    # what the kill left: never one list old and the other new unless a journal says how to undo it
    now = lists(ds)
    if step == "between_renames":
        assert now["train.txt"] == want["train.txt"] and now["val.txt"] == before["val.txt"]
    if step == "after_first_backup":
        assert (ds / "train.txt.bak").read_bytes() == before["train.txt"] and not (ds / "val.txt.bak").exists()
    if step in ("after_journal", "after_first_backup", "between_renames", "after_commit"):
        assert (ds / JOURNAL / "state.json").is_file()
    if step == "before_journal":
        assert now == before and not (ds / JOURNAL).exists() and leftovers(ds)  # only staged temp files

    res = split_dataset(ds, 70, 30, seed=0)
    # a journal whose state.json is gone is void: that split had finished, backups and all, so none are new
    assert res["backups"] == ([] if step == "during_journal_drop" else ["train.txt.bak", "val.txt.bak"])
    for n, data in before.items():  # the user's originals, both of them, in their .bak
        assert (ds / f"{n}.bak").read_bytes() == data
    if step == "before_journal":  # staged files of a live-looking run are not touched; an hour-old one is
        stale = [p for p in ds.iterdir() if p.name.endswith(".tmp")]
        assert len(stale) == 2
        for p in stale:
            os.utime(p, (time.time() - 7200, time.time() - 7200))
        split_dataset(ds, 70, 30, seed=0)
    assert_whole_new_split(ds, before, want)


@pytest.mark.parametrize("step", ["after_journal", "between_renames", "after_commit"])
def test_read_after_a_kill_sees_old_lists_or_the_whole_new_split(tmp_path, step):
    ds = make_ds(tmp_path / "d")
    before = lists(ds)
    want = clean_split(ds, tmp_path)
    kill_at(step, ds)
    assert recover_split(ds) == ["train.txt.bak", "val.txt.bak"]
    assert lists(ds) == (want if step == "after_commit" else before)
    assert all((ds / f"{n}.bak").read_bytes() == data for n, data in before.items())
    assert leftovers(ds) == []
    assert recover_split(ds) == []  # nothing left to do
    assert recover_split(tmp_path / "missing") == []


@pytest.mark.parametrize("step", ["between_renames", "after_commit"])
def test_every_reader_of_the_lists_repairs_a_killed_split_first(tmp_path, step):
    """train, evaluate and quantize --calibration find their lists through find_list_file: never a mix."""
    from edgerec.data.dataset import find_list_file

    ds = make_ds(tmp_path / "d")
    before = lists(ds)
    want = clean_split(ds, tmp_path)
    kill_at(step, ds)
    find_list_file(ds, "val")
    assert lists(ds) == (want if step == "after_commit" else before)
    assert leftovers(ds) == []


def test_kill_during_the_rollback_of_a_kill(tmp_path):
    ds = make_ds(tmp_path / "d")
    before = lists(ds)
    want = clean_split(ds, tmp_path)
    kill_at("between_renames", ds)
    kill_at("during_rollback", ds)  # the next split dies while putting train.txt back
    assert lists(ds) == before and (ds / JOURNAL / "state.json").is_file()
    assert split_dataset(ds, 70, 30, seed=0)["backups"] == ["train.txt.bak", "val.txt.bak"]
    assert all((ds / f"{n}.bak").read_bytes() == data for n, data in before.items())
    assert_whole_new_split(ds, before, want)


@pytest.mark.parametrize("step", ["after_journal", "between_renames", "after_commit"])
def test_later_split_killed_keeps_the_first_backups_and_makes_none(tmp_path, step):
    ds = make_ds(tmp_path / "d")
    originals = lists(ds)
    split_dataset(ds, 70, 30, seed=0)
    before = lists(ds)  # the first split's output
    want = clean_split(ds, tmp_path, 50, seed=3)
    kill_at(step, ds, 50, seed=3)
    assert split_dataset(ds, 50, 50, seed=3)["backups"] == []
    assert all((ds / f"{n}.bak").read_bytes() == data for n, data in originals.items())
    assert_whole_new_split(ds, before, want)


def test_a_list_the_user_never_had_is_removed_on_rollback(tmp_path):
    ds = make_ds(tmp_path / "d", train=0, val=5)  # only val.txt: the split creates train.txt, renamed first
    before = lists(ds)
    want = clean_split(ds, tmp_path)
    kill_at("between_renames", ds)
    assert (ds / "train.txt").read_bytes() == want["train.txt"]
    assert recover_split(ds) == ["val.txt.bak"]
    assert lists(ds) == before and not (ds / "train.txt.bak").exists()
    assert split_dataset(ds, 70, 30)["backups"] == []  # made, and reported, by the recovery
    assert_whole_new_split(ds, before, want)


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_rollback_keeps_the_file_modes(tmp_path):
    ds = make_ds(tmp_path / "d", mode=0o640)
    before = lists(ds)
    kill_at("between_renames", ds)
    recover_split(ds)
    assert lists(ds) == before
    assert all(stat.S_IMODE((ds / n).stat().st_mode) == 0o640 for n in LISTS)


def test_a_list_changed_after_the_kill_is_not_overwritten(tmp_path):
    ds = make_ds(tmp_path / "d")
    kill_at("between_renames", ds)
    (ds / "train.txt").write_text("images/mine.png\tthe user's edit\n", "utf-8")
    edited = lists(ds)
    with pytest.raises(InputError, match=r"\.edgerec-split: an interrupted --split left this journal, but "
                                         r"train\.txt changed since"):
        split_dataset(ds, 70, 30)
    assert lists(ds) == edited and (ds / JOURNAL / "state.json").is_file()
    shutil.rmtree(ds / JOURNAL)  # what the message asks the user to do once they have compared
    split_dataset(ds, 70, 30)
    assert pool(lists(ds)) == pool(edited)


def test_a_journal_folder_with_foreign_files_is_left_alone(tmp_path):
    ds = make_ds(tmp_path / "d")
    (ds / JOURNAL).mkdir()
    (ds / JOURNAL / "notes.md").write_text("mine", "utf-8")
    before = lists(ds)
    with pytest.raises(InputError, match="holds files edgerec did not write"):
        split_dataset(ds, 70, 30)
    assert (ds / JOURNAL / "notes.md").read_text("utf-8") == "mine" and lists(ds) == before


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_second_split_of_the_same_folder_waits_its_turn(tmp_path):
    ds = make_ds(tmp_path / "d")
    before = lists(ds)
    with split_mod._locked(ds):
        with pytest.raises(InputError, match="another edgerec --split is working on this dataset"):
            split_dataset(ds, 70, 30)
        assert recover_split(ds) == []  # no journal: nothing to repair, no lock taken, no wait
    assert lists(ds) == before
    split_dataset(ds, 70, 30)


def test_ctrl_c_still_rolls_back_without_leaving_a_journal(tmp_path, monkeypatch):
    ds = make_ds(tmp_path / "d")
    before = lists(ds)
    real = os.replace

    def interrupt_on_val(src, dst):
        if Path(dst).name == "val.txt":
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(split_mod.os, "replace", interrupt_on_val)
    with pytest.raises(KeyboardInterrupt):
        split_dataset(ds, 70, 30)
    monkeypatch.undo()
    assert lists(ds) == before
    assert not [p for p in ds.iterdir() if p.name not in LISTS]  # no .bak, no temp file, no journal
