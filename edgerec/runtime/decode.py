"""CTC greedy decoding, as PaddleX ``CTCLabelDecode`` does it.

Class 0 is the CTC blank; repeated classes collapse; the score is the mean of the kept steps' maximum
probability, and a line with no kept step gets the text '' and the score 0.0.
"""

from __future__ import annotations

import math
import re

import numpy as np

_LATIN_DIGIT = re.compile("[a-zA-Z0-9]")
_DIGIT = re.compile("[0-9]")


def word_info(text: str, cols: list[int]) -> tuple[list[list[str]], list[list[int]], list[str]]:
    """Split ``text`` into runs as PaddleX's ``get_word_info`` does: 'cn' (CJK), 'en&num', 'symbol'.

    ``cols[i]`` is the CTC step that emitted ``text[i]``. A '.' between a latin/digit run and a digit, and a
    '-' after a latin/digit run, stay in that run (1.5, VGG-16). Returns (runs of chars, their steps, states).
    """
    words: list[list[str]] = []
    word_cols: list[list[int]] = []
    states: list[str] = []
    state = None
    chars: list[str] = []
    steps: list[int] = []
    for i, ch in enumerate(text):
        if "\u4e00" <= ch <= "\u9fff":
            c_state = "cn"
        elif _LATIN_DIGIT.search(ch):
            c_state = "en&num"
        else:
            c_state = "symbol"
        if ch == "." and state == "en&num" and i + 1 < len(text) and _DIGIT.search(text[i + 1]):
            c_state = "en&num"
        if ch == "-" and state == "en&num":
            c_state = "en&num"
        if state is None:
            state = c_state
        if state != c_state:
            if chars:
                words.append(chars)
                word_cols.append(steps)
                states.append(state)
                chars, steps = [], []
            state = c_state
        chars.append(ch)
        steps.append(int(cols[i]))
    if chars:
        words.append(chars)
        word_cols.append(steps)
        states.append(state)
    return words, word_cols, states


def ctc_greedy_decode(probs: np.ndarray, charset: list[str], word_box: bool = False) -> list[tuple]:
    """Decode ``probs`` (N x T x C softmax output) into (text, score) per line.

    ``charset[k]`` is the character of class k; ``charset[0]`` is the blank and is never emitted. With
    ``word_box`` each tuple gets a third item ``[T, runs, run steps, run states]`` (PaddleX's return_word_box
    before it scales T by the line's share of the batch width). A line whose output holds NaN (argmax picks a NaN
    where a step has one) reads '' with score NaN, for the caller to say so.
    """
    if probs.ndim != 3:
        raise ValueError(f"expected N x T x C probabilities, got shape {probs.shape}")
    idx = probs.argmax(axis=2)
    top = np.take_along_axis(probs, idx[:, :, None], axis=2)[:, :, 0]
    keep = idx != 0
    keep[:, 1:] &= idx[:, 1:] != idx[:, :-1]
    nan = np.isnan(top).any(axis=1)
    out: list[tuple] = []
    for row_idx, row_top, row_keep, row_nan in zip(idx, top, keep, nan):
        if row_nan:
            out.append(("", math.nan, [int(row_idx.shape[0]), [], [], []]) if word_box else ("", math.nan))
            continue
        kept = row_idx[row_keep]
        text = "".join(charset[k] for k in kept.tolist())
        score = float(row_top[row_keep].mean()) if kept.size else 0.0
        if word_box:
            words, cols, states = word_info(text, np.nonzero(row_keep)[0].tolist())
            out.append((text, score, [int(row_idx.shape[0]), words, cols, states]))
        else:
            out.append((text, score))
    return out
