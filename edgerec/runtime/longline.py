"""Lines too long for one pass: cut into overlapping windows, recognize each, merge on CTC positions.

PaddleX squashes a line whose input width would pass 3200 px (aspect ratio above ~66:1) into 3200 px. The glyphs
then get so narrow that the text degrades, and past a point every character is lost. Here such a line is cut
into windows about ``WINDOW_ASPECT`` line-heights wide that overlap by ``OVERLAP_ASPECT`` line-heights. Window
edges are moved into blank (ink-free) columns where there are any, so that no glyph is cut in half. Each window
is recognized like a normal line, by ``RecPredictor`` (this module plans the windows and merges what they read;
it runs nothing).

Merging uses where each character sits. Each CTC step covers a fixed slice of the input (8 px for PP-OCR), so
the centre of a character's run of steps gives its x in the line. In each overlap both windows' characters are
aligned: same character, x within half a line-height. The text is then taken from the left window up to the
aligned pair nearest the middle of the overlap, and from the right window after it. Both windows see that middle
with plenty of context on both sides, so it is where both read best. A duplicate or a lost character at the
seam would need the two windows to disagree there. When nothing aligns (the overlap is blank, or the two
windows read it differently), the seam is a cut at the middle of the overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgerec.runtime.preprocess import MIN_W, resized_width, target_width

WINDOW_ASPECT = 24.0  # window width in line heights: 1152 input px at height 48, well inside the model's range
OVERLAP_ASPECT = 6.0  # overlap in line heights: ~12 Latin or ~8 CJK characters to align on
SNAP_ASPECT = 2.0  # how far (in line heights) a window edge may move to land in a blank column
ALIGN_TOL = 0.5  # two windows' characters are "the same" within this many line heights
MAX_WINDOWS = 24  # past this (~900 Latin characters) the line is squashed as PaddleX does: time stays bounded
MIN_HEIGHT = 8  # a "line" fewer pixels high than this holds no legible text: squashed, not read in windows
SEAM_GAP = 2.0  # line heights between two characters' centres that can only be a word gap
# windows go to the engine one at a time: a batch of n windows is another input shape for every n, each with its
# own kernels and n times the activation memory, and on a small CPU batching buys fp32 nothing
WINDOW_BATCH = 1
WIDTH_STEP = 64  # window inputs are right-padded to a multiple of this: few distinct shapes for OpenVINO to cache


@dataclass(frozen=True)
class Glyph:
    """One decoded character: its text, its x centre in the original line's pixels, its kept-step probability."""

    text: str
    x: float
    prob: float
    window: int = 0


def needs_split(h: int, w: int, img_h: int, max_w: int) -> bool:
    """True when PaddleX would squash the line (its natural input width is over ``max_w``) and it is tall enough
    to hold text."""
    return h >= MIN_HEIGHT and int(img_h * (w / float(h))) > max_w


def blank_columns(image: np.ndarray) -> np.ndarray:
    """Boolean per column: True where the column holds no ink (nothing differs much from the background)."""
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    bg = float(np.median(gray))
    spread = float(gray.max() - gray.min())
    thr = max(32.0, 0.35 * spread)
    ink = np.abs(gray - bg) > thr
    return ~ink.any(axis=0)


def _snap(blank: np.ndarray, target: float, lo: float, hi: float) -> int:
    """A cut column in [lo, hi]: the centre of the widest blank run there (nearest ``target`` on ties)."""
    w = blank.shape[0]
    a, b = max(0, int(math.floor(lo))), min(w, int(math.ceil(hi)) + 1)
    t = int(round(target))
    if a >= b:
        return min(max(t, 0), w)
    seg = blank[a:b].astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], seg, [0]))))
    runs = edges.reshape(-1, 2)  # [start, end) of each blank run, relative to a
    if runs.size == 0:
        return min(max(t, 0), w)
    widths = runs[:, 1] - runs[:, 0]
    centres = a + (runs[:, 0] + runs[:, 1]) // 2
    best = max(range(len(runs)), key=lambda k: (widths[k], -abs(int(centres[k]) - t)))
    return int(centres[best])


def plan_windows(image: np.ndarray, window_aspect: float = WINDOW_ASPECT,
                 overlap_aspect: float = OVERLAP_ASPECT) -> list[tuple[int, int]]:
    """[start, end) columns of overlapping windows covering the whole line, edges in blank columns if possible."""
    h, w = image.shape[:2]
    win, ov, snap = window_aspect * h, overlap_aspect * h, SNAP_ASPECT * h
    if w <= win:
        return [(0, w)]
    blank = blank_columns(image)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        if w - start <= win:
            windows.append((start, w))
            return windows
        end = _snap(blank, start + win, start + win - snap, start + win)
        end = max(end, int(start + 2 * ov + 1))  # every window must reach past its overlap with the next
        windows.append((start, end))
        nxt = _snap(blank, end - ov, end - ov - snap, end - ov)
        nxt = min(max(nxt, start + 1), end - 1)
        start = nxt


def decode_glyphs(probs: np.ndarray, classes: list[str], x0: float, px_per_step: float, window: int = 0
                  ) -> list[Glyph]:
    """CTC greedy decode of one T x C row (as ``ctc_greedy_decode``), keeping each character's x position.

    A character's x is the centre of its run of equal steps; its probability is that of the run's first step,
    the step PaddleX keeps.
    """
    idx = probs.argmax(axis=1)
    top = probs[np.arange(idx.shape[0]), idx]
    out: list[Glyph] = []
    t, n = 0, idx.shape[0]
    while t < n:
        k = int(idx[t])
        end = t + 1
        while end < n and idx[end] == k:
            end += 1
        if k != 0:
            centre = (t + end) / 2.0
            out.append(Glyph(classes[k], x0 + centre * px_per_step, float(top[t]), window))
        t = end
    return out


