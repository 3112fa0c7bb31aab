"""ONNX Runtime engine: the reference (what RapidOCR runs), on the same ONNX file the IR came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerec.engines.base import DeviceSpec, Engine, EngineKind, EngineOptionError, EngineOptions, parse_device
from edgerec.errors import DeviceError, EngineUnavailableError, ModelError


@dataclass(frozen=True)
class ONNXRuntimeOptions(EngineOptions):
    """ONNX Runtime session options (threads is intra_op_num_threads).

    ``allow_spinning``: ``session.intra_op.allow_spinning``; None keeps ONNX Runtime's default (its worker threads
    spin after each run, which takes the cores from whatever else runs on a small machine), False sets it to 0.
    """

    allow_spinning: bool | None = None

    def __post_init__(self) -> None:
        if self.allow_spinning is not None and not isinstance(self.allow_spinning, bool):
            raise EngineOptionError(f"engine 'onnxruntime': allow_spinning must be True, False or None, not "
                                    f"{self.allow_spinning!r}")


def check_device(spec: DeviceSpec) -> None:
    if spec.family != "cpu":
        raise DeviceError(f"device {spec.text!r}: the onnxruntime engine runs on 'cpu' only")


class ONNXRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, device: str | DeviceSpec = "cpu",
                 options: ONNXRuntimeOptions | None = None, **values):
        if options is not None and values:
            raise EngineOptionError("engine 'onnxruntime': give options or keywords, not both")
        opts = options if options is not None else ONNXRuntimeOptions.build(self.name, values)
        check_device(parse_device(device))
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineUnavailableError(
                "the onnxruntime engine needs the onnxruntime package: pip install onnxruntime") from exc
        self.device = "cpu"
        self.path = Path(model_path)
        so = ort.SessionOptions()
        if opts.threads:
            so.intra_op_num_threads = int(opts.threads)
        so.log_severity_level = 3
        if opts.allow_spinning is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if opts.allow_spinning else "0")
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{model_path}: ONNX Runtime cannot load this model ({exc})") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.threads = opts.threads
        self.allow_spinning = opts.allow_spinning

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def properties(self) -> dict[str, Any]:
        """``config``: what the session reads back (intra-op threads, spinning), not what was asked for."""
        so = self.session.get_session_options()
        try:
            spinning = so.get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: ONNX Runtime's default, spinning
            spinning = "1 (default)"
        return {"engine": self.name, "device": self.device, "precision": "f32", "threads": self.threads,
                "streams": 1, "providers": list(self.session.get_providers()),
                "allow_spinning": self.allow_spinning,
                "config": {"intra_op_num_threads": so.intra_op_num_threads, "allow_spinning": spinning}}

    def files(self) -> list[Path]:
        return [self.path]


def _open(path: Path, spec: DeviceSpec, options: EngineOptions, precision: str) -> Engine:
    return ONNXRuntimeEngine(path, spec, options)  # type: ignore[arg-type]


KIND = EngineKind(name="onnxruntime", source_format="onnx", options=ONNXRuntimeOptions, open=_open,
                  check_device=check_device)
