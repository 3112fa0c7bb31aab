"""Batching around an engine: group lines of equal input width, run, decode, hand results back in order.

Only lines that PaddleX would feed at the same width share a batch, so no line gets extra right-padding: the
SVTR neck attends over the whole width, and padding a line beyond its batch-1 width can change its text.
With equal widths the tensor a line contributes is the same whatever batch it is in. The opt-in ``width_bucket``
pads each line up to a bucket's width instead (a line's text then still does not depend on its batch).

This is the only way a line becomes text: the API, the camera, quantization's accuracy guard and the report all
run it, so what is measured is what users run (batching and the long-line path included).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgerec.engines.base import Engine
from edgerec.errors import ModelError
from edgerec.runtime.decode import ctc_greedy_decode
from edgerec.runtime.longline import needs_split, plan_long, read_windows, window_batches
from edgerec.runtime.preprocess import MAX_W, MIN_W, bucket_count, input_width, preprocess_batch

log = logging.getLogger(__name__)


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as an int, or ValueError naming it: a whole number >= 1 (PaddleX asserts the same)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, not {batch_size!r}")
    return int(batch_size)


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """How ``n`` lines of one width are cut into batches: full ones, then the rest in powers of two (7 -> 4, 2, 1).

    The CPU plugin prepares and keeps kernels per input shape, batch size included; a remainder of any size would
    make up to ``batch_size`` shapes per width over a long run (memory that grows for a long while), powers of two
    make at most log2(batch_size) + 2, all seen early. Batch composition never changes a line's result."""
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


# the most shapes width_bucket keeps prepared unless shape_cache says otherwise: int8 kernels cost ~10 MB per shape
# (edgerec.engines.openvino), so narrow buckets and big batches must not make the cache unbounded in practice
BUCKET_SHAPE_CACHE_MAX = 32


def bucket_shapes(min_width: int, width_bucket: int, batch_size: int) -> int:
    """The default shape cache with ``width_bucket``: every bucket's width (above the static ``min_width``) at
    every batch size a width's lines are cut into (``batch_sizes``), at most BUCKET_SHAPE_CACHE_MAX."""
    b = max(1, int(batch_size))
    sizes = {s for n in range(1, 2 * b) for s in batch_sizes(n, b)}
    return min(BUCKET_SHAPE_CACHE_MAX, bucket_count(width_bucket, min_width) * len(sizes))


# a line whose score is below this is read again by the recheck engine (create_model's recheck_below, the CLI's
# --recheck-below): on the evaluation sets int8's texts that differ from fp32's mostly score below it
RECHECK_BELOW = 0.9


class Recheck:
    """A second engine (the same model at a more precise precision, from ``path``) that reads again every line
    whose score is below ``below``: the first precision's speed on the lines it reads confidently, the second's
    reading of the others. A line it re-reads gets the second engine's text and score. Counts what it did
    (thread-safe)."""

    def __init__(self, engine: Engine, below: float, precision: str, path: object = None):
        self.engine = engine
        self.below = below
        self.precision = precision
        self.path = path
        self.lines = 0  # lines read
        self.reread = 0  # of which re-read
        self.nan_lines = 0  # re-read lines whose output held NaN here (RecPredictor counts them)
        self._lock = threading.Lock()

    def low(self, results: list[tuple]) -> list[int]:
        """The results to read again (score below ``below``), counted with the lines they came from."""
        low = [i for i, res in enumerate(results) if res[1] < self.below]
        with self._lock:
            self.lines += len(results)
            self.reread += len(low)
        return low

    def reset(self) -> None:
        with self._lock:
            self.lines = self.reread = 0

    def counts(self) -> dict:
        with self._lock:
            return {"lines": self.lines, "read_again": self.reread}

    def describe(self) -> str:
        return f"lines scoring below {self.below:g} read again at {self.precision}"


