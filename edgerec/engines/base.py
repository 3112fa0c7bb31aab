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

Which engine serves which device by default is the registry's (``edgerec.engines.registry``); each engine's
module says which devices it runs on (its ``check_device``) and which options it takes (a dataclass).
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerec.errors import DeviceError, EdgeRecError, ModelError, reason
from edgerec.utils import cpu


class EngineOptionError(EdgeRecError, ValueError):
    """An engine was given an option it does not take, or a value it cannot use."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string. ``family`` is cpu, intel-gpu, auto, nvidia or openvino (another OV device)."""

    text: str
    family: str
    index: int | None = None


_NVIDIA = re.compile(r"^gpu(?::(\d+))?$")
_INTEL_GPU = re.compile(r"^GPU(?:\.(\d+))?$")


def parse_device(device: str | DeviceSpec | None) -> DeviceSpec:
    """Parse a device string (see the module docstring); a malformed one raises DeviceError naming it."""
    if isinstance(device, DeviceSpec):
        return device
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


@dataclass(frozen=True)
class EngineOptions:
    """Options every engine takes; an engine's own dataclass adds its fields. Unknown names are an error, never
    dropped: an option that silently does nothing is a measurement that silently measures something else."""

    threads: int | None = None  # inference threads (None: the engine's default, usually all cores)

    @classmethod
    def build(cls, engine: str, values: dict[str, Any] | None = None):
        """``cls(**values)``, with an error naming the engine and its options for a name it does not take."""
        values = dict(values or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise EngineOptionError(f"engine {engine!r} has no option {', '.join(map(repr, unknown))}; its options "
                                    f"are {', '.join(names)}")
        threads = values.get("threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise EngineOptionError(f"engine {engine!r}: threads must be a positive integer, not {threads!r}")
        return cls(**values)


class Engine(ABC):
    """Runs a recognizer: N x 3 x H x W float32 in, N x T x C class scores out (probabilities for PaddleX's models;
    RecPredictor takes a softmax where a model gives logits).

    Implementations are safe to call from several threads at once.
    """

    name: str = "base"
    device: str = "cpu"

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Return the model's output for ``batch`` as it gives it; the array is the caller's to keep."""

    def properties(self) -> dict[str, Any]:
        """What really runs, as the engine reports it (for logs and the benchmark): engine, device, the compute
        precision, threads and streams at least; None where the engine does not say."""
        return {"engine": self.name, "device": self.device, "precision": None, "threads": None, "streams": None}

    def parallel_requests(self) -> int:
        """How many ``infer`` calls may usefully run at once (OpenVINO's streams under the THROUGHPUT hint); the
        predictor runs that many batches in parallel threads."""
        return 1

    def files(self) -> list[Path]:
        """The files this engine loaded the model from (their size is the model's size on disk)."""
        return []

    def describe(self) -> str:
        """A short description of how the engine is configured, for ``TextRecognizer.config_summary``."""
        return f"{self.name} on {self.device}"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


@dataclass(frozen=True)
class EngineKind:
    """What an engine module declares about itself; the registry maps a name to one of these.

    ``source_format`` is what the resolver must hand it: ``"ir"`` (an exported OpenVINO IR for the asked
    precision), ``"onnx"`` (the source .onnx file) or ``"paddle"`` (the Paddle model folder).
    ``open(path, device, options, precision)`` builds the engine; ``check_device(spec)`` raises DeviceError,
    naming the device and what to install, before anything is fetched; ``fastest(spec)`` is its ``use_hpip``
    choice for a device: (option values, why).
    """

    name: str
    source_format: str
    options: type[EngineOptions]
    open: Callable[[Path, DeviceSpec, EngineOptions, str], Engine]
    check_device: Callable[[DeviceSpec], None]
    precisions: tuple[str, ...] = ("fp32",)
    fastest: Callable[[DeviceSpec], tuple[dict, str]] | None = None

    def make_options(self, values: dict[str, Any] | None = None) -> EngineOptions:
        return self.options.build(self.name, values)

    def takes(self, option: str) -> bool:
        """Whether this engine has the option ``option`` (a field of its options dataclass)."""
        return option in self.options.__dataclass_fields__

    def check_precision(self, precision: str, spec: DeviceSpec, what: str = "precision") -> None:
        """Refuse, before anything is fetched, a precision this engine cannot run on ``spec`` (bf16: a CPU with
        native bf16 only); ``what`` names the argument in the error."""
        if precision not in self.precisions:
            raise ModelError(f"{what} {precision!r}: the {self.name} engine runs {', '.join(self.precisions)} only "
                             "(fp16 and int8 are OpenVINO IRs, bf16 an OpenVINO CPU compute hint)")
        if precision == "bf16":
            cpu.require_native_bf16("CPU" if spec.family == "cpu" else spec.text)


def first_line(exc: BaseException) -> str:
    """The line of an exception's message that says what is wrong (OpenVINO's and Paddle's run to pages)."""
    return reason(exc)
