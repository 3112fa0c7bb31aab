"""Preprocessing, CTC decoding and charset handling, checked against PaddleX's own formulas."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edgerec.errors import ModelError
from edgerec.runtime.charset import build_classes, read_dict_lines
from edgerec.runtime.decode import ctc_greedy_decode
from edgerec.runtime.preprocess import preprocess_batch, target_width


def paddlex_resize_norm(img, rec_image_shape=(3, 48, 320), max_img_w=3200):
    """PaddleX OCRReisizeNormImg for one image, transcribed as the oracle."""
    img_c, img_h, img_w = rec_image_shape
    h, w = img.shape[:2]
    max_wh_ratio = max(img_w / img_h, w * 1.0 / h)
    img_w = int(img_h * max_wh_ratio)
    if img_w > max_img_w:
        resized = cv2.resize(img, (max_img_w, img_h))
        resized_w = img_w = max_img_w
    else:
        ratio = w / float(h)
        resized_w = img_w if math.ceil(img_h * ratio) > img_w else int(math.ceil(img_h * ratio))
        resized = cv2.resize(img, (resized_w, img_h))
    resized = resized.astype("float32").transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    out = np.zeros((img_c, img_h, img_w), dtype=np.float32)
    out[:, :, :resized_w] = resized
    return out


@pytest.mark.parametrize("shape", [(32, 100), (48, 320), (20, 400), (64, 64), (31, 977), (10, 5000), (48, 3300),
                                   (7, 1), (1, 7)])
def test_preprocess_matches_paddlex(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    ref = paddlex_resize_norm(img)
    width = target_width(*shape)
    assert width == ref.shape[2]
    ours = preprocess_batch([img], width)[0]
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_min_and_max_width():
    assert target_width(48, 10) == 320
    assert target_width(10, 100000) == 3200


def one_hot(seq, num_classes, p=0.9):
    probs = np.full((len(seq), num_classes), (1 - p) / (num_classes - 1), np.float32)
    probs[np.arange(len(seq)), seq] = p
    return probs


def test_ctc_collapses_repeats_and_blanks():
    classes = ["blank", "a", "b", " "]
    probs = one_hot([1, 1, 0, 1, 2, 2, 0, 0, 3, 1], 4)
    probs[4, 2] = 0.5  # a less sure step among the kept ones
    [(text, score)] = ctc_greedy_decode(probs[None], classes)
    assert text == "aab a"
    kept = [0, 3, 4, 8, 9]
    assert score == pytest.approx(float(probs[kept].max(axis=1).mean()))


def test_ctc_empty_line_scores_zero():
    [(text, score)] = ctc_greedy_decode(one_hot([0, 0, 0], 3)[None], ["blank", "x", " "])
    assert (text, score) == ("", 0.0)


def test_ctc_batch_rows_are_independent():
    classes = ["blank", "x", "y", " "]
    probs = np.stack([one_hot([1, 0, 2], 4), one_hot([2, 2, 0], 4)])
    assert [t for t, _ in ctc_greedy_decode(probs, classes)] == ["xy", "y"]


def test_dict_lines_keep_ideographic_and_plain_spaces():
    data = "\u3000\n一\n \r\nz\n".encode()
    assert read_dict_lines(data) == ["\u3000", "一", " ", "z"]


def test_build_classes_pads_short_dicts_and_refuses_long_ones(caplog):
    assert build_classes(["a", "b"], 4) == ["blank", "a", "b", " "]
    assert build_classes(["a", "b"], 5) == ["blank", "a", "b", " ", " "]
    assert "padding" in caplog.text
    with pytest.raises(ModelError, match="wrong dict"):
        build_classes(["a", "b", "c"], 4)


@pytest.mark.parametrize("batch_size", [1, 2, 6, 8, 64])
def test_batches_of_one_width_take_few_shapes(batch_size):
    """Full batches, then the rest in powers of two: every line once, in order, and at most log2(batch) + 2 batch
    sizes over any number of lines (the CPU plugin keeps kernels per shape)."""
    from edgerec.runtime.predictor import batch_sizes

    seen: set[int] = set()
    for n in range(0, 300):
        sizes = batch_sizes(n, batch_size)
        assert sum(sizes) == n and all(1 <= s <= batch_size for s in sizes)
        assert sizes == sorted(sizes, reverse=True)
        seen.update(sizes)
    assert len(seen) <= math.floor(math.log2(batch_size)) + 2
    assert batch_sizes(7, 8) == [4, 2, 1] and batch_sizes(17, 8) == [8, 8, 1]
