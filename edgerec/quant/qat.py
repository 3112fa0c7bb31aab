"""Quantization-aware fine-tuning for ``edgerec quantize --qat``: int8 rounding simulated in torch, the fp32
model as the teacher, no labels.

Why: PTQ leaves each layer's rounding error where it falls. A few hundred distillation steps with the rounding in
the forward pass move the weights to where int8 costs the CTC output least, and need only unlabelled crops (the
rendered calibration lines, or the user's own with ``--calibration``).

Route: the model's ONNX source becomes a torch module (:mod:`edgerec.train.onnx_torch`, the fine-tuning path).
Every ``Conv2d`` the PTQ recipe quantizes gets simulated int8 (not the ones it keeps in float: the first and last
plain convolution, the squeeze-excitation gates and, where the card says so, the stem; :class:`FloatLayers`;
training a rounding that deployment never applies would bend the weights for nothing): weights symmetric per
output channel, inputs asymmetric per tensor with ranges fixed from the calibration crops beforehand, gradients
straight through (torch's ``fake_quantize_*`` ops). The neck's MatMuls stay float in training (NNCF still
quantizes them afterwards). The loss is KL(fp32 ‖ student) of the per-timestep CTC distribution; BatchNorm keeps
its statistics. The trained weights are written back into the ONNX (so the dynamic width and the graph stay the
shipped ones), converted to OpenVINO, given the fp32 IR's metadata, and then quantized by NNCF with the usual
recipe and guard (:func:`edgerec.quant.quantize.quantize_ir`), which compares against the original fp32.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerec.errors import EdgeRecError
from edgerec.runtime.preprocess import preprocess_batch, target_width

log = logging.getLogger(__name__)

MAX_TRAIN_W = 640      # wider calibration lines are squashed to this in training (as ``edgerec train`` does)
RANGE_BATCHES = 16     # calibration batches the activation ranges are taken from
PROBE_LINES = 32       # lines the divergence is reported on, before and after


class QATError(EdgeRecError):
    """Quantization-aware fine-tuning cannot run (no torch, no ONNX source) or failed."""


@dataclass
class QATConfig:
    """Drives the fine-tuning before PTQ; the defaults take minutes on 2 cores for the mobile models."""

    steps: int = 200
    batch_size: int = 8
    learning_rate: float = 1e-5
    seed: int = 0
    threads: int | None = None          # torch CPU threads (default: torch's choice)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError(f"QAT needs steps >= 1, batch_size >= 1 and learning_rate > 0, not {self}")


def require_torch():
    try:
        from edgerec.train import require_torch as train_torch

        return train_torch()
    except EdgeRecError as exc:
        raise QATError(f"--qat fine-tunes in PyTorch: {exc}") from None


def training_onnx(model_name: str | None, model_dir: str | Path | None, source_id: str | None,
                  scratch: Path) -> Path:
    """The ONNX the fp32 IR came from (a card's source, or a local ONNX / Paddle model), converted when Paddle."""
    from edgerec.zoo.export import paddle_to_onnx
    from edgerec.zoo.resolve import resolve_source

    target = model_dir if model_dir is not None else model_name
    try:
        src, _spec = resolve_source(str(target), source=source_id if model_dir is None else None)
    except EdgeRecError as exc:
        raise QATError(f"--qat needs the model's ONNX or Paddle source to train from: {exc}") from None
    if src.format == "paddle":
        return paddle_to_onnx(src, scratch / "source.onnx")
    if src.format != "onnx":
        raise QATError(f"--qat needs the model's ONNX or Paddle source; {src.model_file} is {src.format}")
    return src.model_file


# ------------------------------------------------------------------------------------------- simulated int8


def _fake_weight(torch, w):
    """Symmetric per-output-channel int8 (what NNCF's MIXED preset gives weights), straight-through gradient."""
    scale = w.detach().abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-8) / 127.0
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, -127, 127)


