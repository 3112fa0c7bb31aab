"""PaddleX 3.x create_model arguments (engine=, engine_config=, device="gpu") mapped onto edgerec's own.

One place decides what a PaddleX option means here, so create_model stays a thin caller.
"""

from __future__ import annotations

import logging

from edgerec.engines.base import parse_device
from edgerec.errors import DeviceError

log = logging.getLogger(__name__)

# PaddleX engine names -> edgerec engine (None: pick by device). paddle / paddle_static / paddle_dynamic run
# Paddle Inference in PaddleX; hpi is its high-performance inference, which here is use_hpip's choice.
PADDLEX_ENGINES: dict[str, str | None] = {"paddle": "paddle", "paddle_static": "paddle", "paddle_dynamic": "paddle",
                                          "hpi": None, "onnxruntime": "onnxruntime", "openvino": "openvino"}
_NO_MEANING = ("flexible", "genai_client", "transformers", "tensorrt_llm", "vllm", "sglang")
# engine_config keys with an OpenVINO meaning -> create_model keyword
_ENGINE_CONFIG_KEYS = {"cpu_threads": "threads", "cpu_num_threads": "threads", "threads": "threads",
                       "ov_config": "ov_config",
                       "performance_hint": "hint", "hint": "hint"}


def map_engine(engine: str | None) -> tuple[str | None, bool]:
    """PaddleX's or edgerec's ``engine=`` -> (edgerec engine or None, use_hpip); an unknown name raises DeviceError."""
    if engine is None:
        return None, False
    from edgerec.engines import registry

    name = str(engine).lower()
    if name in PADDLEX_ENGINES:
        return PADDLEX_ENGINES[name], name == "hpi"
    if name in registry.names():  # an engine registered beyond PaddleX's names
        return name, False
    known = ", ".join(sorted(set(PADDLEX_ENGINES) | set(registry.names())))
    why = " (a PaddleX engine for generative models; edgerec has no equivalent)" if name in _NO_MEANING else ""
    raise DeviceError(f"engine {engine!r}{why}: use one of {known}, or None to pick by device")


def map_engine_config(engine_config: dict | None) -> dict:
    """PaddleX ``engine_config`` -> create_model keywords; keys with no OpenVINO meaning are dropped with a warning."""
    if not engine_config:
        return {}
    if not isinstance(engine_config, dict):
        raise TypeError(f"engine_config must be a dict, not {type(engine_config).__name__}")
    out: dict = {}
    dropped = []
    for key, value in engine_config.items():
        target = _ENGINE_CONFIG_KEYS.get(key)
        if target is None:
            dropped.append(key)
        elif target == "ov_config":
            if not isinstance(value, dict):
                raise TypeError(f"engine_config['ov_config'] must be a dict of OpenVINO properties, not {value!r}")
            out["ov_config"] = {**out.get("ov_config", {}), **value}
        else:
            out[target] = int(value) if target == "threads" else value
    if dropped:
        log.warning("create_model: engine_config key(s) %s have no OpenVINO meaning; ignored", ", ".join(dropped))
    return out


def fallback_device(device: str | None, engine: str | None, strict: bool = False) -> str | None:
    """PaddleX runs ``gpu``/``gpu:N`` on the CPU with a warning when the NVIDIA GPU or CUDA paddle is missing."""
    spec = parse_device(device)
    if spec.family != "nvidia" or engine not in (None, "paddle"):
        return device
    from edgerec.engines.paddle import check_device

    try:
        check_device(spec.text)
    except DeviceError as exc:
        if strict:
            raise
        log.warning("device %r is not usable here (%s); running on cpu as PaddleX does (strict_device=True "
                    "refuses instead)", spec.text, exc)
        return "cpu"
    return device


def word_box_of(image, info: list | None, max_wh_ratio: float) -> list | None:
    """PaddleX scales the step count by the line's share of the batch width: T * wh_ratio / max_wh_ratio.

    ``max_wh_ratio`` is the ratio the line was padded to (``RecPredictor.max_wh_ratio``): at the defaults
    max(320/48, the line's w/h), as at PaddleX batch 1, since edgerec batches only lines of one width. ``info`` is
    None for a line read in windows (longer than the model's widest input).
    """
    if info is None:
        return None
    h, w = image.shape[:2]
    return [info[0] * (w / h) / max_wh_ratio, *info[1:]]
