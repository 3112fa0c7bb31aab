"""Check and re-split a PaddleX MSTextRecDataset folder: ``train.txt``, ``val.txt`` and, optionally, ``dict.txt``.

``check_dataset`` writes what PaddleX's ``check_dataset`` mode writes (``check_dataset_result.json``, sample
images in ``check_dataset/demo_img/``, the label-length ``check_dataset/histogram.png``) and goes further: it
decodes every image with edgerec's loader and lists every problem with file and line number. ``check_pass`` is
false when there is any problem; ``reasons`` says why.

``split_dataset`` pools the lines of ``train.txt`` and ``val.txt`` and deals them out again by percentages with
a seed. The first split keeps the original files as ``train.txt.bak`` / ``val.txt.bak``.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import math
import os
import random
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgerec.errors import InputError
from edgerec.utils.fs import atomic_dir, atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

DATASET_TYPE = "MSTextRecDataset"
DEFAULT_MODEL = "PP-OCRv4_mobile_rec"
SPLITS = ("train", "val")
SAMPLE_NUM = 10  # sample images copied to demo_img/ per split, as PaddleX
BUCKET = 5  # label length bucket width of the histogram, as PaddleX
MAX_BUCKETED_LENGTH = 100  # longer labels share one "> 100" bar, as PaddleX
MAX_LISTED = 1000  # problems listed in the JSON; problems.txt has all of them
EXAMPLES = 5  # file:line examples per missing character
PROGRESS_MIN = 200  # images: fewer than this decode without a progress bar

# problem kind -> how the reasons line names a number of them
KINDS = {
    "list_file": "list file problem(s)",
    "not_utf8": "line(s) that are not UTF-8",
    "format": "line(s) without exactly one tab ('path<TAB>label')",
    "bad_path": "invalid image path(s)",
    "empty_label": "empty label(s)",
    "missing_chars": "label(s) with characters missing from the charset",
    "duplicate": "duplicate image path(s)",
    "outside": "path(s) that leave the dataset folder",
    "unreadable": "unreadable image(s)",
    "dict": "dict.txt problem(s)",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the dataset, at ``file`` (relative to the dataset folder) line ``line``."""

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


@dataclass
class Sample:
    """One well-formed line of a list file."""

    split: str
    file: str
    line: int
    rel: str  # the path as written in the list file
    path: Path  # resolved, inside the dataset folder
    label: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# ------------------------------------------------------------------------------------------------ list files

