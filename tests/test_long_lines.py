"""Lines wider than PaddleX's 3200 input px: read in overlapping windows and merged back into the exact text."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec.io.fonts import render_line
from edgerec.runtime import longline
from edgerec.runtime.longline import Glyph, merge, needs_split, plan_long, plan_windows
from edgerec.runtime.predictor import RecPredictor

from conftest import assert_same_results

EN_LONG = ("Every morning the small kiosk near the station reads the labels of parcels, the names on tickets and the "
           "prices on long receipts, and it never stops to rest. When a line of text runs far wider than the model "
           "was trained on, the reader cuts it into overlapping windows, reads each one with care, and then joins "
           "the pieces again where they agree, so that the whole sentence comes back exactly as it was printed.")
ZH_LONG = ("今天早上我们在北京火车站旁边的小商店里买了很多东西，包括水果、面包、牛奶和一些日常用品。"
           "商店的老板非常热情，他告诉我们这里每天都有很多游客来参观，特别是在节假日的时候人更多。"
           "我们还在附近的公园里散步，看到了许多美丽的花朵和高大的树木，心情非常愉快。"
           "下午我们去了博物馆，参观了很多历史文物，了解了这座城市悠久的历史和丰富的文化。"
           "晚上我们在一家有名的饭店吃了烤鸭，味道非常好，大家都说下次还要再来。")


@pytest.fixture(scope="module")
def en_long():
    img = render_line(EN_LONG, height=48, font_kind="latin")
    assert img.shape[1] > 6000 and needs_split(*img.shape[:2], 48, 3200)
    return img


def squasher(v4) -> RecPredictor:
    p = v4.predictor
    return RecPredictor(p.engine, p.classes, input_height=p.input_height, long_lines="squash")


def test_long_english_sentence_comes_back_exactly(v4, en_long):
    res = next(iter(v4.predict(en_long)))
    assert res["rec_text"].strip() == EN_LONG
    assert 0.8 < res["rec_score"] <= 1.0
    # the PaddleX behaviour squashes 7000 px into 3200 and loses the text: the split is what reads it
    assert squasher(v4).recognize([en_long])[0][0].strip() != EN_LONG


def test_long_chinese_line_comes_back_exactly(v4):
    img = render_line(ZH_LONG, height=48, font_kind="cjk")
    assert len(ZH_LONG) > 150 and needs_split(*img.shape[:2], 48, 3200)
    assert v4.recognize(img)["rec_text"].strip() == ZH_LONG


@pytest.mark.parametrize("height", [32, 64])
def test_other_line_heights(v4, height):
    text = "The price of the item is 12.50 dollars and the total is 99.99 dollars; " * 5
    img = render_line(text.strip(), height=height, font_kind="latin")
    assert needs_split(*img.shape[:2], 48, 3200)
    assert v4.recognize(img)["rec_text"].strip() == text.strip()


def test_no_blank_column_anywhere_still_merges_exactly(v4, en_long):
    """An underline leaves no ink-free column: windows cut through glyphs and the overlap does the work."""
    underlined = en_long.copy()
    underlined[44:46, :] = 0
    assert not longline.blank_columns(underlined).any()
    assert v4.recognize(underlined)["rec_text"].strip() == EN_LONG


def test_repeated_characters_are_neither_doubled_nor_lost(v4):
    """Digits repeated across every seam: a position-blind merge would drop or double some of them."""
    text = "0123456789" * 30
    img = render_line(text, height=48, font_kind="latin")
    assert len(plan_windows(img)) >= 5
    assert v4.recognize(img)["rec_text"].strip() == text


def test_a_blank_stretch_wider_than_a_window_keeps_a_space(v4):
    word = render_line("alpha", height=48, font_kind="latin")
    other = render_line("omega", height=48, font_kind="latin")
    gap = np.full((48, 3000, 3), 255, np.uint8)
    line = np.concatenate([word, gap, other, gap, word], axis=1)
    assert v4.recognize(line)["rec_text"].strip() == "alpha omega alpha"


def test_long_line_in_a_batch_with_short_ones_keeps_order_and_text(v4, en_long, rendered):
    imgs = [rendered[0][1], en_long, rendered[4][1], en_long[:, :2000]]
    alone = [v4.predictor.recognize([im])[0] for im in imgs]
    assert_same_results(v4.predictor.recognize(imgs, batch_size=4), alone)  # a different batch composition
    assert alone[1][0].strip() == EN_LONG and alone[0][0].strip() == rendered[0][0]


def test_squash_mode_is_paddlex_faithful(v4, en_long):
    from edgerec.runtime.decode import ctc_greedy_decode
    from edgerec.runtime.preprocess import preprocess_batch

    probs = v4.predictor.engine.infer(preprocess_batch([en_long], 3200))
    assert squasher(v4).recognize([en_long]) == ctc_greedy_decode(probs, v4.predictor.classes)
    with pytest.raises(ValueError, match="long_lines"):
        RecPredictor(v4.predictor.engine, v4.predictor.classes, long_lines="chop")


def test_a_line_too_long_even_for_windows_is_squashed_in_bounded_time(v4):
    """A 16 px high, 20000 px wide strip would need ~70 windows: it falls back to one squashed pass."""
    strip = np.full((16, 20000, 3), 255, np.uint8)
    strip[4:12, ::7] = 0
    assert needs_split(16, 20000, 48, 3200)
    assert plan_long(strip, 48) is None
    assert not needs_split(4, 20000, 48, 3200)  # 4 px high holds no text: squashed without trying windows
    t = time.perf_counter()
    text, score = v4.predictor.recognize([strip])[0]
    assert isinstance(text, str) and 0.0 <= score <= 1.0
    assert time.perf_counter() - t < 30


def test_windows_go_through_the_predictors_engine(v4, en_long):
    """The long-line path is RecPredictor's: each window is one engine call, padded to a multiple of 64 px."""
    calls = []

    class Counting:
        def infer(self, batch):
            calls.append(batch.shape)
            return v4.predictor.engine.infer(batch)

    p = RecPredictor(Counting(), v4.predictor.classes, input_height=48)
    text, _ = p.recognize([en_long])[0]
    windows = plan_long(en_long, 48)
    assert text.strip() == EN_LONG and len(calls) == len(windows) > 2
    assert sorted(c[3] for c in calls) == sorted(w.pad_w for w in windows)
    assert all(c[0] == 1 and c[3] % 64 == 0 for c in calls)


