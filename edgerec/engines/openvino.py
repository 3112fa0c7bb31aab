"""OpenVINO engine: one CompiledModel shared by all threads, one InferRequest per thread."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerec.engines.base import (
    DeviceSpec,
    Engine,
    EngineKind,
    EngineOptionError,
    EngineOptions,
    first_line,
    parse_device,
)
from edgerec.engines.compile_cache import compile_cached
from edgerec.errors import DeviceError, ModelError
from edgerec.utils import cpu
from edgerec.utils.memory import trim_heap, trim_pending

log = logging.getLogger(__name__)

_core = None
_core_lock = threading.Lock()

# Recognizers on Intel iGPUs have given garbled text at f16 compute, and CPUs with native bf16 default to bf16:
# ask for f32 unless the caller opts in, so a line's text is the same on every device. The opt-ins: f16 on an
# Intel GPU / AUTO (an fp16 IR), bf16 on a CPU that computes it natively (precision="bf16", the fp32 IR).
PRECISION_HINTS = ("f32", "f16", "bf16")
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")

# Lines keep their exact input width (padding changes text), and the CPU plugin prepares kernels for every new
# input shape and keeps them in its runtime cache (CPU_RUNTIME_CACHE_CAPACITY, counted in kernels; the plugin
# keeps one LRU cache of that capacity per kind of node, so node kinds with few nodes keep many more shapes than
# the capacity suggests). Kept shapes cost memory: PP-OCRv4 mobile int8 grew ~10 MB per width ever seen with a
# capacity of 200 (2 shapes' worth of convolutions), +240 MB over iiit5k's 36 widths and +410 MB over 300 widths,
# fp32 ~0.3 MB per width; with the cache off it stays flat (2026-12-06-scale-1m.md). Most lines are padded to the
# recognizer's minimum width (320 as PaddleX: 98.8 % of iiit5k's words), so that width gets its own compiled
# model with a static width (``static_width``): its kernels are prepared once and never evicted, whatever widths
# come between. Every other width runs the dynamic-width model with the cache off by default (``shape_cache``
# shapes kept if set): a shape that repeats call after call (a kiosk's fixed ROI) is not prepared again; one that
# alternates with another is (about one inference's time in fp32, four in int8).
DEFAULT_SHAPE_CACHE = 0
# shapes x KERNELS_PER_SHAPE must fit OpenVINO's int; far more shapes than any run meets
MAX_SHAPE_CACHE = 100_000
STATIC_WIDTH_SHAPES = 4
KERNELS_PER_SHAPE = 100
# Below the plugin's cache, oneDNN keeps a process-wide cache of 1024 JIT-compiled primitives, another ~100 MB
# once widths vary; for a new width the plugin's cache misses first anyway, so a small one loses little. It is
# read once, when the CPU plugin first builds a kernel: set before that, unless the user has set it.
ONEDNN_PRIMITIVE_CACHE = "64"
# After a call with a new input shape, freed heap goes back to the OS (edgerec.utils.memory), at most this often:
# each trim makes the next calls fault their buffers in again
TRIM_INTERVAL_S = 1.0


def get_core():
    """The process-wide ``openvino.Core`` (creating one is slow and they share plugins anyway)."""
    global _core
    with _core_lock:
        if _core is None:
            os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_PRIMITIVE_CACHE)
            import openvino as ov

            _core = ov.Core()
        return _core


def resolve_device(device: str | DeviceSpec | None) -> str:
    """Map edgerec/PaddleX device names to OpenVINO's, checking that the device exists here.

    ``cpu`` -> CPU; ``GPU``/``GPU.N`` (Intel GPU) and ``AUTO`` pass through when OpenVINO lists them.
    ``gpu``/``gpu:N`` mean an NVIDIA GPU in PaddleX; OpenVINO cannot run on those.
    """
    spec = parse_device(device)
    if spec.family == "cpu":
        return "CPU"
    if spec.family == "nvidia":  # lower case is PaddleX's NVIDIA GPU; "GPU" is Intel's
        raise DeviceError(
            f"device {spec.text!r} is an NVIDIA GPU in PaddleX's naming; the OpenVINO engine runs on 'cpu', "
            "'GPU' / 'GPU.N' (Intel GPU) or 'AUTO'. For an NVIDIA GPU leave engine unset (or engine='paddle') "
            "with a CUDA build of paddlepaddle."
        )
    if spec.family == "auto":
        return spec.text
    available = list(get_core().available_devices)
    if spec.text in available:
        return spec.text
    if spec.text == "GPU" and any(d.startswith("GPU") for d in available):
        return "GPU"
    if spec.text.startswith("NPU"):  # no GPU driver advice for it: it is not a GPU
        advice = ("edgerec does not support the NPU for these recognizers here (their input width is dynamic); "
                  "use 'cpu', 'GPU' or 'AUTO'.")
    else:
        advice = ("An Intel GPU needs its driver and libOpenCL.so.1 (e.g. apt-get install ocl-icd-libopencl1 "
                  "intel-opencl-icd).")
    raise DeviceError(
        f"device {spec.text!r} is not available to OpenVINO here (available: {', '.join(available) or 'none'}). "
        + advice
    )


@dataclass(frozen=True)
class OpenVINOOptions(EngineOptions):
    """How the OpenVINO engine compiles the IR."""

    hint: str = "LATENCY"                       # PERFORMANCE_HINT: LATENCY, THROUGHPUT, CUMULATIVE_THROUGHPUT
    cache_dir: str | Path | None = None         # OpenVINO's compiled-model cache (None: off)
    config: dict | None = None                  # more OpenVINO properties, applied last
    infer_precision: str | None = None          # f32 | f16 | bf16; None: by precision (f16 for an fp16 IR on an
    #                                             Intel GPU / AUTO, bf16 for precision="bf16", else f32)
    shape_cache: int | None = DEFAULT_SHAPE_CACHE  # input shapes the CPU plugin keeps kernels for
    static_width: int | None = None             # an input width compiled apart with a static width (CPU only)
    # width buckets: run a copy of the model that ignores the right-padding (edgerec.engines.padding_mask), so a
    # line padded to its bucket reads as at its own width; models it cannot rewrite pad as before, with a warning
    mask_padding: bool = False

    def __post_init__(self):
        if self.hint not in HINTS:
            raise EngineOptionError(f"engine 'openvino': hint must be one of {', '.join(HINTS)}, not {self.hint!r}")
        if self.infer_precision is not None and self.infer_precision not in PRECISION_HINTS:
            raise EngineOptionError(f"engine 'openvino': infer_precision must be one of {PRECISION_HINTS}, not "
                                    f"{self.infer_precision!r}")
        if self.shape_cache is not None and not _whole(self.shape_cache, 0, MAX_SHAPE_CACHE):
            raise EngineOptionError(f"engine 'openvino': shape_cache must be a whole number from 0 to "
                                    f"{MAX_SHAPE_CACHE}, not {self.shape_cache!r}")
        if not isinstance(self.mask_padding, bool):
            raise EngineOptionError(f"engine 'openvino': mask_padding must be True or False, not {self.mask_padding!r}")
        if self.static_width is not None and not _whole(self.static_width, 1, 1 << 20):
            raise EngineOptionError(f"engine 'openvino': static_width must be a width >= 1, not {self.static_width!r}")
        if self.config is not None and not isinstance(self.config, dict):
            raise EngineOptionError(f"engine 'openvino': config must be a dict of OpenVINO properties, not "
                                    f"{type(self.config).__name__}")


def _whole(value: object, low: int, high: int) -> bool:
    """``value`` is an int (not a bool, not a float or str) from ``low`` to ``high``."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and low <= value <= high


