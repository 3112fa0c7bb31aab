"""``edgerec train``: fine-tune a pretrained recognizer on a PaddleX MSTextRecDataset with CTC loss.

The model's ONNX (a card's fetched source, a Paddle source converted with paddle2onnx, or a local model folder
such as an earlier ``best_accuracy/``) becomes a torch module (:mod:`edgerec.train.onnx_torch`); training uses
the preprocessing the deployed model sees (:mod:`edgerec.runtime.preprocess`) plus seeded line augmentation,
AdamW with a one-cycle schedule, gradient clipping, BatchNorm frozen and channels_last (5x faster depthwise-conv
backward on CPU). Validation runs after every epoch (and every ``eval_interval`` steps) with the same width
grouping and CTC decoding as inference, scored by PaddleOCR's ``acc`` / ``norm_edit_dis``.

Writes PaddleX's outputs into ``output``: ``train_result.json``, ``train.log`` (appended to, as PaddleOCR's log
file is: each run begins with a ``===== edgerec train ...`` line), ``config.yaml`` and
``best_accuracy/`` (highest val acc, ties broken by norm_edit_dis; the pretrained model counts as epoch 0),
plus ``latest/`` (the weights when training ended; not written after Ctrl-C). Both are model folders that
``create_model(model_dir=...)``, ``edgerec export --model-dir`` and ``edgerec quantize --model-dir`` take:
``inference.onnx`` (the original graph with the trained weights), the charset dict and ``inference.yml``.
A dataset ``dict.txt`` (or ``dict_path``) that differs from the model's charset gives the model that charset
(:mod:`edgerec.train.charset_head`: new CTC head, known characters' rows kept).
Ctrl-C stops training and keeps the best model so far (folders are replaced atomically).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerec.data.dataset import read_lines
from edgerec.errors import EdgeRecError
from edgerec.train import TrainError, require_torch
from edgerec.train.base_model import MODEL_FILES, resolve_base, save_model_folder
from edgerec.train.charset_head import apply_dataset_dict, dataset_dict, read_new_dict
from edgerec.train.config import TrainConfig, write_config
from edgerec.train.data import Augment, TrainBatches, char_index, read_split
from edgerec.train.log import RUN_MARK, TrainLog
from edgerec.train.steps import ctc_loss as _ctc_loss
from edgerec.train.steps import device_for as _device
from edgerec.train.steps import evaluate_module
from edgerec.train.steps import probe_loss as _probe_loss
from edgerec.train.steps import set_train_mode as _set_train_mode
from edgerec.train.steps import to_input as _to_input
from edgerec.utils.fs import atomic_write_text, check_replaceable, output_problem

log = logging.getLogger(__name__)

BEST = "best_accuracy"
LATEST = "latest"
PROBE_LINES = 64  # training lines (unaugmented) the loss is measured on before and after training


@dataclass
class _State:
    epoch: int = 0
    step: int = 0
    best: tuple[float, float] | None = None
    best_at: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    interrupted: bool = False
    scratch: Path | None = None         # the run's own work folder in the output (removed at the end)


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------- the run


def _check_inputs(cfg: TrainConfig) -> None:
    """What can be checked in a moment, before the output folder is touched: the dataset's list files (present,
    every line well formed, at least one line each), the dict to train with, the model name or path."""
    from edgerec.zoo.cards import get_card

    for split in ("train", "val"):  # the reader check-dataset and training use: the same lines, the same errors
        try:
            lines, _ = read_lines(cfg.dataset, split)
        except EdgeRecError as exc:
            hint = (" (a PaddleX MSTextRecDataset needs train.txt and val.txt; `edgerec check-dataset DIR --split "
                    "...` makes them)") if "no train.txt" in str(exc) or "no val.txt" in str(exc) else ""
            raise TrainError(f"{exc}{hint}") from None
        if not lines:
            raise TrainError(f"dataset {cfg.dataset}: no labelled line in its {split} list, nothing to "
                             + ("train on" if split == "train" else "validate on"))
    new_dict = dataset_dict(cfg.dataset, cfg.dict_path)
    if new_dict is not None:
        read_new_dict(new_dict)
    if Path(cfg.model).expanduser().exists():  # a local model: its files and charset read now (nothing fetched)
        from edgerec.zoo.resolve import resolve_source

        try:
            resolve_source(cfg.model)
        except EdgeRecError as exc:
            raise TrainError(str(exc)) from None
    else:  # a card name: known, with that source (nothing fetched here)
        try:
            card = get_card(cfg.model)
        except EdgeRecError as exc:
            raise TrainError(str(exc)) from None
        if cfg.source is not None and not any(s.id == cfg.source for s in card.sources):
            raise TrainError(f"{card.name}: no source {cfg.source!r} in its card "
                             f"({', '.join(s.id for s in card.sources)})")


def _check_output(out: Path, earlier: list[str]) -> None:
    """Before anything is written: the output's files can be written there, and an earlier run's model folders
    (replaced with --overwrite) hold only what edgerec train writes, so a user's file in them is refused now, not
    after the config was replaced."""
    problem = output_problem(out, ("config.yaml", "train_result.json", "train.log"))
    if problem is not None:
        raise TrainError(f"{problem[0]}: {problem[1]}")
    for name in earlier:
        try:
            check_replaceable(out / name, MODEL_FILES, "edgerec train")
        except EdgeRecError as exc:
            raise TrainError(str(exc)) from None


def finetune(cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Run one fine-tuning; returns the train_result.json content. Ctrl-C ends it early, keeping the best model.

    Raises TrainError when it cannot start (no torch, bad dataset, no GPU for --device gpu, model not
    convertible).
    """
    torch = require_torch()
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.learning_rate > 0:
        raise TrainError("epochs and batch size must be at least 1 and the learning rate above 0")
    device = _device(cfg.device)
    _check_inputs(cfg)  # a run that cannot start leaves the output folder as it was
    out = Path(cfg.output)
    earlier = [name for name in (BEST, LATEST) if (out / name).exists()]
    if earlier and not cfg.overwrite:  # the first validation writes best_accuracy/ at once: it would be replaced
        raise TrainError(f"{out}: holds {' and '.join(f'{n}/' for n in earlier)} of an earlier run; pass "
                         "--overwrite to replace them (a new run writes its starting model there at once), or give "
                         "another --output")
    _check_output(out, earlier)
    try:
        out.mkdir(parents=True, exist_ok=True)
        logf = TrainLog(out / "train.log", echo=progress)  # appended to: an earlier run's log is kept above this one
    except OSError as exc:
        raise TrainError(f"{out}: cannot write the training output there ({exc.strerror or exc})") from None
    logf(f"{RUN_MARK}: {cfg.model} on {cfg.dataset} into {cfg.output} =====", terminal=False)
    state = _State()
    result: dict = {"model_name": cfg.model, "done_flag": False, "config": "config.yaml", "train_log": "train.log",
                    "visualdl_log": "", "label_dict": "", "models": {}}
    try:
        with warnings.catch_warnings():
            # onnx2torch's Slice indexes with a list: torch warns on every forward; results are unaffected
            warnings.filterwarnings("ignore", message=".*non-tuple sequence for multidimensional indexing.*")
            return _run(cfg, torch, device, out, logf, state, result, progress)
    except OSError as exc:  # a full disk, a folder that became read-only: one line, not a traceback
        where = exc.filename or out
        raise TrainError(f"{where}: cannot write the training output ({exc.strerror or exc})") from None
    finally:
        logf.close()
        if state.scratch is not None:
            shutil.rmtree(state.scratch, ignore_errors=True)


