"""Evaluate a recognizer on a dataset's ``val.txt``: PaddleOCR's ``acc`` and ``norm_edit_dis`` plus every prediction.

The metrics are :func:`edgerec.data.metrics.rec_metrics` (PaddleOCR's ``RecMetric``: spaces ignored, normalized
Levenshtein distance), the same code the report tool uses. An image that cannot be read costs only itself: it
counts as wrong (edit distance 1), is listed in the result, and the other samples are still evaluated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from edgerec.data.dataset import find_list_file, read_labelled, resolve_folder
from edgerec.data.metrics import rec_metrics
from edgerec.errors import InputError
from edgerec.utils import cpu
from edgerec.utils.fs import output_problem, stage_bytes, utf8

if TYPE_CHECKING:
    from edgerec.api import TextRecognizer

RESULT_FILE = "evaluate_result.json"
PREDICTIONS_FILE = "predictions.jsonl"
CHUNK = 256  # images decoded and recognized per step: bounds memory on large val sets


def evaluate(model_or_name: TextRecognizer | str | None, dataset_dir: str | Path, *,
             model_dir: str | Path | None = None, precision: str | None = None, batch_size: int = 8,
             output: str | Path | None = None, device: str | None = None, engine: str | None = None,
             threads: int | None = None, min_width: int | None = None, width_bucket: int | None = None,
             progress: bool | None = None, recheck: str | None = None, recheck_below: float | None = None) -> dict:
    """Evaluate a model on ``dataset_dir``'s ``val.txt`` (an evalset's ``label.txt`` works too).

    ``model_or_name``: a loaded :class:`~edgerec.api.TextRecognizer`, a model card name, or None with
    ``model_dir`` (an exported IR folder or a local Paddle / ONNX model, e.g. a fine-tuned ``best_accuracy/``).
    ``precision``, ``device``, ``engine``, ``threads``, ``min_width``, ``width_bucket``, ``recheck`` and
    ``recheck_below`` go to ``create_model`` when the model is loaded here (a loaded model reads lines as it was
    created to).
    ``output``: when given, writes ``evaluate_result.json`` and ``predictions.jsonl`` (one JSON object per
    sample: path, label, pred, score, correct, error) there, atomically.

    Returns the content of ``evaluate_result.json``: ``{"done_flag": true, "metrics": {"acc", "norm_edit_dis"},
    "samples", "correct", "unreadable", "unreadable_images", ...}``.
    """
    from tqdm import tqdm

    from edgerec.api import TextRecognizer, create_model
    from edgerec.io.inputs import load_image

    if output is not None:
        _check_output(Path(output))  # before the run, not after it
    folder = resolve_folder(dataset_dir)
    list_file = find_list_file(folder, "val")
    pairs = read_labelled(folder, "val")
    if not pairs:
        raise InputError(list_file, "no labelled lines to evaluate on")
    if isinstance(model_or_name, TextRecognizer):
        if any(v is not None for v in (min_width, width_bucket, recheck, recheck_below)):
            raise InputError("model", "min_width, width_bucket and recheck are create_model's options: pass them "
                             "there for a loaded model")
        model = model_or_name
    else:
        if model_or_name is None and model_dir is None:
            raise InputError("model", "give a model name or model_dir")
        model = create_model(model_or_name, model_dir=model_dir, device=device, precision=precision,
                             engine=engine, batch_size=batch_size, threads=threads, min_width=min_width,
                             width_bucket=width_bucket, progress=sys.stderr.isatty() if progress is None else progress,
                             recheck=recheck, **({} if recheck_below is None else {"recheck_below": recheck_below}))

    rels = [p.relative_to(folder).as_posix() for p, _ in pairs]
    labels = [label for _, label in pairs]
    preds: list[str] = []
    scores: list[float] = []
    errors: list[str | None] = []

    def load(path: Path):
        try:
            return load_image(path), None
        except InputError as exc:
            return None, exc.reason

    show = sys.stderr.isatty() if progress is None else progress
    before = model.recheck_counts  # a loaded model may have read lines before: count this evaluation's only
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool, tqdm(total=len(pairs), desc="evaluating", unit="line", file=sys.stderr,
                                             leave=False, disable=not show) as bar:
        for lo in range(0, len(pairs), CHUNK):
            loaded = list(pool.map(load, [p for p, _ in pairs[lo:lo + CHUNK]]))
            good = [img for img, err in loaded if err is None]
            results = iter(model.predict(good, batch_size=batch_size, on_error="result")) if good else iter(())
            for _img, err in loaded:
                if err is None:
                    res = next(results)
                    err = res.error
                    text, score = ("", 0.0) if err else (res["rec_text"], res["rec_score"])
                else:
                    text, score = "", 0.0
                preds.append(text)
                scores.append(float(score))
                errors.append(err)
                bar.update(1)
    seconds = time.perf_counter() - start

    failed = [e is not None for e in errors]
    met = rec_metrics(preds, labels, failed=failed)
    rows = []
    for rel, label, pred, score, err in zip(rels, labels, preds, scores, errors):
        correct = err is None and pred.replace(" ", "") == label.replace(" ", "")
        rows.append({"path": rel, "label": label, "pred": pred, "score": round(score, 6), "correct": correct,
                     "error": err})
    result = {
        "done_flag": True,
        "metrics": {"acc": met["acc"], "norm_edit_dis": met["norm_edit_dis"]},
        "alnum_acc": met["alnum_acc"],
        "samples": len(rows),
        "correct": sum(r["correct"] for r in rows),
        "unreadable": sum(failed),
        "unreadable_images": [f"{r['path']}: {r['error']}" for r in rows if r["error"] is not None],
        "model": {"name": model.model_name, "precision": model.precision, "engine": model.engine,
                  "device": model.device, "path": str(model.model_path),
                  "min_width": model.predictor.min_width, "width_bucket": model.predictor.width_bucket,
                  **({"recheck": model.predictor.recheck.precision, "recheck_below": model.predictor.recheck.below,
                      "read_again": {k: v - before[k] for k, v in model.recheck_counts.items()}}
                   if model.predictor.recheck else {})},
        # the CPU the figures hold for: int8 (VNNI or saturating) and bf16 read differently on other CPUs
        "cpu": cpu.isa_summary(),
        "int8_vnni": cpu.int8_vnni(),
        "dataset_path": str(dataset_dir),
        "list_file": list_file.name,
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "predictions": PREDICTIONS_FILE,
    }
    if output is not None:
        out = Path(output)
        # both staged before either is renamed into place: a failed write leaves the old pair, not half a new one;
        # a kill between the two renames can pair new predictions with the old result, which its predictions_sha256
        # then does not match
        lines = utf8("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        result["predictions_sha256"] = hashlib.sha256(lines).hexdigest()
        staged = [(stage_bytes(out / PREDICTIONS_FILE, lines), out / PREDICTIONS_FILE)]
        try:
            body = utf8(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
            staged.append((stage_bytes(out / RESULT_FILE, body), out / RESULT_FILE))
            for tmp, final in staged:
                os.replace(tmp, final)
        finally:
            for tmp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    return result


def _check_output(out: Path) -> None:
    """The output folder can take evaluate's two files (``utils.fs.output_problem``), else an InputError."""
    problem = output_problem(out, (RESULT_FILE, PREDICTIONS_FILE))
    if problem is not None:
        raise InputError(*problem)
