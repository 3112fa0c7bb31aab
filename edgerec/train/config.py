"""What drives a fine-tuning run (:class:`TrainConfig`), and ``config.yaml``, where a run records it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgerec.utils.fs import atomic_write_text


@dataclass
class TrainConfig:
    """Everything that drives a fine-tuning run; written to ``config.yaml``."""

    model: str                          # a card name, or a local model folder / .onnx
    dataset: str
    output: str = "output"
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 3e-4
    device: str = "cpu"                 # cpu | gpu | gpu:N
    freeze_backbone: bool = False
    max_steps: int | None = None        # stop after this many optimizer steps in all
    eval_interval: int = 0              # also validate every N steps (0: after each epoch only)
    max_width: int = 640                # training input width cap (wider lines are squashed, as PaddleX does)
    augment: bool = True
    seed: int = 0
    threads: int | None = None          # torch CPU threads (default: torch's choice, all cores)
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    warmup: float = 0.1                 # share of steps spent warming the learning rate up
    source: str | None = None           # a card's source id
    dict_path: str | None = None        # the charset to train with (default: the dataset's dict.txt, if any)
    overwrite: bool = False             # replace an earlier run's best_accuracy/ and latest/ in ``output``


def write_config(cfg: TrainConfig, base_origin: Path, out: Path) -> None:
    """``config.yaml`` in ``out``: PaddleX's keys, then edgerec's whole config."""
    import yaml

    doc = {
        "Global": {"model": cfg.model, "mode": "train", "dataset_dir": str(Path(cfg.dataset).resolve()),
                   "device": cfg.device, "output": str(out.resolve())},
        "Train": {"epochs_iters": cfg.epochs, "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
                  "pretrain_weight_path": str(base_origin),
                  "freeze_backbone": cfg.freeze_backbone, "max_steps": cfg.max_steps,
                  "eval_interval": cfg.eval_interval, "max_width": cfg.max_width, "augment": cfg.augment,
                  "seed": cfg.seed, "threads": cfg.threads,
                  "optimizer": {"name": "AdamW", "weight_decay": cfg.weight_decay, "grad_clip_norm": cfg.grad_clip},
                  "lr_scheduler": {"name": "OneCycle", "warmup": cfg.warmup, "anneal": "cos"},
                  "loss": "CTCLoss (log_softmax of logits, blank 0, zero_infinity)",
                  "batch_norm": "frozen (pretrained statistics)"},
        "edgerec": asdict(cfg),
    }
    atomic_write_text(out / "config.yaml", yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
