"""The PaddleX-shaped surface: ``create_model(name).predict(input)`` yielding ``TextRecResult``s."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edgerec.compat import fallback_device, map_engine, map_engine_config, word_box_of
from edgerec.engines import registry
from edgerec.engines.base import Engine, EngineKind, parse_device
from edgerec.errors import EdgeRecError, InputError, ModelError, reason
from edgerec.hpip import HPIP_WIDTH_BUCKET, hpip_bucket_for, hpip_choice, hpip_takes_buckets, warn_int8_check
from edgerec.io.inputs import LoadedItem, iter_inputs, to_bgr
from edgerec.recheck import check_recheck, recheck_for, refuse_unfit
from edgerec.results import TextRecResult
from edgerec.runtime.predictor import RECHECK_BELOW, RecPredictor, bucket_shapes, check_batch_size
from edgerec.runtime.preprocess import MIN_W, check_input_shape, check_min_width, check_width_bucket
from edgerec.zoo import home as homes
from edgerec.zoo.export import ModelInfo
from edgerec.zoo.resolve import installed_ir, own_ir_precision, resolve_model

log = logging.getLogger(__name__)
# one WARNING per bad input (PaddleX raises; edgerec yields an error result and says so here); the CLI, which
# reports bad inputs itself, quiets this logger
bad_input_log = logging.getLogger("edgerec.bad_input")
# predict holds at most this many bytes of decoded images before it runs them (and at most ``window`` items): a
# folder of crops still batches 64+ lines at a time, a 300-page PDF holds a few pages, not 64
WINDOW_BYTES = 32 * 2**20
FLUSH_AFTER_S = 2.0  # a window whose oldest line waited this long is read when the next input comes, full or not
_array_names = itertools.count()  # arrays named in error messages: <ndarray #N>, per process


def _shown(obj: object) -> str:
    """How an input is named in an error: a path as given, an array by its shape, anything else by a short repr."""
    if isinstance(obj, (str, Path)):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return f"<ndarray #{next(_array_names)}>"  # as predict names arrays
    if isinstance(obj, (list, tuple)):
        return f"<{type(obj).__name__} of {len(obj)} items>"
    if isinstance(obj, Iterator):
        return f"<{type(obj).__name__}>"
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


class _BatchSampler:
    """PaddleX's ``model.batch_sampler``: its ``batch_size`` is the model's (read and set)."""

    def __init__(self, model: TextRecognizer):
        self._model = model

    @property
    def batch_size(self) -> int:
        return self._model.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._model.batch_size = check_batch_size(value)


class TextRecognizer:
    """A loaded recognizer. ``predict`` is safe to call from several threads at once.

    Besides edgerec's own attributes it has PaddleX's: ``model_name``, ``model_dir`` (the folder the model was
    loaded from), ``config`` (``{"Global": {"model_name": ...}}``), ``batch_sampler.batch_size``, ``device``
    (``"cpu"`` as PaddleX writes it; an Intel GPU as OpenVINO names it), ``return_word_box`` and ``close()``."""

    def __init__(self, predictor: RecPredictor, info: ModelInfo, *, engine: str, device: str,
                 model_path: Path, batch_size: int = 1, config_summary: str = "", precision: str | None = None,
                 return_word_box: bool = False):
        self.predictor = predictor
        self.info = info
        self.model_name = info.model_name
        self.precision = precision or info.precision  # what it runs at: bf16 runs the fp32 IR (info.precision)
        self.engine = engine
        self.device = device
        self.model_path = model_path
        self.model_dir = model_path.parent if model_path.is_file() else model_path
        self.config = {"Global": {"model_name": self.model_name}}
        self.batch_size = batch_size
        self.return_word_box = bool(return_word_box)  # PaddleX's create_model option: every predict's default
        # what was loaded and how (engine, device, precision, hints; use_hpip's choice): one line for logs
        self.config_summary = config_summary or f"{self.model_name} {self.precision} on {engine} {device}"

    def __repr__(self) -> str:
        return (f"TextRecognizer(model_name={self.model_name!r}, precision={self.precision!r}, "
                f"engine={self.engine!r}, device={self.device!r})")

    @property
    def batch_sampler(self) -> _BatchSampler:
        """PaddleX's ``model.batch_sampler``: ``.batch_size`` reads and sets this model's (a copy's its own)."""
        return _BatchSampler(self)

    def __copy__(self) -> TextRecognizer:
        """A second handle on the same compiled model (its own batch size); thread-safe like the first."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __getstate__(self):
        raise TypeError("a TextRecognizer holds a compiled model and cannot be pickled or deep-copied (a process "
                        "pool passes its arguments by pickling): call create_model in each worker process instead")

    def close(self) -> None:
        """PaddleX's: nothing to release early here (the engine goes with the object)."""

    def predict(self, input, batch_size: int | None = None, *, on_error: str = "result",
                return_word_box: bool | None = None, workers: int = 1, keep_image: bool = True,
                skip: Callable[[str], bool] | None = None) -> Iterator[TextRecResult]:
        """Yield one result per input image, in input order.

        ``input``: ndarray (BGR, gray or BGRA), PIL image, path, folder, PDF, http(s) URL, or a list of these.
        A bad input never loses the others' results: with ``on_error="result"`` (default) it yields a result
        whose ``error`` names the input and the problem (rec_text '' and rec_score 0.0); with ``"raise"`` the
        InputError is raised when that input is reached. ``batch_size`` applies to this call only (PaddleX keeps
        it for later calls). ``return_word_box``: PaddleX's word runs, in ``rec_text`` (see TextRecResult); True
        here or in create_model gives them (PaddleX's rule).
        edgerec's own, for long runs: ``workers`` threads decode a folder's files ahead of inference;
        ``keep_image=False`` drops ``input_img`` from the results (memory stays flat over millions of crops;
        ``save_to_img`` then has nothing to draw); ``skip(path)`` True leaves a file out unread (resuming).
        """
        if on_error not in ("result", "raise"):
            raise ValueError(f"on_error must be 'result' or 'raise', not {on_error!r}")
        bs = self.batch_size if batch_size is None else check_batch_size(batch_size)
        # checked when predict is called, not when its first result is asked for
        return self._predict(input, bs, on_error, bool(return_word_box) or self.return_word_box, workers,
                             keep_image, skip)

    def _predict(self, input, bs: int, on_error: str, return_word_box: bool, workers: int, keep_image: bool,
                 skip: Callable[[str], bool] | None) -> Iterator[TextRecResult]:
        # enough lines in hand to fill equal-width batches and every parallel infer request; from an iterator (a
        # stream of frames, a queue) only one batch per request, so a producer that waits for results still gets
        # them (64 ahead would hold its first result until 63 more frames came)
        stream = isinstance(input, Iterator)
        window = bs * self.predictor.parallel if stream else max(64, bs * 8 * self.predictor.parallel)
        pending: list[LoadedItem] = []
        held = 0  # bytes of decoded images in ``pending``: PDF pages are megabytes each, line crops kilobytes
        since = 0.0  # when the oldest line in ``pending`` came
        items = iter_inputs(input, workers=workers, skip=skip)
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except KeyboardInterrupt:
                # the lines in hand are read before the interrupt goes on, so a caller writing results keeps them
                # (a slow PDF page or URL held them until the window filled)
                if pending:
                    yield from self._run(pending, bs, on_error, return_word_box, keep_image)
                raise
            if not pending:
                since = time.monotonic()
            pending.append(item)
            held += item.image.nbytes if item.image is not None else 0
            # slow inputs (network, PDF pages): lines that waited FLUSH_AFTER_S are read once the next one comes
            if len(pending) >= window or held >= WINDOW_BYTES or time.monotonic() - since >= FLUSH_AFTER_S:
                yield from self._run(pending, bs, on_error, return_word_box, keep_image)
                pending, held = [], 0
        if pending:
            yield from self._run(pending, bs, on_error, return_word_box, keep_image)

    __call__ = predict

    def recognize(self, image: np.ndarray) -> TextRecResult:
        """One image in, one result out; a bad image raises InputError. The kiosk's per-frame call.

        Anything that holds no image or more than one (a list, an iterator, an N x H x W x C array, a folder, a
        multi-page PDF) is an InputError too: ``predict`` takes those."""
        if isinstance(image, (list, tuple, Iterator)) or (isinstance(image, np.ndarray) and image.ndim == 4):
            what = f"an array of shape {image.shape}" if isinstance(image, np.ndarray) else f"a {type(image).__name__}"
            raise InputError(_shown(image), f"recognize takes one image, not {what}; predict takes many")
        results = list(itertools.islice(self.predict(image, batch_size=1, on_error="raise"), 2))
        if len(results) != 1:
            raise InputError(_shown(image), ("holds no image" if not results else "holds more than one image (a "
                             "folder or a multi-page file)") + "; recognize takes one image, predict takes many")
        return results[0]

    def recognize_batch(self, images: list[np.ndarray], batch_size: int | None = None) -> list[tuple[str, float]]:
        """(text, score) for each array, in order: the call for integrations that hold decoded crops already
        (a camera's ROIs, a detector's boxes). Arrays are BGR, gray or BGRA; one that is no image raises
        InputError naming its index. ``batch_size`` defaults to the model's."""
        bgr = [to_bgr(img, f"images[{i}]") for i, img in enumerate(images)]
        bs = self.batch_size if batch_size is None else check_batch_size(batch_size)
        return self.predictor.recognize(bgr, bs) if bgr else []

    def properties(self) -> dict:
        """What runs, as the engine reports it (engine, device, compute precision, threads, streams), plus the
        model's name and precision."""
        return {"model_name": self.model_name, "model_precision": self.info.precision,
                **self.predictor.engine.properties()}

    def files(self) -> list[Path]:
        """The files the engines loaded the model from (the recheck's too, each file once)."""
        again = self.predictor.recheck
        return list(dict.fromkeys(self.predictor.engine.files() + (again.engine.files() if again else [])))

    @property
    def recheck_counts(self) -> dict | None:
        """With ``recheck``: how many lines were read so far and how many of them were read again; else None."""
        again = self.predictor.recheck
        return None if again is None else again.counts()

    def _run(self, items: list[LoadedItem], batch_size: int, on_error: str, word_box: bool = False,
             keep_image: bool = True) -> Iterator[TextRecResult]:
        good = [it for it in items if it.error is None]
        texts = iter(self.predictor.recognize([it.image for it in good], batch_size, word_box)) if good else iter(())
        for it in items:
            if it.error is not None:
                if on_error == "raise":
                    raise it.error
                bad_input_log.warning("%s", it.error)  # one line per bad input; the result carries it too
                yield TextRecResult(it.input_path, it.page_index, "", 0.0, error=str(it.error))
                continue
            text, score, *box = next(texts)
            yield TextRecResult(it.input_path, it.page_index, text, score,
                                input_img=it.image if keep_image else None,
                                word_box=(word_box_of(it.image, box[0] if box else None,
                                                      self.predictor.max_wh_ratio(it.image)) or [])
                                if word_box else None)


def create_model(model_name: str | None = None, model_dir: str | Path | None = None, device: str | None = None,
                 precision: str | None = None, use_hpip: bool = False, *, engine: str | None = None,
                 batch_size: int = 1, threads: int | None = None, source: str | None = None,
                 hint: str | None = None, cache: bool = True, progress: bool = True, warmup: bool = True,
                 shape_cache: int | None = None, engine_options: dict | None = None, pp_option=None,
                 hpi_config=None, engine_config: dict | None = None, strict_device: bool = False,
                 min_width: int | None = None, width_bucket: int | None = None, return_word_box: bool = False,
                 input_shape=None, recheck: str | None = None, recheck_below: float = RECHECK_BELOW,
                 **kwargs) -> TextRecognizer:
    """Load a recognizer, fetching and exporting it on first use (PaddleX ``create_model``).

    ``model_name``: a card name (``edgerec models list``). ``model_dir``: an exported IR folder, or a local
    Paddle / ONNX model folder, tar or .onnx file. ``precision``: None (the model's own: fp32 for a card name, an IR
    ``model_dir`` as it is; an IR is never run as another precision than asked), fp32, fp16, int8 or bf16 (on
    an Intel ``GPU``, fp16 also opts in to f16 compute; f32 is the default because f16 has garbled recognizers'
    text there; bf16 runs the fp32 IR with OpenVINO's bf16 compute hint, on a CPU with native bf16 only, see
    docs/usage.md).
    ``device``: cpu (default), GPU / GPU.N / AUTO (Intel, OpenVINO), gpu / gpu:N (NVIDIA, Paddle Inference).
    ``engine``: None picks by device (``edgerec.engines.registry``: paddle for gpu[:N], else openvino);
    openvino, onnxruntime or paddle force one (the latter two run the source model: reference, NVIDIA GPU).
    ``engine_options``: the engine's own options (its dataclass, e.g. ``OpenVINOOptions``); ``threads``,
    ``hint`` and ``shape_cache`` are shorthands for those options, and an option the engine does not take is
    an error. ``use_hpip=True`` picks the fastest installed configuration for the device and says which in
    ``config_summary``; on CPU that includes masked width buckets (``edgerec.hpip.HPIP_WIDTH_BUCKET`` px) unless
    ``width_bucket`` is given (0: exact widths), ``mask_padding=False`` or ``shape_cache=0``. ``warmup`` runs one dummy
    line at load, so the first real call does not pay for kernel preparation. ``shape_cache``: how many input shapes
    (batch x width) the OpenVINO CPU plugin keeps prepared kernels for, besides ``min_width`` (compiled apart with a
    static width, since most lines get it); default ``DEFAULT_SHAPE_CACHE`` in ``edgerec.engines.openvino`` (0), so
    memory stays flat on crops of many widths; raise it when a few widths other than the minimum alternate (documents
    with repeating widths).
    ``min_width``: the narrowest input width a line is padded to (None: 320, PaddleX's); a smaller one (e.g.
    160) is faster on short lines but changes some texts, an opt-in (docs/usage.md).
    ``width_bucket``: None (default; 160 under ``use_hpip`` on CPU) or 0 (always) feeds every line at its own
    width, as PaddleX; N right-pads lines wider than ``min_width`` up to ``min_width + k * N``, so a folder of many
    widths runs on a few input shapes whose kernels stay prepared (``shape_cache`` then defaults to those widths
    times the batch sizes, at most 32): faster on document lines; OpenVINO masks the padding, so fp32 texts stay
    those of exact widths, bf16 and int8 change a few (docs/usage.md).
    ``return_word_box``: PaddleX's, every ``predict`` gives word runs (see TextRecResult).
    ``input_shape``: PaddleX's ``[3, H, W]``: every line is stretched to H x W (its aspect ratio not kept, no
    padding), as PaddleX's ``staticResize``; H must be the model's input height (48 for PP-OCR).
    ``recheck``: a more precise precision (fp32, or bf16 under int8) at which every line scoring below
    ``recheck_below`` (0.9) is read again, the same model opened a second time; the line gets that reading's text
    and score (int8's speed on confident lines, most of fp32's accuracy; docs/usage.md).
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
    kind = registry.pick(engine, spec)
    asked = precision  # None: the model's own (an IR given as model_dir as it is, else fp32)
    hpip_chooses = use_hpip and asked is None  # use_hpip checks what it picks; what the caller names is checked below
    precision = precision or "fp32"
    if precision not in homes.RUN_PRECISIONS:
        raise ModelError(f"precision {precision!r}: use one of {', '.join(homes.RUN_PRECISIONS)}")
    batch_size = check_batch_size(batch_size)
    min_width = check_min_width(MIN_W if min_width is None else min_width)
    bucket_given = width_bucket is not None  # 0 included: exact widths, asked for
    width_bucket = check_width_bucket(width_bucket)
    static = check_input_shape(input_shape, width_bucket)
    recheck_below = check_recheck(recheck, recheck_below)
    kind.check_device(spec)  # before any fetch or export: a missing GPU is an answer in milliseconds
    values = _option_values(kind, engine_options, threads=threads, hint=hint, shape_cache=shape_cache, cache=cache)
    # use_hpip also takes width buckets where they pay (checked for the model's padding once it is at hand)
    hpip_bucket = use_hpip and not bucket_given and static is None and hpip_takes_buckets(kind, spec, values)
    given = dict(values)  # what the caller set, before the buckets' defaults
    if hpip_bucket:
        width_bucket = HPIP_WIDTH_BUCKET
    if kind.takes("static_width"):  # the width most lines get: kernels prepared once
        values.setdefault("static_width", static[1] if static else min_width)
    if width_bucket and kind.takes("shape_cache"):  # every bucket's kernels stay prepared
        values.setdefault("shape_cache", bucket_shapes(min_width, width_bucket, batch_size))
    if width_bucket and kind.takes("mask_padding"):  # the bucket's padding is not read
        values.setdefault("mask_padding", True)
    elif values.get("mask_padding"):  # nothing is padded beyond a line's width: the masks would only cost time
        _no_masks(values, "no line is padded beyond its own width")
    if width_bucket and not kind.takes("mask_padding"):
        log.warning("width_bucket with the %s engine: lines are padded as they are, which changes some texts, and "
                    "this engine prepares nothing per width, so it gains no speed (the buckets are for OpenVINO)",
                    kind.name)
    if "ov_config" in mapped and kind.takes("config"):  # PaddleX hpi's OpenVINO properties
        values["config"] = {**(values.get("config") or {}), **mapped["ov_config"]}
    hpip_note = ""
    if use_hpip and asked is not None:  # what the caller set explicitly wins, the precision too
        chosen, hpip_note = kind.fastest(spec) if kind.fastest is not None else ({}, "")
        hpip_note = f"precision {asked} was given, so use_hpip keeps it" + (f"; {hpip_note}" if hpip_note else "")
        values = {**chosen, **values}
    elif use_hpip:  # its int8-vs-bf16 timing (48 x 320, on the static copy) is keyed without the buckets' defaults
        timed = _without_bucket_defaults(values, given)
        choice, chosen, hpip_note = hpip_choice(kind, spec, model_name, model_dir, precision, timed)
        own = own_ir_precision(model_dir) if asked is None and model_dir is not None else None
        if own is not None and choice != own and installed_ir(model_name, model_dir,
                                                             homes.ir_precision(choice)) is None:
            # an IR folder given as it is, with nothing of the chosen precision beside it: it runs as it is
            hpip_note = f"{hpip_note}; but {model_dir} holds only an {own} IR, so {own}"
            precision = own
        else:
            precision = asked = choice
        values = {**chosen, **values}  # what the caller set explicitly wins
    options = kind.make_options(values)  # an unknown option fails here, before any fetch
    kind.check_precision(precision, spec)  # before any fetch: bf16 on a CPU without native bf16, say
    checked = bool(recheck) and not hpip_chooses and (asked is not None or model_dir is None)
    if checked:  # the precision that runs is known now (not for an IR folder as it is): refused before any load
        refuse_unfit(kind, spec, precision, recheck)  # type: ignore[arg-type]
    resolved = resolve_model(model_name, model_dir, asked and precision, source_format=kind.source_format,
                             source=source, progress=progress)
    if hpip_bucket:
        width_bucket, note = hpip_bucket_for(resolved.path, precision, min_width)
        hpip_note += f"; {note}"
        if width_bucket is None:  # plain padding would change texts: exact widths, without the buckets' defaults
            values = _without_bucket_defaults(values, given)
            if values.get("mask_padding"):  # asked for, but nothing is padded beyond a line's width now
                _no_masks(values, "use_hpip runs this model at exact widths")
            options = kind.make_options(values)
    eng = kind.open(resolved.path, spec, options, "bf16" if precision == "bf16" else resolved.precision)
    probed = resolved.info is None
    info = resolved.info or resolved.complete(_first_run(resolved.path, resolved.input_height, lambda: _probe_classes(
        eng, resolved.input_height, resolved.path)))
    if static is not None and static[0] != info.input_height:
        raise ModelError(f"input_shape {list(input_shape)}: the height must be the model's input height, "
                         f"{info.input_height}")
    run_precision = "bf16" if precision == "bf16" else info.precision
    again, unused = recheck_for(kind, spec, options, info, run_precision, recheck, recheck_below, checked=checked,
                                hpip_chooses=hpip_chooses, model_name=model_name, model_dir=model_dir, source=source,
                                progress=progress) if recheck else (None, "")
    predictor = RecPredictor(eng, info.classes, input_height=info.input_height, min_width=min_width,
                             width_bucket=width_bucket, static_width=static[1] if static else None, recheck=again)
    if warmup and not probed:  # a probed engine has run a line already
        _first_run(resolved.path, info.input_height,
                   lambda: predictor.recognize([np.full((info.input_height, MIN_W, 3), 255, np.uint8)]))
    if predictor.nan_lines:  # NaN for a blank line: nothing the user's lines can fix
        raise ModelError(_BROKEN.format(path=resolved.path))
    if again is not None:  # the blank warm-up line reads '' at score 0, so (recheck_below > 0) it warmed both
        if again.nan_lines:
            raise ModelError(f"recheck {recheck}: " + _BROKEN.format(path=again.path))
        again.reset()  # but it is not the user's
    if (info.extra or {}).get("charset_padded") and info.source_id == "local":  # at every load, not only export
        log.warning("%s: the model has %s more classes than its dict holds, so the dict was padded with ' ' at "
                    "its end; if entries are missing elsewhere, its texts are wrong (give the model's own dict)",
                    resolved.path, info.extra["charset_padded"])
    if run_precision == "int8" and not hpip_chooses:  # asked for by name: it runs, with what vouches for it said
        warn_int8_check(resolved.path, info.model_name, spec, log)
    summary = f"{info.model_name} {run_precision}: {eng.describe()}" + (
        f", widths padded to {min_width} + k x {width_bucket}" if width_bucket else "") + (
        f"; {again.describe()}" if again else f"; {unused}" if unused else "") + (
        f"; use_hpip: {hpip_note}" if use_hpip else "")
    if use_hpip:
        log.info("use_hpip chose %s", summary)
    device = "cpu" if eng.device.upper() == "CPU" else eng.device  # as PaddleX writes it
    return TextRecognizer(predictor, info, engine=kind.name, device=device, model_path=resolved.path,
                          batch_size=batch_size, config_summary=summary, precision=run_precision,
                          return_word_box=return_word_box)


def _option_values(kind: EngineKind, engine_options: dict | None, *, threads, hint, shape_cache, cache: bool
                   ) -> dict:
    """The engine's option values: ``engine_options`` plus the shorthands that were set (None: not set).

    The compiled-model cache folder is the model home's, for an engine that has a ``cache_dir`` option.
    """
    values = dict(engine_options or {})
    for key, value in (("threads", threads), ("hint", hint), ("shape_cache", shape_cache)):
        if value is not None:
            if key in values and values[key] != value:
                raise ValueError(f"{key} given twice (as {key}= and in engine_options) with different values")
            values[key] = value
    if cache and kind.takes("cache_dir"):
        try:
            values.setdefault("cache_dir", homes.engine_cache_dir(kind.name))
        except ModelError as exc:  # no usable model home: a model_dir still loads, without the compiled cache
            log.warning("%s; compiling without the model cache", exc)
    return values


# the engine options width_bucket sets unless given: the shapes kept prepared, the padding masked
BUCKET_DEFAULTS = ("shape_cache", "mask_padding")


def _without_bucket_defaults(values: dict, given: dict) -> dict:
    """``values`` without what width_bucket added (``given``: the caller's own options, which stay)."""
    return {k: v for k, v in values.items() if k in given or k not in BUCKET_DEFAULTS}


def _no_masks(values: dict, why: str) -> None:
    log.warning("mask_padding without width_bucket changes nothing (%s): not used", why)
    values["mask_padding"] = False


def _first_run(path, input_height: int, run: Callable[[], object]):
    """The first line a model runs (the class probe, the warm-up): a model that cannot run a line is a ModelError
    naming it, not an error from inside OpenVINO or ONNX Runtime."""
    try:
        return run()
    except EdgeRecError:
        raise
    except Exception as exc:
        raise ModelError(f"{path}: the model cannot read a line (1 x 3 x {input_height} x {MIN_W}): {reason(exc)}; "
                         "is it a text-line recognizer with one N x 3 x H x W input?") from None


# a model whose output holds NaN for a blank line: broken weights, or a broken compiled form (stop 31's cache bug)
_BROKEN = ("{path}: the model's output holds NaN for a blank line: its weights, or its compiled form, are broken; "
           "export it again (or delete the model home's compiled-model cache, cache/openvino, if the model reads "
           "fine with another engine)")


def _probe_classes(eng: Engine, input_height: int, path) -> int:
    """How many classes a source model outputs: one blank line through the engine (NaN there: a broken model)."""
    out = eng.infer(np.zeros((1, 3, input_height, MIN_W), np.float32))
    if np.isnan(out).any():
        raise ModelError(_BROKEN.format(path=path))
    return int(out.shape[-1])


__all__ = ["InputError", "TextRecognizer", "create_model", "resolve_model"]
