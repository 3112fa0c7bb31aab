"""The input-width opt-ins of issue 12: ``min_width`` (section 5: pad short lines to less than PaddleX's 320) and
``width_bucket`` (speed on document lines: lines wider than the minimum are right-padded up to min_width + k * N,
so a folder of many widths runs on a few input shapes whose kernels stay prepared)."""

from __future__ import annotations

import cv2
import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.runtime.preprocess import MAX_W, bucket_count, bucket_width

from conftest import V4


def test_bucket_width_rounds_up_on_a_grid_from_the_minimum():
    assert bucket_width(500, None) == bucket_width(500, 0) == 500  # off: the exact width, as PaddleX
    assert bucket_width(320, 160) == 320 and bucket_width(200, 160, min_w=160) == 320
    assert [bucket_width(w, 160) for w in (321, 480, 481, 640)] == [480, 480, 640, 640]
    assert bucket_width(170, 100, min_w=160) == 260  # the grid starts at min_width, not at 0
    assert bucket_width(MAX_W - 1, 160) == bucket_width(MAX_W, 160) == MAX_W  # never past the widest input
    assert bucket_width(3100, 1000) == MAX_W
    assert bucket_count(160) == 18 and bucket_count(160, min_w=160) == 19 and bucket_count(1000) == 3


def test_the_default_shape_cache_counts_widths_times_batch_sizes():
    from edgerec.runtime.predictor import BUCKET_SHAPE_CACHE_MAX, bucket_shapes

    assert bucket_shapes(320, 160, 1) == 18  # batch 1: one shape per width
    assert bucket_shapes(320, 1000, 8) == 3 * 4  # widths 1320, 2320, 3200 at batch sizes 8, 4, 2, 1
    assert bucket_shapes(320, 1000, 6) == 3 * 4  # 6, 4, 2, 1
    assert bucket_shapes(320, 160, 8) == BUCKET_SHAPE_CACHE_MAX == 32  # 72 shapes: capped


def test_width_bucket_pads_wide_lines_and_keeps_every_bucket_prepared(v4, rendered):
    from edgerec import create_model

    bucketed = create_model(V4, progress=False, width_bucket=160)
    assert bucketed.predictor.width_bucket == 160 and v4.predictor.width_bucket is None
    # 18 widths above 320 up to 3200: the shape cache holds them all unless told otherwise
    assert bucketed.predictor.engine.config["CPU_RUNTIME_CACHE_CAPACITY"] == 18 * 100
    assert "k x 160" in bucketed.config_summary
    from edgerec.io.fonts import render_line

    lines = [(t, render_line(t, height=48, font_kind="latin")) for t in (
        "OpenVINO runs PP-OCR", "OpenVINO runs PP-OCR here", "OpenVINO runs PP-OCR on this CPU",
        "OpenVINO runs PP-OCR on a small CPU")]
    exact = [v4.predictor.width_of(img) for _, img in lines]
    assert min(exact) > 320 and len(set(exact)) == len(lines), exact
    padded = [bucketed.predictor.width_of(img) for _, img in lines]
    for e, p in zip(exact, padded):
        assert p == bucket_width(e, 160) and (p - 320) % 160 == 0 and 0 <= p - e < 160
    assert len(set(padded)) < len(set(exact))  # fewer input shapes
    for text, img in lines + rendered:  # clean rendered lines still read right
        assert bucketed.recognize(img)["rec_text"].strip() == text
    assert bucketed.predictor.width_of(rendered[0][1]) == v4.predictor.width_of(rendered[0][1]) == 320
    capped = create_model(V4, progress=False, width_bucket=8)  # 360 buckets: the cache is capped
    assert capped.predictor.engine.config["CPU_RUNTIME_CACHE_CAPACITY"] == 32 * 100
    told = create_model(V4, progress=False, width_bucket=160, shape_cache=3)  # the caller's cache wins
    assert told.predictor.engine.config["CPU_RUNTIME_CACHE_CAPACITY"] == 3 * 100


