"""``edgerec check-dataset`` and ``edgerec evaluate``: click commands only; the work is in edgerec.data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from edgerec.commands.common import (
    ENGINE,
    MIN_WIDTH,
    PRECISION_OPTION,
    RECHECK,
    WIDTH_BUCKET,
    fail,
    recheck_options,
)
from edgerec.errors import EdgeRecError

SHOWN_PER_KIND = 20  # problem lines printed per kind; problems.txt has them all



@click.command("check-dataset")
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--output", default="./output", show_default=True, type=click.Path(file_okay=False),
              help="Writes check_dataset_result.json and check_dataset/ (demo_img/, histogram.png, problems.txt).")
@click.option("--model", "model_name", default=None,
              help="Check labels against this model's charset [default: PP-OCRv4_mobile_rec]. A dict.txt in "
                   "the dataset overrides it.")
@click.option("--model-dir", type=click.Path(exists=True),
              help="Take the charset from a local model (IR folder, Paddle/ONNX model) instead.")
@click.option("--split", is_flag=True, help="Re-split train.txt + val.txt first (needs both percentages).")
@click.option("--train-percent", type=click.IntRange(0, 100), default=None, help="With --split: train share.")
@click.option("--val-percent", type=click.IntRange(0, 100), default=None, help="With --split: val share.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --split: the shuffle's seed.")
@click.option("--strict", is_flag=True,
              help="Fail on characters outside the charset too (by default a warning, as in PaddleX).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def check_dataset_cmd(dataset_dir, output, model_name, model_dir, split, train_percent, val_percent, seed,
                      strict, quiet) -> None:
    """Check a PaddleX MSTextRecDataset folder (train.txt, val.txt, optional dict.txt).

    Decodes every image and reports, with file:line, lines without exactly one tab, empty labels, characters
    missing from the charset, duplicate paths, unreadable images and paths that leave the folder. The verdict
    follows PaddleX: the exit status is 1 (check_pass false) for unreadable images or list files and lines that
    are not well formed; characters outside the charset, empty labels and duplicates are warnings unless --strict.
    """
    from edgerec.data.check import check_dataset, split_dataset

    if split:
        if train_percent is None or val_percent is None:
            raise click.UsageError("--split needs --train-percent and --val-percent")
        if train_percent + val_percent != 100:
            raise click.UsageError(f"--train-percent {train_percent} and --val-percent {val_percent} must sum "
                                   "to 100")
    elif train_percent is not None or val_percent is not None:
        raise click.UsageError("--train-percent / --val-percent only work with --split")
    try:
        if split:
            done = split_dataset(dataset_dir, train_percent, val_percent, seed=seed)
            kept = f"; originals kept as {', '.join(done['backups'])}" if done["backups"] else ""
            click.echo(f"split {done['train'] + done['val']} lines: train.txt {done['train']}, val.txt "
                       f"{done['val']} (seed {seed}){kept}")
        res = check_dataset(dataset_dir, output, model_name=model_name, model_dir=model_dir,
                            progress=False if quiet else None, strict=strict)
    except EdgeRecError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"cannot write to {output}: {exc}")
    base = Path(dataset_dir)
    shown: dict[str, int] = {}
    for p in res["problems"]:
        shown[p["kind"]] = shown.get(p["kind"], 0) + 1
        if shown[p["kind"]] <= SHOWN_PER_KIND:
            where = base / p["file"]
            click.echo(f"{where}{'' if p['line'] is None else ':' + str(p['line'])}: {p['message']}")
    for kind, n in res["problem_counts"].items():
        if n > SHOWN_PER_KIND:
            click.echo(f"... {n - SHOWN_PER_KIND} more {kind} problems in {Path(output) / res['problems_file']}")
    missing = res["charset"]["missing_chars"]
    if missing:
        top = ", ".join(f"{c!r} x{m['count']}" for c, m in list(missing.items())[:10])
        click.echo(f"{len(missing)} character(s) missing from the {res['charset']['source']} charset: {top}"
                   + (" ..." if len(missing) > 10 else ""))
    a = res["attributes"]
    click.echo(f"check_pass: {str(res['check_pass']).lower()} (train {a['train_samples']}, val "
               f"{a['val_samples']} samples; {res['images']['decoded']} images decoded; charset: "
               f"{res['charset']['source'] or '-'})")
    click.echo(f"wrote {Path(output) / 'check_dataset_result.json'} and {Path(output) / 'check_dataset'}/")
    for warning in res["warnings"]:
        click.echo(f"edgerec: warning: {warning}", err=True)
    if not res["check_pass"]:
        for reason in res["reasons"]:
            click.echo(f"edgerec: {reason}", err=True)
        fail(f"{dataset_dir}: the dataset check failed ({len(res['reasons'])} kind(s) of problem above)")


@click.command("evaluate")
@click.argument("name", required=False)
@click.option("--model-dir", type=click.Path(exists=True),
              help="An exported IR folder or a local Paddle/ONNX model (e.g. a fine-tuned best_accuracy/).")
@click.option("--dataset", "dataset_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A MSTextRecDataset folder: its val.txt is evaluated (an evalset's label.txt works too).")
@PRECISION_OPTION
@RECHECK
@click.option("--batch-size", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--device", default="cpu", show_default=True,
              help="cpu, GPU, GPU.0, AUTO (Intel); gpu:N (NVIDIA, paddle engine).")
@click.option("--engine", type=ENGINE, default=None, help="openvino, onnxruntime or paddle [default: by device].")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Inference threads (default: all cores).")
@MIN_WIDTH
@WIDTH_BUCKET
@click.option("--output", default="./output", show_default=True, type=click.Path(file_okay=False),
              help="Writes evaluate_result.json and predictions.jsonl here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate_cmd(name, model_dir, dataset_dir, precision, recheck, recheck_below, batch_size, device, engine,
                 threads, min_width, width_bucket, output, quiet) -> None:
    """Evaluate a model on a dataset's val.txt: acc and norm_edit_dis as PaddleOCR's RecMetric defines them.

    Unreadable images count as wrong and are reported one line each on stderr; the exit status is then 1.
    --min-width and --width-bucket read the lines as `edgerec predict` does with them: check an opt-in on your own
    labelled crops before you run with it.
    """
    from edgerec.data.evaluate import PREDICTIONS_FILE, RESULT_FILE, evaluate

    if not name and not model_dir:
        raise click.UsageError("give a model NAME or --model-dir")
    try:
        res = evaluate(name, dataset_dir, model_dir=model_dir, precision=precision, batch_size=batch_size,
                       output=output, device=device, engine=engine, threads=threads, min_width=min_width,
                       width_bucket=width_bucket, progress=False if quiet else None,
                       **recheck_options(recheck, recheck_below))
    except EdgeRecError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"cannot write to {output}: {exc}")
    for line in res["unreadable_images"]:
        click.echo(f"edgerec: error: {os.path.join(dataset_dir, line)}", err=True)
    m, mod = res["metrics"], res["model"]
    widths = (f", min width {mod['min_width']}" if min_width else "") + (
        f", widths padded to {mod['min_width']} + k x {mod['width_bucket']}" if mod["width_bucket"] else "") + (
        f", {mod['read_again']['read_again']} lines scoring below {mod['recheck_below']:g} read again at "
        f"{mod['recheck']}" if mod.get("recheck") else "")
    click.echo(f"acc {m['acc']:.4f}  norm_edit_dis {m['norm_edit_dis']:.4f}  ({res['correct']}/{res['samples']} "
               f"correct, {res['unreadable']} unreadable; {mod['name']} {mod['precision']} on {mod['engine']} "
               f"{mod['device']}{widths})")
    click.echo(f"wrote {Path(output) / RESULT_FILE} and {Path(output) / PREDICTIONS_FILE}")
    if res["unreadable"]:
        sys.exit(1)
