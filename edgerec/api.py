"""The PaddleX-shaped surface: ``create_model(name).predict(input)`` yielding ``TextRecResult``s."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgerec.compat import fallback_device, map_engine, map_engine_config, word_box_of
from edgerec.engines.base import DeviceSpec, EngineType, create_engine, default_engine, parse_device
from edgerec.errors import DeviceError, EdgeRecError, InputError, ModelError
from edgerec.io.inputs import LoadedItem, iter_inputs
from edgerec.results import TextRecResult
from edgerec.runtime.predictor import RecPredictor
from edgerec.runtime.preprocess import MIN_W
from edgerec.zoo import home as homes
from edgerec.zoo.export import IR_NAME, ModelInfo, check_card, check_ir_files, export, read_info
from edgerec.zoo.fetch import ModelSource, cached_source, fetch, open_local

log = logging.getLogger(__name__)
# one WARNING per bad input (PaddleX raises; edgerec yields an error result and says so here); the CLI, which
# reports bad inputs itself, quiets this logger
bad_input_log = logging.getLogger("edgerec.bad_input")
_array_names = itertools.count()  # arrays have no file name: number them per process so saves never collide


class TextRecognizer:
    """A loaded recognizer. ``predict`` is safe to call from several threads at once."""

    def __init__(self, predictor: RecPredictor, info: ModelInfo, *, engine: str, device: str,
                 model_path: Path, batch_size: int = 1, config_summary: str = ""):
        self.predictor = predictor
        self.info = info
        self.model_name = info.model_name
        self.precision = info.precision
        self.engine = engine
        self.device = device
        self.model_path = model_path
        self.batch_size = batch_size
        # what was loaded and how (engine, device, precision, hints; use_hpip's choice): one line for logs
        self.config_summary = config_summary or f"{self.model_name} {self.precision} on {engine} {device}"

    def __repr__(self) -> str:
        return (f"TextRecognizer(model_name={self.model_name!r}, precision={self.precision!r}, "
                f"engine={self.engine!r}, device={self.device!r})")

    def predict(self, input, batch_size: int | None = None, *, on_error: str = "result",
                return_word_box: bool = False) -> Iterator[TextRecResult]:
        """Yield one result per input image, in input order.

        ``input``: ndarray (BGR, gray or BGRA), PIL image, path, folder, PDF, http(s) URL, or a list of these.
        A bad input never loses the others' results: with ``on_error="result"`` (default) it yields a result
        whose ``error`` names the input and the problem (rec_text '' and rec_score 0.0); with ``"raise"`` the
        InputError is raised when that input is reached. ``batch_size`` applies to this call only (PaddleX keeps
        it for later calls). ``return_word_box``: PaddleX's word runs, in ``rec_text`` (see TextRecResult).
        """
        if on_error not in ("result", "raise"):
            raise ValueError("on_error must be 'result' or 'raise'")
        bs = self.batch_size if batch_size is None else int(batch_size)
        window = max(64, bs * 8)
        pending: list[LoadedItem] = []
        for item in iter_inputs(input):
            pending.append(item)
            if len(pending) >= window:
                yield from self._run(pending, bs, on_error, return_word_box)
                pending = []
        if pending:
            yield from self._run(pending, bs, on_error, return_word_box)

    __call__ = predict

    def recognize(self, image: np.ndarray) -> TextRecResult:
        """One image in, one result out; a bad image raises InputError. The kiosk's per-frame call."""
        return next(iter(self.predict(image, batch_size=1, on_error="raise")))

    def _run(self, items: list[LoadedItem], batch_size: int, on_error: str, word_box: bool = False
             ) -> Iterator[TextRecResult]:
        good = [it for it in items if it.error is None]
        texts = iter(self.predictor.recognize([it.image for it in good], batch_size, word_box)) if good else iter(())
        for it in items:
            name = None if it.input_path is not None else f"ndarray_{next(_array_names)}"
            if it.error is not None:
                if on_error == "raise":
                    raise it.error
                bad_input_log.warning("%s", it.error)  # one line per bad input; the result carries it too
                yield TextRecResult(it.input_path, it.page_index, "", 0.0, name=name, error=str(it.error))
                continue
            text, score, *box = next(texts)
            yield TextRecResult(it.input_path, it.page_index, text, score, input_img=it.image, name=name,
                                word_box=(word_box_of(it.image, box[0] if box else None) or []) if word_box else None)


