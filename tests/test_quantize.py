"""INT8 with NNCF: reproducible calibration recipes, int8 text agreeing with fp32, the max-drop guard."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import V4


@pytest.fixture(scope="module")
def classes(v4):
    return v4.info.classes


def test_rendered_recipe_is_reproducible(classes):
    from edgerec.quant.calibration import render_lines

    a, b = render_lines(classes, 12, seed=3), render_lines(classes, 12, seed=3)
    assert [t for _, t in a] == [t for _, t in b]
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(a, b))
    c = render_lines(classes, 12, seed=4)
    assert [t for _, t in c] != [t for _, t in a]
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im, _ in a)


def test_common_chars_exclude_rare_symbols():
    from edgerec.quant.calibration import is_common_char

    assert all(is_common_char(c) for c in "aZ9$中国字あア한")
    assert not any(is_common_char(c) for c in "◥∞∫█")


def test_dataset_folder_round_trip(classes, tmp_path):
    from edgerec.quant.calibration import dataset_lines, render_lines, save_dataset

    lines = render_lines(classes, 6, seed=1)
    save_dataset(lines, tmp_path / "calib")
    back = dataset_lines(tmp_path / "calib")
    assert sorted(t for _, t in back) == sorted(t for _, t in lines)


def test_int8_text_agrees_with_fp32(int8_run, v4, rendered):
    from edgerec import create_model

    out, report = int8_run
    assert report["installed"] and report["method"] == "ptq"
    import openvino as ov

    convs = [op.get_friendly_name() for op in ov.Core().read_model(str(v4.model_path)).get_ordered_ops()
             if op.get_type_name() == "Convolution"]
    from edgerec.quant.recipe import pooled_convs

    gates = pooled_convs(ov.Core().read_model(str(v4.model_path)))
    assert report["ignored_scope"] == [convs[0], convs[-1], *gates], "first, last and SE gate convs stay in fp32"
    assert report["config"]["ignore_stem"] is False and report["recipe_choices"]["ignore_stem"] == "off by default"
    from edgerec.utils import cpu

    # the CPU the guard read int8 on: its int8 arithmetic (VNNI or saturating) decides some texts
    assert report["cpu"] == cpu.isa_summary() and report["int8_vnni"] is cpu.int8_vnni()
    assert report["config"]["overflow_fix"] == "first_layer"
    from edgerec.quant.without_vnni import why_not_emulated

    # the second reading, as a CPU without VNNI computes int8: done where this CPU can emulate it, else said why
    other, why = report["without_vnni"], why_not_emulated()
    assert other["checked"] is (why == "")
    if other["checked"]:
        assert 0.0 <= other["same_text_as_int8"] <= 1.0 and other["int8"]["num"] == len(rendered)
        assert other["drop"]["acc"] == pytest.approx(report["fp32"]["acc"] - other["int8"]["acc"], abs=1e-6)
    else:
        assert other["why"] == why
    int8 = create_model(model_dir=out, progress=False)
    assert int8.precision == "int8"
    imgs = [img for _, img in rendered]
    fp32_texts = [r["rec_text"] for r in v4.predict(imgs)]
    int8_texts = [r["rec_text"] for r in int8.predict(imgs)]
    # the spaces at a line's two ends are what int8 reads least steadily: without VNNI (u8 x s8 pair sums that
    # saturate, seen under ONEDNN_MAX_CPU_ISA=AVX512_CORE) 2 of these 7 lines gained one there, and nothing else
    same = sum(a.strip() == b.strip() for a, b in zip(fp32_texts, int8_texts))
    assert same >= len(imgs) - 1, (fp32_texts, int8_texts)
    assert (out / "model.bin").stat().st_size < 0.45 * (v4.model_path.parent / "model.bin").stat().st_size


def test_int8_ir_describes_how_it_was_made(int8_run):
    from edgerec.zoo.export import read_info

    out, report = int8_run
    info = read_info(out / "model.xml")
    assert info.precision == "int8" and info.model_name == V4
    made = json.loads(info.extra["quantization"])
    assert made["method"] == "ptq" and made["calibration"]["count"] == 32
    saved = json.loads((out / "quantization_report.json").read_text())
    assert saved["fp32"]["acc"] == report["fp32"]["acc"] and "drop" in saved
    assert set(saved["drop_ci95"]) == {"acc", "norm_edit_dis"} and all(v >= 0 for v in saved["drop_ci95"].values())


def test_the_guard_says_when_its_eval_set_cannot_resolve_the_bound(caplog):
    """A drop interval wider than the bound is said (the guard's verdict then says little); none when it is not."""
    from edgerec.quant.quantize import EvalSet, _resolution

    labels = [f"w{i}" for i in range(200)]
    eval_set = EvalSet([None] * 200, labels, "200 lines")
    int8 = [t if i % 10 else "x" for i, t in enumerate(labels)]  # 20 lines read wrong
    with caplog.at_level("WARNING", logger="edgerec.quant.quantize"):
        half = _resolution(labels, int8, eval_set, max_drop=0.005)
    assert 0.03 < half["acc"] < 0.06  # 1.96 * sqrt(0.1 * 0.9 / 199): ±4 points on 200 lines
    assert "resolve drops of only" in caplog.text and "--eval" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="edgerec.quant.quantize"):
        assert _resolution(labels, labels, eval_set, max_drop=0.005) == {"acc": 0.0, "norm_edit_dis": 0.0}
    assert "resolve" not in caplog.text