def _raw_lines(data: bytes) -> list[bytes]:
    """The lines of a list file: split on '\\n' only (line numbers match an editor's), CR and BOM removed."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def parse_list_file(folder: Path, name: str, split: str) -> tuple[list[Sample], list[Problem]]:
    """Samples and problems of one list file; blank lines are skipped (PaddleX does the same)."""
    samples: list[Sample] = []
    problems: list[Problem] = []
    try:
        data = (folder / name).read_bytes()
    except OSError as exc:
        return [], [Problem("list_file", name, None, f"cannot read ({exc.strerror or exc})")]
    for no, raw in enumerate(_raw_lines(data), 1):
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
                                                        f"{_short(line)!r}"))
            continue
        rel, label = line.split("\t")
        if not rel.strip():
            problems.append(Problem("format", name, no, "no image path before the tab"))
            continue
        if not label.strip():
            problems.append(Problem("empty_label", name, no, f"empty label for {_short(rel)!r}"))
        try:
            path = (folder / rel).resolve()
        except (OSError, ValueError) as exc:  # a NUL byte, a symlink loop
            problems.append(Problem("bad_path", name, no, f"invalid image path {_short(rel)!r} ({exc})"))
            continue
        if not path.is_relative_to(folder):
            problems.append(Problem("outside", name, no, f"path {_short(rel)!r} leaves the dataset folder"))
            continue
        samples.append(Sample(split, name, no, rel, path, label))
    return samples, problems


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------------------------------------ charset

def model_charset(model_name: str | None = None, model_dir: str | Path | None = None,
                  progress: bool = False) -> list[str]:
    """The characters a model can output (its classes without the CTC blank), without loading the model."""
    from edgerec.zoo.resolve import model_charset as resolved_charset

    return resolved_charset(model_name or (DEFAULT_MODEL if model_dir is None else None), model_dir, progress)


def _dataset_charset(folder: Path, model_name: str | None, model_dir, progress: bool
                     ) -> tuple[set[str] | None, str, list[Problem]]:
    """(charset, where it came from, problems): the dataset's dict.txt (plus ' ', as PaddleX) or the model's."""
    from edgerec.runtime.charset import read_dict_lines

    dict_file = folder / "dict.txt"
    if dict_file.is_file():
        try:
            entries = read_dict_lines(dict_file.read_bytes())
        except (OSError, UnicodeDecodeError) as exc:
            return None, "dict.txt", [Problem("dict", "dict.txt", None, f"cannot read the dict ({exc})")]
        if not entries:
            return None, "dict.txt", [Problem("dict", "dict.txt", None, "the dict is empty")]
        return set(entries) | {" "}, "dict.txt", []
    source = str(model_dir) if model_dir is not None else (model_name or DEFAULT_MODEL)
    return set(model_charset(model_name, model_dir, progress=progress)), source, []


# ------------------------------------------------------------------------------------------------ images

def _decode_all(samples: list[Sample], progress: bool | None) -> dict[Path, str | None]:
    """Decode each distinct image once with edgerec's loader (its size limits included): path -> error or None."""
    from tqdm import tqdm

    from edgerec.io.inputs import load_image

    paths = list(dict.fromkeys(s.path for s in samples))

    def one(path: Path) -> str | None:
        try:
            load_image(path)
        except InputError as exc:
            return exc.reason
        return None

    show = (len(paths) >= PROGRESS_MIN and sys.stderr.isatty()) if progress is None else progress
    workers = max(1, min(4, os.cpu_count() or 1))
    errors: dict[Path, str | None] = {}
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(paths), desc="decoding images", unit="img",
                                                   file=sys.stderr, leave=False, disable=not show) as bar:
        for path, err in zip(paths, pool.map(one, paths)):  # cv2 decodes outside the GIL
            errors[path] = err
            bar.update(1)
    return errors


# ------------------------------------------------------------------------------------------------ histogram

def length_histogram(lengths: dict[str, list[int]]) -> tuple[list[str], dict[str, list[int]]]:
    """Label-length buckets of ``BUCKET`` (PaddleX's '0-5', '5-10', ...: start < n <= stop; 0 goes in the first),
    up to the longest label (at most ``MAX_BUCKETED_LENGTH``, then one '> 100' bucket): (names, counts per split)."""
    longest = max((n for ns in lengths.values() for n in ns), default=0)
    top = min(MAX_BUCKETED_LENGTH, max(BUCKET, math.ceil(longest / BUCKET) * BUCKET))
    names = [f"{lo}-{lo + BUCKET}" for lo in range(0, top, BUCKET)]
    over = longest > top
    if over:
        names.append(f"> {top}")
    counts = {}
    for split, ns in lengths.items():
        row = [0] * len(names)
        for n in ns:
            row[len(names) - 1 if n > top else max(0, math.ceil(n / BUCKET) - 1)] += 1
        counts[split] = row
    return names, counts


