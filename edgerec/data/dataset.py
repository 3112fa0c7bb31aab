"""Labelled line datasets: PaddleX MSTextRecDataset folders (train.txt / val.txt) and evalset folders (label.txt).

Each list file holds ``relative/image/path<TAB>label`` per line, UTF-8. Paths may not leave the dataset folder.
"""

from __future__ import annotations

from pathlib import Path

from edgerec.errors import InputError

LIST_FILES = {"train": ("train.txt",), "val": ("val.txt", "label.txt"), "any": ("val.txt", "label.txt", "train.txt")}


def find_list_file(folder: str | Path, split: str = "any") -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a dataset folder")
    for name in LIST_FILES[split]:
        if (folder / name).is_file():
            return folder / name
    raise InputError(folder, f"no {' / '.join(LIST_FILES[split])} in this dataset folder")


def read_labelled(folder: str | Path, split: str = "any", limit: int | None = None) -> list[tuple[Path, str]]:
    """(image path, label) pairs of a dataset folder, in file order; bad lines raise with file:line."""
    folder = Path(folder).resolve()
    list_file = find_list_file(folder, split)
    pairs: list[tuple[Path, str]] = []
    for lineno, line in enumerate(list_file.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise InputError(f"{list_file}:{lineno}", "expected 'path<TAB>label'")
        rel, label = line.split("\t", 1)
        path = (folder / rel).resolve()
        if not path.is_relative_to(folder):
            raise InputError(f"{list_file}:{lineno}", f"path {rel!r} leaves the dataset folder")
        pairs.append((path, label))
        if limit is not None and len(pairs) >= limit:
            break
    return pairs
