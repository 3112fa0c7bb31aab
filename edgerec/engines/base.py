"""The one interface every inference engine implements; engines know nothing of models, charsets or the API."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod

import numpy as np


class EngineType(str, enum.Enum):
    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"
    PADDLE = "paddle"


class Engine(ABC):
    """Runs a recognizer: N x 3 x H x W float32 in, N x T x C probabilities out.

    Implementations are safe to call from several threads at once.
    """

    name: str = "base"
    device: str = "cpu"

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Return the softmax output for ``batch``; the array is the caller's to keep."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


def create_engine(engine: str | EngineType, model_path: str, device: str = "cpu", **options) -> Engine:
    """Build an engine by name, importing its package only now (a missing optional package gives a clear error)."""
    kind = EngineType(str(engine).lower()) if not isinstance(engine, EngineType) else engine
    if kind is EngineType.OPENVINO:
        from edgerec.engines.openvino import OpenVINOEngine

        return OpenVINOEngine(model_path, device=device, **options)
    if kind is EngineType.ONNXRUNTIME:
        from edgerec.engines.onnxruntime import ONNXRuntimeEngine

        return ONNXRuntimeEngine(model_path, device=device, **options)
    from edgerec.engines.paddle import PaddleEngine

    return PaddleEngine(model_path, device=device, **options)
