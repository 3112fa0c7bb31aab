"""INT8 post-training quantization of an exported fp32 IR with NNCF, guarded by measured accuracy.

The default recipe is the one that came closest to fp32 for the PP-OCR CTC recognizers in trials on an AVX2 CPU:
preset MIXED (symmetric weights, asymmetric activations), full bias correction (``fast_bias_correction=False``),
and some Convolutions left in fp32 through an IgnoredScope: the last one (the neck's 1x1 conv that feeds the CTC
head) and the first one (on raw pixels; keeping it cut the drop on long document lines from ~2 points to ~0 and
costs no measurable time), plus the squeeze-excitation gates (convolutions on a pooled 1x1 input: no compute to
gain, and their rounding rescales whole channels; keeping them cut PP-OCRv6_tiny's loss on real word crops from
3.6 to 0.8 points), and, where the model card says so (``int8: float_stem``, PP-OCRv5 mobile), the stem and
first stage of the backbone. The output softmax stays float (NNCF does not quantize it). NNCF's defaults
(PERFORMANCE preset) lost ~13 points on PP-OCRv4. After quantization fp32 and int8 are both evaluated on
held-out crops; if ``acc`` or ``norm_edit_dis`` drops by more than ``max_drop``, the model is refused unless
forced. The searches for layers to give back to float (the sensitivity ranking, NNCF's accuracy control) and the
quantization-aware fine-tuning before PTQ (``qat``) are opt-in: each takes minutes more on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgerec.data.metrics import paired_difference, rec_metrics, same_text_share
from edgerec.errors import EdgeRecError, OtherPrecisionError, OutputError
from edgerec.quant.recipe import QuantizationConfig, with_card_recipe
from edgerec.runtime.predictor import RecPredictor
from edgerec.runtime.preprocess import preprocess_batch
from edgerec.utils import cpu
from edgerec.utils.fs import atomic_dir, atomic_write_text, check_replaceable, file_lock, probe_writable

log = logging.getLogger(__name__)

REPORT_NAME = "quantization_report.json"
# what an int8 folder holds (written whole): an existing folder with anything else in it is not replaced
INT8_FILES = ("model.xml", "model.bin", REPORT_NAME)
# fp32 and int8 are evaluated through RecPredictor as users run it (width-grouped batches, long lines in windows);
# batches of this many lines, so that the batched path is what is checked
EVAL_BATCH = 8


class QuantizationError(EdgeRecError):
    """The int8 model misses the accuracy bound (and was not forced), or quantization failed."""


@dataclass
class EvalSet:
    images: list[np.ndarray]
    labels: list[str]
    description: str


def evaluate(model, classes: list[str], eval_set: EvalSet, height: int = 48, batch_size: int = EVAL_BATCH,
             reading: dict | None = None) -> tuple[dict, list[str]]:
    """acc / norm_edit_dis of an ``openvino.Model`` (or CompiledModel) on the eval set, through RecPredictor
    (``reading``: its width options, QuantizationConfig.reading(); None: PaddleX's widths)."""
    texts = _predictor(model, classes, height, reading).recognize(eval_set.images, batch_size)
    return rec_metrics([t for t, _ in texts], eval_set.labels), [t for t, _ in texts]


def _predictor(model, classes: list[str], height: int, reading: dict | None = None) -> RecPredictor:
    from edgerec.engines.openvino import CompiledEngine

    # with width buckets the guard reads as users run them: the bucket's padding masked where the model allows
    masked = bool((reading or {}).get("width_bucket"))
    return RecPredictor(CompiledEngine.of(model, mask_padding=masked), classes, input_height=height, **(reading or {}))


def _drops(fp32: dict, int8: dict) -> dict:
    return {k: round(fp32[k] - int8[k], 6) for k in ("acc", "norm_edit_dis")}


def within_bound(drops: dict, max_drop: float) -> bool:
    """The guard: no metric may drop by more than ``max_drop`` (absolute)."""
    return all(d <= max_drop + 1e-9 for d in drops.values())


@contextlib.contextmanager
def _nncf_log_level():
    """NNCF prints INFO lines on stdout; they are noise to a user, so they show only when edgerec logs INFO
    (``edgerec -v quantize``). Its progress bars are not log lines and stay. The previous level comes back."""
    import nncf

    logger = logging.getLogger("nncf")
    before = (logger.level, [h.level for h in logger.handlers])
    nncf.set_log_level(logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before[0])
        for handler, level in zip(logger.handlers, before[1]):
            handler.setLevel(level)


def quantize_ir(fp32_xml: str | Path, calibration: list[np.ndarray], eval_set: EvalSet, out_dir: str | Path, *,
                config: QuantizationConfig | None = None, force: bool = False, calibration_desc: str = "",
                qat_source: str | Path | None = None, progress: bool = True, card=None) -> dict:
    """Quantize ``fp32_xml`` and install ``out_dir/model.xml`` when int8 holds the bound; returns the report.

    With ``config.qat`` the weights are first fine-tuned with simulated int8 (:mod:`edgerec.quant.qat`) from
    ``qat_source``, the ONNX the fp32 IR was exported from; the guard still compares against ``fp32_xml``. ``card``:
    the model card (:class:`edgerec.zoo.cards.ModelCard`) whose ``int8`` choices fill the config's None fields."""
    import nncf
    import openvino as ov

    from edgerec.zoo.export import IR_NAME, RT_KEY, read_info

    info = read_info(fp32_xml)
    config, stem_from = with_card_recipe(config or QuantizationConfig(), card)
    model = ov.Core().read_model(str(fp32_xml))
    height = info.input_height
    reading = config.reading()
    calib_tensors = [preprocess_batch([img], config.width_of(img, height), height) for img in calibration]
    if not calib_tensors:
        raise QuantizationError("no calibration crops")
    if not eval_set.labels:  # no line: equal metrics, a drop of 0, and any int8 would pass the guard
        raise QuantizationError(f"no eval lines to check int8 on ({eval_set.description or 'an empty eval set'})")
    check_replaceable(out_dir, INT8_FILES, "edgerec quantize")  # before NNCF's minutes, when called directly
    t0 = time.perf_counter()
    fp32_metrics, fp32_texts = evaluate(model, info.classes, eval_set, height, reading=reading)
    base, qat_report = model, {}
    if config.qat is not None:
        from edgerec.quant.qat import qat_finetune

        if qat_source is None:
            raise QuantizationError(f"{info.model_name}: QAT needs the ONNX source the fp32 IR was exported from")
        base, qat_report = qat_finetune(qat_source, model, calibration, height, config.qat,
                                        keep=config.float_layers(), progress=progress)
    kwargs = config.nncf_kwargs(base)
    kwargs["subset_size"] = min(config.subset_size, len(calib_tensors))
    log.info("quantizing %s with %s", info.model_name, {k: str(v) for k, v in kwargs.items()})
    t_q = time.perf_counter()
    with _nncf_log_level():
        q_model = nncf.quantize(base, nncf.Dataset(calib_tensors), **kwargs)
    int8_metrics, int8_texts = evaluate(q_model, info.classes, eval_set, height, reading=reading)
    drops = _drops(fp32_metrics, int8_metrics)
    method, search = ("qat+ptq" if qat_report else "ptq"), {}
    if not within_bound(drops, config.max_drop) and config.search == "sensitivity":
        log.warning("int8 drops %s > %.4f: ranking layers to keep in float", drops, config.max_drop)
        q_model, int8_metrics, int8_texts, drops, search = _sensitivity_search(
            base, q_model, (int8_metrics, int8_texts, drops), calibration, calib_tensors, eval_set, info, config,
            kwargs, fp32_metrics)
        method = "qat+sensitivity" if qat_report else "sensitivity"
    elif not within_bound(drops, config.max_drop) and config.search == "accuracy_control":
        log.warning("int8 drops %s > %.4f: running NNCF accuracy-controlled quantization", drops, config.max_drop)
        with _nncf_log_level():
            q_model = _accuracy_control(base, calib_tensors, eval_set, info.classes, height, config, kwargs)
        int8_metrics, int8_texts = evaluate(q_model, info.classes, eval_set, height, reading=reading)
        drops = _drops(fp32_metrics, int8_metrics)
        method = "qat+accuracy_control" if qat_report else "accuracy_control"
    quant_s = time.perf_counter() - t_q
    agree = same_text_share(fp32_texts, int8_texts)
    ok = within_bound(drops, config.max_drop)
    without_vnni = {"checked": False, "why": "--no-check-without-vnni"}
    if config.check_without_vnni and (ok or force):  # a refused model is not installed: nothing to tell use_hpip
        without_vnni = _check_without_vnni(q_model, info.classes, eval_set, height, config, fp32_metrics, int8_texts)
    resolution = _resolution(fp32_texts, int8_texts, eval_set, config.max_drop)
    report = {
        "model_name": info.model_name,
        "installed": bool(ok or force),
        "forced": bool(force and not ok),
        "method": method,
        "max_drop": config.max_drop,
        "drop": drops,
        "fp32": {k: round(v, 6) for k, v in fp32_metrics.items()},
        "int8": {k: round(v, 6) for k, v in int8_metrics.items()},
        "same_text_as_fp32": round(agree, 6),
        "drop_ci95": resolution,
        "config": asdict(config),
        # NNCF's accuracy-controlled search takes no ignored scope from the recipe: it picks its own float layers
        "recipe_choices": {"ignore_stem": stem_from,
                           "stem_in_float": bool(config.ignore_stem) and "accuracy_control" not in method},
        "ignored_scope": [] if "accuracy_control" in method else search.get("ignored_scope") or [
            str(n) for n in getattr(kwargs.get("ignored_scope"), "names", [])],
        "search": search,
        "qat": qat_report,
        "calibration": {"description": calibration_desc, "count": len(calib_tensors)},
        "eval": {"description": eval_set.description, "count": len(eval_set.labels)},
        "quantization_seconds": round(quant_s, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        # the guard's int8 texts hold for CPUs on the same side of VNNI: without it int8 sums saturate
        "cpu": cpu.isa_summary(),
        "int8_vnni": cpu.int8_vnni(),  # None: not an x86 CPU with readable flags
        "without_vnni": without_vnni,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if not ok and not force:
        raise QuantizationError(
            f"{info.model_name}: int8 drops acc by {drops['acc']:.4f} and norm_edit_dis by "
            f"{drops['norm_edit_dis']:.4f} (bound {config.max_drop}); not installed. Try "
            + ("a search for layers to keep in float (--search sensitivity), " if config.search == "none" else "")
            + "more or real calibration crops (--calibration DIR), a larger --max-drop, or --force to install it "
            "anyway")
    q_model.set_rt_info("int8", [RT_KEY, "precision"])
    q_model.set_rt_info(json.dumps({k: report[k] for k in ("method", "drop", "max_drop", "ignored_scope", "qat",
                                                           "calibration", "eval", "config")}),
                        [RT_KEY, "quantization"])
    try:
        with atomic_dir(out_dir, owned=INT8_FILES, what="edgerec quantize") as tmp:
            ov.save_model(q_model, str(tmp / IR_NAME))
            atomic_write_text(tmp / REPORT_NAME, json.dumps(report, indent=2, ensure_ascii=False))
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write the int8 model there ({exc.strerror or exc}); nothing was "
                          "installed") from None
    except RuntimeError as exc:  # OpenVINO's save: "basic_ios::clear: iostream error" when a write fails
        if "iostream error" not in str(exc):
            raise
        raise OutputError(f"{out_dir}: OpenVINO could not write the int8 model there (a full disk?); nothing was "
                          "installed") from None
    return report


def _resolution(fp32_texts: list[str], int8_texts: list[str], eval_set: EvalSet, max_drop: float) -> dict:
    """Half-widths of the 95 % intervals of the acc and NED drops (paired over the eval lines). When they are wider
    than the bound, the eval set cannot tell a drop of ``max_drop`` from the luck of its lines: say so, since the
    guard's verdict then says little (on 200 lines the interval is ±1 to ±3 points once a few lines differ)."""
    paired = paired_difference(fp32_texts, int8_texts, eval_set.labels)
    half = {k: (None if paired[k]["ci95"] is None else round(paired[k]["ci95"], 6))
            for k in ("acc", "norm_edit_dis")}
    wide = [k for k, v in half.items() if v is not None and v > max_drop]
    if wide:
        log.warning("the %d eval lines resolve drops of only ±%s (95 %%), wider than the bound %.4f: pass --eval "
                    "with more labelled crops for a guard that can tell", len(eval_set.labels),
                    " / ".join(f"{half[k]:.4f} {k}" for k in wide), max_drop)
    return half


def _check_without_vnni(q_model, classes: list[str], eval_set: EvalSet, height: int, config: QuantizationConfig,
                        fp32_metrics: dict, int8_texts: list[str]) -> dict:
    """The guard's eval lines read by the int8 model as a CPU without VNNI computes (quant/without_vnni.py): what
    use_hpip on such a CPU goes by. ``checked`` False with ``why`` where this machine cannot emulate it."""
    from edgerec.quant.without_vnni import CAP, read_without_vnni

    t0 = time.perf_counter()
    try:
        texts, why = read_without_vnni(q_model, classes, eval_set.images, height, config.reading(), EVAL_BATCH)
    except Exception as exc:  # an optional second look: it never costs the user the quantization before it
        texts, why = None, f"failed: {type(exc).__name__}: {exc}"
    if texts is None:
        log.info("int8 without VNNI not checked: %s", why)
        return {"checked": False, "why": why}
    metrics = rec_metrics(texts, eval_set.labels)
    drops = _drops(fp32_metrics, metrics)
    return {"checked": True, "emulated_with": f"ONEDNN_MAX_CPU_ISA={CAP}",
            "int8": {k: round(v, 6) for k, v in metrics.items()}, "drop": drops,
            "within_bound": within_bound(drops, config.max_drop),
            "same_text_as_int8": round(same_text_share(texts, int8_texts), 6),
            "seconds": round(time.perf_counter() - t0, 1)}


def _sensitivity_search(model, q_model, first, calibration, calib_tensors, eval_set: EvalSet, info,
                        config: QuantizationConfig, kwargs: dict, fp32_metrics: dict):
    """Rank the PTQ model's layers once (quant/sensitivity.py), then quantize again with the top k in float for k in
    ``config.keep_float`` until the guard holds; returns the best try (the first that holds, else the smallest drop)."""
    import nncf
    from tqdm import tqdm

    from edgerec.quant.sensitivity import rank_layers

    t0 = time.perf_counter()
    lines = calibration[:config.search_lines]
    with tqdm(desc="ranking layers", unit="layer", leave=False) as bar:
        def progress(layers):
            bar.reset(total=len(layers))
            for layer in layers:
                yield layer
                bar.update()

        base, ranked = rank_layers(q_model, model, lines, info.input_height, progress=progress)
    rank_s = time.perf_counter() - t0
    fixed = [str(n) for n in getattr(kwargs.get("ignored_scope"), "names", [])]
    best = (q_model, *first, fixed, 0)  # (model, metrics, texts, drops, float names, k): the plain PTQ first
    tries = []
    for k in config.keep_float:
        if time.perf_counter() - t0 > config.search_seconds:
            log.warning("sensitivity search: %.0f s spent, not trying %d layers in float", config.search_seconds, k)
            break
        names = fixed + [s.name for s in ranked[:k] if s.gain > 0 and s.name not in fixed]
        try_kwargs = dict(kwargs, ignored_scope=nncf.IgnoredScope(names=names, validate=False))
        with _nncf_log_level():
            candidate = nncf.quantize(model, nncf.Dataset(calib_tensors), **try_kwargs)
        metrics, texts = evaluate(candidate, info.classes, eval_set, info.input_height, reading=config.reading())
        drops = _drops(fp32_metrics, metrics)
        tries.append({"keep_float": k, "drop": drops})
        log.info("sensitivity search: %d layers in float -> drops %s", k, drops)
        if within_bound(drops, config.max_drop) or sum(drops.values()) < sum(best[3].values()):
            best = (candidate, metrics, texts, drops, names, k)
        if within_bound(drops, config.max_drop):
            break
    q_best, metrics, texts, drops, names, k = best
    report = {"int8_divergence": round(base, 6), "ranking_seconds": round(rank_s, 1), "lines": len(lines),
              "kept_float": k, "ignored_scope": names, "tries": tries,
              "ranked": [{"name": s.name, "type": s.kind, "gain": round(s.gain, 6), "mac_share": round(s.mac_share, 5)}
                         for s in ranked[:10]]}
    return q_best, metrics, texts, drops, report


def _accuracy_control(model, calib_tensors, eval_set: EvalSet, classes, height, config, kwargs):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    # the validation items are indices into the eval set: NNCF feeds the model batch-1 tensors of them, and
    # ``validate`` reads the lines they name through RecPredictor, as ``evaluate`` does
    def tensor(k: int) -> np.ndarray:
        img = eval_set.images[k]
        return preprocess_batch([img], config.width_of(img, height), height)

    def validate(compiled, data) -> float:
        ks = list(data)
        predictor = _predictor(compiled, classes, height, config.reading())
        texts = predictor.recognize([eval_set.images[k] for k in ks], EVAL_BATCH)
        m = rec_metrics([t for t, _ in texts], [eval_set.labels[k] for k in ks])
        return 0.5 * m["acc"] + 0.5 * m["norm_edit_dis"]

    ac_kwargs = {k: v for k, v in kwargs.items() if k not in ("ignored_scope", "advanced_parameters")}
    if "advanced_parameters" in kwargs:  # the recipe's overflow_fix: the same object under another keyword here
        ac_kwargs["advanced_quantization_parameters"] = kwargs["advanced_parameters"]
    return nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(calib_tensors, lambda t: t), nncf.Dataset(list(range(len(eval_set.labels))), tensor),
        validate, max_drop=config.max_drop, drop_type=nncf.DropType.ABSOLUTE,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=config.accuracy_control_iterations),
        **ac_kwargs)


