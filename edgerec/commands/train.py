"""``edgerec train``: click command only; the work is in edgerec.train.finetune (optional extra edgerec[train])."""

from __future__ import annotations

import sys

import click

from edgerec.commands.common import fail
from edgerec.commands.shell import on_sigterm
from edgerec.errors import EdgeRecError


@click.command("train")
@click.argument("name")
@click.option("--dataset", required=True, type=click.Path(exists=True, file_okay=False),
              help="A PaddleX MSTextRecDataset folder: train.txt and val.txt (path<TAB>label).")
@click.option("--epochs", type=click.IntRange(1, 100000), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(0, 1, min_open=True), default=3e-4, show_default=True,
              help="Peak learning rate of AdamW's one-cycle schedule.")
@click.option("--device", default="cpu", show_default=True, help="cpu, or gpu / gpu:N (NVIDIA, CUDA build of torch).")
@click.option("--freeze-backbone", is_flag=True, help="Train the neck and CTC head only (faster, less memory).")
@click.option("--output", default="./output", show_default=True, type=click.Path(file_okay=False),
              help="Writes train_result.json, train.log, config.yaml, best_accuracy/ and latest/.")
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop after this many steps in all.")
@click.option("--eval-interval", type=click.IntRange(0), default=0, show_default=True,
              help="Also validate every N steps (0: after each epoch only).")
@click.option("--max-width", type=click.IntRange(320, 3200), default=640, show_default=True,
              help="Training input width cap; wider lines are squashed to it.")
@click.option("--no-augment", is_flag=True, help="Train on the crops as they are.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads (default: all cores).")
@click.option("--source", help="With a card NAME: the card's source id to start from.")
@click.option("--dict", "dict_path", type=click.Path(exists=True, dir_okay=False),
              help="Train with this charset (one character a line; default: the dataset's dict.txt if it has one). "
                   "Characters new to the model get new CTC head rows; known ones keep theirs.")
@click.option("--quiet", is_flag=True, help="No progress bar; the log still goes to train.log.")
@click.option("--overwrite", is_flag=True,
              help="Replace the best_accuracy/ and latest/ an earlier run left in --output (refused otherwise).")
def train_cmd(name, dataset, epochs, batch_size, learning_rate, device, freeze_backbone, output, max_steps,
              eval_interval, max_width, no_augment, seed, threads, source, dict_path, quiet, overwrite) -> None:
    """Fine-tune model NAME (a card name, or a local model folder such as an earlier best_accuracy/) with CTC.

    Needs the train extra: pip install 'edgerec[train]'. Validates on val.txt after every epoch; the best model
    by val acc lands in OUTPUT/best_accuracy/, a model folder that `edgerec export --model-dir`, `edgerec quantize
    --model-dir` and `edgerec predict --model-dir` take. Ctrl-C stops early and keeps the best model so far.
    """
    from edgerec.train import require_torch

    on_sigterm(KeyboardInterrupt)  # a scheduler's or `timeout`'s stop keeps the best model, as Ctrl-C does
    for option, value in (("--output", output), ("NAME", name)):
        if not str(value).strip():
            fail(f"{option}: give a name, not an empty one")
    try:
        require_torch()
        from edgerec.train.finetune import TrainConfig, finetune

        cfg = TrainConfig(model=name, dataset=dataset, output=output, epochs=epochs, batch_size=batch_size,
                          learning_rate=learning_rate, device=device, freeze_backbone=freeze_backbone,
                          max_steps=max_steps, eval_interval=eval_interval, max_width=max_width,
                          augment=not no_augment, seed=seed, threads=threads, source=source,
                          dict_path=dict_path, overwrite=overwrite)
        result = finetune(cfg, progress=not quiet)
    except EdgeRecError as exc:
        fail(exc)
    except KeyboardInterrupt:
        click.echo("edgerec: interrupted before training started; nothing was saved", err=True)
        sys.exit(130)
    best = result["models"]["best"]
    click.echo(f"best val acc {best['score']:.4f} (norm_edit_dis {best['norm_edit_dis']:.4f}, epoch {best['epoch']}) "
               f"-> {output}/best_accuracy")
    if result.get("interrupted"):
        click.echo("edgerec: interrupted; the best model so far is kept", err=True)
        sys.exit(130)

