"""Labelled line sets for the report: the lines, their labels, and whether they are scene text."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerec.data.dataset import find_list_file, read_labelled, resolve_folder
from edgerec.errors import InputError

SCENE_TEXT_RE = re.compile(r"iiit5k|svt|icdar|ic1[35]|cute", re.IGNORECASE)
_CJK_RE = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
MIN_COVERAGE = 0.5  # a model whose charset holds less of a set's label characters is not run on it




def _say(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ data sets

@dataclass
class Dataset:
    """One labelled line set, images decoded once and shared by every configuration."""

    name: str
    path: Path
    list_file: Path
    kind: str                     # "evalset" (label.txt) or "MSTextRecDataset" (val.txt / train.txt)
    paths: list[Path]
    labels: list[str]
    images: list[np.ndarray]
    scene_text: bool
    unreadable: list[str] = field(default_factory=list)
    listed: int = 0               # lines in the list file, before --limit

    @property
    def has_cjk(self) -> bool:
        return any(_CJK_RE.search(t) for t in self.labels)


def load_dataset(folder: str | Path, limit: int | None = None, scene_text: bool | None = None) -> Dataset:
    """Read an evalset (label.txt) or a PaddleX MSTextRecDataset (val.txt first); the first ``limit`` lines.

    Unreadable images are left out and listed (they say nothing about a model); a folder with no readable
    line raises InputError.
    """
    from edgerec.io.inputs import load_image

    folder = resolve_folder(folder)
    list_file = find_list_file(folder, "any")
    kind = "evalset" if list_file.name == "label.txt" else "MSTextRecDataset"
    paths, labels, images, bad = [], [], [], []
    pairs = read_labelled(folder, "any")
    for path, label in pairs[:limit]:
        try:
            images.append(load_image(path))
        except InputError as exc:
            bad.append(str(exc))
            continue
        paths.append(path)
        labels.append(label)
    if not images:
        raise InputError(folder, f"no readable labelled line in {list_file.name}")
    if scene_text is None:
        scene_text = bool(SCENE_TEXT_RE.search(folder.name))
    return Dataset(folder.name, folder, list_file, kind, paths, labels, images, scene_text, bad, len(pairs))