def _act_params(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric uint8 scale and zero point for an input range (it always holds 0, as NNCF's ranges do)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    return scale, int(min(255, max(0, round(-lo / scale))))


@dataclass(frozen=True)
class FloatLayers:
    """The convolutions the PTQ recipe keeps in float, which QAT therefore leaves unsimulated
    (``QuantizationConfig.float_layers()``; the same size rules as ``edgerec.quant.recipe._conv_groups``)."""

    first: bool = True    # the first plain (groups == 1) convolution
    last: bool = True     # the last plain convolution
    pooled: bool = True   # squeeze-excitation gates: convolutions on a 1x1 pooled input
    stem: bool = False    # convolutions on an input at least half the line's height


def simulated_convs(torch, module, height: int = 48, keep: FloatLayers | None = None) -> list:
    """The Conv2d modules that get simulated int8: all but those ``keep`` names (default: the recipe's defaults).
    Pooled and stem convolutions are found by their input size on one ``height`` x 320 line, as the recipe finds
    them on the IR."""
    keep = keep or FloatLayers()
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    plain = [m for m in convs if m.groups == 1]
    skip = set()
    if plain and keep.first:
        skip.add(id(plain[0]))
    if plain and keep.last:
        skip.add(id(plain[-1]))
    if keep.pooled or keep.stem:
        for conv, (h, w) in _input_sizes(torch, module, convs, height).items():
            if (keep.pooled and h * w == 1) or (keep.stem and 2 * h >= height):
                skip.add(conv)
    return [m for m in convs if id(m) not in skip]


def _input_sizes(torch, module, convs: list, height: int) -> dict[int, tuple[int, int]]:
    """(height, width) of each conv's input for one blank ``height`` x 320 line, by ``id(conv)``."""
    sizes: dict[int, tuple[int, int]] = {}

    def hook(conv, args):
        sizes[id(conv)] = tuple(args[0].shape[-2:])

    handles = [c.register_forward_pre_hook(hook) for c in convs]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, 3, height, 320))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return sizes


@contextlib.contextmanager
def fake_quantized(torch, convs: list, ranges: dict[int, tuple[float, float]]):
    """Within the block, each conv computes with int8-rounded weights and inputs; on exit the plain forward is back."""
    def forward_of(conv, scale: float, zero: int):
        def forward(x):
            xq = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)
            return conv._conv_forward(xq, _fake_weight(torch, conv.weight), conv.bias)
        return forward

    try:
        for conv in convs:
            conv.forward = forward_of(conv, *_act_params(*ranges[id(conv)]))
        yield
    finally:
        for conv in convs:
            conv.__dict__.pop("forward", None)


def activation_ranges(torch, module, convs: list, batches: list) -> dict[int, tuple[float, float]]:
    """Each conv's input range on the calibration batches: the smallest minimum and the mean maximum (so one
    outlier line does not stretch the grid)."""
    seen: dict[int, list[tuple[float, float]]] = {id(c): [] for c in convs}

    def hook(conv, args):
        x = args[0].detach()
        seen[id(conv)].append((float(x.min()), float(x.max())))

    handles = [c.register_forward_pre_hook(hook) for c in convs]
    try:
        with torch.no_grad():
            for x in batches[:RANGE_BATCHES]:
                module(x)
    finally:
        for h in handles:
            h.remove()
    return {k: (min(a for a, _ in v), float(np.mean([b for _, b in v]))) for k, v in seen.items() if v}


# ------------------------------------------------------------------------------------------------- training