def plot_histogram(names: list[str], counts: dict[str, list[int]]) -> bytes:
    """PNG bytes: label-length buckets on x, images on y, train and val side by side (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 3), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.4
    xs = range(len(names))
    for k, (split, color) in enumerate(zip(SPLITS, ("tab:blue", "tab:orange"))):
        row = counts.get(split, [0] * len(names))
        ax.bar([x + (k - 0.5) * width for x in xs], row, width=width, color=color,
               label=f"{split} ({sum(row)} images)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=45 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
    ax.set_xlabel(f"label length (characters, buckets of {BUCKET})")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("label length: train vs val")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ check

def check_dataset(dataset_dir: str | Path, output: str | Path = "./output", *, model_name: str | None = None,
                  model_dir: str | Path | None = None, sample_num: int = SAMPLE_NUM,
                  progress: bool | None = None) -> dict:
    """Check a MSTextRecDataset folder and write PaddleX's check outputs under ``output``; return the result.

    Writes ``output/check_dataset_result.json`` and the folder ``output/check_dataset/`` (``demo_img/``,
    ``histogram.png``, ``problems.txt``). The charset checked against is the dataset's ``dict.txt`` when it has
    one, else the model's (``model_name``, default PP-OCRv4_mobile_rec, or ``model_dir``). A missing dataset
    folder raises InputError; everything wrong inside it is a problem in the result (``check_pass`` false).
    """
    given = str(dataset_dir)
    folder = Path(dataset_dir).expanduser().resolve()
    if not folder.is_dir():
        raise InputError(dataset_dir, "not a dataset folder")
    output = Path(output)

    samples: dict[str, list[Sample]] = {}
    problems: list[Problem] = []
    for split in SPLITS:
        name = f"{split}.txt"
        if not (folder / name).is_file():
            samples[split] = []
            problems.append(Problem("list_file", name, None, f"missing: a {DATASET_TYPE} needs both train.txt "
                                                             "and val.txt (--split makes them)"))
            continue
        samples[split], found = parse_list_file(folder, name, split)
        problems += found
        if not samples[split] and not found:
            problems.append(Problem("list_file", name, None, "no samples"))
    every = [s for split in SPLITS for s in samples[split]]

    # duplicates, within a file and across train and val
    first: dict[Path, Sample] = {}
    for s in every:
        seen = first.setdefault(s.path, s)
        if seen is not s:
            other = "" if seen.label == s.label else f" with another label ({_short(seen.label)!r})"
            problems.append(Problem("duplicate", s.file, s.line, f"image {_short(s.rel)!r} is listed already at "
                                                                 f"{seen.where}{other}"))

    # characters the model cannot output
    missing_chars: dict[str, dict] = {}
    charset, charset_source, found = (None, "", [])
    if every:
        fetch_bar = sys.stderr.isatty() if progress is None else progress
        charset, charset_source, found = _dataset_charset(folder, model_name, model_dir, fetch_bar)
    problems += found
    if charset is not None:
        counts: Counter[str] = Counter()
        for s in every:
            bad = [c for c in dict.fromkeys(s.label) if c not in charset]
            if not bad:
                continue
            counts.update(c for c in s.label if c not in charset)
            for c in bad:
                missing_chars.setdefault(c, {"count": 0, "examples": []})
                if len(missing_chars[c]["examples"]) < EXAMPLES:
                    missing_chars[c]["examples"].append(s.where)
            problems.append(Problem("missing_chars", s.file, s.line, f"label {_short(s.label)!r} has "
                                    f"{len(bad)} character(s) not in the {charset_source} charset: {''.join(bad)!r}"))
        for c, n in counts.items():
            missing_chars[c]["count"] = n
        missing_chars = dict(sorted(missing_chars.items(), key=lambda kv: (-kv[1]["count"], kv[0])))

    # decode every image
    errors = _decode_all(every, progress)
    for s in every:
        err = errors.get(s.path)
        if err is not None and first[s.path] is s:
            problems.append(Problem("unreadable", s.file, s.line, f"image {_short(s.rel)!r} cannot be read: {err}"))

    problems.sort(key=lambda p: (SPLITS.index(p.file[:-4]) if p.file[:-4] in SPLITS else 2, p.file,
                                 p.line or 0))
    kinds = Counter(p.kind for p in problems)
    reasons = []
    for kind, label in KINDS.items():
        if kinds[kind]:
            where = [p.where for p in problems if p.kind == kind]
            more = f", ... {len(where) - 3} more" if len(where) > 3 else ""
            reasons.append(f"{kinds[kind]} {label}: {', '.join(where[:3])}{more}")

    lengths = {split: [len(s.label) for s in samples[split]] for split in SPLITS}
    names, bucket_counts = length_histogram(lengths)
    sample_paths: dict[str, list[str]] = {}
    with atomic_dir(output / "check_dataset") as tmp:
        demo = tmp / "demo_img"
        demo.mkdir()
        used: set[str] = set()
        for split in SPLITS:
            sample_paths[split] = []
            for s in samples[split]:
                if len(sample_paths[split]) >= sample_num:
                    break
                if first[s.path] is not s or errors.get(s.path) is not None:
                    continue
                dest = _unique_name(s.path.name, used)
                atomic_write_bytes(demo / dest, s.path.read_bytes())
                sample_paths[split].append(f"check_dataset/demo_img/{dest}")
        atomic_write_bytes(tmp / "histogram.png", plot_histogram(names, bucket_counts))
        atomic_write_text(tmp / "problems.txt", "".join(f"{p}\n" for p in problems))

    result = {
        "done_flag": True,
        "check_pass": not problems,
        "attributes": {
            "train_samples": len(samples["train"]),
            "train_sample_paths": sample_paths["train"],
            "val_samples": len(samples["val"]),
            "val_sample_paths": sample_paths["val"],
        },
        "analysis": {
            "histogram": "check_dataset/histogram.png",
            "label_length": {"buckets": names, **bucket_counts},
        },
        "dataset_path": given,
        "show_type": "image",
        "dataset_type": DATASET_TYPE,
        # beyond PaddleX
        "reasons": reasons,
        "problem_counts": {k: kinds[k] for k in KINDS if kinds[k]},
        "problems": [p.as_dict() for p in problems[:MAX_LISTED]],
        "problems_file": "check_dataset/problems.txt",
        "images": {"decoded": sum(e is None for e in errors.values()),
                   "unreadable": sum(e is not None for e in errors.values())},
        "charset": {"source": charset_source or None, "size": len(charset) if charset is not None else None,
                    "missing_chars": missing_chars},
    }
    atomic_write_text(output / "check_dataset_result.json", json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return result


def _unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem_2.suffix``, ``stem_3.suffix``, ... when two samples share a file name."""
    stem, suffix = os.path.splitext(name)
    cand, k = name, 1
    while cand in used:
        k += 1
        cand = f"{stem}_{k}{suffix}"
    used.add(cand)
    return cand