def test_min_width_narrows_short_lines_only(v4, rendered):
    from edgerec import create_model
    from edgerec.io.fonts import render_line

    narrow = create_model(V4, progress=False, min_width=160)
    for text in ("ABC-123", "OK 42"):
        short = render_line(text, height=48, font_kind="latin")
        natural = short.shape[1] * 48 // short.shape[0]
        assert natural < 320, "the test line must be shorter than PaddleX's minimum"
        assert v4.predictor.min_width == 320 and v4.predictor.width_of(short) == 320  # default: PaddleX's
        assert narrow.predictor.width_of(short) == max(160, natural) < 320  # padded to 160 at most
        assert narrow.recognize(short)["rec_text"].strip() == text == v4.recognize(short)["rec_text"].strip()
    assert natural < 160 and narrow.predictor.width_of(short) == 160
    long = render_line("OpenVINO runs PP-OCR on the edge", height=48, font_kind="latin")
    assert narrow.predictor.width_of(long) == v4.predictor.width_of(long) > 320  # wider lines: unchanged


@pytest.mark.parametrize(("option", "bad", "message"), [
    *[("min_width", bad, r"min_width must be a whole number of pixels from 16 to 3200")
      for bad in (8, 15, 3201, 160.0, "160", True)],
    *[("width_bucket", bad, r"width_bucket must be None .* from 8 to 3200")
      for bad in (-1, 7, 3201, 160.0, "160", True)]])  # 0: exact widths (test_padding_mask)
def test_width_options_are_checked(option, bad, message):
    from edgerec import create_model

    with pytest.raises(ValueError, match=message):
        create_model(V4, progress=False, **{option: bad})


