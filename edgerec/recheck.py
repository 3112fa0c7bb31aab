"""``recheck``: read low-scoring lines again at a more precise precision (int8 or bf16 first, fp32 for the doubtful).

int8 and bf16 change a few lines' texts against fp32, and on words and scene text those lines mostly score low:
reading the lines that score below 0.9 again at fp32 gives back most of fp32's accuracy for the cost of
re-reading them (docs/measurements/2026-12-08-recheck.md). The second model is the same model (same weights and
charset) at the other precision, opened with the same engine options but computing at its own precision, and it
reads the same input tensors; the re-read line gets its text and score.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgerec.engines.base import DeviceSpec, EngineKind, EngineOptions
from edgerec.errors import ModelError
from edgerec.runtime.predictor import RECHECK_BELOW, Recheck
from edgerec.zoo.export import ModelInfo
from edgerec.zoo.resolve import resolve_model

# what may read again, and what each may read again: fp32 anything less precise, bf16 int8 (an fp16 IR computes
# in f32 on CPU, and in f16 on an Intel GPU only when asked for)
RECHECKS = {"fp32": ("int8", "bf16", "fp16"), "bf16": ("int8",)}


def check_recheck(recheck: str | None, below: object) -> float:
    """``recheck_below`` as a float in [0, 1], or ValueError naming it (checked before anything loads, so a typo
    never waits for a model); ``recheck`` must be fp32 or bf16, and a threshold without it is refused."""
    if recheck is not None and recheck not in RECHECKS:
        raise ModelError(f"recheck {recheck!r}: use fp32 (or bf16 under int8), a more precise precision than the "
                         "one the model runs at")
    if isinstance(below, bool) or not isinstance(below, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(below) <= 1.0:  # NaN fails the comparison too
        raise ValueError(f"recheck_below must be a score between 0 and 1, not {below!r}")
    if recheck is None and float(below) != RECHECK_BELOW:
        raise ValueError("recheck_below sets when a recheck reads a line again: give recheck='fp32' (or 'bf16') too")
    return float(below)


def recheck_note(precision: str, recheck: str) -> str:
    """Why ``recheck`` cannot read again what ``precision`` read, or '' when it can."""
    if precision in RECHECKS[recheck]:
        return ""
    fix = "precision int8 or bf16" if recheck == "fp32" else "precision int8"
    return f"recheck {recheck} is not more precise than {precision}, which runs: give {fix}, or no recheck"


def refuse_unfit(kind: EngineKind, spec: DeviceSpec, precision: str, recheck: str) -> None:
    """Raise unless ``recheck`` can read again, on this engine and device, what ``precision`` reads."""
    if why := recheck_note(precision, recheck):
        raise ModelError(why)
    kind.check_precision(recheck, spec, what="recheck")


def recheck_for(kind: EngineKind, spec: DeviceSpec, options: EngineOptions, info: ModelInfo, run_precision: str,
                recheck: str, below: float, *, checked: bool, hpip_chooses: bool, model_name: str | None,
                model_dir: str | Path | None, source: str | None, progress: bool) -> tuple[Recheck | None, str]:
    """create_model's recheck once the precision that runs is known: (the Recheck, '') or, where use_hpip chose a
    precision it cannot recheck, (None, why). ``checked``: refuse_unfit already ran on what the caller named."""
    if hpip_chooses and recheck_note(run_precision, recheck):
        return None, f"recheck {recheck} not used: use_hpip chose {run_precision}"
    if not checked:
        refuse_unfit(kind, spec, run_precision, recheck)
    return open_recheck(kind, spec, options, info, recheck, below, model_name=model_name, model_dir=model_dir,
                        source=source, progress=progress), ""


def open_recheck(kind: EngineKind, spec: DeviceSpec, options: EngineOptions, info: ModelInfo, recheck: str,
                 below: float, *, model_name: str | None, model_dir: str | Path | None, source: str | None,
                 progress: bool) -> Recheck:
    """The second engine: the same model at ``recheck`` precision (fetched or exported as any model is; an IR
    folder given as ``model_dir`` needs that precision beside it), with the first one's options except what would
    make it compute at another precision than its own (refuse_unfit has checked that it can run)."""
    try:
        resolved = resolve_model(model_name, model_dir, recheck, source_format=kind.source_format, source=source,
                                 progress=progress)
    except ModelError as exc:
        raise type(exc)(f"recheck {recheck}: {exc}") from None
    other = resolved.info
    if other is not None:
        differ = [what for what, a, b in (
            ("name", other.model_name, info.model_name), ("weights", other.source_sha256, info.source_sha256),
            ("charset", other.classes, info.classes), ("input height", other.input_height, info.input_height))
            if a != b]
        if differ:
            raise ModelError(f"recheck {recheck}: {resolved.path} is not the model that runs ({info.model_name}): "
                             f"its {', '.join(differ)} differ")
    eng = kind.open(resolved.path, spec, _own_precision(options), "bf16" if recheck == "bf16" else resolved.precision)
    return Recheck(eng, below, recheck, resolved.path)


def _own_precision(options: EngineOptions) -> EngineOptions:
    """The options without a compute precision of their own (OpenVINO's infer_precision, or an
    INFERENCE_PRECISION_HINT in its config): the recheck computes at the precision it is for."""
    changes: dict = {}
    if getattr(options, "infer_precision", None) is not None:
        changes["infer_precision"] = None
    config = getattr(options, "config", None)
    if config and "INFERENCE_PRECISION_HINT" in config:
        changes["config"] = {k: v for k, v in config.items() if k != "INFERENCE_PRECISION_HINT"} or None
    return dataclasses.replace(options, **changes) if changes else options
