"""Paddle Inference engine: the seed's own runtime, for reference on CPU and as the NVIDIA GPU fallback.

It runs the Paddle inference model itself (``inference.pdmodel`` or PaddleX 3's ``inference.json``, with
``inference.pdiparams``); preprocessing and decoding stay edgerec's, so its text matches the OpenVINO engine's.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerec.engines.base import DeviceSpec, Engine, EngineKind, EngineOptionError, EngineOptions, parse_device
from edgerec.errors import DeviceError, EngineUnavailableError, ModelError

GPU_INSTALL = ("install a CUDA build of paddlepaddle that matches your driver, e.g. "
               "`pip install paddlepaddle-gpu==3.3.1 -i https://www.paddlepaddle.org.cn/packages/stable/cu126/` "
               "(see https://www.paddlepaddle.org.cn/install/quick)")
# PaddleX's high-performance settings for text recognition: (min, opt, max) input shapes of the TensorRT engine
TRT_SHAPES = ([1, 3, 48, 160], [1, 3, 48, 320], [8, 3, 48, 3200])


def _import_paddle(spec: DeviceSpec | None = None):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # paddle warns about ccache on import, which is no concern of ours
            import paddle
            import paddle.inference as pinf
    except ImportError as exc:
        if spec is not None and spec.family == "nvidia":
            raise DeviceError(f"device {spec.text!r} (NVIDIA GPU) runs on Paddle Inference, which is not "
                              f"installed: {GPU_INSTALL}") from exc
        raise EngineUnavailableError(
            "the paddle engine needs paddlepaddle: pip install 'edgerec[paddle]' "
            "(or a CUDA build of paddlepaddle-gpu for an NVIDIA GPU)") from exc
    return paddle, pinf


def check_device(device: str | DeviceSpec | None) -> DeviceSpec:
    """Check that the paddle engine can run on ``device`` here, before any model is fetched or loaded."""
    spec = parse_device(device)
    if spec.family not in ("cpu", "nvidia"):
        raise DeviceError(f"device {spec.text!r}: the paddle engine runs on 'cpu' or 'gpu' / 'gpu:N' (NVIDIA); "
                          "Intel devices (GPU, AUTO) run on the openvino engine")
    paddle, _ = _import_paddle(spec)
    if spec.family == "nvidia":
        if not paddle.device.is_compiled_with_cuda():
            raise DeviceError(f"device {spec.text!r}: the installed paddlepaddle {paddle.__version__} is a CPU "
                              f"build; {GPU_INSTALL}")
        count = paddle.device.cuda.device_count()
        if spec.index is not None and spec.index >= count:
            raise DeviceError(f"device {spec.text!r}: {count} NVIDIA GPU(s) visible to paddle here "
                              "(check the driver and CUDA_VISIBLE_DEVICES)")
    return spec


def tensorrt_available() -> bool:
    """Whether this paddlepaddle was built with TensorRT and can load its runtime."""
    try:
        _, pinf = _import_paddle()
        if tuple(pinf.get_trt_compile_version()) == (0, 0, 0):
            return False
        return tuple(pinf.get_trt_runtime_version()) != (0, 0, 0)
    except Exception:  # a missing libnvinfer surfaces as all sorts of errors
        return False


@dataclass(frozen=True)
class PaddleOptions(EngineOptions):
    """Paddle Inference settings (threads: CPU math library threads)."""

    tensorrt: bool = False          # NVIDIA GPU only: build TensorRT engines (needs a paddlepaddle with TensorRT)
    trt_precision: str = "fp32"     # fp32 | fp16, TensorRT's
    cache_dir: str | Path | None = None  # where TensorRT engines are kept (one folder per model inside)
    input_name: str = "x"

    def __post_init__(self):
        if self.trt_precision not in ("fp32", "fp16"):
            raise EngineOptionError(f"engine 'paddle': trt_precision must be fp32 or fp16, not {self.trt_precision!r}")


class PaddleEngine(Engine):
    name = "paddle"

    def __init__(self, model_path: str | Path, device: str | DeviceSpec = "cpu",
                 options: PaddleOptions | None = None, **values):
        if options is not None and values:
            raise EngineOptionError("engine 'paddle': give options or keywords, not both")
        opts = options if options is not None else PaddleOptions.build(self.name, values)
        spec = check_device(device)
        _, pinf = _import_paddle(spec)
        path = Path(model_path)
        folder = path if path.is_dir() else path.parent
        model_file = next((folder / n for n in ("inference.pdmodel", "inference.json") if (folder / n).exists()),
                          None)
        params = folder / "inference.pdiparams"
        if model_file is None or not params.exists():
            raise ModelError(f"{folder}: a Paddle model needs inference.pdmodel (or inference.json) and "
                             "inference.pdiparams")
        self._files = [model_file, params]
        self.threads = opts.threads
        cfg = pinf.Config(str(model_file), str(params))
        self.tensorrt = False
        if spec.family == "cpu":
            cfg.disable_gpu()
            if opts.threads:
                cfg.set_cpu_math_library_num_threads(int(opts.threads))
            self.device = "cpu"
        else:
            cfg.enable_use_gpu(256, spec.index or 0)
            self.device = f"gpu:{spec.index or 0}"
            if opts.tensorrt:
                self._enable_tensorrt(cfg, pinf, spec, opts, model_file)
        cfg.disable_glog_info()
        cfg.switch_ir_optim(True)
        try:
            self._base = pinf.create_predictor(cfg)
        except Exception as exc:
            raise ModelError(f"{model_file}: Paddle Inference cannot load this model on {self.device} "
                             f"({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r})") from exc
        self._local = threading.local()
        self._lock = threading.Lock()

    def _enable_tensorrt(self, cfg, pinf, spec: DeviceSpec, opts: PaddleOptions, model_file: Path) -> None:
        if not tensorrt_available():
            raise DeviceError(f"device {spec.text!r}: tensorrt requested, but this paddlepaddle has no "
                              "TensorRT (install TensorRT and a paddlepaddle-gpu built with it)")
        prec = {"fp32": pinf.PrecisionType.Float32, "fp16": pinf.PrecisionType.Half}[opts.trt_precision]
        # engines are built once per shape range and kept in cache_dir, so a second start is fast
        cfg.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=TRT_SHAPES[2][0],
                                   min_subgraph_size=3, precision_mode=prec, use_static=bool(opts.cache_dir),
                                   use_calib_mode=False)
        lo, opt, hi = TRT_SHAPES
        name = opts.input_name
        cfg.set_trt_dynamic_shape_info({name: lo}, {name: hi}, {name: opt})
        if opts.cache_dir:
            # TensorRT engines belong to one model: one folder per model file
            key = hashlib.sha256(str(model_file.resolve()).encode()).hexdigest()[:16]
            folder = Path(opts.cache_dir) / key
            folder.mkdir(parents=True, exist_ok=True)
            cfg.set_optim_cache_dir(str(folder))
        self.tensorrt = True
        self.trt_precision = opts.trt_precision

    def _predictor(self):
        # a Paddle predictor is not thread-safe; clones share the weights, so each thread gets its own clone
        pred = getattr(self._local, "pred", None)
        if pred is None:
            with self._lock:
                pred = self._local.pred = self._base.clone()
        return pred

    def infer(self, batch: np.ndarray) -> np.ndarray:
        pred = self._predictor()
        inp = pred.get_input_handle(pred.get_input_names()[0])
        inp.reshape(batch.shape)
        inp.copy_from_cpu(np.ascontiguousarray(batch))
        pred.run()
        return pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()

    def properties(self) -> dict[str, Any]:
        precision = self.trt_precision.replace("fp", "f") if self.tensorrt else "f32"
        return {"engine": self.name, "device": self.device, "precision": precision, "threads": self.threads,
                "streams": 1, "tensorrt": self.tensorrt}

    def files(self) -> list[Path]:
        return list(self._files)

    def describe(self) -> str:
        return f"paddle on {self.device}" + (" with TensorRT" if self.tensorrt else "")


def _open(path: Path, spec: DeviceSpec, options: EngineOptions, precision: str) -> Engine:
    return PaddleEngine(path, spec, options)  # type: ignore[arg-type]


def _fastest(spec: DeviceSpec) -> tuple[dict, str]:
    """use_hpip on an NVIDIA GPU: TensorRT when this paddlepaddle has it."""
    if spec.family != "nvidia":
        return {}, "Paddle Inference on the CPU"
    if tensorrt_available():
        return {"tensorrt": True}, "Paddle Inference with TensorRT (fp32) on the NVIDIA GPU"
    return {}, "Paddle Inference on the NVIDIA GPU (this paddlepaddle has no TensorRT)"


KIND = EngineKind(name="paddle", source_format="paddle", options=PaddleOptions, open=_open,
                  check_device=check_device, fastest=_fastest)