def _ensure_ir(src: ModelSource, ir_folder: Path, precision: str, *, card=None, lock_name: str) -> Path:
    """Export ``src`` into ``ir_folder`` unless an IR of the same weights is there already."""
    from edgerec.utils.fs import file_lock

    xml = ir_folder / IR_NAME
    with file_lock(homes.lock_path(lock_name)):
        if xml.is_file():
            try:
                info = read_info(xml)
                if (info.source_sha256, info.charset_sha256, info.precision) == (
                        src.weights_sha256, src.charset_sha256, precision):
                    if card is not None:
                        check_card(info, card, xml)  # rt_info of another model: export again
                    return xml
                log.info("%s: IR is stale (other weights or precision); exporting again", xml)
            except ModelError as exc:
                log.warning("%s; exporting again", exc)
        if precision == "int8":
            raise ModelError(f"{src.name}: no int8 model in {ir_folder.parent}; make one with "
                             f"`edgerec quantize {src.name}` (NNCF, accuracy-checked), or use fp32 / fp16")
        return export(src, ir_folder, precision=precision,
                      input_height=card.input_height if card else 48,
                      use_space_char=card.use_space_char if card else True,
                      expected_classes=card.num_classes if card else None,
                      model_name=card.name if card else src.name)


def resolve_model(model_name: str | None, model_dir: str | Path | None, precision: str,
                  source: str | None = None, progress: bool = True) -> tuple[Path, ModelSource | None]:
    """Find or make the OpenVINO IR for a card name or a local model; returns (model.xml, source or None)."""
    from edgerec.zoo.cards import get_card

    if model_dir is not None:
        path = Path(model_dir).expanduser()
        # an IR is loaded as it is; a truncated or half-copied one is refused with what to do
        if path.is_file() and path.suffix == ".xml":
            return check_ir_files(path), None
        if path.is_dir() and (path / IR_NAME).is_file():
            return check_ir_files(path / IR_NAME), None
        if path.is_dir() and (path / precision / IR_NAME).is_file():
            return check_ir_files(path / precision / IR_NAME), None
        src = open_local(path, name=model_name)
        card = None
        if model_name:
            try:
                card = get_card(model_name)
            except EdgeRecError:
                card = None
        key = f"{src.name}-{src.weights_sha256[:12]}"
        folder = homes.home() / "local-ir" / key / precision
        return _ensure_ir(src, folder, precision, card=card, lock_name=f"local-{key}"), src
    if not model_name:
        raise ModelError("give a model name (see `edgerec models list`) or model_dir")
    card = get_card(model_name)
    xml = homes.ir_dir(card.name, precision) / IR_NAME
    src = None
    if source is None and xml.is_file():
        # keep using the source the existing IR came from, so alternating sources does not re-export each time
        try:
            src = cached_source(card.name, read_info(xml).source_id)
        except EdgeRecError:
            src = None
    src = src or cached_source(card.name, source)
    if src is None:
        if xml.is_file() and source is None:
            check_card(read_info(xml), card, xml)  # nothing to re-export from: a broken IR is refused
            return xml, None  # exported earlier; its source was removed, the IR alone is enough
        src = fetch(card.name, source=source, progress=progress)
    return _ensure_ir(src, homes.ir_dir(card.name, precision), precision, card=card, lock_name=card.name), src