def test_guard_refuses_a_model_that_misses_the_bound(v4, rendered, tmp_path, monkeypatch):
    """Force a miss: int8 evaluated worse than fp32 by more than max_drop -> not installed unless forced."""
    from edgerec.quant import quantize as q

    real_evaluate = q.evaluate
    calls = []

    def worse_int8(model, classes, eval_set, height=48, **kw):
        metrics, texts = real_evaluate(model, classes, eval_set, height, **kw)
        calls.append(1)
        if len(calls) > 1:  # the second evaluation is the int8 model's
            metrics = dict(metrics, acc=metrics["acc"] - 0.01)
        return metrics, texts

    monkeypatch.setattr(q, "evaluate", worse_int8)
    from edgerec.quant.calibration import render_lines

    calib = [img for img, _ in render_lines(v4.info.classes, 8, seed=0)]
    eval_set = q.EvalSet([img for _, img in rendered[:3]], [t for t, _ in rendered[:3]], "tiny")
    cfg = q.QuantizationConfig(subset_size=8, max_drop=0.0, search="none")
    with pytest.raises(q.QuantizationError, match=r"not installed\. Try a search .*--search sensitivity"):
        q.quantize_ir(v4.model_path, calib, eval_set, tmp_path / "int8", config=cfg)
    assert not (tmp_path / "int8").exists()
    calls.clear()
    report = q.quantize_ir(v4.model_path, calib, eval_set, tmp_path / "int8", config=cfg, force=True)
    assert report["forced"] and report["installed"] and (tmp_path / "int8" / "model.xml").is_file()


def test_the_default_is_quick_the_searches_are_opt_in():
    """Issue 12: `edgerec quantize NAME` with defaults stays within minutes: no search unless asked for."""
    from click.testing import CliRunner

    from edgerec.cli import main
    from edgerec.quant.quantize import QuantizationConfig

    assert QuantizationConfig().search == "none" and QuantizationConfig().qat is None
    help_text = CliRunner().invoke(main, ["quantize", "--help"]).output
    assert "[default: none]" in help_text and "--search-seconds" in help_text and "--qat" in help_text


def test_guard_bound_is_absolute_on_both_metrics():
    from edgerec.quant.quantize import within_bound

    assert within_bound({"acc": 0.005, "norm_edit_dis": 0.0}, 0.005)
    assert not within_bound({"acc": 0.0, "norm_edit_dis": 0.0051}, 0.005)
    assert within_bound({"acc": -0.02, "norm_edit_dis": -0.01}, 0.0)


