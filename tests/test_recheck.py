"""recheck: lines the first precision reads with a low score are read again at a more precise one, and get that
reading's text and score; the others keep the first reading. Real int8 (quantized in conftest) and fp32 weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.errors import ModelError

from conftest import SCORE_TOL, V4, linked_home


@pytest.fixture(scope="module")
def lines(v4):
    """Rendered lines, half of them blurred and noisy, so int8's scores spread and both branches are taken."""
    import cv2

    from edgerec.quant.calibration import render_lines

    rng = np.random.default_rng(7)
    out = []
    for k, (img, _) in enumerate(render_lines(v4.info.classes, 24, seed=5)):
        if k % 2:
            img = cv2.GaussianBlur(img, (5, 5), 1.6)
            img = np.clip(img.astype(np.int16) + rng.integers(-60, 61, img.shape), 0, 255).astype(np.uint8)
        out.append(img)
    return out


@pytest.fixture
def home_with_int8(edgerec_home, tmp_path, monkeypatch, int8_run):
    """A model home holding V4's real fp32 and the int8 quantized in conftest."""
    root = linked_home(edgerec_home, tmp_path / "home", monkeypatch)
    (root / "int8").symlink_to(int8_run[0])
    return root


def _expected(first, second, below):
    return [s if f[1] < below else f for f, s in zip(first, second)]


def _assert_results(got, want):
    assert [t for t, _ in got] == [t for t, _ in want]
    for (_, a), (_, b) in zip(got, want):
        assert abs(a - b) <= SCORE_TOL


@pytest.mark.parametrize("bucket", [None, 160])
def test_low_scoring_lines_get_the_fp32_reading_the_others_keep_int8s(home_with_int8, lines, bucket):
    from edgerec import create_model

    kw = {"progress": False, "width_bucket": bucket}
    int8 = create_model(V4, precision="int8", **kw).recognize_batch(lines, batch_size=4)
    fp32 = create_model(V4, precision="fp32", **kw).recognize_batch(lines, batch_size=4)
    below = float(np.median([s for _, s in int8]))  # half the lines on each side, whatever the CPU's scores
    model = create_model(V4, precision="int8", recheck="fp32", recheck_below=below, **kw)
    got = model.recognize_batch(lines, batch_size=4)
    want = _expected(int8, fp32, below)
    _assert_results(got, want)
    again = sum(s < below for _, s in int8)
    assert 0 < again < len(lines)
    assert model.recheck_counts == {"lines": len(lines), "read_again": again}  # the warm-up line not counted
    assert f"lines scoring below {below:g} read again at fp32" in model.config_summary
    assert model.precision == "int8" and len(model.files()) == 4  # both models' xml and bin


def test_every_line_read_again_reads_as_fp32_long_lines_too(home_with_int8, lines):
    """recheck_below=1: each line (a line too long for one pass among them, read in windows) is fp32's."""
    import cv2

    from edgerec import create_model

    def at48(img):
        return cv2.resize(img, (round(img.shape[1] * 48 / img.shape[0]), 48))

    long_line = np.concatenate([at48(img) for img in lines[::2]] * 2, axis=1)  # 24 lines side by side: windows
    assert long_line.shape[1] * 48 / long_line.shape[0] > 3200
    batch = [*lines[:6], long_line]
    fp32 = create_model(V4, precision="fp32", progress=False).recognize_batch(batch)
    int8 = create_model(V4, precision="int8", progress=False).recognize_batch(batch)
    model = create_model(V4, precision="int8", recheck="fp32", recheck_below=1.0, progress=False)
    _assert_results(model.recognize_batch(batch), _expected(int8, fp32, 1.0))  # a line at 1.0 exactly keeps int8's
    assert int8[-1][1] < 1.0 and model.recheck_counts["read_again"] >= 1  # the long line was read again
    never = create_model(V4, precision="int8", recheck="fp32", recheck_below=0.0, progress=False)
    _assert_results(never.recognize_batch(batch), int8)
    assert never.recheck_counts == {"lines": len(batch), "read_again": 0}


def test_word_boxes_and_a_static_input_shape_come_from_the_reading_that_counts(home_with_int8, lines):
    from edgerec import create_model

    noisy = lines[1::2][:4]  # blurred and noisy: none scores 1.0 exactly
    fp32 = create_model(V4, precision="fp32", progress=False, return_word_box=True)
    model = create_model(V4, precision="int8", recheck="fp32", recheck_below=1.0, progress=False,
                         return_word_box=True)
    for got, want in zip(model.predict(noisy), fp32.predict(noisy)):
        assert got["rec_text"] == want["rec_text"] and abs(got["rec_score"] - want["rec_score"]) <= SCORE_TOL
    shape = {"input_shape": [3, 48, 320], "progress": False}
    int8 = create_model(V4, precision="int8", **shape).recognize_batch(lines, batch_size=4)
    fp32 = create_model(V4, precision="fp32", **shape).recognize_batch(lines, batch_size=4)
    below = float(np.median([s for _, s in int8]))
    model = create_model(V4, precision="int8", recheck="fp32", recheck_below=below, **shape)
    _assert_results(model.recognize_batch(lines, batch_size=4), _expected(int8, fp32, below))