# ------------------------------------------------------------------------------------------------ split

def split_dataset(dataset_dir: str | Path, train_percent: int, val_percent: int, seed: int = 0) -> dict:
    """Pool the lines of train.txt and val.txt, shuffle them with ``seed`` and deal them out by percentages.

    The result depends only on the set of lines and the seed (the pool is sorted before the shuffle), so the
    same split is made again whatever the current train/val arrangement. The first split copies the files as
    they were to ``train.txt.bak`` / ``val.txt.bak``; an existing ``.bak`` is never overwritten, so it keeps
    the files from before the first split. Every file is written atomically. Returns
    ``{"train": n, "val": n, "backups": [...]}``.
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
    for split in SPLITS:
        path = folder / f"{split}.txt"
        if path.is_file():
            try:
                originals[split] = path.read_bytes()
            except OSError as exc:
                raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
    if not originals:
        raise InputError(folder, "nothing to split: no train.txt or val.txt")
    pool = sorted(ln for data in originals.values() for ln in _raw_lines(data) if ln.strip())
    if not pool:
        raise InputError(folder, "nothing to split: train.txt and val.txt have no lines")
    random.Random(seed).shuffle(pool)
    n = len(pool)
    n_train = int(n * train_percent / 100 + 0.5)
    if val_percent and n_train == n and n >= 2:
        n_train = n - 1  # a non-zero share gets at least one line
    if train_percent and n_train == 0 and n >= 2:
        n_train = 1
    backups = []
    for split, data in originals.items():
        bak = folder / f"{split}.txt.bak"
        if not bak.exists():
            atomic_write_bytes(bak, data)
            backups.append(bak.name)
    for split, part in (("train", pool[:n_train]), ("val", pool[n_train:])):
        atomic_write_bytes(folder / f"{split}.txt", b"".join(ln + b"\n" for ln in part))
    log.info("%s: %d lines -> train %d, val %d (seed %d)", folder, n, n_train, n - n_train, seed)
    return {"train": n_train, "val": n - n_train, "backups": backups}