class RecPredictor:
    """Preprocess -> engine -> CTC decode, for lists of BGR uint8 line images. Thread-safe."""

    def __init__(self, engine: Engine, classes: list[str], input_height: int = 48,
                 min_width: int = MIN_W, max_width: int = MAX_W, long_lines: str = "split",
                 width_bucket: int | None = None, static_width: int | None = None, recheck: Recheck | None = None):
        if long_lines not in ("split", "squash"):
            raise ValueError(f"long_lines must be 'split' or 'squash', not {long_lines!r}")
        self.engine = engine
        # lines wider than max_width: "split" reads them in overlapping windows (edgerec.runtime.longline);
        # "squash" squeezes them to max_width as PaddleX does
        self.long_lines = long_lines
        self.classes = classes
        self.input_height = input_height
        self.min_width = min_width
        self.max_width = max_width
        # None: every line at its own width (PaddleX's); N: padded up to min_width + k * N (preprocess.bucket_width)
        self.width_bucket = width_bucket
        # PaddleX's input_shape: every line stretched to input_height x static_width (no padding, no windows)
        self.static_width = static_width
        # an engine that masks the bucket's padding (edgerec.engines.padding_mask) is told each line's own width,
        # and only the time steps of that width are decoded: the text is the line's own-width text
        self.masked = bool(width_bucket) and bool(getattr(engine, "masks_padding", False))
        if recheck is not None and self.masked and not getattr(recheck.engine, "masks_padding", False):
            raise ModelError("the recheck's model cannot mask the width buckets' padding as the first one does, so "
                             "it would read padded lines differently: give width_bucket=0 (--width-bucket 0)")
        self.recheck = recheck
        # optional timing hook, called once per batch as (lines, preprocess_s, infer_s, decode_s); the
        # report sets it to split the time per stage. Results never depend on it. With parallel requests it is
        # called from several pool threads at once: it must be thread-safe.
        self.on_timing: Callable[[int, float, float, float], None] | None = None
        # batches run this many at a time (OpenVINO's THROUGHPUT streams), each on a pool thread with its own
        # infer request; results are put back in input order, so parallel runs read exactly as serial ones
        self.parallel = max(1, int(getattr(engine, "parallel_requests", lambda: 1)()))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._softmax: bool | None = None  # whether the engine gives logits: decided on its first output
        self._count_lock = threading.Lock()
        self.nan_lines = 0  # lines whose output held NaN (read as '' at score 0); a recheck counts its own

    def width_of(self, image: np.ndarray) -> int:
        if self.static_width:
            return self.static_width
        h, w = image.shape[:2]
        return input_width(h, w, self.input_height, self.min_width, self.max_width, self.width_bucket)

    def own_width_of(self, image: np.ndarray) -> int:
        """The width the line reads as: its input width without a bucket's padding when that is masked."""
        if not self.masked:
            return self.width_of(image)
        h, w = image.shape[:2]
        return input_width(h, w, self.input_height, self.min_width, self.max_width)

    def max_wh_ratio(self, image: np.ndarray) -> float:
        """PaddleX's ``max_wh_ratio`` for this line (its word boxes scale by it): the width the line is padded to
        (never below min_width) over the input height, or its own w / h where that is wider (capped lines)."""
        h, w = image.shape[:2]
        return max(w / h, self.own_width_of(image) / self.input_height)

    def infer(self, images: list[np.ndarray], width: int, engine: Engine | None = None) -> np.ndarray:
        """N x T x C probabilities of lines (or windows) padded to input width ``width``."""
        return self._probabilities((engine or self.engine).infer(preprocess_batch(images, width, self.input_height)))

    def run_batch(self, images: list[np.ndarray], width: int, word_box: bool = False) -> list[tuple]:
        """Recognize lines that all have input width ``width`` (``word_box``: see ctc_greedy_decode)."""
        t0 = time.perf_counter()
        own = [self.own_width_of(img) for img in images] if self.masked else None
        if own is not None and all(w == width for w in own):
            own = None  # no line padded beyond its own width: nothing to mask
        batch = preprocess_batch(images, width, self.input_height, content_widths=own,
                                 stretch=bool(self.static_width))
        t1 = time.perf_counter()
        out, t2 = self._read(self.engine, batch, own, word_box)
        reread_s = 0.0
        if self.recheck is not None:
            low = self.recheck.low(out)
            t3 = time.perf_counter()
            start = 0  # the same tensors, so a re-read line reads exactly as it would alone at that precision; in
            for size in batch_sizes(len(low), len(out)):  # power-of-two batches, shapes the engine has prepared
                part = low[start:start + size]
                again, _ = self._read(self.recheck.engine, batch[part],
                                      None if own is None else [own[i] for i in part], word_box)
                for i, res in zip(part, again):
                    out[i] = res
                start += size
            reread_s = time.perf_counter() - t3
        if self.on_timing is not None:  # a re-read counts as inference
            self.on_timing(len(images), t1 - t0, t2 - t1 + reread_s, time.perf_counter() - t2 - reread_s)
        return out

    def _read(self, engine: Engine, batch: np.ndarray, own: list[int] | None, word_box: bool
              ) -> tuple[list[tuple], float]:
        """Infer and decode a preprocessed batch (``own``: each line's own width, its padding masked); the results
        and when inference ended."""
        if own is None:
            probs = self._probabilities(engine.infer(batch))
            t2 = time.perf_counter()
            return self._no_nan(ctc_greedy_decode(probs, self.classes, word_box=word_box), engine), t2
        probs = engine.infer(batch, valid_widths=own)  # type: ignore[call-arg]
        steps = engine.steps  # type: ignore[attr-defined]
        probs = self._probabilities(probs, steps(own[0]))
        t2 = time.perf_counter()
        return self._no_nan([ctc_greedy_decode(probs[i:i + 1, :steps(w)], self.classes, word_box=word_box)[0]
                             for i, w in enumerate(own)], engine), t2

    def _probabilities(self, probs: np.ndarray, steps: int | None = None) -> np.ndarray:
        """The engine's output as probabilities. A model exported without its final Softmax gives logits (or
        log-probabilities): the first output seen decides, once (its first line's ``steps`` valid steps), and a
        softmax over the classes is then taken for every batch. Texts (the argmax) are the same either way; the
        scores become probabilities, as PaddleX's models give them."""
        if self._softmax is None:
            first = probs[0, :steps] if steps else probs[0]
            first = first[np.isfinite(first).all(axis=-1)]  # NaN steps decide nothing: the next output does
            if first.size:  # bf16 and f16 sums stray from 1 by far less than 0.05; logits' by far more
                logits = bool(first.min() < -1e-3 or np.abs(first.sum(axis=-1) - 1).max() > 0.05)
                with self._count_lock:  # parallel batches: one decides, and it is said once
                    if self._softmax is None:
                        self._softmax = logits
                        if logits:
                            log.warning("the model's output is not probabilities (no final Softmax?): edgerec "
                                        "takes a softmax over the classes, so scores are probabilities (texts are "
                                        "the same)")
        if self._softmax:
            probs = np.exp(probs - probs.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
        return probs

    def _no_nan(self, results: list[tuple], engine: Engine) -> list[tuple]:
        """A line whose output held NaN (decoded as '' at score NaN) reads '' at score 0, is counted per engine
        (``nan_lines``) and said; a recheck with recheck_below > 0 reads it again. create_model refuses a model
        that gives NaN for its blank warm-up line."""
        bad = [i for i, res in enumerate(results) if math.isnan(res[1])]
        if bad:
            with self._count_lock:
                if engine is self.engine:
                    self.nan_lines += len(bad)
                else:  # the recheck's
                    self.recheck.nan_lines += len(bad)  # type: ignore[union-attr]
            log.warning("the model's output held NaN for %d line(s) of a batch of %d: read as '' (score 0)",
                        len(bad), len(results))
            for i in bad:
                results[i] = (results[i][0], 0.0, *results[i][2:])
        return results

    def recognize(self, images: list[np.ndarray], batch_size: int = 1, word_box: bool = False) -> list[tuple]:
        """(text, score) per image, in input order; ``word_box`` adds PaddleX's word info (not to split lines)."""
        batch_size = max(1, int(batch_size))
        groups: dict[int, list[int]] = defaultdict(list)
        out: list[tuple[str, float] | None] = [None] * len(images)
        for i, img in enumerate(images):
            if self.long_lines == "split" and not self.static_width and needs_split(*img.shape[:2],
                                                                                    self.input_height, self.max_width):
                out[i] = self._read_long(img, self.engine)
                if out[i] is not None and self.recheck is not None and self.recheck.low([out[i]]):
                    out[i] = self._read_long(img, self.recheck.engine)
                if out[i] is not None:
                    continue  # None: too long even for windows, squash it
            groups[self.width_of(img)].append(i)
        chunks: list[list[int]] = []
        widths: list[int] = []
        for width, idxs in groups.items():
            start = 0  # an offset, not idxs = idxs[size:]: that copied the rest of the group once per batch
            for size in batch_sizes(len(idxs), batch_size):
                chunks.append(idxs[start:start + size])
                widths.append(width)
                start += size

        def run(k: int) -> list[tuple]:
            return self.run_batch([images[i] for i in chunks[k]], widths[k], word_box)

        if self.parallel > 1 and len(chunks) > 1:
            done = self._executor().map(run, range(len(chunks)))
        else:
            done = map(run, range(len(chunks)))
        for chunk, results in zip(chunks, done):
            for i, res in zip(chunk, results):
                out[i] = res
        return out  # type: ignore[return-value]

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="edgerec-infer")
            return self._pool

    def _read_long(self, image: np.ndarray, engine: Engine) -> tuple[str, float] | None:
        """A line too wide for one pass, read in overlapping windows; None when it needs too many (squash it)."""
        windows = plan_long(image, self.input_height)
        if windows is None:
            return None
        rows: list[np.ndarray] = [np.empty(0)] * len(windows)
        for pad_w, ks in window_batches(windows):
            for k, row in zip(ks, self.infer([windows[k].crop(image) for k in ks], pad_w, engine)):
                rows[k] = row
        res = read_windows(image, windows, rows, self.classes, self.input_height)
        return None if res is None else self._no_nan([res], engine)[0]
