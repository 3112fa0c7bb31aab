"""PaddleX's recognition preprocessing in NumPy: resize to height 48, keep the aspect ratio, normalise, right-pad.

It follows PaddleX ``OCRReisizeNormImg`` for a batch of one: the input width is
``int(H * max(320 / 48, w / h))`` (so never under 320) and lines wider than ``max_width`` (3200) are squashed to
it. Images are BGR, as ``cv2.imread`` gives them: the PP-OCR models were trained on BGR.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

IMG_H = 48
MIN_W = 320
MAX_W = 3200
# the narrowest min_width a caller may ask for: the recognizers downsample the width by 8 (16 px: 2 CTC steps,
# room for one character); issue 12 measured 160 accuracy-neutral and 96 already 0.5-1 pt worse
MIN_W_FLOOR = 16


def check_min_width(min_width: int) -> int:
    """``min_width`` as an int, or ValueError naming it: a whole number from MIN_W_FLOOR to MAX_W."""
    if isinstance(min_width, bool) or not isinstance(min_width, (int, np.integer)) or not (
            MIN_W_FLOOR <= min_width <= MAX_W):
        raise ValueError(f"min_width must be a whole number of pixels from {MIN_W_FLOOR} to {MAX_W} "
                         f"(default {MIN_W}, PaddleX's), not {min_width!r}")
    return int(min_width)


def check_width_bucket(width_bucket: int | None) -> int | None:
    """``width_bucket`` as an int, or None for exact widths (None, or 0: exact widths even with ``use_hpip``, which
    otherwise picks buckets), or ValueError naming it: a whole number from 8 to MAX_W."""
    if width_bucket is None:
        return None
    if isinstance(width_bucket, bool) or not isinstance(width_bucket, (int, np.integer)) or not (
            8 <= width_bucket <= MAX_W or width_bucket == 0):
        raise ValueError(f"width_bucket must be None or 0 (exact widths, PaddleX's) or a whole number of pixels "
                         f"from 8 to {MAX_W}, not {width_bucket!r}")
    return int(width_bucket) or None


def check_input_shape(input_shape, width_bucket: int | None) -> tuple[int, int] | None:
    """PaddleX's ``input_shape`` ``[3, H, W]`` as (H, W), or ValueError naming it; None when not given."""
    if input_shape is None:
        return None
    try:
        c, h, w = (int(v) for v in input_shape)
        if any(isinstance(v, bool) or int(v) != v for v in input_shape):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"input_shape must be [3, height, width] in whole pixels, not {input_shape!r}") from None
    if c != 3 or not 1 <= h <= 1024 or not MIN_W_FLOOR <= w <= MAX_W:
        raise ValueError(f"input_shape {[c, h, w]}: give [3, the model's input height, a width from {MIN_W_FLOOR} "
                         f"to {MAX_W}]")
    if width_bucket:
        raise ValueError("input_shape stretches every line to one width; width_bucket pads to several: give one")
    return h, w


def target_width(h: int, w: int, img_h: int = IMG_H, min_w: int = MIN_W, max_w: int = MAX_W) -> int:
    """The padded input width PaddleX uses for one line of size h x w at batch size 1."""
    return min(int(img_h * max(min_w / img_h, w / float(h))), max_w)


def bucket_width(width: int, bucket: int | None, min_w: int = MIN_W, max_w: int = MAX_W) -> int:
    """``width`` right-padded up to the next of min_w, min_w + bucket, min_w + 2 * bucket, ... (at most max_w).

    An opt-in (``width_bucket``): lines of many widths then share a few input shapes, whose kernels OpenVINO
    prepares once, at the cost of extra right-padding, which changes a few texts. The minimum width, where most
    words land, is never padded further. None: the exact width, as PaddleX."""
    if not bucket or width <= min_w:
        return width
    return min(max_w, min_w + -(-(width - min_w) // bucket) * bucket)


def input_width(h: int, w: int, img_h: int = IMG_H, min_w: int = MIN_W, max_w: int = MAX_W,
                bucket: int | None = None) -> int:
    """The width one h x w line is fed at: PaddleX's padded width, then its width bucket where one is asked for
    (what RecPredictor reads and what quantization calibrates on)."""
    return bucket_width(target_width(h, w, img_h, min_w, max_w), bucket, min_w, max_w)


def bucket_count(bucket: int, min_w: int = MIN_W, max_w: int = MAX_W) -> int:
    """How many widths above ``min_w`` the buckets make (the last one capped at ``max_w``): 18 for 160 from 320."""
    return -(-(max_w - min_w) // bucket)


def resized_width(h: int, w: int, pad_w: int, img_h: int = IMG_H) -> int:
    """Width the line is resized to before right-padding to ``pad_w`` (PaddleX: ceil, capped at the pad width)."""
    return max(1, min(int(math.ceil(img_h * w / float(h))), pad_w))


def resize_norm_into(img_bgr: np.ndarray, out: np.ndarray) -> None:
    """Resize and normalise one BGR uint8 line into ``out`` (3 x H x W float32, already zero-filled).

    Writes straight into the batch buffer so the hot path makes no extra copy of the padded tensor.
    """
    img_h, pad_w = out.shape[1], out.shape[2]
    h, w = img_bgr.shape[:2]
    rw = resized_width(h, w, pad_w, img_h)
    resized = cv2.resize(img_bgr, (rw, img_h), interpolation=cv2.INTER_LINEAR)
    chw = resized.transpose(2, 0, 1)
    # (x / 255 - 0.5) / 0.5 in float32, as PaddleX computes it
    np.divide(chw, np.float32(255.0), out=out[:, :, :rw], casting="unsafe")
    out[:, :, :rw] -= np.float32(0.5)
    out[:, :, :rw] /= np.float32(0.5)


def stretch_norm_into(img_bgr: np.ndarray, out: np.ndarray) -> None:
    """PaddleX's ``staticResize`` (its ``input_shape`` option): the line stretched to the whole of ``out``
    (3 x H x W), its aspect ratio not kept, then normalised as resize_norm_into does."""
    img_h, w = out.shape[1], out.shape[2]
    resized = cv2.resize(img_bgr, (w, img_h), interpolation=cv2.INTER_LINEAR)
    np.divide(resized.transpose(2, 0, 1), np.float32(255.0), out=out, casting="unsafe")
    out -= np.float32(0.5)
    out /= np.float32(0.5)


def preprocess_batch(images: list[np.ndarray], pad_w: int, img_h: int = IMG_H,
                     content_widths: list[int] | None = None, stretch: bool = False) -> np.ndarray:
    """Stack lines into one N x 3 x H x pad_w float32 tensor, each right-padded with zeros. ``content_widths``:
    lay each line out as at that input width (its own, below a width bucket's), then pad it to ``pad_w``.
    ``stretch``: every line stretched to H x pad_w instead (PaddleX's ``input_shape``)."""
    batch = np.zeros((len(images), 3, img_h, pad_w), dtype=np.float32)
    for i, img in enumerate(images):
        if stretch:
            stretch_norm_into(img, batch[i])
        else:
            resize_norm_into(img, batch[i] if content_widths is None else batch[i, :, :, :content_widths[i]])
    return batch