def test_windows_cover_the_line_overlap_and_end_in_blank_columns(en_long):
    wins = plan_windows(en_long)
    blank = longline.blank_columns(en_long)
    assert wins[0][0] == 0 and wins[-1][1] == en_long.shape[1]
    for (a0, a1), (b0, b1) in zip(wins, wins[1:]):
        assert a0 < b0 < a1 < b1 and a1 - b0 >= 4 * 48  # real overlap, always moving right
        assert blank[a1 - 1] or blank[min(a1, len(blank) - 1)]  # the sentence has word gaps near every edge
        assert blank[b0]


# ------------------------------------------------------------------ the merge alone, on simulated windows

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(st.tuples(st.sampled_from("ab1 ."), st.integers(1, 40)), min_size=3, max_size=20),
       seed=st.integers(0, 2**16))
def test_merge_of_simulated_windows_is_exact(runs, seed):
    """Windows that read their middle right and their edges badly (lost or wrong characters) merge exactly.

    Runs of one character ("1111111") are where a merge that ignores positions drops or doubles a glyph.
    """
    text = "".join(c * n for c, n in runs)
    rng = np.random.default_rng(seed)
    h = 48.0
    widths = rng.uniform(0.25 * h, 1.0 * h, len(text))
    xs = np.cumsum(widths) - widths / 2
    total = float(xs[-1] + widths[-1])
    win, ov = 24 * h, 6 * h
    starts = [0.0]
    while starts[-1] + win < total:
        starts.append(starts[-1] + win - ov)
    merged: list[Glyph] = []
    for k, a in enumerate(starts):
        b = min(a + win, total)
        seen = []
        for c, x in zip(text, xs):
            if not a <= x < b:
                continue
            near_edge = (x - a < h and k > 0) or (b - x < h and b < total)
            if near_edge and rng.random() < 0.5:
                if rng.random() < 0.5:
                    seen.append(Glyph("#", x + rng.uniform(-2, 2), 0.3, k))  # misread
                continue  # or lost
            seen.append(Glyph(c, x + rng.uniform(-2, 2), 0.9, k))
        merged = seen if k == 0 else merge(merged, seen, a, starts[k - 1] + win, 0.5 * h)
    assert "".join(g.text for g in merged) == text


def test_merge_aligns_a_run_of_one_character_glyph_to_glyph():
    """'iiii...' across a seam where each window lost its edge glyph: matching by text alone would shift the
    alignment by one glyph (23 pairs instead of 22) and lose an 'i'; closest positions keep the count."""
    xs = [6 + 12 * k for k in range(200)]
    lo, hi = 864, 1152
    left = [Glyph("i", x, 0.9, 0) for x in xs if x < hi - 12]
    right = [Glyph("i", x, 0.9, 1) for x in xs if x >= lo + 12]
    assert len(merge(left, right, lo, hi, 24.0)) == len(xs)