@pytest.mark.parametrize(("flag", "bad"), [("--min-width", "8"), ("--width-bucket", "4")])
def test_cli_width_options(v4, rendered, tmp_path, flag, bad):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[3][1])
    runner = CliRunner()
    res = runner.invoke(main, ["predict", str(good), flag, "160", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().split("\t")[1].strip() == rendered[3][0]
    refused = runner.invoke(main, ["predict", str(good), flag, bad])
    assert refused.exit_code == 2 and flag in refused.output


def test_ray_gets_min_width_and_width_bucket(v4, tmp_path, monkeypatch):
    """--ray hands both to every actor's create_model (they were refused with --ray before)."""
    import edgerec.integrations.ray as ray_mod

    seen: dict = {}
    monkeypatch.setattr(ray_mod, "recognize_folder", lambda inputs, output, **kw: seen.update(kw) or (0, 0))
    res = CliRunner().invoke(main, ["predict", str(tmp_path), "--ray", "--output", str(tmp_path / "out"),
                                    "--min-width", "160", "--width-bucket", "64"])
    assert res.exit_code == 0, res.output
    assert seen["min_width"] == 160 and seen["width_bucket"] == 64
    udf = ray_mod.TextRecognizerUDF(V4, threads=1, min_width=160, width_bucket=64)
    assert udf.model.predictor.min_width == 160 and udf.model.predictor.width_bucket == 64


def test_word_boxes_are_the_lines_own_under_a_bucket(v4):
    """PaddleX scales a line's CTC steps by wh_ratio / max_wh_ratio, max_wh_ratio being the width it was padded
    to. With the bucket's padding masked a line reads as at its own width: its own steps and max_wh_ratio, so
    the same word boxes as without the bucket; with the padding read (mask_padding off) it is the bucket's."""
    from edgerec import create_model
    from edgerec.io.fonts import render_line

    wide = render_line("Total 1.5 VGG-16 model", height=48, font_kind="latin")
    bucketed = create_model(V4, progress=False, width_bucket=160)
    h, w = wide.shape[:2]
    pad = bucketed.predictor.width_of(wide)
    assert pad > v4.predictor.width_of(wide) == int(48 * w / h)  # padded beyond its own width
    [res] = list(bucketed.predict(wide, return_word_box=True))
    [exact] = list(v4.predict(wide, return_word_box=True))
    assert res["rec_text"] == exact["rec_text"] and res["rec_text"][0] == "Total 1.5 VGG-16 model"
    plain = create_model(V4, progress=False, width_bucket=160, engine_options={"mask_padding": False})
    [res] = list(plain.predict(wide, return_word_box=True))
    text, (cols, *_rest) = res["rec_text"]
    assert text == "Total 1.5 VGG-16 model"
    assert cols == pytest.approx((pad // 8) * (w / h) / (pad / 48))
    assert abs(cols - exact["rec_text"][1][0]) <= 1  # about the line's own steps, not the padded input's


def test_width_bucket_keeps_batches_long_lines_and_other_engines_right(v4, rendered, caplog):
    """Batch composition still never changes a line's text; lines wider than 3200 still go to the windows; an
    engine without OpenVINO's shape cache gets the padding and no cache option."""
    from edgerec import create_model
    from edgerec.io.fonts import render_line

    bucketed = create_model(V4, progress=False, width_bucket=1000, batch_size=4)
    assert bucketed.predictor.engine.config["CPU_RUNTIME_CACHE_CAPACITY"] == 3 * 3 * 100  # sizes 4, 2, 1
    images = [img for _, img in rendered] + [render_line("OpenVINO runs PP-OCR on a small CPU", height=48,
                                                         font_kind="latin")]
    one = bucketed.recognize_batch(images, batch_size=1)
    four = bucketed.recognize_batch(images, batch_size=4)
    assert [t for t, _ in one] == [t for t, _ in four]
    assert [s for _, s in one] == pytest.approx([s for _, s in four], abs=1e-5)
    long_line = render_line("the quick brown fox jumps over the lazy dog " * 8, height=48, font_kind="latin")
    assert long_line.shape[1] > MAX_W
    assert bucketed.recognize(long_line)["rec_text"] == v4.recognize(long_line)["rec_text"]  # read in windows
    pytest.importorskip("onnxruntime", reason="the ONNX Runtime engine is not installed (make test installs it)")
    # ONNX Runtime has no shape_cache option: create_model would refuse one it was handed
    with caplog.at_level("WARNING", logger="edgerec"):
        ort = create_model(V4, engine="onnxruntime", progress=False, width_bucket=1000)
    assert ort.predictor.width_bucket == 1000 and not ort.predictor.masked
    assert "width_bucket with the onnxruntime engine" in caplog.text and "gains no speed" in caplog.text
    # ONNX Runtime pads as it is told (only OpenVINO masks the padding), so its text may differ at the edges
    assert ort.recognize(images[-1])["rec_text"].strip() == bucketed.recognize(images[-1])["rec_text"].strip()


@pytest.mark.parametrize("kwargs", [{"width_bucket": 5}, {"min_width": 8}])
def test_ray_checks_the_width_options_before_starting(kwargs, tmp_path, monkeypatch):
    """A bad value is one error on the driver, not one per actor after Ray has started."""
    import edgerec.integrations.ray as ray_mod

    monkeypatch.setattr(ray_mod, "require_ray", lambda: pytest.fail("Ray was started"))
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ray_mod.recognize_folder([str(tmp_path)], str(tmp_path / "out"), **kwargs)


@pytest.fixture(scope="module")
def wide_lines():
    """Labelled lines wider than 320 input px, in several widths: the ones width_bucket pads."""
    from edgerec.io.fonts import render_line

    texts = ("OpenVINO runs PP-OCR", "OpenVINO runs PP-OCR here", "OpenVINO runs PP-OCR on this CPU",
             "Gate 12: the kiosk reads this line")
    return [(t, render_line(t, height=48, font_kind="latin")) for t in texts]


def test_evaluate_reads_at_the_width_options(v4, wide_lines, tmp_path):
    """`edgerec evaluate --width-bucket` scores the texts `predict --width-bucket` gives, and says so."""
    import json

    from edgerec import create_model
    from edgerec.data.evaluate import RESULT_FILE, evaluate
    from edgerec.errors import InputError
    from edgerec.quant.calibration import save_dataset

    save_dataset([(img, t) for t, img in wide_lines], tmp_path / "set", "val.txt")
    bucketed = create_model(V4, progress=False, width_bucket=160, min_width=160)
    want = [r["rec_text"] for r in bucketed.predict([img for _, img in wide_lines])]
    res = CliRunner().invoke(main, ["evaluate", V4, "--dataset", str(tmp_path / "set"), "--quiet",
                                    "--width-bucket", "160", "--min-width", "160", "--output", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "160 + k x 160" in res.output
    result = json.loads((tmp_path / "out" / RESULT_FILE).read_text())
    assert result["model"]["width_bucket"] == 160 and result["model"]["min_width"] == 160
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    by_label = {p["label"]: p["pred"] for p in preds}
    assert [by_label[t] for t, _ in wide_lines] == want
    plain = evaluate(V4, tmp_path / "set", progress=False)  # the default stays PaddleX's widths
    assert plain["model"]["width_bucket"] is None and plain["model"]["min_width"] == 320
    with pytest.raises(InputError, match="create_model"):
        evaluate(v4, tmp_path / "set", width_bucket=160, progress=False)


def test_quantize_calibrates_and_guards_at_the_width_options(v4, wide_lines, tmp_path, monkeypatch):
    """With width_bucket the calibration tensors and the guard's reads take the widths int8 will run at (NNCF is
    stubbed out: this checks what it is fed and what the guard scores, not the quantization)."""
    import nncf
    import openvino as ov

    from edgerec import create_model
    from edgerec.quant.quantize import EvalSet, QuantizationConfig, evaluate, quantize_ir

    cfg = QuantizationConfig(subset_size=4, max_drop=0.2, width_bucket=160, check_without_vnni=False)
    bucketed = create_model(V4, progress=False, width_bucket=160)
    images = [img for _, img in wide_lines]
    assert [cfg.width_of(img, 48) for img in images] == [bucketed.predictor.width_of(img) for img in images]
    assert [QuantizationConfig().width_of(img, 48) for img in images] == [v4.predictor.width_of(img)
                                                                             for img in images]
    eval_set = EvalSet(images, [t for t, _ in wide_lines], "wide lines")
    fp32 = ov.Core().read_model(str(v4.model_path))
    _, texts = evaluate(fp32, v4.info.classes, eval_set, reading=cfg.reading())
    assert texts == [r["rec_text"] for r in bucketed.predict(images)]

    fed: list[int] = []

    def fake_quantize(model, dataset, **kwargs):
        fed.extend(t.shape[-1] for t in dataset.get_inference_data())
        return model

    monkeypatch.setattr(nncf, "quantize", fake_quantize)
    report = quantize_ir(v4.model_path, images, eval_set, tmp_path / "int8", config=cfg, progress=False)
    assert fed == [bucketed.predictor.width_of(img) for img in images]
    assert fed != [v4.predictor.width_of(img) for img in images]  # the buckets did change these lines' widths
    assert report["config"]["width_bucket"] == 160 and report["same_text_as_fp32"] == 1.0
    with pytest.raises(ValueError, match="width_bucket"):
        QuantizationConfig(width_bucket=3)


def test_cli_quantize_passes_the_width_options(monkeypatch):
    import edgerec.quant.quantize as q

    seen = []

    def fake(name, model_dir, **kw):
        seen.append(kw["config"].reading())
        raise q.QuantizationError("stop here")

    monkeypatch.setattr(q, "quantize_model", fake)
    for args, expect in (([], {"min_width": 320, "width_bucket": None}),
                         (["--width-bucket", "160", "--min-width", "160"], {"min_width": 160, "width_bucket": 160})):
        res = CliRunner().invoke(main, ["quantize", V4, *args])
        assert res.exit_code != 0 and "stop here" in res.output
        assert seen[-1] == expect