class OpenVINOEngine(Engine):
    name = "openvino"

    def __init__(self, model_path: str | Path, device: str | DeviceSpec = "cpu",
                 options: OpenVINOOptions | None = None, *, precision: str = "fp32", **values):
        """``options`` (or its fields as keywords); ``precision`` is the IR's (or "bf16", which runs the fp32 IR),
        and picks the default compute precision: f16 only for an fp16 IR on an Intel GPU or AUTO (an opt-in), bf16
        only for "bf16" on a CPU with native bf16 (refused elsewhere), f32 everywhere else."""
        opts = options if options is not None else OpenVINOOptions.build(self.name, values)
        if options is not None and values:
            raise EngineOptionError("engine 'openvino': give options or keywords, not both")
        spec = parse_device(device)
        self.device = resolve_device(spec)
        self.options = opts
        infer_precision = opts.infer_precision or (
            "bf16" if precision == "bf16" else
            "f16" if precision == "fp16" and spec.family in ("intel-gpu", "auto") else "f32")
        if infer_precision == "bf16":
            cpu.require_native_bf16(self.device)  # before reading the model: the answer is in milliseconds
        core = get_core()
        path = Path(model_path)
        self.path = path
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError with a long trace
            raise ModelError(f"{path}: OpenVINO cannot read this model ({first_line(exc)}); "
                             "re-export it with `edgerec export`") from exc
        cfg: dict = {"PERFORMANCE_HINT": opts.hint}
        if opts.threads and self.device == "CPU":
            cfg["INFERENCE_NUM_THREADS"] = int(opts.threads)
        if self.device.startswith(("GPU", "AUTO")):  # AUTO hands the hint to the device it picks
            cfg["INFERENCE_PRECISION_HINT"] = infer_precision
        elif self.device == "CPU":
            # f16 is an iGPU opt-in; bf16 CPUs would pick bf16 unless told, so it is f32 unless bf16 was asked for
            cfg["INFERENCE_PRECISION_HINT"] = "bf16" if infer_precision == "bf16" else "f32"
        if opts.shape_cache is not None and self.device == "CPU":
            cfg["CPU_RUNTIME_CACHE_CAPACITY"] = int(opts.shape_cache) * KERNELS_PER_SHAPE
        if opts.cache_dir:
            cfg["CACHE_DIR"] = str(opts.cache_dir)
        cfg.update(opts.config or {})
        self.masks_padding = False
        self._steps = None
        dynamic = model
        if opts.mask_padding:
            dynamic = self._padding_blind(model, path)
        try:
            self.compiled = compile_cached(core, dynamic, self.device, cfg, path)
        except Exception as exc:
            raise DeviceError(f"{path}: cannot compile for {self.device}: {first_line(exc)}") from exc
        self.config = cfg
        self.static_width: int | None = None
        self._static = None
        # the static-width copy's config: only the batch size varies there, so what its cache keeps is bounded
        self.static_config = {**cfg, "CPU_RUNTIME_CACHE_CAPACITY": STATIC_WIDTH_SHAPES * KERNELS_PER_SHAPE}
        if opts.static_width and self.device == "CPU":
            self._static = _compile_static_width(core, model, int(opts.static_width), self.static_config, path)
            if self._static is not None:
                self.static_width = int(opts.static_width)
        # the source ov.Model is not kept: the CompiledModel does not need it, and when the CompiledModel came
        # from the cache dropping it unmaps the weights file (~10 MB of RSS for v4 fp32)
        del model, dynamic
        trim_heap()
        self._local = threading.local()

    def _padding_blind(self, model, path: Path):
        blind, self._steps = padding_blind(model, path)
        self.masks_padding = self._steps is not None
        return blind

    def steps(self, width: int) -> int:
        """Time steps the model outputs for a line of input width ``width`` (only with ``masks_padding``)."""
        return self._steps.at(width)

    def _request(self, static: bool):
        # InferRequests are not thread-safe, the CompiledModels are: each thread gets its own request per compiled
        # model, which threading.local drops when the thread ends
        reqs = getattr(self._local, "requests", None)
        if reqs is None:
            reqs = self._local.requests = {}
            self._local.shapes = {}
        req = reqs.get(static)
        if req is None:
            req = reqs[static] = (self._static if static else self.compiled).create_infer_request()
        return req

    def infer(self, batch: np.ndarray, valid_widths: list[int] | None = None) -> np.ndarray:
        """N x T x C probabilities. ``valid_widths`` (with ``masks_padding``): each line's width before its
        bucket's padding; None: the whole width is the line."""
        static = self._static is not None and batch.ndim == 4 and batch.shape[3] == self.static_width and (
            valid_widths is None or all(w == batch.shape[3] for w in valid_widths))  # the static copy reads all
        req = self._request(static)
        masked = self.masks_padding and not static
        req.infer(_feed(batch, valid_widths if masked else None, masked), share_inputs=True)
        # the output tensor is reused by the next call on this thread: hand the caller its own copy
        out = np.array(req.get_output_tensor(0).data, copy=True)
        changed = batch.shape != self._local.shapes.get(static)
        if changed:
            self._local.shapes[static] = batch.shape
        if changed or trim_pending():
            # a new shape made the plugin reshape this request and maybe build (and evict) kernels: give back
            # the heap that freed, or RSS creeps up over a run of many widths although nothing is kept. A trim
            # skipped for its interval is done by a later call, even when the shapes have settled by then.
            trim_heap(min_interval=TRIM_INTERVAL_S)
        return out

    def properties(self) -> dict[str, Any]:
        """As the compiled model reports them: the precision is INFERENCE_PRECISION_HINT read back (what the
        plugin really computes in), not what was asked for."""
        got = compiled_properties(self.compiled)
        return {"engine": self.name, "device": self.device, "precision": got.get("INFERENCE_PRECISION_HINT"),
                "threads": got.get("INFERENCE_NUM_THREADS"), "streams": got.get("NUM_STREAMS"),
                "hint": got.get("PERFORMANCE_HINT"), "execution_devices": got.get("EXECUTION_DEVICES", self.device),
                "cache_dir": self.config.get("CACHE_DIR"), "config": got}

    def parallel_requests(self) -> int:
        """OpenVINO's optimal number of requests in flight: 1 under LATENCY, the streams under THROUGHPUT."""
        if self.config.get("PERFORMANCE_HINT") == "LATENCY":
            return 1
        try:
            return max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:  # a plugin that does not say
            return 1

    def files(self) -> list[Path]:
        return [self.path, self.path.with_suffix(".bin")]

    def describe(self) -> str:
        # the precision as the plugin reports it runs (bf16 asked and bf16 run read alike; a plugin that changed
        # it shows what it chose), falling back to what was asked
        got = compiled_properties(self.compiled, ("EXECUTION_DEVICES", "INFERENCE_PRECISION_HINT"))
        hint = got.get("INFERENCE_PRECISION_HINT") or self.config.get("INFERENCE_PRECISION_HINT")
        devices = got.get("EXECUTION_DEVICES", self.device)
        extra = f", {hint} precision hint" if hint else ""
        if self.static_width:
            extra += f", width {self.static_width} compiled static"
        if self.masks_padding:
            extra += ", bucket padding masked"
        return (f"openvino on {self.device} (runs on {devices}), {self.config.get('PERFORMANCE_HINT')} hint{extra}, "
                f"compiled-model cache {'on' if self.config.get('CACHE_DIR') else 'off'}")