def _align(a: list[Glyph], b: list[Glyph], tol: float) -> list[tuple[int, int]]:
    """Align two glyph lists: pairs of equal text within ``tol`` px, in order, closest positions preferred.

    Each pair is worth ``1 - dx / tol``, so a run of repeated characters ("iii", "111") aligns glyph to glyph
    rather than shifted by one, even where a window lost a glyph at its edge.
    """
    n, m = len(a), len(b)
    if not n or not m:
        return []

    def weight(i: int, j: int) -> float:
        dx = abs(a[i].x - b[j].x)
        return 1.0 - dx / tol if a[i].text == b[j].text and dx < tol else 0.0

    dp = np.zeros((n + 1, m + 1), dtype=np.float64)
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            w = weight(i, j)
            dp[i, j] = max(dp[i + 1, j], dp[i, j + 1], dp[i + 1, j + 1] + w if w > 0 else 0.0)
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        w = weight(i, j)
        if w > 0 and dp[i, j] == dp[i + 1, j + 1] + w:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif dp[i + 1, j] >= dp[i, j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def merge(left: list[Glyph], right: list[Glyph], lo: float, hi: float, tol: float) -> list[Glyph]:
    """Join two windows' glyphs whose windows overlap on columns [lo, hi) (``left`` may be a merge already)."""
    mid = (lo + hi) / 2.0
    li = [k for k, g in enumerate(left) if lo <= g.x < hi]
    ri = [k for k, g in enumerate(right) if lo <= g.x < hi]
    pairs = _align([left[k] for k in li], [right[k] for k in ri], tol)
    if pairs:
        pi, pj = min(pairs, key=lambda p: abs(left[li[p[0]]].x - mid))
        return left[:li[pi] + 1] + right[ri[pj] + 1:]
    return [g for g in left if g.x < mid] + [g for g in right if g.x >= mid]


def _space_wide_seams(glyphs: list[Glyph], gap: float) -> list[Glyph]:
    """Put a space between neighbours from different windows that lie over ``gap`` apart with none between.

    No window saw both of them, so none could say "space" there: a blank stretch that spans a whole window
    (or the seam's middle) would otherwise glue two words together.
    """
    out: list[Glyph] = []
    for g in glyphs:
        if out and g.window != out[-1].window and g.x - out[-1].x > gap and " " not in (g.text, out[-1].text):
            out.append(Glyph(" ", (g.x + out[-1].x) / 2.0, min(g.prob, out[-1].prob), g.window))
        out.append(g)
    return out


@dataclass(frozen=True)
class Window:
    """One window of a long line: columns [start, end) of the original, right-padded to ``pad_w`` input px."""

    start: int
    end: int
    pad_w: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[:, self.start:self.end])


def plan_long(image: np.ndarray, img_h: int, *, window_aspect: float = WINDOW_ASPECT,
              overlap_aspect: float = OVERLAP_ASPECT, max_windows: int = MAX_WINDOWS) -> list[Window] | None:
    """The windows to read one long BGR line in; None when it would need over ``max_windows`` (squash it)."""
    h, w = image.shape[:2]
    # windows advance at most (window - overlap): when even that needs too many, do not plan them at all
    if math.ceil(max(0.0, w - window_aspect * h) / ((window_aspect - overlap_aspect) * h)) + 1 > max_windows:
        return None
    spans = plan_windows(image, window_aspect, overlap_aspect)
    if len(spans) > max_windows:
        return None
    return [Window(a, b, -(-target_width(h, b - a, img_h, MIN_W, 1 << 30) // WIDTH_STEP) * WIDTH_STEP)
            for a, b in spans]


def window_batches(windows: list[Window]) -> list[tuple[int, list[int]]]:
    """(pad width, window indices) per engine call: windows of one width in a row, so the engine sees few shape
    changes, ``WINDOW_BATCH`` at a time."""
    by_width: dict[int, list[int]] = {}
    for k, win in enumerate(windows):
        by_width.setdefault(win.pad_w, []).append(k)
    return [(pad_w, ks[s:s + WINDOW_BATCH]) for pad_w, ks in by_width.items() for s in range(0, len(ks), WINDOW_BATCH)]


def read_windows(image: np.ndarray, windows: list[Window], rows: list[np.ndarray], classes: list[str], img_h: int
                 ) -> tuple[str, float]:
    """(text, score) of a long line from each window's T x C probabilities (``rows``, in window order).

    The score is the mean kept-step probability of the merged characters, like a normal line's.
    """
    h = image.shape[0]
    glyphs: list[list[Glyph]] = []
    for k, (win, row) in enumerate(zip(windows, rows)):
        # input px per step, then back to original columns (the crop was resized to rw input px)
        width = win.end - win.start
        px_per_step = win.pad_w / row.shape[0] * width / resized_width(h, width, win.pad_w, img_h)
        glyphs.append(decode_glyphs(row, classes, win.start, px_per_step, k))
    merged = glyphs[0]
    tol = ALIGN_TOL * h
    for k in range(1, len(windows)):
        merged = merge(merged, glyphs[k], windows[k].start, windows[k - 1].end, tol)
    merged = _space_wide_seams(merged, SEAM_GAP * h)
    if not merged:
        return "", 0.0
    return "".join(g.text for g in merged), float(np.mean([g.prob for g in merged]))
