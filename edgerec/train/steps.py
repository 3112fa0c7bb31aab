"""The torch side of one fine-tuning step: the device, CTC loss, input layout, BatchNorm freezing, validation.

Kept apart from :mod:`edgerec.train.finetune` (the run: model, loop, outputs) so the loop reads as a loop.
"""

from __future__ import annotations

import numpy as np

from edgerec.data.metrics import rec_metrics
from edgerec.engines.base import Engine
from edgerec.io.images import load_image
from edgerec.runtime.predictor import RecPredictor
from edgerec.train import TrainError, require_torch
from edgerec.train.data import Sample, TrainBatches

VAL_CHUNK = 256  # validation lines decoded at a time: memory stays bounded on a large val set


def device_for(spec: str):
    torch = require_torch()
    text = (spec or "cpu").strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text == "gpu" or text.startswith(("gpu:", "cuda")):
        index = text.split(":", 1)[1] if ":" in text else "0"
        if not torch.cuda.is_available():
            build = torch.__version__
            raise TrainError(f"--device {spec}: this PyTorch ({build}) sees no CUDA GPU"
                             + (" (it is a CPU-only build)" if torch.version.cuda is None else "")
                             + "; train with --device cpu, or install a CUDA build of torch==2.13.0 on a machine "
                             "with an NVIDIA GPU")
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise TrainError(f"--device {spec}: no such GPU ({torch.cuda.device_count()} visible)")
        return torch.device(f"cuda:{index}")
    raise TrainError(f"--device {spec!r}: use cpu, gpu or gpu:N")


def ctc_loss(torch, logits, targets: list[list[int]], reduction: str = "mean"):
    log_probs = torch.log_softmax(logits.float(), dim=-1).permute(1, 0, 2)  # T x N x C
    steps, n = log_probs.shape[0], log_probs.shape[1]
    flat = torch.tensor([c for t in targets for c in t], dtype=torch.long)
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    input_lengths = torch.full((n,), steps, dtype=torch.long)
    return torch.nn.functional.ctc_loss(log_probs, flat.to(logits.device), input_lengths, lengths, blank=0,
                                        reduction=reduction, zero_infinity=True)


def to_input(torch, x: np.ndarray, device):
    return torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)


def set_train_mode(torch, module) -> None:
    module.train()
    for m in module.modules():  # BatchNorm keeps the pretrained statistics: small data would wreck them
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


class TorchEngine(Engine):
    """The module being trained, as an engine: so validation reads lines through RecPredictor, as users run the
    exported model (width-grouped batches, long lines in windows), not through a decoder of its own."""

    name = "torch"

    def __init__(self, module, device):
        self.module, self.torch_device = module, device
        self.device = str(device)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = require_torch()
        with torch.no_grad():
            return torch.softmax(self.module(to_input(torch, batch, self.torch_device)).float(), dim=-1).cpu().numpy()


def evaluate_module(rec, samples: list[Sample], classes: list[str], batch_size: int, device
                    ) -> tuple[dict, list[str]]:
    """acc / norm_edit_dis of the torch module on ``samples``, read by RecPredictor as the exported model is."""
    rec.module.eval()
    predictor = RecPredictor(TorchEngine(rec.module, device), classes, input_height=rec.input_height)
    texts: list[str] = []
    for start in range(0, len(samples), VAL_CHUNK):
        chunk = samples[start:start + VAL_CHUNK]
        readable = [s for s in chunk if s.height > 0]  # an unreadable line (height 0) reads as '': wrong
        got = iter(predictor.recognize([load_image(s.path) for s in readable], batch_size)) if readable else iter(())
        texts += [next(got)[0] if s.height > 0 else "" for s in chunk]
    return rec_metrics(texts, [s.label for s in samples]), texts


def probe_loss(rec, batches: TrainBatches, idxs: list[int], device) -> float:
    """Mean CTC loss on fixed, unaugmented training lines (comparable before and after training)."""
    torch = require_torch()
    keep = batches.augment
    batches.augment = None
    total, count = 0.0, 0
    rec.module.eval()
    try:
        with torch.no_grad():
            order = sorted(idxs, key=lambda i: batches.samples[i].width / batches.samples[i].height)
            for j in range(0, len(order), batches.batch_size):
                chunk = order[j:j + batches.batch_size]
                x, targets = batches.load(chunk, 0, 0)
                loss = ctc_loss(torch, rec.module(to_input(torch, x, device)), targets, reduction="sum")
                total += float(loss)
                count += sum(len(t) for t in targets)
    finally:
        batches.augment = keep
    return total / max(1, count)
