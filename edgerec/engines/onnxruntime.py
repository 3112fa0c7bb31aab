"""ONNX Runtime engine: the reference (what RapidOCR runs), on the same ONNX file the IR came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerec.engines.base import Engine
from edgerec.errors import DeviceError, EngineUnavailableError, ModelError


class ONNXRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, device: str = "cpu", *, threads: int | None = None, **_ignored):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineUnavailableError(
                "the onnxruntime engine needs the onnxruntime package: pip install onnxruntime") from exc
        if (device or "cpu").lower() != "cpu":
            raise DeviceError(f"device {device!r}: edgerec's onnxruntime engine runs on 'cpu' only")
        self.device = "cpu"
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{model_path}: ONNX Runtime cannot load this model ({exc})") from exc
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