def test_parallel_batches_count_every_line_once(home_with_int8, lines):
    from edgerec import create_model

    int8 = create_model(V4, precision="int8", progress=False).recognize_batch(lines, batch_size=2)
    model = create_model(V4, precision="int8", recheck="fp32", hint="THROUGHPUT", progress=False)
    got = model.recognize_batch(lines, batch_size=2)
    assert model.predictor.parallel >= 1
    # scores of one line differ in the last bits between builds: count the lines clearly on either side
    clear = [abs(s - 0.9) > SCORE_TOL for _, s in int8]
    assert model.recheck_counts["lines"] == len(lines)
    assert sum(s < 0.9 for (_, s), c in zip(int8, clear) if c) <= model.recheck_counts["read_again"] \
        <= sum(s < 0.9 + SCORE_TOL for _, s in int8)
    fp32 = create_model(V4, precision="fp32", progress=False).recognize_batch(lines, batch_size=2)
    for g, i, f, c in zip(got, int8, fp32, clear):
        if c:
            assert g[0] == (f if i[1] < 0.9 else i)[0]


@pytest.mark.parametrize("below", [math.nan, -0.1, 1.5, True, "0.9", None])
def test_a_bad_threshold_is_refused_before_anything_loads(below, monkeypatch):
    import edgerec.api as api
    from edgerec import create_model

    monkeypatch.setattr(api, "resolve_model", lambda *a, **k: pytest.fail("resolved a model"))
    with pytest.raises(ValueError, match="recheck_below must be a score between 0 and 1"):
        create_model(V4, precision="int8", recheck="fp32", recheck_below=below)


def test_recheck_must_be_a_more_precise_precision(v4, monkeypatch):
    import edgerec.api as api
    from edgerec import create_model

    with pytest.raises(ModelError, match="recheck 'fp8': use fp32"):
        create_model(V4, precision="int8", recheck="fp8", progress=False)
    with pytest.raises(ModelError, match="recheck 'int8': use fp32"):
        create_model(V4, recheck="int8", progress=False)
    monkeypatch.setattr(api, "resolve_model", lambda *a, **k: pytest.fail("resolved a model"))  # refused before
    with pytest.raises(ModelError, match="recheck fp32 is not more precise than fp32, which runs: give precision"):
        create_model(V4, precision="fp32", recheck="fp32", progress=False)
    with pytest.raises(ModelError, match="not more precise than fp32"):  # ONNX Runtime runs fp32 only
        create_model(V4, engine="onnxruntime", recheck="fp32", progress=False)
    with pytest.raises(ModelError, match="recheck bf16 is not more precise than fp16"):
        create_model(V4, precision="fp16", recheck="bf16", progress=False)


def test_use_hpip_drops_a_recheck_that_is_not_more_precise_than_its_choice(v4):
    from edgerec import create_model

    model = create_model(V4, use_hpip=True, recheck="fp32", progress=False)
    if model.precision == "fp32":  # nothing faster installed or native here
        assert model.predictor.recheck is None and model.recheck_counts is None
        assert "recheck fp32 not used: use_hpip chose fp32" in model.config_summary
    else:
        assert model.predictor.recheck.precision == "fp32"


def test_an_ir_folder_without_the_other_precision_beside_it_is_refused(int8_run):
    from edgerec import create_model

    with pytest.raises(ModelError, match="recheck fp32: .* holds an int8 IR"):
        create_model(model_dir=int8_run[0], recheck="fp32", progress=False)


def _ir_folder(root, v4, int8_dir, source_sha256=None):
    """quantize --model-dir's layout: the fp32 IR in ``root`` and its int8 in ``root/int8``; ``source_sha256``
    relabels the fp32 as another model's weights."""
    import openvino as ov

    root.mkdir()
    model = ov.Core().read_model(str(v4.model_path))
    if source_sha256:
        model.set_rt_info(source_sha256, ["model_info", "source_sha256"])
    ov.save_model(model, str(root / "model.xml"), compress_to_fp16=False)
    (root / "int8").symlink_to(int8_dir)
    return root / "int8"


def test_an_int8_in_quantize_model_dirs_layout_finds_its_fp32_and_only_its_own(v4, int8_run, tmp_path):
    from edgerec import create_model

    int8_dir = _ir_folder(tmp_path / "ir", v4, int8_run[0])
    model = create_model(model_dir=int8_dir, recheck="fp32", recheck_below=1.0, progress=False)
    assert model.precision == "int8" and model.predictor.recheck.precision == "fp32"
    assert {p.parent for p in model.files()} == {int8_dir, tmp_path / "ir"}
    other = _ir_folder(tmp_path / "other", v4, int8_run[0], source_sha256="0" * 64)
    with pytest.raises(ModelError, match="is not the model that runs .*: its weights differ"):
        create_model(model_dir=other, recheck="fp32", progress=False)