def _masked(model) -> tuple[object, object | None, str]:
    """(the padding-blind copy of ``model``, its output's width formula, '') or (``model``, None, why the masks
    cannot handle it: edgerec.engines.padding_mask)."""
    from edgerec.engines.padding_mask import Unsupported, mask_padding

    try:
        height = model.inputs[0].get_partial_shape()[2]
        if not height.is_static:
            raise Unsupported("the input height is not fixed")
        return (*mask_padding(model, height.get_length()), "")
    except Exception as exc:  # Unsupported, or a graph OpenVINO will not rewrite
        return model, None, str(exc) if isinstance(exc, Unsupported) else f"{type(exc).__name__}: {first_line(exc)}"


def padding_blind(model, where: Path | str):
    """(the padding-blind copy of ``model`` for width buckets, its output's width formula), or (``model``, None)
    with a warning when it has a layer the masks cannot handle: the buckets still work, padded as they are."""
    blind, steps, why = _masked(model)
    if why:
        log.warning("%s: width buckets pad lines as they are, which changes some texts (the padding cannot be "
                    "masked: %s)", where, why)
    return blind, steps


def unmaskable(path: Path | str) -> str:
    """Why width buckets could not mask this model's padding ('' when they can): ``use_hpip`` takes buckets only
    where the texts stay those of exact widths (in fp32), so it checks before it asks for them (~85 ms for a
    mobile recognizer: the engine then reads and masks the model again)."""
    try:
        model = get_core().read_model(str(path))
    except Exception as exc:  # the engine will say what is wrong with the file; here: no buckets
        return f"{type(exc).__name__}: {first_line(exc)}"
    return _masked(model)[2]


