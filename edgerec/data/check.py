"""Check and re-split a PaddleX MSTextRecDataset folder: ``train.txt``, ``val.txt`` and, optionally, ``dict.txt``.

``check_dataset`` writes what PaddleX's ``check_dataset`` mode writes (``check_dataset_result.json``, sample
images in ``check_dataset/demo_img/``, the label-length ``check_dataset/histogram.png``) and goes further: it
decodes every image with edgerec's loader and lists every problem with file and line number.

The verdict follows PaddleX: ``check_pass`` is false for what PaddleX fails on (a missing or unreadable list file,
a line that is not well formed, an image that cannot be read) plus an unusable ``dict.txt``; characters outside
the charset, empty labels and duplicate paths are warnings (``warnings``, with counts and examples), unless
``strict`` makes the missing characters fail too. ``reasons`` says why a check failed.

The re-split lives in :mod:`edgerec.data.split` (``split_dataset`` is re-exported here).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgerec.data.dataset import MALFORMED, LabelledLine, Problem, parse_list_file, resolve_folder, short
from edgerec.data.histogram import length_histogram, plot_histogram
from edgerec.data.split import recover_split, split_dataset
from edgerec.errors import InputError
from edgerec.utils.fs import atomic_write_bytes, atomic_write_text
from edgerec.zoo.cards import DEFAULT_MODEL

log = logging.getLogger(__name__)

__all__ = ["check_dataset", "length_histogram", "model_charset", "split_dataset", "Problem"]

DATASET_TYPE = "MSTextRecDataset"
SPLITS = ("train", "val")
SAMPLE_NUM = 10  # sample images copied to demo_img/ per split, as PaddleX
MAX_LISTED = 1000  # problems listed in the JSON; problems.txt has all of them
EXAMPLES = 5  # file:line examples per missing character
PROGRESS_MIN = 200  # images: fewer than this decode without a progress bar
MANIFEST = ".edgerec-written"  # in check_dataset/: the files the last check wrote (the only ones it may remove)

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
# what fails the check (PaddleX's rules, plus a dict.txt that cannot be used); the other kinds are warnings
FAILING = (*MALFORMED, "unreadable", "dict")


def failing_kinds(strict: bool) -> tuple[str, ...]:
    """The problem kinds that make ``check_pass`` false: PaddleX's, and the missing characters when ``strict``."""
    return (*FAILING, "missing_chars") if strict else FAILING


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
    if dict_file.exists() and not dict_file.is_file():  # train refuses it too: not silently the model's charset
        return None, "dict.txt", [Problem("dict", "dict.txt", None, "not a regular file")]
    if dict_file.is_file():
        try:
            entries = read_dict_lines(dict_file.read_bytes())
        except (OSError, UnicodeDecodeError) as exc:
            return None, "dict.txt", [Problem("dict", "dict.txt", None, f"cannot read the dict ({exc})")]
        if not any(entries):  # blank lines only: train refuses it as empty
            return None, "dict.txt", [Problem("dict", "dict.txt", None, "the dict is empty")]
        return set(entries) | {" "}, "dict.txt", []
    source = str(model_dir) if model_dir is not None else (model_name or DEFAULT_MODEL)
    return set(model_charset(model_name, model_dir, progress=progress)), source, []


# ------------------------------------------------------------------------------------------------ images

def _decode_all(samples: list[LabelledLine], progress: bool | None) -> dict[Path, str | None]:
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


# ------------------------------------------------------------------------------------------------ check