def create_model(model_name: str | None = None, model_dir: str | Path | None = None, device: str | None = None,
                 precision: str = "fp32", use_hpip: bool = False, *, engine: str | None = None,
                 batch_size: int = 1, threads: int | None = None, source: str | None = None,
                 hint: str = "LATENCY", cache: bool = True, progress: bool = True, warmup: bool = True,
                 shape_cache: int | None = None, pp_option=None, hpi_config=None, engine_config: dict | None = None,
                 strict_device: bool = False, **kwargs) -> TextRecognizer:
    """Load a recognizer, fetching and exporting it on first use (PaddleX ``create_model``).

    ``model_name``: a card name (``edgerec models list``). ``model_dir``: an exported IR folder, or a local
    Paddle / ONNX model folder, tar or .onnx file. ``precision``: fp32, fp16 or int8 (on an Intel ``GPU``,
    fp16 also opts in to f16 compute; f32 is the default because f16 has garbled recognizers' text there).
    ``device``: cpu (default), GPU / GPU.N / AUTO (Intel, OpenVINO), gpu / gpu:N (NVIDIA, Paddle Inference).
    ``engine``: None picks by device (paddle for gpu[:N], else openvino); openvino, onnxruntime or paddle force
    one (the latter two run the source model: reference, NVIDIA GPU). ``use_hpip=True`` picks the fastest
    installed configuration for the device and says which in ``config_summary``. ``warmup`` runs one dummy
    line at load, so the first real call does not pay for kernel preparation. ``shape_cache``: how many
    input shapes (batch x width) the OpenVINO CPU plugin keeps prepared kernels for (default
    ``DEFAULT_SHAPE_CACHE`` in ``edgerec.engines.openvino``); it bounds memory on crops of many widths.
    PaddleX's ``engine=`` names and ``engine_config`` are mapped in ``edgerec.compat``; ``gpu``/``gpu:N`` without a
    usable NVIDIA GPU runs on cpu with a warning, as PaddleX does, unless ``strict_device=True``.
    """
    engine, hpi = map_engine(engine)
    use_hpip = use_hpip or hpi
    mapped = map_engine_config(engine_config)
    threads, hint = mapped.get("threads", threads), mapped.get("hint", hint)
    device = fallback_device(device, engine, strict_device)
    ignored = [k for k, v in (("pp_option", pp_option), ("hpi_config", hpi_config), *kwargs.items())
               if v is not None]
    if ignored:
        log.warning("create_model: ignoring PaddleX option(s) %s (edgerec configures OpenVINO itself)",
                    ", ".join(ignored))
    spec = parse_device(device)
    try:
        kind = default_engine(spec) if engine is None else EngineType(str(engine).lower())
    except ValueError:
        raise DeviceError(f"engine {engine!r}: use openvino, onnxruntime or paddle (or None to pick by device)"
                          ) from None
    if precision not in homes.PRECISIONS:
        raise ModelError(f"precision {precision!r}: use one of {', '.join(homes.PRECISIONS)}")
    _check_device(kind, spec)  # before any fetch or export: a missing GPU is an answer in milliseconds
    options: dict = {}
    hpip_note = ""
    if use_hpip:
        precision, options, hpip_note = _hpip_choice(kind, spec, model_name, model_dir, precision)
    if kind is EngineType.OPENVINO:
        xml, _ = resolve_model(model_name, model_dir, precision, source=source, progress=progress)
        f16 = precision == "fp16" and spec.family in ("intel-gpu", "auto")  # opt-in: f32 compute otherwise
        if shape_cache is not None:
            options["shape_cache"] = shape_cache
        if "ov_config" in mapped:
            options["config"] = mapped["ov_config"]
        eng = create_engine(kind, str(xml), spec.text, threads=threads, hint=hint,
                            cache_dir=homes.cache_dir() if cache else None, infer_precision="f16" if f16 else "f32",
                            **options)
        info = read_info(xml, model=eng.model)
        eng.release_model()
        path = xml
    else:
        info, eng, path = _source_engine(kind, model_name, model_dir, spec.text, threads, source, progress,
                                         options)
    predictor = RecPredictor(eng, info.classes, input_height=info.input_height)
    if warmup and kind is EngineType.OPENVINO:  # the source engines ran a probe line already
        predictor.recognize([np.full((info.input_height, MIN_W, 3), 255, np.uint8)])
    summary = f"{info.model_name} {info.precision}: {eng.describe()}" + (f"; use_hpip: {hpip_note}" if use_hpip
                                                                          else "")
    if use_hpip:
        log.info("use_hpip chose %s", summary)
    return TextRecognizer(predictor, info, engine=kind.value, device=eng.device, model_path=path,
                          batch_size=batch_size, config_summary=summary)