def _feed(batch: np.ndarray, valid_widths: list[int] | None, masked: bool) -> dict:
    """The inputs of one call: the batch, and for a padding-blind model each line's own width (None: the batch's
    whole width)."""
    if not masked:
        return {0: batch}
    widths = [batch.shape[3]] * len(batch) if valid_widths is None else valid_widths
    return {0: batch, 1: np.asarray(widths, np.int64)}


PROPERTY_KEYS = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
                 "EXECUTION_DEVICES")


def compiled_properties(compiled, keys: tuple[str, ...] = PROPERTY_KEYS) -> dict[str, Any]:
    """Properties of an ``ov.CompiledModel`` as plain values (a plugin that does not expose one: left out)."""
    out: dict[str, Any] = {}
    for key in keys:
        try:
            val = compiled.get_property(key)
        except Exception:  # property not exposed by this plugin / version
            continue
        if hasattr(val, "to_string"):  # openvino.Type, e.g. f32
            val = val.to_string()
        elif isinstance(val, (list, tuple)):
            val = ",".join(map(str, val))
        elif not isinstance(val, (int, float, str, bool)):
            val = str(val)
        out[key] = val
    return out


class CompiledEngine(Engine):
    """An ``ov.CompiledModel`` someone else compiled (quantization's candidates), as an engine: so that what
    NNCF produced is evaluated through RecPredictor, batching and long lines included, as users will run it."""

    name = "openvino"

    def __init__(self, compiled, device: str = "CPU", steps=None):
        self.compiled = compiled
        self.device = device
        self._steps = steps  # the output's width formula of a padding-blind model (None: a plain one)
        self.masks_padding = steps is not None
        self._local = threading.local()

    @classmethod
    def of(cls, model, device: str = "CPU", mask_padding: bool = False) -> CompiledEngine:
        """An ``ov.Model`` (or an ``ov.CompiledModel`` as it is) as an engine, compiled as OpenVINOEngine compiles
        for ``device``: f32 compute (an AMX CPU would otherwise pick bf16, which users do not run).
        ``mask_padding``: as OpenVINOEngine's option, for width buckets (an ``ov.Model`` only)."""
        import openvino as ov

        if isinstance(model, ov.CompiledModel):
            if mask_padding:  # NNCF's accuracy-control search hands compiled candidates: they read their padding
                log.info("a compiled model reads width buckets with their padding (not masked)")
            return cls(model, device)
        steps = None
        if mask_padding:
            model, steps = padding_blind(model, model.get_friendly_name())
        cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        return cls(get_core().compile_model(model, device, cfg), device, steps)

    def steps(self, width: int) -> int:
        return self._steps.at(width)

    def infer(self, batch: np.ndarray, valid_widths: list[int] | None = None) -> np.ndarray:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        req.infer(_feed(batch, valid_widths, self.masks_padding), share_inputs=True)
        return np.array(req.get_output_tensor(0).data, copy=True)

    def properties(self) -> dict[str, Any]:
        got = compiled_properties(self.compiled)
        return {"engine": self.name, "device": self.device, "precision": got.get("INFERENCE_PRECISION_HINT"),
                "threads": got.get("INFERENCE_NUM_THREADS"), "streams": got.get("NUM_STREAMS")}


