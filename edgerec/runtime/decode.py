"""CTC greedy decoding, as PaddleX ``CTCLabelDecode`` does it.

Class 0 is the CTC blank; repeated classes collapse; the score is the mean of the kept steps' maximum
probability, and a line with no kept step gets the text '' and the score 0.0.
"""

from __future__ import annotations

import numpy as np


def ctc_greedy_decode(probs: np.ndarray, charset: list[str]) -> list[tuple[str, float]]:
    """Decode ``probs`` (N x T x C softmax output) into (text, score) per line.

    ``charset[k]`` is the character of class k; ``charset[0]`` is the blank and is never emitted.
    """
    if probs.ndim != 3:
        raise ValueError(f"expected N x T x C probabilities, got shape {probs.shape}")
    idx = probs.argmax(axis=2)
    top = np.take_along_axis(probs, idx[:, :, None], axis=2)[:, :, 0]
    keep = idx != 0
    keep[:, 1:] &= idx[:, 1:] != idx[:, :-1]
    out: list[tuple[str, float]] = []
    for row_idx, row_top, row_keep in zip(idx, top, keep):
        kept = row_idx[row_keep]
        if kept.size == 0:
            out.append(("", 0.0))
            continue
        text = "".join(charset[k] for k in kept.tolist())
        out.append((text, float(row_top[row_keep].mean())))
    return out
