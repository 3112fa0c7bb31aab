"""Training data for fine-tuning: labelled crops checked against the model, seeded augmentation, width batches.

Every line of ``train.txt`` / ``val.txt`` is read once up front (decoded, so an unreadable image is found before
training starts) and checked against the model: characters missing from its charset and labels too long for its
time steps (CTC needs one step per character plus one between repeated characters; the model has width/8 steps)
are counted and reported with examples. Such training lines are left out of training (and listed as left out);
validation keeps every readable line, so its accuracy is the one ``edgerec evaluate`` would report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgerec.data.dataset import find_list_file, read_lines
from edgerec.errors import EdgeRecError
from edgerec.io.inputs import load_image
from edgerec.runtime.preprocess import MIN_W, resize_norm_into, target_width
from edgerec.train import TrainError

MAX_EXAMPLES = 10


@dataclass
class Sample:
    path: Path
    label: str
    where: str                  # "train.txt:12"
    height: int
    width: int
    target: list[int] | None    # class ids, or None when the label cannot be encoded


@dataclass
class SplitReport:
    """What reading one split found; goes into train.log and train_result.json."""

    split: str
    list_file: str
    lines: int = 0
    used: int = 0
    unreadable: list[str] = field(default_factory=list)
    missing_chars: Counter = field(default_factory=Counter)
    missing_lines: int = 0
    missing_examples: list[dict] = field(default_factory=list)
    too_long_lines: int = 0
    too_long_examples: list[dict] = field(default_factory=list)
    empty_lines: int = 0

    def as_dict(self) -> dict:
        return {
            "split": self.split, "list_file": self.list_file, "lines": self.lines, "used": self.used,
            "unreadable": len(self.unreadable), "unreadable_examples": self.unreadable[:MAX_EXAMPLES],
            "labels_with_chars_missing_from_charset": self.missing_lines,
            "missing_chars": dict(self.missing_chars.most_common(50)),
            "missing_char_examples": self.missing_examples,
            "labels_longer_than_time_steps": self.too_long_lines,
            "too_long_examples": self.too_long_examples,
            "empty_labels": self.empty_lines,
        }

    def summary(self) -> list[str]:
        out = [f"{self.split}: {self.lines} lines in {self.list_file}, {self.used} used"]
        if self.unreadable:
            kept = "left out" if self.split == "train" else "kept: counted as read wrong, as edgerec evaluate does"
            out.append(f"  {len(self.unreadable)} unreadable images ({kept}), e.g. " + "; ".join(self.unreadable[:3]))
        if self.empty_lines:
            out.append(f"  {self.empty_lines} empty labels (left out of training, as PaddleOCR's label encoder "
                       "leaves them out)")
        if self.missing_lines:
            chars = " ".join(f"{c!r}x{n}" for c, n in self.missing_chars.most_common(10))
            left = "left out of training" if self.split == "train" else "kept: they can never be read right"
            out.append(f"  {self.missing_lines} labels hold characters missing from the model's charset ({left}): "
                       f"{chars}; e.g. " + "; ".join(f"{e['where']} {e['label']!r}" for e in self.missing_examples[:3]))
        if self.too_long_lines:
            left = "left out of training" if self.split == "train" else "kept: they can never be read right"
            out.append(f"  {self.too_long_lines} labels are longer than the model's time steps ({left}); e.g. "
                       + "; ".join(f"{e['where']} {len(e['label'])} chars > {e['time_steps']} steps"
                                   for e in self.too_long_examples[:3]))
        return out


def char_index(classes: list[str]) -> dict[str, int]:
    """Character -> class id (the first id of a character that appears twice, as the decoder's padding does)."""
    index: dict[str, int] = {}
    for i, c in enumerate(classes):
        if i and c and c not in index:
            index[c] = i
    return index


def ctc_steps_needed(target: list[int]) -> int:
    """Time steps CTC needs for ``target``: one per symbol plus a blank between each repeated pair."""
    return len(target) + sum(1 for a, b in zip(target, target[1:]) if a == b)


def read_split(folder: str | Path, split: str, index: dict[str, int], *, input_height: int, max_width: int,
               stride: int, keep_all: bool) -> tuple[list[Sample], SplitReport]:
    """Read and check one split. ``keep_all``: keep lines that cannot be trained on (validation)."""
    try:
        list_file = find_list_file(folder, split)
        lines, _ = read_lines(folder, split)  # the reader check-dataset uses: the same lines, the same numbers
    except EdgeRecError as exc:
        raise TrainError(str(exc)) from None
    report = SplitReport(split=split, list_file=str(list_file), lines=len(lines))
    samples: list[Sample] = []
    sizes: dict[str, tuple[int, int] | EdgeRecError] = {}  # an image listed on many lines is decoded once
    for ln in lines:
        path, label, where = ln.path, ln.label, ln.where
        if not label.strip() and not keep_all:
            report.empty_lines += 1
            continue
        if str(path) not in sizes:
            try:
                sizes[str(path)] = load_image(path).shape[:2]
            except EdgeRecError as exc:
                sizes[str(path)] = exc
        size = sizes[str(path)]
        if isinstance(size, EdgeRecError):
            report.unreadable.append(f"{where} {size}")
            if keep_all:  # validation: a line that cannot be read is a line read wrong (edgerec evaluate's count)
                samples.append(Sample(path, label, where, 0, 0, None))
            continue
        h, w = size
        missing = [c for c in label if c not in index]
        target = None if missing else [index[c] for c in label]
        ok = True
        if missing:
            ok = False
            report.missing_lines += 1
            report.missing_chars.update(missing)
            if len(report.missing_examples) < MAX_EXAMPLES:
                report.missing_examples.append({"where": where, "label": label, "missing": sorted(set(missing))})
        else:
            steps = train_width(h, w, input_height, max_width) // stride
            if ctc_steps_needed(target) > steps:
                ok = False
                report.too_long_lines += 1
                if len(report.too_long_examples) < MAX_EXAMPLES:
                    report.too_long_examples.append({"where": where, "label": label, "time_steps": steps,
                                                     "steps_needed": ctc_steps_needed(target)})
        if ok or keep_all:
            samples.append(Sample(path, label, where, h, w, target if ok else None))
    report.used = len(samples)
    return samples, report


def train_width(h: int, w: int, input_height: int, max_width: int) -> int:
    """The input width a line gets in training: PaddleX's inference width, capped at ``max_width``."""
    return target_width(h, w, input_height, MIN_W, max_width)


@dataclass
class Augment:
    """Seeded augmentation for line crops: small affine, blur, contrast/brightness, noise, width stretch."""

    p_affine: float = 0.6
    max_rotate_deg: float = 1.5
    max_shear: float = 0.15
    p_stretch: float = 0.4
    stretch: tuple[float, float] = (0.85, 1.15)
    p_blur: float = 0.25
    p_contrast: float = 0.5
    p_noise: float = 0.25
    noise_sigma: tuple[float, float] = (2.0, 8.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        if rng.random() < self.p_stretch:
            fx = rng.uniform(*self.stretch)
            img = cv2.resize(img, (max(4, int(round(w * fx))), h), interpolation=cv2.INTER_LINEAR)
            h, w = img.shape[:2]
        if rng.random() < self.p_affine:
            angle = math.radians(rng.uniform(-self.max_rotate_deg, self.max_rotate_deg))
            shear = rng.uniform(-self.max_shear, self.max_shear)
            scale = rng.uniform(0.93, 1.05)
            cx, cy = w / 2.0, h / 2.0
            a, b = scale * math.cos(angle), scale * math.sin(angle)
            m = np.array([[a, -b + shear, 0.0], [b, a, 0.0]], np.float64)
            m[:, 2] = [cx - m[0, 0] * cx - m[0, 1] * cy + rng.uniform(-2, 2),
                       cy - m[1, 0] * cx - m[1, 1] * cy + rng.uniform(-0.04, 0.04) * h]
            img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if rng.random() < self.p_blur:
            sigma = rng.uniform(0.4, 1.1) * max(1.0, h / 48.0)
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        if rng.random() < self.p_contrast or rng.random() < self.p_noise:
            f = img.astype(np.float32)
            if rng.random() < self.p_contrast:
                alpha, beta = rng.uniform(0.6, 1.3), rng.uniform(-30, 30)
                mean = f.mean()
                f = (f - mean) * alpha + mean + beta
            if rng.random() < self.p_noise:
                f += rng.normal(0.0, rng.uniform(*self.noise_sigma), f.shape).astype(np.float32)
            img = np.clip(f, 0, 255).astype(np.uint8)
        return img


class TrainBatches:
    """Epochs of training batches: lines of similar width batched together, in a seeded random order."""

    def __init__(self, samples: list[Sample], batch_size: int, *, input_height: int, max_width: int, seed: int,
                 augment: Augment | None):
        if not samples:
            raise TrainError("no training line is left to train on (see the dataset report above)")
        self.samples = samples
        self.batch_size = batch_size
        self.input_height = input_height
        self.max_width = max_width
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        """The batches (lists of sample indices) of one epoch: shuffled, then sorted by width within pools."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.samples)).tolist()
        pool = self.batch_size * 8
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: self.samples[i].width / self.samples[i].height)
            batches += [chunk[j:j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def load(self, batch: list[int], epoch: int, step: int) -> tuple[np.ndarray, list[list[int]]]:
        """(N x 3 x H x W float32 normalised as at inference, targets) for one batch."""
        images = []
        for k, i in enumerate(batch):
            img = load_image(self.samples[i].path)
            if self.augment is not None:
                img = self.augment(img, np.random.default_rng([self.seed, epoch, step, k]))
            images.append(img)
        width = max(train_width(*im.shape[:2], self.input_height, self.max_width) for im in images)
        x = np.zeros((len(images), 3, self.input_height, width), np.float32)
        for k, img in enumerate(images):
            resize_norm_into(img, x[k])
        return x, [self.samples[i].target for i in batch]
