"""Paddle Inference engine: the seed's own runtime, for reference on CPU and as the NVIDIA GPU fallback."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgerec.engines.base import Engine
from edgerec.errors import DeviceError, EngineUnavailableError, ModelError


def _import_paddle():
    try:
        import paddle.inference as pinf
    except ImportError as exc:
        raise EngineUnavailableError(
            "the paddle engine needs paddlepaddle: pip install 'edgerec[paddle]' "
            "(or a CUDA build of paddlepaddle-gpu for an NVIDIA GPU)") from exc
    return pinf


class PaddleEngine(Engine):
    name = "paddle"

    def __init__(self, model_path: str | Path, device: str = "cpu", *, threads: int | None = None, **_ignored):
        pinf = _import_paddle()
        path = Path(model_path)
        folder = path if path.is_dir() else path.parent
        model_file = next((folder / n for n in ("inference.pdmodel", "inference.json") if (folder / n).exists()),
                          None)
        params = folder / "inference.pdiparams"
        if model_file is None or not params.exists():
            raise ModelError(f"{folder}: a Paddle model needs inference.pdmodel (or inference.json) and "
                             "inference.pdiparams")
        cfg = pinf.Config(str(model_file), str(params))
        dev = (device or "cpu").lower()
        if dev == "cpu":
            cfg.disable_gpu()
            if threads:
                cfg.set_cpu_math_library_num_threads(int(threads))
        elif dev == "gpu" or dev.startswith("gpu:"):
            import paddle

            if not paddle.device.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0:
                raise DeviceError(f"device {device!r}: this paddlepaddle has no CUDA GPU; install "
                                  "paddlepaddle-gpu matching your CUDA version")
            cfg.enable_use_gpu(256, int(dev.split(":")[1]) if ":" in dev else 0)
        else:
            raise DeviceError(f"device {device!r}: the paddle engine runs on 'cpu' or 'gpu[:N]'")
        cfg.disable_glog_info()
        cfg.switch_ir_optim(True)
        self.device = dev
        self._base = pinf.create_predictor(cfg)
        self._local = threading.local()
        self._lock = threading.Lock()

    def _predictor(self):
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