def _run(cfg, torch, device, out: Path, logf: TrainLog, state: _State, result: dict, progress: bool) -> dict:
    from tqdm import tqdm

    from edgerec.runtime.charset import build_classes
    from edgerec.train.onnx_torch import load_for_training

    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    scratch = state.scratch = Path(tempfile.mkdtemp(prefix=".work-", dir=out))  # ours alone: removed at the end
    base = resolve_base(cfg.model, cfg.source, scratch, logf)
    logf(f"edgerec train: {base.name} from {base.onnx} on {device}, torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    rec = load_for_training(base.onnx, base.input_height)
    classes = build_classes(base.entries, rec.num_classes, base.use_space_char, source=base.name)
    logf(f"converted to torch in {time.perf_counter() - t0:.1f} s: {rec.num_classes} classes")
    new_dict = dataset_dict(cfg.dataset, cfg.dict_path)
    if new_dict is not None:  # PaddleX trains with the dataset's dict.txt: the CTC head takes its charset
        base, classes = apply_dataset_dict(rec, base, classes, new_dict, logf)
    rec.module.to(device)
    with torch.no_grad():
        steps_320 = rec.module.eval()(torch.zeros(1, 3, base.input_height, 320, device=device)).shape[1]
    stride = max(1, round(320 / steps_320))

    index = char_index(classes)
    train, train_rep = read_split(cfg.dataset, "train", index, input_height=base.input_height,
                                  max_width=cfg.max_width, stride=stride, keep_all=False)
    val, val_rep = read_split(cfg.dataset, "val", index, input_height=base.input_height,
                              max_width=10**6, stride=stride, keep_all=True)
    for rep in (train_rep, val_rep):
        for line in rep.summary():
            logf(line)
    result["dataset"] = {"train": train_rep.as_dict(), "val": val_rep.as_dict()}
    if not train:  # every line unreadable, too long, or holding characters the charset lacks (logged above)
        raise TrainError(f"dataset {cfg.dataset}: none of the {train_rep.lines} lines of {train_rep.list_file} "
                         "can be trained on (see train.log: " + "; ".join(s.strip() for s in train_rep.summary()[1:])
                         + ")")
    if not any(s.height > 0 for s in val):
        raise TrainError(f"dataset {cfg.dataset}: no readable validation line in {val_rep.list_file}")
    # written once the run can start: a run refused on its data leaves an earlier run's config.yaml as it was
    write_config(cfg, base.origin, out)
    if cfg.overwrite and (out / LATEST).is_dir():  # an earlier run's last model must not sit beside this run's best
        shutil.rmtree(out / LATEST)
    batches = TrainBatches(train, cfg.batch_size, input_height=base.input_height, max_width=cfg.max_width,
                           seed=cfg.seed, augment=Augment() if cfg.augment else None)

    # what trains: everything (BatchNorm statistics aside), or the neck and head only
    backbone, rest = rec.parameters_by_part() if cfg.freeze_backbone else ([], list(
        p for p in rec.module.parameters()))
    for p in backbone:
        p.requires_grad_(False)
    params = [p for p in rest if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    logf(f"trainable: {n_train / 1e6:.2f} M parameters"
         + (f" (backbone frozen: {sum(p.numel() for p in backbone) / 1e6:.2f} M)" if cfg.freeze_backbone else ""))
    steps_per_epoch = len(batches)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optim = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=cfg.learning_rate, total_steps=max(2, total_steps),
                                                pct_start=cfg.warmup, anneal_strategy="cos")
    probe = sorted(np.random.default_rng(cfg.seed).permutation(len(train))[:PROBE_LINES].tolist())
    result["train_loss_probe"] = {"lines": len(probe), "before": round(_probe_loss(rec, batches, probe, device), 6)}
    logf(f"{len(train)} training lines, {steps_per_epoch} steps of {cfg.batch_size} per epoch, {total_steps} steps "
         f"in all; {len(val)} validation lines")

    def validate(tag: str) -> dict:
        t = time.perf_counter()
        metrics, _ = evaluate_module(rec, val, classes, cfg.batch_size, device)
        key = (metrics["acc"], metrics["norm_edit_dis"])
        better = state.best is None or key > state.best
        entry = {"epoch": state.epoch, "step": state.step, "acc": round(metrics["acc"], 6),
                 "norm_edit_dis": round(metrics["norm_edit_dis"], 6), "eval_seconds": round(time.perf_counter() - t, 1)}
        state.history.append({"type": "eval", **entry})
        if better:  # saved first: the state and the log name a best model only once it is on disk
            save_model_folder(rec, base, classes, out / BEST, {"val": entry})
            state.best, state.best_at = key, entry
        logf(f"{tag}: val acc {metrics['acc']:.4f}  norm_edit_dis {metrics['norm_edit_dis']:.4f}"
             + ("  (best so far: saved to best_accuracy/)" if better else ""))
        return entry

    validate("pretrained (epoch 0)")
    try:
        while state.epoch < cfg.epochs and (not cfg.max_steps or state.step < cfg.max_steps):
            state.epoch += 1
            losses: list[float] = []
            order = batches.epoch(state.epoch)
            if cfg.max_steps:
                order = order[:cfg.max_steps - state.step]
            bar = tqdm(total=len(order), desc=f"epoch {state.epoch}/{cfg.epochs}", unit="step", file=sys.stderr,
                       leave=True, disable=not progress, dynamic_ncols=True)
            try:
                for k, batch in enumerate(order):
                    t = time.perf_counter()
                    x, targets = batches.load(batch, state.epoch, k)
                    _set_train_mode(torch, rec.module)
                    logits = rec.module(_to_input(torch, x, device))
                    loss = _ctc_loss(torch, logits, targets)
                    optim.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    optim.step()
                    if state.step + 1 < max(2, total_steps):
                        sched.step()
                    state.step += 1
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainError(f"the loss became {value} at step {state.step}; try a lower "
                                         "--learning-rate")
                    losses.append(value)
                    state.step_seconds.append(time.perf_counter() - t)
                    bar.set_postfix(loss=f"{value:.4f}", avg=f"{statistics.fmean(losses):.4f}",
                                    lr=f"{sched.get_last_lr()[0]:.2e}")
                    bar.update(1)
                    logf(f"epoch {state.epoch} step {state.step}: loss {value:.5f} lr {sched.get_last_lr()[0]:.3e} "
                         f"width {x.shape[3]} {state.step_seconds[-1]:.2f} s", terminal=False)
                    if cfg.eval_interval and state.step % cfg.eval_interval == 0 and k + 1 < len(order):
                        validate(f"step {state.step}")
            finally:
                bar.close()
            mean = statistics.fmean(losses) if losses else float("nan")
            state.history.append({"type": "train", "epoch": state.epoch, "step": state.step,
                                  "loss": round(mean, 6)})
            logf(f"epoch {state.epoch}: mean loss {mean:.4f} over {len(losses)} steps")
            validate(f"epoch {state.epoch}")
    except KeyboardInterrupt:
        state.interrupted = True
        logf(f"interrupted at epoch {state.epoch}, step {state.step}: keeping the best model so far "
             f"(val acc {state.best_at.get('acc', float('nan')):.4f} at epoch {state.best_at.get('epoch')})")
    return _finish(cfg, torch, rec, base, classes, batches, probe, device, out, logf, state, result, t_start)


def _finish(cfg, torch, rec, base, classes, batches, probe, device, out, logf, state, result, t_start) -> dict:
    try:
        # after Ctrl-C the weights may be half-way through an optimizer step: only best_accuracy/ is kept then
        if not state.interrupted:
            result["train_loss_probe"]["after"] = round(_probe_loss(rec, batches, probe, device), 6)
            logf(f"loss on {len(probe)} unaugmented training lines: {result['train_loss_probe']['before']:.4f} -> "
                 f"{result['train_loss_probe']['after']:.4f}")
            save_model_folder(rec, base, classes, out / LATEST, {"epoch": state.epoch, "step": state.step})
    except KeyboardInterrupt:
        state.interrupted = True
    steps = sorted(state.step_seconds)
    best = state.best_at
    result.update({
        "model_name": base.name,
        "done_flag": not state.interrupted,
        "interrupted": state.interrupted,
        "label_dict": f"{BEST}/{base.dict_name}",
        "models": {
            "best": {"score": best.get("acc"), "norm_edit_dis": best.get("norm_edit_dis"), "epoch": best.get("epoch"),
                     "step": best.get("step"), "model_dir": BEST, "onnx": f"{BEST}/inference.onnx",
                     "inference_config": f"{BEST}/inference.yml"},
            "last_1": None if state.interrupted else {
                "epoch": state.epoch, "step": state.step, "model_dir": LATEST, "onnx": f"{LATEST}/inference.onnx",
                "inference_config": f"{LATEST}/inference.yml"},
        },
        "history": state.history,
        "steps": state.step,
        "epochs": state.epoch,
        "seconds_per_step_median": round(steps[len(steps) // 2], 3) if steps else None,
        "peak_rss_mb": round(_peak_rss_mb() or 0) or None,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    atomic_write_text(out / "train_result.json", json.dumps(result, indent=2, ensure_ascii=False))
    logf(f"best: val acc {best.get('acc')} (epoch {best.get('epoch')}, step {best.get('step')}) in {out / BEST}; "
         f"{state.step} steps, median {result['seconds_per_step_median']} s/step, peak RSS {result['peak_rss_mb']} MB")
    return result