def _install_lock(out: Path):
    """Held while one quantize writes ``out``: a second run for the same folder is refused at once (both would
    exit 0, and the last install would silently win over the first's printed result). The lock lives in the model
    home; where the home cannot be written (a read-only image, with ``--output`` elsewhere), beside ``out``."""
    import hashlib

    from filelock import Timeout

    from edgerec.zoo import home as homes

    key = hashlib.sha256(os.fsencode(str(out.resolve()))).hexdigest()[:16]
    places = [lambda: homes.lock_path(f"quantize-{key}"), lambda: out.parent / f".{out.name}.edgerec-quantize.lock"]
    for i, place in enumerate(places):
        try:
            lock = file_lock(place(), timeout=0)
            lock.acquire()
            return lock
        except Timeout:
            raise QuantizationError(f"{out}: another edgerec quantize is writing this int8 model now; wait for it "
                                    "to finish, or give another --output") from None
        except (OSError, EdgeRecError) as exc:
            if i == len(places) - 1:
                raise QuantizationError(f"{out}: cannot take the quantize lock in the model home or beside the "
                                        f"output ({exc})") from None
    raise AssertionError("unreachable")


def quantize_model(model_name: str | None = None, model_dir: str | Path | None = None, *,
                   calibration: str | Path | None = None, eval_dir: str | Path | None = None,
                   subset_size: int = 300, eval_size: int = 200, max_drop: float = 0.005, seed: int = 0,
                   force: bool = False, config: QuantizationConfig | None = None, output: str | Path | None = None,
                   progress: bool = True) -> tuple[Path, dict]:
    """Quantize a card model (or a local model) to int8 and install it where ``quantize_target`` says (the model
    home's int8 folder; for a user's IR folder, its ``int8`` subfolder).

    Calibration crops: the user's dataset folder when given (real crops), else lines rendered for the model's
    charset. Evaluation crops: a labelled folder when given, else rendered lines with another seed (other
    images; texts may repeat a few calibration texts). Returns (int8 model.xml, report).
    """
    from edgerec.quant.calibration import dataset_sample, load_pairs, render_lines
    from edgerec.zoo.export import IR_NAME
    from edgerec.zoo.resolve import quantize_target, resolve_model

    cfg = config or QuantizationConfig(subset_size=subset_size, max_drop=max_drop)
    if cfg.qat is not None:
        from edgerec.quant.qat import require_torch

        require_torch()  # before minutes of export and evaluation, not after
    # the sets are checked before anything slow: an empty one would pass the guard (no line, no drop), and --eval
    # reads val.txt or label.txt only (falling back to train.txt would check int8 on lines it may be calibrated on)
    if subset_size < 1 or eval_size < 1:
        raise QuantizationError(f"subset_size ({subset_size}) and eval_size ({eval_size}) must be at least 1")
    calib_pairs = None if calibration is None else dataset_sample(
        calibration, subset_size, seed=seed, split="train", purpose="to calibrate on (--calibration)")
    eval_pairs = None if eval_dir is None else dataset_sample(
        eval_dir, eval_size, seed=seed, split="val", fallback=False, purpose="to check int8 on (--eval)")
    bar = None if progress else False  # a bar on a terminal for sets of PROGRESS_MIN lines or more
    try:
        resolved = resolve_model(model_name, model_dir, "fp32", progress=progress)
    except OtherPrecisionError as exc:
        raise OtherPrecisionError(f"{exc}; quantize starts from an fp32 IR (or a Paddle / ONNX model): give that "
                                  "one") from None
    xml, info = resolved.path, resolved.info
    assert info is not None  # an IR's metadata is read when it is resolved
    out = Path(output) if output is not None else quantize_target(resolved, model_dir)
    check_replaceable(out, INT8_FILES, "edgerec quantize")  # before minutes of work, not after
    try:
        probe_writable(out, "edgerec quantize")
    except OutputError as exc:
        hint = "" if output is not None else ("; give --output DIR to write the int8 model elsewhere (a read-only "
                                               "model home: EDGEREC_HOME)")
        raise OutputError(f"{exc}{hint}") from None
    lock = _install_lock(out)  # a second quantize into the same folder would win silently over this one
    try:
        if calib_pairs is not None:
            calib = [img for img, _ in load_pairs(calib_pairs, progress=bar)]
            calib_desc = f"{len(calib)} crops from {calibration}"
        else:
            calib = [img for img, _ in render_lines(info.classes, subset_size, seed=seed, progress=bar)]
            calib_desc = f"{len(calib)} lines rendered for the model's charset (seed {seed})"
        if eval_pairs is not None:
            pairs = load_pairs(eval_pairs, progress=bar)
            eval_desc = f"{len(pairs)} labelled crops from {eval_dir}"
        else:
            pairs = render_lines(info.classes, eval_size, seed=seed + 7919, progress=bar)
            eval_desc = f"{len(pairs)} rendered lines (seed {seed + 7919}, not the calibration lines)"
        eval_set = EvalSet([p[0] for p in pairs], [p[1] for p in pairs], eval_desc)
        # a scratch folder only for --qat (its ONNX source); removed however the run ends
        with (tempfile.TemporaryDirectory(prefix="edgerec-qat-src-") if cfg.qat is not None
              else contextlib.nullcontext(None)) as scratch:
            qat_source = None
            if cfg.qat is not None:
                from edgerec.quant.qat import training_onnx

                qat_source = training_onnx(model_name, model_dir, info.source_id, Path(scratch))
            report = quantize_ir(xml, calib, eval_set, out, config=cfg, force=force, calibration_desc=calib_desc,
                                 card=resolved.card,
                                 qat_source=qat_source, progress=progress)
        return out / IR_NAME, report
    finally:
        lock.release()
