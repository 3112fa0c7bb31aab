"""The one reader of labelled list files: PaddleX MSTextRecDataset folders (train.txt / val.txt), evalsets (label.txt).

Each list file holds ``relative/image/path<TAB>label`` per line, UTF-8. Lines end at ``\\n`` only (as PaddleX's
``readlines()`` and an editor count them), so a label may hold U+2028 or U+0085 and line numbers stay the editor's;
a trailing ``\\r`` and a leading BOM are removed; blank lines are skipped (PaddleX does the same). A line is
well formed when it has exactly one tab (PaddleX's ``len(line.split("\\t")) != 2`` rule), a path before it that
stays inside the dataset folder, and decodes as UTF-8. check-dataset, training, evaluation, calibration and the
report all read through :func:`read_lines`, so they agree on every line.
"""

from __future__ import annotations

import codecs
import errno
import stat
from dataclasses import dataclass
from pathlib import Path

from edgerec.errors import InputError
from edgerec.utils.fs import file_kind

LIST_FILES = {"train": ("train.txt",), "val": ("val.txt", "label.txt"), "any": ("val.txt", "label.txt", "train.txt")}
# problem kinds of a line that is not well formed: strict reading raises on them, check-dataset fails on them
MALFORMED = ("list_file", "not_utf8", "format", "bad_path", "outside")


@dataclass(frozen=True)
class LabelledLine:
    """One well-formed line of a list file: ``path`` resolved inside the dataset, ``rel`` as written."""

    path: Path
    rel: str
    label: str
    file: str  # the list file's name, relative to the dataset folder
    line: int  # 1-based, as an editor counts

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, at ``file`` (relative to the dataset folder) line ``line``."""

    kind: str
    file: str
    line: int | None
    message: str

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "file": self.file, "line": self.line, "message": self.message}


def not_regular(path: Path) -> str | None:
    """Why ``path`` cannot be read as a list file without blocking (a FIFO, a device, a folder), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({file_kind(mode)})"


def unresolvable(exc: BaseException) -> str:
    """Why ``Path.resolve()`` failed, in words: Python 3.11 raises RuntimeError on a symlink loop, 3.13 OSError."""
    if isinstance(exc, RuntimeError) or (isinstance(exc, OSError) and exc.errno == errno.ELOOP):
        return "a symlink loop"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def resolve_folder(folder: str | Path) -> Path:
    """``folder`` with ``~`` expanded and symlinks resolved; a symlink loop (or a NUL byte) is an InputError
    naming the folder, not a RuntimeError traceback."""
    try:
        return Path(folder).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(folder, f"not a dataset folder ({unresolvable(exc)})") from None


def find_list_file(folder: str | Path, split: str = "any") -> Path:
    """The list file of ``split`` in a dataset folder; one that exists but is not a regular file is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a dataset folder")
    if (folder / ".edgerec-split").exists():  # a --split was killed here: its old lists or its new ones, not a mix
        from edgerec.data.split import recover_split

        recover_split(folder)
    for name in LIST_FILES[split]:
        why = not_regular(folder / name)
        if why is None:
            return folder / name
        if why != "missing":
            raise InputError(folder / name, why)
    raise InputError(folder, f"no {' / '.join(LIST_FILES[split])} in this dataset folder")


def raw_lines(data: bytes) -> list[bytes]:
    """The lines of a list file: split on '\\n' only (line numbers match an editor's), CR and BOM removed."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def parse_list_file(folder: Path, name: str) -> tuple[list[LabelledLine], list[Problem]]:
    """Problem-collecting mode: the well-formed lines of ``folder/name`` and a Problem for every other line.

    An empty label is a well-formed line (PaddleX accepts it) and also a Problem of kind ``empty_label``.
    """
    lines: list[LabelledLine] = []
    problems: list[Problem] = []
    why = not_regular(folder / name)
    if why is not None:
        return [], [Problem("list_file", name, None, why)]
    try:
        data = (folder / name).read_bytes()
    except OSError as exc:
        return [], [Problem("list_file", name, None, f"cannot read ({exc.strerror or exc})")]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # one problem, not one per line
        return [], [Problem("not_utf8", name, None, "the file is UTF-16: save it as UTF-8")]
    for no, raw in enumerate(raw_lines(data), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem("not_utf8", name, no, f"not UTF-8 (bad byte at column {exc.start + 1})"))
            continue
        if not line.strip():
            continue
        tabs = line.count("\t")
        if tabs != 1:
            problems.append(Problem("format", name, no, f"expected 'path<TAB>label', found {tabs} tabs: "
                                                        f"{short(line)!r}"))
            continue
        rel, label = line.split("\t")
        if not rel.strip():
            problems.append(Problem("format", name, no, "no image path before the tab"))
            continue
        if not label.strip():
            problems.append(Problem("empty_label", name, no, f"empty label for {short(rel)!r}"))
        try:
            path = (folder / rel).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte; a symlink loop (RuntimeError on 3.11)
            problems.append(Problem("bad_path", name, no, f"invalid image path {short(rel)!r} "
                                                          f"({unresolvable(exc)})"))
            continue
        if not path.is_relative_to(folder):
            problems.append(Problem("outside", name, no, f"path {short(rel)!r} leaves the dataset folder"))
            continue
        lines.append(LabelledLine(path, rel, label, name, no))
    return lines, problems


def read_lines(folder: str | Path, split: str = "any", *, strict: bool = True,
               limit: int | None = None) -> tuple[list[LabelledLine], list[Problem]]:
    """The labelled lines of a dataset split, in file order, and the problems found.

    ``strict``: the first line that is not well formed raises InputError naming ``file:line`` (training,
    evaluation, calibration); otherwise every problem is returned (check-dataset).
    """
    folder = resolve_folder(folder)
    list_file = find_list_file(folder, split)
    lines, problems = parse_list_file(folder, list_file.name)
    if strict:
        bad = [p for p in problems if p.kind in MALFORMED]
        if bad:
            raise InputError(list_file if bad[0].line is None else f"{list_file}:{bad[0].line}", bad[0].message)
    if limit is not None:
        lines = lines[:limit]
    return lines, problems


def read_labelled(folder: str | Path, split: str = "any", limit: int | None = None) -> list[tuple[Path, str]]:
    """(image path, label) pairs of a dataset folder, in file order; a line not well formed raises with file:line."""
    return [(ln.path, ln.label) for ln in read_lines(folder, split, limit=limit)[0]]
