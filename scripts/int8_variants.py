#!/usr/bin/env python
"""INT8 recipe variants, measured on full evaluation sets: how far each lands from fp32, with a 95 % interval.

    PYTHONPATH=. python scripts/int8_variants.py MODEL VARIANT [--ignore-types GroupConvolution]
        [--model-type transformer] [--sq-conv ALPHA] [--act-range mean_quantile|histogram|...] [--subset 300]
        [--float-stem] [--gate-mul] [--keep-float N] [--float-first N] [--channel-alignment] [--no-bias-correction]
        [--overflow-fix enable]
        [--calibration DIR] [--xml INT8_IR | --bf16] [--evalsets ../shared/evalsets] [--sets iiit5k_3000,...]
        [--referee MODEL] [--workdir /tmp/int8-variants]

Quantizes the model's installed fp32 IR with NNCF as `edgerec quantize` does (edgerec's recipe from
``QuantizationConfig``: MIXED, full bias correction, first and last convolution and the squeeze-excitation gates in
float; the stem only with --float-stem, whatever the model card says), changed as the options say, or evaluates an
int8 IR given with ``--xml``, or (``--bf16``) the fp32 IR at bf16 compute, where the CPU has it natively.
Then it reads every line of each set through the runtime users run (``RecPredictor``, batches of 8) and prints, per
set, fp32's acc / NED and int8's difference in points with the half-width of its 95 % interval, paired over the
lines (``edgerec.data.metrics.paired_difference``), the share of lines with fp32's text, and the lines only fp32 /
only int8 reads right. fp32's texts are cached in the workdir. The int8 IR goes to
``WORKDIR/MODEL/VARIANT/model.xml`` (never into the model home), the numbers to ``result.json`` beside it.
Calibration: rendered lines (seed 0, as `edgerec quantize`), or ``--calibration`` with a labelled folder whose
labels are not used. Accuracy does not depend on machine load. Measurements made with it:
docs/measurements/2026-12-06-int8-routes.md, docs/measurements/2026-12-06-int8-stem.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = "iiit5k_3000,svt_647,en_uw3_70,en_doc_taigi,zh_plates_1000"


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("variant", help="a name for this variant (its output folder)")
    ap.add_argument("--ignore-types", default="", help="op types kept in float, comma-separated (NNCF IgnoredScope)")
    ap.add_argument("--model-type", choices=("transformer",), default=None)
    ap.add_argument("--sq-conv", type=float, default=None, help="SmoothQuant alpha for convolutions (transformer)")
    ap.add_argument("--act-range", default="", help="an NNCF RangeEstimatorParametersSet name for activations")
    ap.add_argument("--gate-mul", action="store_true", help="also keep the multiplies applying SE gates in float")
    ap.add_argument("--float-first", type=int, default=0,
                    help="keep the first N (group) convolutions in float (the backbone's first stages)")
    ap.add_argument("--float-stem", action="store_true",
                    help="keep the stem and first stage in float (QuantizationConfig.ignore_stem; without it the "
                         "variant has it off whatever the model card says)")
    ap.add_argument("--channel-alignment", action="store_true", help="NNCF's channel alignment (off by default)")
    ap.add_argument("--no-bias-correction", action="store_true")
    ap.add_argument("--fast-bias-correction", action="store_true",
                    help="NNCF's fast bias correction instead of the recipe's full one")
    ap.add_argument("--act-per-tensor", action="store_true",
                    help="one activation range per tensor (NNCF gives the inputs of depthwise convolutions one per "
                         "channel on CPU)")
    ap.add_argument("--overflow-fix", choices=("first_layer", "enable", "disable"), default="first_layer",
                    help="NNCF's overflow fix (QuantizationConfig.overflow_fix)")
    ap.add_argument("--keep-float", type=int, default=0,
                    help="also keep the top N layers of the sensitivity ranking (64 calibration lines) in float")
    ap.add_argument("--preset", choices=("mixed", "performance"), default=None,
                    help="NNCF's preset (the recipe's is mixed: asymmetric activations where they go negative)")
    ap.add_argument("--subset", type=int, default=300, help="calibration lines")
    ap.add_argument("--calibration", type=Path, default=None, help="a labelled folder (labels unused)")
    ap.add_argument("--referee", default=None,
                    help="another model whose fp32 texts (cached by a run of this script on it) referee silver labels: "
                         "lines only fp32 reads 'right' where int8 reads what the referee reads count as disputed")
    ap.add_argument("--xml", type=Path, default=None, help="evaluate this int8 IR instead of quantizing")
    ap.add_argument("--bf16", action="store_true", help="evaluate the fp32 IR at bf16 compute instead of an int8")
    ap.add_argument("--evalsets", type=Path, default=ROOT.parent / "shared" / "evalsets")
    ap.add_argument("--sets", default=SETS, help="names under --evalsets, or folder paths")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/int8-variants"))
    return ap.parse_args(argv)


def _gate_multiplies(model, height: int = 48, width: int = 320) -> list[str]:
    """The Multiply ops that scale a feature map by a computed 1x1-in-space tensor (where a squeeze-excitation gate
    is applied), found at a static line shape."""
    static = model.clone()
    static.reshape({static.inputs[0].any_name: [1, 3, height, width]})

    def area(dims) -> int:
        return dims[2].get_length() * dims[3].get_length() if dims.is_static and dims.rank.get_length() == 4 else 0

    return [op.get_friendly_name() for op in static.get_ordered_ops()
            if op.get_type_name() == "Multiply" and area(op.get_output_partial_shape(0)) > 1
            and any(area(op.get_input_partial_shape(i)) == 1 and op.input_value(i).get_node().get_type_name()
                    != "Constant" for i in range(2))]


def _patch_channel_alignment() -> None:
    """NNCF 3.4.0's channel alignment (off by default) treats its statistics, nncf Tensors, as numpy arrays and fails;
    for this experiment, its apply() is re-read with the statistics unwrapped to numpy first."""
    import types

    from nncf.quantization.algorithms.channel_alignment import algorithm

    old = "stat = tensor_collectors[0].get_statistics()"
    src = Path(algorithm.__file__).read_text("utf-8")
    if old not in src:
        raise SystemExit("this NNCF's channel alignment differs from 3.4.0's: the experiment's patch does not apply")
    unwrap = ("stat = types.SimpleNamespace("
              "min_values=None if stat.min_values is None else stat.min_values.data, "
              "max_values=None if stat.max_values is None else stat.max_values.data)")
    src = src.replace(old, f"{old}\n            {unwrap}")
    mod = types.ModuleType(algorithm.__name__ + "_patched")
    mod.__dict__["types"] = types
    exec(compile(src, algorithm.__file__, "exec"), mod.__dict__)
    algorithm.ChannelAlignment.apply = mod.ChannelAlignment.apply


def _quantize(a, fp32, info):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from edgerec.bench.datasets import load_dataset
    from edgerec.quant.calibration import render_lines
    from edgerec.quant.quantize import QuantizationConfig
    from edgerec.runtime.preprocess import preprocess_batch, target_width

    if a.calibration:
        calib = load_dataset(a.calibration).images[:a.subset]
    else:
        calib = [img for img, _ in render_lines(info.classes, a.subset, seed=0)]
    h = info.input_height
    tensors = [preprocess_batch([im], target_width(*im.shape[:2], img_h=h), h) for im in calib]
    kwargs = QuantizationConfig(model_type=a.model_type, ignore_stem=a.float_stem,
                                overflow_fix=a.overflow_fix).nncf_kwargs(fp32)
    kwargs["subset_size"] = len(tensors)
    if a.preset:
        kwargs["preset"] = getattr(nncf.QuantizationPreset, a.preset.upper())
    if a.fast_bias_correction:
        kwargs["fast_bias_correction"] = True
    if a.float_first:
        names = list(kwargs["ignored_scope"].names) if "ignored_scope" in kwargs else []
        first = [op.get_friendly_name() for op in fp32.get_ordered_ops()
                 if op.get_type_name() in ("Convolution", "GroupConvolution")][:a.float_first]
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=names + [n for n in first if n not in names], validate=False)
    if a.gate_mul:
        names = list(kwargs["ignored_scope"].names) if "ignored_scope" in kwargs else []
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=names + _gate_multiplies(fp32), validate=False)
    if a.ignore_types:
        names = list(kwargs["ignored_scope"].names) if "ignored_scope" in kwargs else []
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=names, types=a.ignore_types.split(","), validate=False)
    recipe = kwargs.pop("advanced_parameters", None)  # the recipe's own (overflow_fix), merged with the options'
    advanced = {"overflow_fix": recipe.overflow_fix} if recipe is not None else {}
    if a.sq_conv is not None:
        advanced["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(convolution=a.sq_conv)
    if a.act_range:
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        advanced["activations_range_estimator_params"] = getattr(RangeEstimatorParametersSet, a.act_range.upper())
    if a.channel_alignment:
        _patch_channel_alignment()
        advanced["disable_channel_alignment"] = False
    if a.no_bias_correction:
        advanced["disable_bias_correction"] = True
    if a.act_per_tensor:
        from nncf.quantization.advanced_parameters import QuantizationParameters

        advanced["activations_quantization_params"] = QuantizationParameters(per_channel=False)
    if a.keep_float:
        from edgerec.quant.sensitivity import rank_layers

        nncf.set_log_level(30)
        first = nncf.quantize(fp32, nncf.Dataset(tensors), **kwargs)
        _, ranked = rank_layers(first, fp32, calib[:64], h)
        names = list(kwargs["ignored_scope"].names) if "ignored_scope" in kwargs else []
        top = [s.name for s in ranked[:a.keep_float] if s.gain > 0 and s.name not in names]
        print("kept in float by the ranking:", top, flush=True)
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=names + top, types=list(kwargs["ignored_scope"].types)
                                                    if "ignored_scope" in kwargs else [], validate=False)
    if advanced:
        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(**advanced)
    nncf.set_log_level(30)
    return nncf.quantize(fp32, nncf.Dataset(tensors), **kwargs)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    import openvino as ov

    from edgerec.bench.datasets import load_dataset
    from edgerec.data.metrics import paired_difference
    from edgerec.quant.quantize import EvalSet, evaluate
    from edgerec.utils.fs import atomic_write_text
    from edgerec.zoo.export import read_info
    from edgerec.zoo.resolve import resolve_model

    fp32_xml = resolve_model(a.model, None, "fp32", progress=False).path
    info = read_info(fp32_xml)
    fp32 = ov.Core().read_model(str(fp32_xml))
    out = a.workdir / a.model / a.variant
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if a.bf16:
        from edgerec.utils.cpu import require_native_bf16

        require_native_bf16()
        q = ov.Core().compile_model(fp32, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})  # no cache: compiled here
    elif a.xml:
        q = ov.Core().read_model(str(a.xml))
    else:
        q = _quantize(a, fp32, info)
        ov.save_model(q, str(out / "model.xml"), compress_to_fp16=False)
    result = {"model": a.model, "variant": a.variant, "args": {k: str(v) for k, v in vars(a).items()},
              "quantize_s": round(time.perf_counter() - t0, 1), "sets": {}}
    for name in a.sets.split(","):
        folder = Path(name) if "/" in name else a.evalsets / name
        ds = load_dataset(folder)
        eval_set = EvalSet(ds.images, ds.labels, ds.name)
        cache = a.workdir / a.model / f"fp32_{ds.name}.json"
        if cache.exists():
            f_metrics, f_texts = json.loads(cache.read_text("utf-8"))
        else:
            f_metrics, f_texts = evaluate(fp32, info.classes, eval_set, info.input_height)
            atomic_write_text(cache, json.dumps([f_metrics, f_texts]))
        q_metrics, q_texts = evaluate(q, info.classes, eval_set, info.input_height)
        d = paired_difference(f_texts, q_texts, ds.labels)
        row = {"fp32": f_metrics, "int8": q_metrics, "num": len(ds.labels),
               "same_text": sum(x == y for x, y in zip(f_texts, q_texts)) / len(f_texts),
               "only_fp32_right": d["only_a_right"], "only_int8_right": d["only_b_right"],
               **{f"d_{k}": d[k]["delta"] for k in ("acc", "norm_edit_dis")},
               **{f"d_{k}_ci95": d[k]["ci95"] for k in ("acc", "norm_edit_dis")}}
        if a.referee:
            ref_cache = a.workdir / a.referee / f"fp32_{ds.name}.json"
            if ref_cache.exists():
                _, r_texts = json.loads(ref_cache.read_text("utf-8"))
                key = [lab.replace(" ", "") for lab in ds.labels]
                row["disputed"] = sum(
                    f.replace(" ", "") == k != t.replace(" ", "") == r.replace(" ", "")
                    for f, t, r, k in zip(f_texts, q_texts, r_texts, key))
                row["d_acc_undisputed"] = (row["d_acc"] * len(key) + row["disputed"]) / len(key)
                print(f"  {row['disputed']} of the {d['only_a_right']} lines only fp32 reads right: int8 reads what "
                      f"{a.referee} fp32 reads (label disputed); Δ acc without them "
                      f"{100 * row['d_acc_undisputed']:+.2f}")
            else:
                print(f"  no cached fp32 texts of {a.referee} for {ds.name}: run this script on it first")
        result["sets"][ds.name] = row
        print(f"{a.model} {a.variant} {ds.name}: fp32 {100 * f_metrics['acc']:.2f} / "
              f"{100 * f_metrics['norm_edit_dis']:.2f}; int8 Δ {100 * row['d_acc']:+.2f} ±{100 * row['d_acc_ci95']:.2f}"
              f" / {100 * row['d_norm_edit_dis']:+.2f} ±{100 * row['d_norm_edit_dis_ci95']:.2f} "
              f"({100 * row['same_text']:.1f} % same text; only fp32 / int8 right {d['only_a_right']} / "
              f"{d['only_b_right']})", flush=True)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
