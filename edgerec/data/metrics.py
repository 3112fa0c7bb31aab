"""Recognition metrics exactly as PaddleOCR's ``RecMetric`` defines them, plus the scene-text convention.

``acc``: exact match after removing spaces. ``norm_edit_dis``: 1 - mean normalized Levenshtein distance
(distance / max(len(pred), len(label))), also on space-free strings. ``alnum_acc``: the figure usually
reported for English scene-text sets: case-insensitive, digits and ASCII letters only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein

_ALNUM = set(string.digits + string.ascii_letters)
_EPS = 1e-5


def _strip_spaces(text: str) -> str:
    return text.replace(" ", "")


def _alnum_lower(text: str) -> str:
    return "".join(c for c in text if c in _ALNUM).lower()


def _line_score(pred: str, label: str) -> tuple[bool, float]:
    """(exact match, normalized edit distance) of one line, spaces removed: the terms ``rec_metrics`` sums."""
    p, t = _strip_spaces(pred), _strip_spaces(label)
    return p == t, Levenshtein.normalized_distance(p, t)


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
        hit, d = _line_score(pred, label)
        dist += d
        correct += hit
        alnum_correct += _alnum_lower(pred) == _alnum_lower(label)
    n = len(labels)
    return {
        "acc": correct / (n + _EPS),
        "norm_edit_dis": 1 - dist / (n + _EPS),
        "alnum_acc": alnum_correct / (n + _EPS),
        "num": n,
    }


def same_text_share(texts_a: Sequence, texts_b: Sequence) -> float:
    """The share of lines two readings of the same lines read alike (0.0 for no lines)."""
    return sum(a == b for a, b in zip(texts_a, texts_b)) / max(1, len(texts_a))


def paired_difference(preds_a: Sequence[str], preds_b: Sequence[str], labels: Sequence[str],
                      z: float = 1.96) -> dict:
    """B minus A in ``acc`` and ``norm_edit_dis`` on the same lines, each with the half-width of its 95 % interval.

    Why: two models (fp32 and int8, say) read the same lines, so their per-line results are paired, and a drop of a
    few tenths of a point may be the luck of which lines a set holds (one line of 647 is 0.15 pt). The interval is
    the normal approximation of the paired t interval of the mean per-line difference: z * sd / sqrt(n). ``None``
    for fewer than two lines. Also counts the lines only A, or only B, reads exactly right.
    """
    if not len(preds_a) == len(preds_b) == len(labels):
        raise ValueError(f"{len(preds_a)} and {len(preds_b)} predictions for {len(labels)} labels")
    a = np.array([_line_score(p, t) for p, t in zip(preds_a, labels)], dtype=np.float64).reshape(-1, 2)
    b = np.array([_line_score(p, t) for p, t in zip(preds_b, labels)], dtype=np.float64).reshape(-1, 2)
    n = len(labels)
    out: dict = {"num": n, "only_a_right": int(((a[:, 0] == 1) & (b[:, 0] == 0)).sum()),
                 "only_b_right": int(((a[:, 0] == 0) & (b[:, 0] == 1)).sum())}
    # acc counts hits; norm_edit_dis is 1 - distance, so its per-line difference is A's distance minus B's
    for key, diff in (("acc", b[:, 0] - a[:, 0]), ("norm_edit_dis", a[:, 1] - b[:, 1])):
        mean = float(diff.mean()) if n else 0.0
        half = float(z * diff.std(ddof=1) / np.sqrt(n)) if n >= 2 else None
        out[key] = {"delta": mean, "ci95": half}
    return out