def calibration_batches(torch, images: list[np.ndarray], height: int, batch_size: int) -> list:
    """Calibration lines in batches of similar width (sorted by aspect), each padded to its widest line."""
    order = sorted(range(len(images)), key=lambda i: images[i].shape[1] / max(1, images[i].shape[0]))
    out = []
    for j in range(0, len(order), batch_size):
        chunk = [images[i] for i in order[j:j + batch_size]]
        width = min(MAX_TRAIN_W, max(target_width(*im.shape[:2], img_h=height) for im in chunk))
        x = preprocess_batch(chunk, width, height)
        out.append(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
    return out


def _kl(torch, teacher_logits, student_logits):
    """Mean per-timestep KL(teacher ‖ student) of the CTC softmax, in nats."""
    t = torch.log_softmax(teacher_logits.float(), dim=-1)
    s = torch.log_softmax(student_logits.float(), dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean()


def _divergence(torch, teacher, student, convs, ranges, batches) -> float:
    student.eval()
    total, n = 0.0, 0
    with torch.no_grad(), fake_quantized(torch, convs, ranges):
        for x in batches:
            total += float(_kl(torch, teacher(x), student(x))) * x.shape[0]
            n += x.shape[0]
    return total / max(1, n)


def qat_finetune(onnx_path: str | Path, fp32_model, calibration: list[np.ndarray], height: int,
                 config: QATConfig | None = None, *, keep: FloatLayers | None = None, progress: bool = True):
    """Fine-tune ``onnx_path`` with simulated int8 against itself as teacher (``keep``: the convolutions PTQ will
    keep in float, left unsimulated); returns (openvino.Model with the trained weights and ``fp32_model``'s
    metadata, report dict)."""
    with warnings.catch_warnings():
        # onnx2torch's Slice indexes with a list: torch warns on every forward; results are unaffected
        warnings.filterwarnings("ignore", message=".*non-tuple sequence for multidimensional indexing.*")
        return _qat_finetune(onnx_path, fp32_model, calibration, height, config, keep, progress)


def _qat_finetune(onnx_path, fp32_model, calibration, height, config, keep, progress):
    import openvino as ov

    from edgerec.train import TrainError
    from edgerec.train.onnx_torch import write_back
    from edgerec.zoo.export import RT_KEY

    rec, _convs, _ranges, report = train_simulated(onnx_path, calibration, height, config, keep=keep,
                                                   progress=progress)
    with tempfile.TemporaryDirectory(prefix="edgerec-qat-") as tmp:
        try:
            trained = write_back(rec, Path(tmp) / "qat.onnx")
            model = ov.convert_model(str(trained))
        except (TrainError, RuntimeError, OSError) as exc:
            raise QATError(f"--qat: cannot write the trained weights back into {onnx_path}: {exc}") from exc
    model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, height, -1])})
    info = fp32_model.get_rt_info([RT_KEY]).astype(dict)
    for key, value in info.items():
        model.set_rt_info(value.astype(str), [RT_KEY, key])
    return model, report


def train_simulated(onnx_path, calibration: list[np.ndarray], height: int, config: QATConfig | None = None, *,
                    keep: FloatLayers | None = None, progress: bool = True):
    """The fine-tuning itself: (the trained TorchRecognizer, its simulated Conv2d modules, their input ranges by
    ``id(conv)``, report dict). ``qat_finetune`` writes the weights back for NNCF; scripts/qat_deployed.py deploys
    the simulation as trained instead."""
    from tqdm import tqdm

    from edgerec.train import TrainError
    from edgerec.train.onnx_torch import load_for_training
    from edgerec.train.steps import set_train_mode

    torch = require_torch()
    config = config or QATConfig()
    if len(calibration) < 2:
        raise QATError("--qat needs at least 2 calibration crops")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    t0 = time.perf_counter()
    try:
        rec = load_for_training(onnx_path, height)
    except TrainError as exc:
        raise QATError(f"--qat: {exc}") from None
    student = rec.module
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    convs = simulated_convs(torch, student, height, keep)
    all_convs = sum(isinstance(m, torch.nn.Conv2d) for m in student.modules())
    if not convs:
        raise QATError(f"{onnx_path}: no convolution to train with simulated int8")
    batches = calibration_batches(torch, calibration, height, config.batch_size)
    student.eval()
    ranges = activation_ranges(torch, student, convs, batches)  # still the fp32 weights
    probe = calibration_batches(torch, calibration[:PROBE_LINES], height, config.batch_size)
    before = _divergence(torch, teacher, student, convs, ranges, probe)

    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    losses: list[float] = []
    bar = tqdm(total=config.steps, desc="QAT fine-tuning", unit="step", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    try:
        set_train_mode(torch, student)
        with fake_quantized(torch, convs, ranges):
            for _ in range(config.steps):
                x = batches[rng.randrange(len(batches))]
                with torch.no_grad():
                    target = teacher(x)
                loss = _kl(torch, target, student(x))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                sched.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(kl=f"{np.mean(losses[-20:]):.4f}")
    finally:
        bar.close()
    after = _divergence(torch, teacher, student, convs, ranges, probe)
    log.info("QAT: divergence of simulated int8 from fp32 on %d lines %.5f -> %.5f nats",
             len(calibration[:PROBE_LINES]), before, after)
    report = {"steps": config.steps, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
              "seed": config.seed, "lines": len(calibration), "simulated_convs": len(convs),
              "float_convs": all_convs - len(convs),
              "divergence_before": round(before, 6), "divergence_after": round(after, 6),
              "loss_first": round(float(np.mean(losses[:10])), 6), "loss_last": round(float(np.mean(losses[-10:])), 6),
              "seconds": round(time.perf_counter() - t0, 1)}
    return rec, convs, ranges, report