def check_device(spec: DeviceSpec) -> None:
    resolve_device(spec)


def _open(path: Path, spec: DeviceSpec, options: EngineOptions, precision: str) -> Engine:
    return OpenVINOEngine(path, spec, options, precision=precision)  # type: ignore[arg-type]


KIND = EngineKind(name="openvino", source_format="ir", options=OpenVINOOptions, open=_open,
                  check_device=check_device, precisions=("fp32", "fp16", "int8", "bf16"))


def _compile_static_width(core, model, width: int, cfg: dict, path: Path):
    """A copy of ``model`` compiled with input width ``width`` fixed (batch and the rest as they are), or None when
    the IR's width is not dynamic (nothing to gain) or the model cannot take that width (then every width runs the
    dynamic model, as before)."""
    try:
        port = model.inputs[0]
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[3].is_static:
            return None
        import openvino as ov

        fixed = model.clone()
        dims = [shape[k] for k in range(4)]
        dims[3] = ov.Dimension(width)
        fixed.reshape({port.any_name: ov.PartialShape(dims)})
        return compile_cached(core, fixed, "CPU", cfg, path)
    except Exception as exc:  # never worse than the dynamic model alone
        log.info("%s: no static-width copy for width %d (%s)", path, width, first_line(exc))
        return None