@pytest.mark.parametrize("first,last,expect", [(True, True, [0, -1]), (False, True, [-1]), (True, False, [0]),
                                               (False, False, [])])
def test_recipe_keeps_the_chosen_convolutions_in_fp32(v4, first, last, expect):
    import openvino as ov

    from edgerec.quant.quantize import QuantizationConfig

    model = ov.Core().read_model(str(v4.model_path))
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    kwargs = QuantizationConfig(ignore_first_conv=first, ignore_last_conv=last,
                                ignore_pooled_convs=False, ignore_stem=False).nncf_kwargs(model)
    names = list(getattr(kwargs.get("ignored_scope"), "names", []))
    assert names == [convs[i] for i in expect]


def test_recipe_keeps_the_squeeze_excitation_gates_in_fp32(v4):
    """The convolutions on a pooled 1x1 input (v4 has two SE blocks, two convs each) join the first and the last."""
    import openvino as ov

    from edgerec.quant.recipe import QuantizationConfig, pooled_convs

    model = ov.Core().read_model(str(v4.model_path))
    static = model.clone()
    static.reshape({static.inputs[0].any_name: [1, 3, 48, 320]})
    gates = [op.get_friendly_name() for op in static.get_ordered_ops()
             if op.get_type_name() == "Convolution" and op.get_input_partial_shape(0).to_shape()[2:] == [1, 1]]
    assert len(gates) == 4 and pooled_convs(model) == gates
    by_input = {op.get_friendly_name(): op.input_value(0).get_node().get_type_name()
                for op in model.get_ordered_ops() if op.get_friendly_name() in gates}
    assert "ReduceMean" in by_input.values() or "AvgPool" in by_input.values()  # behind a global pooling
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    names = list(QuantizationConfig(ignore_stem=False).nncf_kwargs(model)["ignored_scope"].names)
    assert names == [convs[0], convs[-1], *gates]
    assert model.inputs[0].get_partial_shape()[3].is_dynamic  # finding them left the model's dynamic width alone


