"""OpenVINO engine: one CompiledModel shared by all threads, one InferRequest per thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgerec.engines.base import Engine
from edgerec.errors import DeviceError, ModelError

_core = None
_core_lock = threading.Lock()


def get_core():
    """The process-wide ``openvino.Core`` (creating one is slow and they share plugins anyway)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def resolve_device(device: str | None) -> str:
    """Map edgerec/PaddleX device names to OpenVINO's, checking that the device exists here.

    ``cpu`` -> CPU; ``GPU``/``GPU.N`` (Intel GPU) and ``AUTO`` pass through when OpenVINO lists them.
    ``gpu``/``gpu:N`` mean an NVIDIA GPU in PaddleX; OpenVINO cannot run on those.
    """
    dev = (device or "cpu").strip()
    if dev.lower() == "cpu":
        return "CPU"
    if dev == "gpu" or dev.startswith("gpu:"):  # lower case is PaddleX's NVIDIA GPU; "GPU" is Intel's
        raise DeviceError(
            f"device {dev!r} is an NVIDIA GPU in PaddleX's naming; the OpenVINO engine runs on 'cpu', "
            "'GPU' / 'GPU.N' (Intel GPU) or 'AUTO'. For an NVIDIA GPU use engine='paddle' with a CUDA build "
            "of paddlepaddle."
        )
    available = list(get_core().available_devices)
    if dev.upper() == "AUTO" or dev.upper().startswith("AUTO:"):
        return dev.upper()
    if dev in available or dev.upper() in available:
        return dev.upper() if dev.upper() in available else dev
    if dev.upper() == "GPU" and any(d.startswith("GPU") for d in available):
        return "GPU"
    raise DeviceError(
        f"device {dev!r} is not available to OpenVINO here (available: {', '.join(available) or 'none'}). "
        "An Intel GPU needs its driver and libOpenCL.so.1 (e.g. apt-get install ocl-icd-libopencl1 "
        "intel-opencl-icd)."
    )


class OpenVINOEngine(Engine):
    name = "openvino"

    def __init__(self, model_path: str | Path, device: str = "cpu", *, threads: int | None = None,
                 hint: str = "LATENCY", cache_dir: str | Path | None = None, config: dict | None = None):
        import openvino as ov

        self.device = resolve_device(device)
        core = get_core()
        path = Path(model_path)
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError with a long trace
            raise ModelError(f"{path}: OpenVINO cannot read this model ({_first_line(exc)}); "
                             "re-export it with `edgerec export`") from exc
        cfg: dict = {"PERFORMANCE_HINT": hint}
        if threads and self.device == "CPU":
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        if self.device.startswith("GPU"):
            cfg["INFERENCE_PRECISION_HINT"] = "f32"  # fp16 on iGPU garbles recognizer output
        if cache_dir:
            cfg["CACHE_DIR"] = str(cache_dir)
        cfg.update(config or {})
        try:
            self.compiled = core.compile_model(model, self.device, cfg)
        except Exception as exc:
            raise DeviceError(f"{path}: cannot compile for {self.device}: {_first_line(exc)}") from exc
        self.model = model
        self._local = threading.local()
        self._ov = ov

    def _request(self):
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def infer(self, batch: np.ndarray) -> np.ndarray:
        req = self._request()
        req.infer({0: batch}, share_inputs=True)
        # the output tensor is reused by the next call on this thread: hand the caller its own copy
        return np.array(req.get_output_tensor(0).data, copy=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
