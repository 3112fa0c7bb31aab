"""Width buckets that keep each line's own text (edgerec.engines.padding_mask): the padding-blind copy of a model
gives the same time steps as the model at the line's own width, and create_model(width_bucket=N) the same texts
as create_model() on lines of many widths."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import SCORE_TOL, V4


def _toy(tmp_path, tail: str = "conv"):
    """A small dynamic-width model with what the recognizers have: strided and padded 3x3 convolutions, a
    squeeze-excitation mean over the whole width, a max over two columns with SAME padding (PP-OCRv6 small's
    stem), an average pooling, a 1x3 convolution and a (N, T, C) softmax output. ``tail="same"`` adds a
    convolution with SAME padding and a stride along the width, which the masks cannot handle."""
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)

    def conv(x, cin, cout, k, s, p):
        w = ops.constant(rng.standard_normal((cout, cin, *k)).astype(np.float32) * 0.3)
        y = ops.convolution(x, w, s, p, p, [1, 1])
        return ops.relu(ops.add(y, ops.constant(rng.standard_normal((1, cout, 1, 1)).astype(np.float32))))

    x = ops.parameter([-1, 3, 16, -1], np.float32, name="x")
    y = conv(x, 3, 8, (3, 3), [2, 2], [1, 1])                         # 8 x W/2
    gate = ops.sigmoid(ops.reduce_mean(y, ops.constant(np.array([2, 3])), True))
    y = ops.multiply(y, gate)
    y = ops.subtract(y, ops.constant(np.float32(2.0)))  # negative values: a max must not see zero padding
    y = ops.max_pool(y, [1, 1], [1, 1], [0, 0], [0, 0], [1, 2], "floor", "same_upper").output(0)
    y = conv(y, 8, 8, (3, 3), [2, 1], [1, 1])                         # 4 x W/2
    y = ops.avg_pool(y, [1, 2], [0, 0], [0, 0], [4, 2], True, "floor")  # 1 x W/4
    if tail == "same":
        w = ops.constant(rng.standard_normal((8, 8, 1, 3)).astype(np.float32))
        y = ops.convolution(y, w, [1, 2], [0, 0], [0, 0], [1, 1], "same_upper")
    y = conv(y, 8, 6, (1, 3), [1, 1], [0, 1])
    y = ops.transpose(ops.squeeze(y, ops.constant(np.array([2]))), ops.constant(np.array([0, 2, 1])))
    model = ov.Model([ops.softmax(y, 2)], [x], "toy")
    path = tmp_path / f"toy_{tail}.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def test_the_blind_copy_reads_each_line_as_at_its_own_width(tmp_path):
    import openvino as ov

    from edgerec.engines.padding_mask import INPUT_NAME, mask_padding

    core = ov.Core()
    model = core.read_model(str(_toy(tmp_path)))
    blind, steps = mask_padding(model, 16)
    assert [i.get_any_name() for i in blind.inputs] == ["x", INPUT_NAME]
    plain = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    masked = core.compile_model(blind, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(1)
    own = [53, 64, 77, 90]  # four lines, padded together to 96
    batch = np.zeros((4, 3, 16, 96), np.float32)
    for i, w in enumerate(own):
        batch[i, :, :, :w] = rng.standard_normal((3, 16, w))
    out = masked.create_infer_request().infer({0: batch, 1: np.array(own)})[0]
    padded = plain.create_infer_request().infer({0: batch})[0]
    for i, w in enumerate(own):
        alone = plain.create_infer_request().infer({0: batch[i:i + 1, :, :, :w]})[0]
        assert alone.shape[1] == steps.at(w)  # the step formula is the model's own
        np.testing.assert_allclose(out[i:i + 1, :steps.at(w)], alone, atol=1e-5)
        # the plain model padded to 96 does not read so: the reason for the masks
        assert np.abs(padded[i:i + 1, :steps.at(w)] - alone).max() > 1e-3


def test_a_model_the_masks_cannot_handle_pads_as_before_and_says_so(tmp_path, caplog):
    import openvino as ov

    from edgerec.engines.openvino import OpenVINOEngine
    from edgerec.engines.padding_mask import Unsupported, mask_padding

    path = _toy(tmp_path, "same")
    with pytest.raises(Unsupported, match="auto_pad same_upper with stride 2 along the width"):
        mask_padding(ov.Core().read_model(str(path)), 16)
    with caplog.at_level(logging.WARNING, logger="edgerec"):
        eng = OpenVINOEngine(path, "cpu", mask_padding=True)
    assert eng.masks_padding is False
    assert "width buckets pad lines as they are" in caplog.text and "same_upper" in caplog.text
    assert eng.infer(np.zeros((1, 3, 16, 64), np.float32)).shape[:2] == (1, 8)
    ok = OpenVINOEngine(_toy(tmp_path), "cpu", mask_padding=True)
    assert ok.masks_padding and "bucket padding masked" in ok.describe()


def _lines():
    from edgerec.io.fonts import render_line

    texts = ["OpenVINO runs PP-OCR", "Total: $1,299.00 due on 2026-12-07", "edge recognition, fast and exact",
             "The center of this grid is placed at a point chosen at random", "ABC-123 / XYZ-789 / QRS-456",
             "a line of text long enough to need a wide bucket of its own, or two"]
    return [render_line(t, height=32 + 8 * (i % 3), font_kind="latin") for i, t in enumerate(texts)]


def test_width_buckets_keep_the_texts_of_the_lines_own_widths(v4):
    from edgerec import create_model

    bucketed = create_model(V4, progress=False, width_bucket=160, batch_size=4)
    assert bucketed.predictor.masked and bucketed.predictor.engine.masks_padding
    assert "bucket padding masked" in bucketed.config_summary
    lines = _lines()
    exact = [v4.predictor.width_of(img) for img in lines]
    padded = [bucketed.predictor.width_of(img) for img in lines]
    assert sum(p > e for p, e in zip(padded, exact)) >= 4 and len(set(padded)) < len(set(exact))
    want = v4.recognize_batch(lines, batch_size=1)
    for bs in (1, 4):
        got = bucketed.recognize_batch(lines, batch_size=bs)
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=SCORE_TOL)
    # word boxes: the line's own steps and max_wh_ratio, as at its own width
    [res] = list(bucketed.predict(lines[3], return_word_box=True))
    [ref] = list(v4.predict(lines[3], return_word_box=True))
    assert res["rec_text"][0] == ref["rec_text"][0]
    assert res["rec_text"][1][0] == pytest.approx(ref["rec_text"][1][0])
    plain = create_model(V4, progress=False, width_bucket=160, engine_options={"mask_padding": False})
    assert not plain.predictor.masked and "bucket padding masked" not in plain.config_summary


def _head(y, ops, x, name: str):
    """N, C, 1, T -> the (N, T, C) softmax output of a recognizer."""
    import openvino as ov

    y = ops.transpose(ops.squeeze(y, ops.constant(np.array([2]))), ops.constant(np.array([0, 2, 1])))
    return ov.Model([ops.softmax(y, 2)], [x], name)


def _attention_after_a_max(ops, x, rng):
    """MaxPool (its padded outputs can be -inf), a 1x1 convolution, then attention written out op by op."""
    w = ops.constant(rng.standard_normal((8, 3, 4, 3)).astype(np.float32) * 0.3)
    y = ops.convolution(x, w, [1, 1], [0, 1], [0, 1], [1, 1])                    # 8 x 1 x W
    y = ops.max_pool(y, [1, 1], [1, 1], [0, 0], [0, 0], [1, 2], "floor", "same_upper").output(0)
    y = ops.convolution(y, ops.constant(rng.standard_normal((8, 8, 1, 1)).astype(np.float32)), [1, 1], [0, 0],
                        [0, 0], [1, 1])
    t = ops.transpose(ops.squeeze(y, ops.constant(np.array([2]))), ops.constant(np.array([0, 2, 1])))  # N, T, C
    q, k, v = (ops.matmul(t, ops.constant(rng.standard_normal((8, 8)).astype(np.float32)), False, False)
               for _ in range(3))
    o = ops.matmul(ops.softmax(ops.matmul(q, k, False, True), 2), v, False, False)
    import openvino as ov

    return ov.Model([ops.softmax(o, 2)], [x], "attention")


def _unsupported(kind: str, ops, x, rng):
    w = ops.constant(rng.standard_normal((8, 3, 4, 3)).astype(np.float32) * 0.3)
    y = ops.convolution(x, w, [1, 1], [0, 1], [0, 1], [1, 1])                    # 8 x 1 x W
    if kind == "an op not known to keep columns apart":
        y = ops.pad(y, ops.constant(np.array([0, 0, 0, 1])), ops.constant(np.array([0, 0, 0, 0])), "constant")
    elif kind == "a convolution along the width not on the last axis":
        t = ops.constant(np.array([0, 1, 3, 2]))
        y = ops.transpose(y, t)
        y = ops.transpose(ops.convolution(y, ops.constant(rng.standard_normal((8, 8, 3, 1)).astype(np.float32)),
                                          [1, 1], [1, 0], [1, 0], [1, 1]), t)
    return _head(y, ops, x, kind)


@pytest.mark.parametrize("kind, match", [
    ("an op not known to keep columns apart", "Pad on a tensor along the width"),
    ("a convolution along the width not on the last axis", "width is not the last axis"),
])
def test_what_the_masks_cannot_make_exact_is_refused(kind, match):
    from openvino import opset13 as ops

    from edgerec.engines.padding_mask import Unsupported, mask_padding

    x = ops.parameter([-1, 3, 4, -1], np.float32, name="x")
    with pytest.raises(Unsupported, match=match):
        mask_padding(_unsupported(kind, ops, x, np.random.default_rng(0)), 4)


def test_attention_after_a_max_stays_exact_in_an_unsaved_model():
    """An in-memory model (auto-named ops), a MaxPool whose padded outputs would be -inf, a 1x1 convolution (which
    the masks skip) and attention over the width: the valid steps equal the line alone, with no NaN."""
    import openvino as ov
    from openvino import opset13 as ops

    from edgerec.engines.padding_mask import mask_padding

    x = ops.parameter([-1, 3, 4, -1], np.float32, name="x")
    model = _attention_after_a_max(ops, x, np.random.default_rng(0))
    blind, steps = mask_padding(model, 4)
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}
    plain, masked = core.compile_model(model, "CPU", cfg), core.compile_model(blind, "CPU", cfg)
    own = [37, 50, 64]
    batch = np.zeros((3, 3, 4, 64), np.float32)
    rng = np.random.default_rng(2)
    for i, w in enumerate(own):
        batch[i, :, :, :w] = rng.standard_normal((3, 4, w))
    out = masked.create_infer_request().infer({0: batch, 1: np.array(own)})[0]
    assert not np.isnan(out).any()
    for i, w in enumerate(own):
        alone = plain.create_infer_request().infer({0: batch[i:i + 1, :, :, :w]})[0]
        np.testing.assert_allclose(out[i:i + 1, :steps.at(w)], alone, atol=1e-5)


def test_mask_padding_without_buckets_is_not_used(v4, caplog):
    from edgerec import create_model

    with caplog.at_level(logging.WARNING, logger="edgerec"):
        model = create_model(V4, engine_options={"mask_padding": True}, progress=False)
    assert "mask_padding without width_bucket changes nothing" in caplog.text
    assert not model.predictor.engine.masks_padding and "bucket padding masked" not in model.config_summary


def test_use_hpip_takes_masked_width_buckets_on_cpu(v4, monkeypatch):
    """use_hpip also pads lines wider than the minimum to 160-px buckets, masked, so fp32 texts are those of exact
    widths; not where width_bucket is given (0: exact widths), masks are refused, or the padding cannot be masked
    (then exact widths, and the summary says why)."""
    import edgerec.engines.openvino as ov_engine
    from edgerec import create_model
    from edgerec.hpip import HPIP_WIDTH_BUCKET
    from edgerec.utils import cpu

    monkeypatch.setattr(cpu, "has_native_bf16", lambda: False)  # fp32 on every CPU: texts must equal exact widths'
    hpip = create_model(V4, use_hpip=True, progress=False)
    assert hpip.precision == "fp32" and hpip.predictor.width_bucket == HPIP_WIDTH_BUCKET == 160
    assert hpip.predictor.masked and "320 + k x 160" in hpip.config_summary
    assert "width buckets of 160 px" in hpip.config_summary
    lines = _lines()
    want, got = v4.recognize_batch(lines, batch_size=1), hpip.recognize_batch(lines, batch_size=1)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=SCORE_TOL)
    assert create_model(V4, use_hpip=True, width_bucket=0, progress=False).predictor.width_bucket is None
    assert create_model(V4, use_hpip=True, width_bucket=480, progress=False).predictor.width_bucket == 480
    unmasked = create_model(V4, use_hpip=True, engine_options={"mask_padding": False}, progress=False)
    assert unmasked.predictor.width_bucket is None
    assert create_model(V4, use_hpip=True, shape_cache=0, progress=False).predictor.width_bucket is None
    monkeypatch.setattr(ov_engine, "unmaskable", lambda path: "an LSTM over the width")
    refused = create_model(V4, use_hpip=True, progress=False)
    assert refused.predictor.width_bucket is None and not refused.predictor.engine.masks_padding
    assert "exact widths (width buckets cannot mask this model's padding: an LSTM over the width)" in \
        refused.config_summary
    # the buckets' defaults go with them: no shapes kept beyond exact widths' default, no masks asked for
    key = "CPU_RUNTIME_CACHE_CAPACITY"
    assert refused.predictor.engine.config.get(key) == v4.predictor.engine.config.get(key)
    asked = create_model(V4, use_hpip=True, engine_options={"mask_padding": True}, progress=False)
    assert asked.predictor.width_bucket is None and not asked.predictor.engine.masks_padding


def test_use_hpip_buckets_only_where_they_are_measured_and_its_timing_sees_none(v4, monkeypatch):
    """Buckets on CPU with an engine that masks (OpenVINO), not with the masks or the shape cache refused; the
    int8-against-bf16 timing gets the caller's settings, not the buckets' defaults (its kept verdicts stay valid)."""
    import edgerec.api as api
    from edgerec.engines import registry
    from edgerec.engines.base import parse_device
    from edgerec.hpip import hpip_takes_buckets

    cpu_spec, ov_kind = parse_device("cpu"), registry.get("openvino")
    assert hpip_takes_buckets(ov_kind, cpu_spec, {})
    assert not hpip_takes_buckets(ov_kind, cpu_spec, {"mask_padding": False})
    assert not hpip_takes_buckets(ov_kind, cpu_spec, {"shape_cache": 0})
    assert not hpip_takes_buckets(ov_kind, parse_device("GPU"), {})
    assert not hpip_takes_buckets(registry.get("onnxruntime"), cpu_spec, {})
    seen = {}
    real = api.hpip_choice

    def spy(kind, spec, name, model_dir, precision, values):
        seen.update(values)
        return real(kind, spec, name, model_dir, precision, values)

    monkeypatch.setattr(api, "hpip_choice", spy)
    model = api.create_model(V4, use_hpip=True, threads=1, progress=False)
    assert model.predictor.width_bucket == 160 and seen.get("threads") == 1
    assert "shape_cache" not in seen and "mask_padding" not in seen


def test_width_bucket_zero_is_exact_widths():
    from click.testing import CliRunner

    from edgerec.cli import main
    from edgerec.runtime.preprocess import check_width_bucket

    assert check_width_bucket(0) is None and check_width_bucket(None) is None and check_width_bucket(160) == 160
    for bad in (5, -1, 3201, 1.5, True):
        with pytest.raises(ValueError, match="width_bucket must be None or 0"):
            check_width_bucket(bad)
    res = CliRunner().invoke(main, ["predict", "x.png", "--width-bucket", "5"])
    assert res.exit_code == 2 and "width_bucket must be None or 0" in res.output and "--width-bucket" in res.output


@pytest.mark.parametrize(("config", "said"), [
    ({"width_bucket": None, "min_width": None}, "read its lines at exact widths: `edgerec quantize` with "
                                                "`--width-bucket 160`"),
    ({"width_bucket": 64, "min_width": None}, "read its lines in 64-px buckets:"),
    ({"width_bucket": 160, "min_width": 160}, "read its lines in 160-px buckets from a 160-px minimum:"),
    ({"width_bucket": 160, "min_width": None}, None),
    (None, "no readable quantization report"),
])
def test_use_hpip_says_when_an_int8_was_checked_at_other_widths(tmp_path, monkeypatch, config, said):
    """use_hpip buckets an int8 whatever widths its guard read, and says so unless the guard read the same."""
    import json

    import edgerec.engines.openvino as ov_engine
    from edgerec.hpip import hpip_bucket_for
    from edgerec.quant.quantize import REPORT_NAME

    monkeypatch.setattr(ov_engine, "unmaskable", lambda path: "")  # the masks apply; no model is read
    (tmp_path / "int8").mkdir()
    if config is not None:
        (tmp_path / "int8" / REPORT_NAME).write_text(json.dumps({"config": config, "forced": False}))
    bucket, note = hpip_bucket_for(tmp_path / "int8" / "model.xml", "int8", 320)
    assert bucket == 160 and note.startswith("width buckets of 160 px")
    if said is None:
        assert "accuracy check" not in note and "report" not in note
    else:
        assert said in note
    assert "accuracy" not in hpip_bucket_for(tmp_path / "int8" / "model.xml", "bf16", 320)[1]
