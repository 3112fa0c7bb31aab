"""The one interface every inference engine implements; engines know nothing of models, charsets or the API.

Device names follow PaddleX, plus OpenVINO's own (the case matters, as in PaddleX and OpenVINO):

=================  ==============================  =====================
device             means                           engine when not forced
=================  ==============================  =====================
``cpu`` / ``CPU``  the CPU                         openvino
``GPU``, ``GPU.N`` Intel GPU (iGPU / Arc), OpenVINO openvino
``AUTO[:...]``     OpenVINO picks (CPU first)      openvino
``gpu``, ``gpu:N`` NVIDIA GPU N (PaddleX naming)   paddle (CUDA build)
``NPU``, others    an OpenVINO device              openvino
=================  ==============================  =====================
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edgerec.errors import DeviceError


class EngineType(str, enum.Enum):
    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"
    PADDLE = "paddle"


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string. ``family`` is cpu, intel-gpu, auto, nvidia or openvino (another OV device)."""

    text: str
    family: str
    index: int | None = None

    @property
    def openvino_name(self) -> str | None:
        """The name OpenVINO knows this device by; None for an NVIDIA GPU, which OpenVINO cannot run on."""
        if self.family == "cpu":
            return "CPU"
        if self.family == "nvidia":
            return None
        return self.text


_NVIDIA = re.compile(r"^gpu(?::(\d+))?$")
_INTEL_GPU = re.compile(r"^GPU(?:\.(\d+))?$")


def parse_device(device: str | None) -> DeviceSpec:
    """Parse a device string (see the module docstring); a malformed one raises DeviceError naming it."""
    text = (device or "cpu").strip()
    if text.lower() == "cpu":
        return DeviceSpec("cpu", "cpu")
    m = _NVIDIA.match(text)
    if m:
        return DeviceSpec(text, "nvidia", int(m.group(1) or 0))
    m = _INTEL_GPU.match(text)
    if m:
        return DeviceSpec(text, "intel-gpu", int(m.group(1)) if m.group(1) else None)
    if text.upper() == "AUTO" or text.upper().startswith("AUTO:"):
        return DeviceSpec(text.upper(), "auto")
    if text.lower().startswith("gpu"):
        # "gpu.0", "Gpu", "gpu:x": say which of the two GPU namings was probably meant
        raise DeviceError(f"device {text!r}: use 'gpu' or 'gpu:N' (N a number) for an NVIDIA GPU, or 'GPU' / "
                          "'GPU.N' for an Intel GPU through OpenVINO")
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.:,]*", text):
        return DeviceSpec(text.upper(), "openvino")
    raise DeviceError(f"device {text!r}: use cpu, GPU, GPU.N, AUTO (Intel, OpenVINO) or gpu, gpu:N (NVIDIA, "
                      "Paddle Inference)")


def default_engine(device: str | DeviceSpec | None) -> EngineType:
    """The engine a device runs on when none is forced: Paddle Inference for NVIDIA, OpenVINO otherwise."""
    spec = device if isinstance(device, DeviceSpec) else parse_device(device)
    return EngineType.PADDLE if spec.family == "nvidia" else EngineType.OPENVINO


class Engine(ABC):
    """Runs a recognizer: N x 3 x H x W float32 in, N x T x C probabilities out.

    Implementations are safe to call from several threads at once.
    """

    name: str = "base"
    device: str = "cpu"

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Return the softmax output for ``batch``; the array is the caller's to keep."""

    def describe(self) -> str:
        """A short description of how the engine is configured, for ``TextRecognizer.config_summary``."""
        return f"{self.name} on {self.device}"

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