def check_dataset(dataset_dir: str | Path, output: str | Path = "./output", *, model_name: str | None = None,
                  model_dir: str | Path | None = None, sample_num: int = SAMPLE_NUM,
                  progress: bool | None = None, strict: bool = False) -> dict:
    """Check a MSTextRecDataset folder and write PaddleX's check outputs under ``output``; return the result.

    Writes ``output/check_dataset_result.json`` and the folder ``output/check_dataset/`` (``demo_img/``,
    ``histogram.png``, ``problems.txt``). The charset checked against is the dataset's ``dict.txt`` when it has
    one, else the model's (``model_name``, default PP-OCRv4_mobile_rec, or ``model_dir``). A missing dataset
    folder raises InputError; everything wrong inside it is a problem in the result, and ``check_pass`` is
    false when one of them is of a failing kind (:func:`failing_kinds`; ``strict``: missing characters fail too).
    Inside ``output/check_dataset/`` only the files this check wrote (and those the previous check wrote) are
    replaced or removed; nothing else there is touched.
    """
    given = str(dataset_dir)
    folder = resolve_folder(dataset_dir)  # a folder that is a symlink loop: an InputError naming it
    if not folder.is_dir():
        raise InputError(dataset_dir, "not a dataset folder")
    recover_split(folder)  # a split killed mid-way: its old lists or its whole new split, never a mix
    output = Path(output)

    samples: dict[str, list[LabelledLine]] = {}
    problems: list[Problem] = []
    for split in SPLITS:
        name = f"{split}.txt"
        if not (folder / name).exists() and not (folder / name).is_symlink():
            samples[split] = []
            problems.append(Problem("list_file", name, None, f"missing: a {DATASET_TYPE} needs both train.txt "
                                                             "and val.txt (--split makes them)"))
            continue
        samples[split], found = parse_list_file(folder, name)
        problems += found
        if not samples[split] and not found:
            problems.append(Problem("list_file", name, None, "no samples"))
    every = [s for split in SPLITS for s in samples[split]]

    # duplicates, within a file and across train and val
    first: dict[Path, LabelledLine] = {}
    for s in every:
        seen = first.setdefault(s.path, s)
        if seen is not s:
            other = "" if seen.label == s.label else f" with another label ({short(seen.label)!r})"
            problems.append(Problem("duplicate", s.file, s.line, f"image {short(s.rel)!r} is listed already at "
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
            problems.append(Problem("missing_chars", s.file, s.line, f"label {short(s.label)!r} has "
                                    f"{len(bad)} character(s) not in the {charset_source} charset: {''.join(bad)!r}"))
        for c, n in counts.items():
            missing_chars[c]["count"] = n
        missing_chars = dict(sorted(missing_chars.items(), key=lambda kv: (-kv[1]["count"], kv[0])))

    # decode every image
    errors = _decode_all(every, progress)
    for s in every:
        err = errors.get(s.path)
        if err is not None and first[s.path] is s:
            problems.append(Problem("unreadable", s.file, s.line, f"image {short(s.rel)!r} cannot be read: {err}"))

    problems.sort(key=lambda p: (SPLITS.index(p.file[:-4]) if p.file[:-4] in SPLITS else 2, p.file,
                                 p.line or 0))
    kinds = Counter(p.kind for p in problems)
    reasons = []
    for kind, label in KINDS.items():
        if kinds[kind] and kind in failing_kinds(strict):
            where = [p.where for p in problems if p.kind == kind]
            more = f", ... {len(where) - 3} more" if len(where) > 3 else ""
            reasons.append(f"{kinds[kind]} {label}: {', '.join(where[:3])}{more}")

    lengths = {split: [len(s.label) for s in samples[split]] for split in SPLITS}
    names, bucket_counts = length_histogram(lengths)
    sample_paths: dict[str, list[str]] = {}
    outputs: dict[str, bytes] = {}
    used: set[str] = set()
    for split in SPLITS:
        sample_paths[split] = []
        for s in samples[split]:
            if len(sample_paths[split]) >= sample_num:
                break
            if first[s.path] is not s or errors.get(s.path) is not None:
                continue
            dest = _unique_name(s.path.name, used)
            outputs[f"demo_img/{dest}"] = s.path.read_bytes()
            sample_paths[split].append(f"check_dataset/demo_img/{dest}")
    outputs["histogram.png"] = plot_histogram(names, bucket_counts)
    outputs["problems.txt"] = "".join(f"{p}\n" for p in problems).encode("utf-8")
    _write_outputs(output / "check_dataset", outputs)

    fail = failing_kinds(strict)
    warnings = []
    for kind in KINDS:
        if kinds[kind] and kind not in fail:
            where = [p.where for p in problems if p.kind == kind]
            more = f", ... {len(where) - 3} more" if len(where) > 3 else ""
            warnings.append(f"{kinds[kind]} {KINDS[kind]}: {', '.join(where[:3])}{more}")
    result = {
        "done_flag": True,
        "check_pass": not any(kinds[k] for k in fail),
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
        "warnings": warnings,
        "strict": strict,
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


def _write_outputs(folder: Path, outputs: dict[str, bytes]) -> None:
    """Write each output atomically under ``folder``; remove only files the previous check listed as its own."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo_img").mkdir(exist_ok=True)
    manifest = folder / MANIFEST
    try:
        # names as the file system has them (a non-UTF-8 one round-trips through surrogate escapes)
        before = [os.fsdecode(ln) for ln in manifest.read_bytes().splitlines() if ln] if manifest.is_file() else []
    except (OSError, UnicodeDecodeError):
        before = []
    for rel, data in outputs.items():
        atomic_write_bytes(folder / rel, data)
    for rel in before:
        if rel not in outputs and ".." not in Path(rel).parts and not Path(rel).is_absolute():
            (folder / rel).unlink(missing_ok=True)  # a stale sample image of our own
    atomic_write_bytes(manifest, b"".join(os.fsencode(rel) + b"\n" for rel in sorted(outputs)))


def _unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem_2.suffix``, ``stem_3.suffix``, ... when two samples share a file name."""
    stem, suffix = os.path.splitext(name)
    cand, k = name, 1
    while cand in used:
        k += 1
        cand = f"{stem}_{k}{suffix}"
    used.add(cand)
    return cand