def test_recipe_keeps_the_stem_in_fp32(v4):
    """With ignore_stem, the (group) convolutions on inputs of at least half the line's height (v4: the stem and
    first stage, 8 of them, 24 or 48 px high) join the recipe's float layers after the SE gates, each once."""
    import openvino as ov

    from edgerec.quant.recipe import QuantizationConfig, pooled_convs, stem_convs

    model = ov.Core().read_model(str(v4.model_path))
    static = model.clone()
    static.reshape({static.inputs[0].any_name: [1, 3, 48, 320]})
    convs = [op for op in static.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    heights = [op.get_input_partial_shape(0)[2].get_length() for op in convs]
    stem = stem_convs(model)
    assert stem == [op.get_friendly_name() for op, h in zip(convs, heights) if h >= 24]
    assert len(stem) == 8 and stem[0] == convs[0].get_friendly_name() and min(heights) < 24
    assert any(op.get_type_name() == "GroupConvolution" for op in convs[:len(stem)])  # depthwise ones too
    assert list(QuantizationConfig().nncf_kwargs(model)["ignored_scope"].names) == \
        list(QuantizationConfig(ignore_stem=False).nncf_kwargs(model)["ignored_scope"].names)  # off unless asked
    names = list(QuantizationConfig(ignore_stem=True).nncf_kwargs(model)["ignored_scope"].names)
    plain = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    assert names == [plain[0], plain[-1], *pooled_convs(model), *stem[1:]]
    assert len(names) == len(set(names))
    assert model.inputs[0].get_partial_shape()[3].is_dynamic


@pytest.mark.parametrize("card_name, card_int8, given, expect, origin", [
    ("PP-OCRv5_mobile_rec", "as shipped", None, True, "the model card of PP-OCRv5_mobile_rec"),
    ("PP-OCRv4_mobile_rec", "as shipped", None, False, "off by default"),   # a card without the key
    (None, None, None, False, "off by default"),                            # a local model: no card
    ("PP-OCRv5_mobile_rec", {"note": "only a note"}, None, False, "off by default"),
    ("PP-OCRv5_mobile_rec", {"float_stem": False}, None, False, "the model card of PP-OCRv5_mobile_rec"),
    ("PP-OCRv5_mobile_rec", "as shipped", False, False, "set by the caller"),   # the caller wins over the card
    ("PP-OCRv4_mobile_rec", "as shipped", True, True, "set by the caller"),
])
def test_stem_choice_comes_from_the_caller_then_the_card(card_name, card_int8, given, expect, origin):
    from dataclasses import replace

    from edgerec.quant.recipe import QuantizationConfig, with_card_recipe
    from edgerec.zoo.cards import get_card

    card = get_card(card_name) if card_name else None
    if card is not None and card_int8 != "as shipped":
        card = replace(card, int8=card_int8)
    cfg, said = with_card_recipe(QuantizationConfig(ignore_stem=given, subset_size=7), card)
    assert cfg.ignore_stem is expect and cfg.subset_size == 7 and said == origin


def test_stem_and_gates_of_a_model_without_a_line_shape_are_none():
    """A model whose input is not a rank-4 image (dynamic rank, or rank 3) has no stem or gates to find."""
    import openvino as ov
    from openvino import opset13 as ops

    from edgerec.quant.recipe import QuantizationConfig, pooled_convs, stem_convs

    for shape in (ov.PartialShape.dynamic(), ov.PartialShape([1, 3, -1])):
        x = ops.parameter(shape, ov.Type.f32, name="x")
        model = ov.Model([ops.relu(x)], [x], "toy")
        assert stem_convs(model) == [] and pooled_convs(model) == []
        assert "ignored_scope" not in QuantizationConfig(ignore_stem=True, ignore_first_conv=False,
                                                         ignore_last_conv=False).nncf_kwargs(model)


def test_cli_float_stem_flag_reaches_the_config(monkeypatch):
    from click.testing import CliRunner

    import edgerec.quant.quantize as q
    from edgerec.cli import main

    seen = []

    def fake(name, model_dir, **kw):
        seen.append((kw["config"].ignore_stem, kw["config"].overflow_fix))
        raise q.QuantizationError("stop here")

    monkeypatch.setattr(q, "quantize_model", fake)
    for args, expect in (([], (None, "first_layer")), (["--float-stem"], (True, "first_layer")),
                         (["--int8-stem", "--overflow-fix", "enable"], (False, "enable"))):
        res = CliRunner().invoke(main, ["quantize", "PP-OCRv4_mobile_rec", *args])
        assert res.exit_code != 0 and "stop here" in res.output
        assert seen[-1] == expect


def test_the_guard_evaluates_as_users_run_it_long_lines_included(v4):
    """fp32 and int8 are scored through RecPredictor: a line wider than 3200 input px is read in windows (the
    batch-1 squash the guard used to run loses it), and batching gives the texts predict gives."""
    import openvino as ov

    from edgerec.io.fonts import render_line
    from edgerec.quant.quantize import EvalSet, evaluate

    text = "The guard reads long lines the way the kiosk does, window by window, and it gets them right. " * 4
    long_line = render_line(text.strip(), height=48, font_kind="latin")
    short = [render_line(t, height=48, font_kind="latin") for t in ("Hello World", "ABC-123", "Gate 12")]
    eval_set = EvalSet([long_line, *short], [text.strip(), "Hello World", "ABC-123", "Gate 12"], "long + short")
    metrics, texts = evaluate(ov.Core().read_model(str(v4.model_path)), v4.info.classes, eval_set)
    assert [t.strip() for t in texts] == eval_set.labels and metrics["acc"] == pytest.approx(1.0, abs=1e-4)
    assert texts == [r["rec_text"] for r in v4.predict(eval_set.images, batch_size=8)]
    from edgerec.runtime.predictor import RecPredictor

    squash = RecPredictor(v4.predictor.engine, v4.info.classes, long_lines="squash")  # the old batch-1 guard's read
    assert squash.recognize([long_line])[0][0].strip() != text.strip()


def test_overflow_fix_halves_the_weight_range_of_the_summing_layers(v4):
    """overflow_fix="enable" quantizes every convolution's and MatMul's weights to half the int8 range (no u8 x s8
    pair can saturate an int16 sum on a CPU without VNNI); NNCF's default leaves most at the full range. Depthwise
    convolutions sum no channel pairs and keep the full range either way."""
    import nncf
    import openvino as ov

    from edgerec.quant.recipe import QuantizationConfig

    model = ov.Core().read_model(str(v4.model_path))
    data = nncf.Dataset([np.random.default_rng(k).random((1, 3, 48, 320), dtype=np.float32) for k in range(2)])

    def weight_ranges(fix: str) -> list[int]:
        """Max |int8 weight| of each quantized non-depthwise convolution and MatMul."""
        kwargs = QuantizationConfig(overflow_fix=fix, subset_size=2, fast_bias_correction=True).nncf_kwargs(model)
        out = []
        for op in nncf.quantize(model, data, **kwargs).get_ordered_ops():
            if op.get_type_name() != "Constant" or op.get_element_type() != ov.Type.i8:
                continue
            node = op
            while node.get_type_name() not in ("Convolution", "GroupConvolution", "MatMul"):
                node = next(iter(node.output(0).get_target_inputs())).get_node()
            depthwise = (node.get_type_name() == "GroupConvolution"
                         and node.get_input_partial_shape(1)[2].get_length() == 1)  # 1 input channel per group
            if not depthwise:
                out.append(int(np.abs(op.get_data().astype(np.int32)).max()))
        return out

    halved, default = weight_ranges("enable"), weight_ranges("first_layer")
    assert len(halved) == len(default) >= 20
    assert max(halved) <= 64 < max(default)
    assert sum(v > 64 for v in default) >= len(default) - 2  # the default fixes the first quantized conv only


def test_overflow_fix_is_checked():
    from edgerec.quant.recipe import QuantizationConfig

    with pytest.raises(ValueError, match="overflow_fix must be one of first_layer, enable, disable"):
        QuantizationConfig(overflow_fix="on")


@pytest.mark.parametrize("fix", ["first_layer", "enable"])
def test_accuracy_control_gets_the_recipe_but_picks_its_own_float_layers(v4, monkeypatch, fix):
    """NNCF's accuracy-controlled search takes the recipe's settings (the overflow fix under its own keyword there)
    but no ignored scope: it chooses which layers to give back to float itself."""
    import nncf
    import openvino as ov

    from edgerec.quant import quantize as q
    from edgerec.quant.recipe import QuantizationConfig

    seen = {}

    def fake(model, calibration, validation, validate, **kw):
        seen.update(kw)
        return model

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", fake)
    model = ov.Core().read_model(str(v4.model_path))
    config = QuantizationConfig(overflow_fix=fix, search="accuracy_control")
    kwargs = config.nncf_kwargs(model)
    assert "ignored_scope" in kwargs
    eval_set = q.EvalSet([np.zeros((48, 100, 3), np.uint8)], ["x"], "one line")
    q._accuracy_control(model, [np.zeros((1, 3, 48, 320), np.float32)], eval_set, v4.info.classes, 48, config, kwargs)
    assert "ignored_scope" not in seen and "advanced_parameters" not in seen
    assert seen["max_drop"] == config.max_drop and seen["preset"] == kwargs["preset"]
    if fix == "enable":
        assert seen["advanced_quantization_parameters"].overflow_fix == nncf.OverflowFix.ENABLE
    else:
        assert "advanced_quantization_parameters" not in seen
