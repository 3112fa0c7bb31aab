"""Fine-tuning a recognizer on the user's line crops (the optional ``edgerec[train]`` extra).

The route (measured in the training spike): the model's ONNX becomes a PyTorch module (onnx2torch), CTC loss
trains it on ``log_softmax`` of its logits, and the trained tensors are written back into the original ONNX
graph, so the tuned model keeps the shipped input/output contract (dynamic width, softmax output) and goes
through ``edgerec export`` and ``edgerec quantize`` like a stock model. Nothing here imports torch at import
time: ``edgerec`` without the extra never needs it.
"""

from __future__ import annotations

from edgerec.errors import EdgeRecError

INSTALL_HINT = "pip install 'edgerec[train]'"


class TrainError(EdgeRecError):
    """Fine-tuning cannot start or cannot go on (missing extra, unusable dataset, unsupported model)."""


def require_torch():
    """Import and return torch, or raise TrainError saying how to install the extra."""
    try:
        import torch
    except ImportError as exc:
        raise TrainError(f"fine-tuning needs PyTorch, which is not installed: {INSTALL_HINT} "
                         f"(it installs torch, onnx2torch and onnxruntime; {exc})") from None
    return torch


__all__ = ["INSTALL_HINT", "TrainError", "require_torch"]