def test_the_recheck_computes_at_its_own_precision_whatever_the_options_say():
    from edgerec.engines.openvino import OpenVINOOptions
    from edgerec.recheck import _own_precision

    opts = OpenVINOOptions(infer_precision="bf16", config={"INFERENCE_PRECISION_HINT": "bf16", "NUM_STREAMS": 1})
    own = _own_precision(opts)
    assert own.infer_precision is None and own.config == {"NUM_STREAMS": 1} and own.hint == opts.hint
    assert _own_precision(OpenVINOOptions()) == OpenVINOOptions()


def test_results_files_and_evaluate_name_the_recheck(home_with_int8, lines, tmp_path):
    import cv2

    from edgerec import create_model
    from edgerec.data.evaluate import evaluate
    from edgerec.sinks.stream import reader_of

    model = create_model(V4, precision="int8", recheck="fp32", progress=False)
    assert reader_of(model).endswith(" recheck=fp32<0.9")  # --resume refuses a file read otherwise
    model.recognize_batch(lines[:3])
    for k, img in enumerate(lines[:4]):
        cv2.imwrite(str(tmp_path / f"l{k}.png"), img)
    (tmp_path / "val.txt").write_text("".join(f"l{k}.png\tx\n" for k in range(4)), encoding="utf-8")
    res = evaluate(model, tmp_path, progress=False)
    assert res["model"]["read_again"]["lines"] == 4  # this evaluation's lines, not the 3 read before
    with pytest.raises(Exception, match="create_model's options"):
        evaluate(model, tmp_path, recheck="fp32", progress=False)


def test_cli_predict_and_evaluate_recheck(home_with_int8, lines, tmp_path):
    import cv2

    from edgerec.cli import main

    for k, img in enumerate(lines[:4]):
        cv2.imwrite(str(tmp_path / f"l{k}.png"), img)
    runner = CliRunner()
    res = runner.invoke(main, ["predict", str(tmp_path / "l1.png"), str(tmp_path / "l3.png"), "--precision", "int8",
                               "--recheck", "fp32", "--recheck-below", "1"])  # noisy lines: below 1.0
    assert res.exit_code == 0, res.output
    assert "read again at fp32" in res.stderr and "2 of 2 lines scored below 1" in res.stderr
    alone = runner.invoke(main, ["predict", str(tmp_path / "l0.png"), "--recheck-below", "0.5"])
    assert alone.exit_code == 2 and "--recheck-below sets when --recheck reads a line again" in alone.output
    nan = runner.invoke(main, ["predict", str(tmp_path / "l0.png"), "--recheck", "fp32", "--recheck-below", "nan"])
    assert nan.exit_code == 2 and "not a finite number" in nan.output
    (tmp_path / "val.txt").write_text("".join(f"l{k}.png\tx\n" for k in (1, 3)), encoding="utf-8")
    ev = runner.invoke(main, ["evaluate", V4, "--dataset", str(tmp_path), "--precision", "int8", "--recheck",
                              "fp32", "--recheck-below", "1", "--output", str(tmp_path / "out"), "--quiet"])
    assert ev.exit_code == 0, ev.output
    assert "2 lines scoring below 1 read again at fp32" in ev.output
    model = json.loads((tmp_path / "out" / "evaluate_result.json").read_text(encoding="utf-8"))["model"]
    assert model["recheck"] == "fp32" and model["read_again"] == {"lines": 2, "read_again": 2}


def test_ray_actors_get_the_recheck_and_a_bad_one_fails_before_ray_starts(home_with_int8, tmp_path, monkeypatch):
    import cv2

    import edgerec.integrations.ray as ray_mod

    udf = ray_mod.TextRecognizerUDF(V4, precision="int8", threads=1, recheck="fp32", recheck_below=0.8)
    assert udf.model.predictor.recheck.precision == "fp32" and udf.model.predictor.recheck.below == 0.8
    cv2.imwrite(str(tmp_path / "a.png"), np.full((48, 100, 3), 255, np.uint8))
    monkeypatch.setattr(ray_mod, "_join", lambda *a: pytest.fail("Ray was started"))
    with pytest.raises(ValueError, match="recheck_below"):
        ray_mod.recognize_folder([str(tmp_path / "a.png")], str(tmp_path / "o1"), recheck="fp32", recheck_below=2)
    with pytest.raises(ModelError, match="not more precise"):
        ray_mod.recognize_folder([str(tmp_path / "a.png")], str(tmp_path / "o2"), model_name=V4, recheck="fp32")


def test_a_threshold_without_a_recheck_is_refused(monkeypatch):
    import edgerec.api as api
    from edgerec import create_model

    monkeypatch.setattr(api, "resolve_model", lambda *a, **k: pytest.fail("resolved a model"))
    with pytest.raises(ValueError, match="recheck_below sets when a recheck reads a line again"):
        create_model(V4, precision="int8", recheck_below=0.5)
