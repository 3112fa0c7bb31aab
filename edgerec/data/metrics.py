"""Recognition metrics exactly as PaddleOCR's ``RecMetric`` defines them, plus the scene-text convention.

``acc``: exact match after removing spaces. ``norm_edit_dis``: 1 - mean normalized Levenshtein distance
(distance / max(len(pred), len(label))), also on space-free strings. ``alnum_acc``: the figure usually
reported for English scene-text sets: case-insensitive, digits and ASCII letters only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

_ALNUM = set(string.digits + string.ascii_letters)
_EPS = 1e-5


def _strip_spaces(text: str) -> str:
    return text.replace(" ", "")


def _alnum_lower(text: str) -> str:
    return "".join(c for c in text if c in _ALNUM).lower()


def rec_metrics(preds: Sequence[str], labels: Sequence[str],
                failed: Sequence[bool] | None = None) -> dict[str, float]:
    """{'acc', 'norm_edit_dis', 'alnum_acc', 'num'} for paired predictions and labels.

    ``failed`` marks samples that got no prediction (an unreadable image): they count as wrong with the largest
    edit distance (1.0), whatever their label, so an unreadable image with an empty label is not a hit.
    """
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if failed is not None and len(failed) != len(labels):
        raise ValueError(f"{len(failed)} failure flags for {len(labels)} labels")
    correct = alnum_correct = 0
    dist = 0.0
    for i, (pred, label) in enumerate(zip(preds, labels)):
        if failed is not None and failed[i]:
            dist += 1.0
            continue
        p, t = _strip_spaces(pred), _strip_spaces(label)
        dist += Levenshtein.normalized_distance(p, t)
        correct += p == t
        alnum_correct += _alnum_lower(pred) == _alnum_lower(label)
    n = len(labels)
    return {
        "acc": correct / (n + _EPS),
        "norm_edit_dis": 1 - dist / (n + _EPS),
        "alnum_acc": alnum_correct / (n + _EPS),
        "num": n,
    }