def _check_device(kind: EngineType, spec: DeviceSpec) -> None:
    """Fail fast, naming the device and what to install, when ``kind`` cannot run on ``spec`` here."""
    if kind is EngineType.OPENVINO:
        from edgerec.engines.openvino import resolve_device

        resolve_device(spec.text)
    elif kind is EngineType.PADDLE:
        from edgerec.engines.paddle import check_device

        check_device(spec.text)
    elif spec.family != "cpu":
        raise DeviceError(f"device {spec.text!r}: the onnxruntime engine runs on 'cpu' only")


def _hpip_choice(kind: EngineType, spec: DeviceSpec, model_name, model_dir, precision: str
                 ) -> tuple[str, dict, str]:
    """use_hpip: the fastest installed configuration for the device -> (precision, engine options, why)."""
    if kind is EngineType.PADDLE and spec.family == "nvidia":
        from edgerec.engines.paddle import tensorrt_available

        if tensorrt_available():
            name = model_name or Path(model_dir).name
            return precision, {"tensorrt": True, "cache_dir": homes.home() / "cache" / "paddle-trt" / name}, \
                "Paddle Inference with TensorRT (fp32) on the NVIDIA GPU"
        return precision, {}, "Paddle Inference on the NVIDIA GPU (this paddlepaddle has no TensorRT)"
    if kind is not EngineType.OPENVINO:
        return precision, {}, f"{kind.value} as forced by engine=; nothing to choose"
    int8 = None
    if model_dir is not None:
        folder = Path(model_dir).expanduser()
        int8 = folder / "int8" / IR_NAME if folder.is_dir() else None
    elif model_name:
        from edgerec.zoo.cards import get_card

        int8 = homes.ir_dir(get_card(model_name).name, "int8") / IR_NAME
    if int8 is not None and int8.is_file():
        return "int8", {}, f"int8, the fastest installed ({int8.parent})"
    return precision, {}, f"no int8 model installed (`edgerec quantize` makes one), so {precision}"


def _source_engine(kind: EngineType, model_name, model_dir, device, threads, source, progress, options=None):
    """ONNX Runtime or Paddle Inference on the source model, with the same charset the IR would carry."""
    from edgerec.runtime.charset import build_classes
    from edgerec.zoo.cards import get_card
    from edgerec.zoo.export import read_charset_entries

    card = get_card(model_name) if model_name and model_dir is None else None
    if model_dir is not None:
        src = open_local(Path(model_dir), name=model_name)
    else:
        if card is None:
            raise ModelError("give a model name or model_dir")
        want = "onnx" if kind is EngineType.ONNXRUNTIME else "paddle"
        ids = [s.id for s in card.sources if s.format == want and (source is None or s.id == source)]
        if not ids:
            raise ModelError(f"{card.name}: no {want} source in its card; the {kind.value} engine needs one")
        src = next((c for c in (cached_source(card.name, i) for i in ids) if c is not None), None)
        if src is None:
            src = fetch(card.name, source=ids[0], progress=progress)
    want = "onnx" if kind is EngineType.ONNXRUNTIME else "paddle"
    if src.format != want:
        raise ModelError(f"{src.folder}: the {kind.value} engine needs a {want} model, this is {src.format}")
    path = src.model_file if kind is EngineType.ONNXRUNTIME else src.folder
    eng = create_engine(kind, str(path), device, threads=threads, **(options or {}))
    probe = eng.infer(np.zeros((1, 3, card.input_height if card else 48, 320), np.float32))
    classes = build_classes(read_charset_entries(src), probe.shape[-1],
                            card.use_space_char if card else True, source=src.name)
    info = ModelInfo(model_name=card.name if card else src.name, classes=classes,
                     input_height=card.input_height if card else 48, precision="fp32",
                     source_sha256=src.weights_sha256, source_id=src.source_id)
    return info, eng, Path(path)


__all__ = ["InputError", "TextRecognizer", "create_model", "resolve_model"]
