"""`edgerec report`: the three files with the right columns and keys, honest accuracies, skips, the Pareto front."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import V4

LINES = ["Hello World", "Total: $1,299.00", "OpenVINO", "edge devices", "ABC-123", "Invoice 2024",
         "text recognition", "quick brown fox", "PaddleX", "line 42"]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """Ten rendered English lines as an evalset folder (images/ + label.txt)."""
    import cv2

    from edgerec.io.fonts import render_line

    folder = tmp_path_factory.mktemp("sets") / "tiny_en"
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, text in enumerate(LINES):
        assert cv2.imwrite(str(folder / "images" / f"{i:02d}.png"), render_line(text, height=48, font_kind="latin"))
        rows.append(f"images/{i:02d}.png\t{text}")
    (folder / "label.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def report_run(v4, tiny_set, tmp_path_factory):
    """One real report: v4 fp32 + fp16 on OpenVINO, fp32 on ONNX Runtime (spinning and not); int8 asked for but not
    there. Timing: two rounds of a child process per configuration, two repeats each."""
    from edgerec.bench import report as rep
    from edgerec.zoo import home as homes

    out = tmp_path_factory.mktemp("report")
    no_int8 = tmp_path_factory.mktemp("no-int8")
    real_ir_dir = homes.ir_dir
    with pytest.MonkeyPatch.context() as mp:
        # whatever the test home holds, int8 is missing here, and tesseract is not installed
        mp.setattr(homes, "ir_dir", lambda name, p: no_int8 / name if p == "int8" else real_ir_dir(name, p))
        mp.setattr(rep.shutil, "which", lambda name: None)
        opts = rep.ReportOptions(models=[V4], datasets=[tiny_set], output=out, precisions=["fp32", "fp16", "int8"],
                                 engines=["openvino", "onnxruntime"], chunk=4, scene_text=["tiny_en"], rounds=2,
                                 repeats=2)
        report = rep.run_report(opts, say=lambda msg: None)
    return out, report


def test_writes_three_files(report_run):
    out, _ = report_run
    from PIL import Image

    assert {"report.md", "report.json", "acc_vs_latency.png"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind
    with Image.open(out / "acc_vs_latency.png") as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 400


def test_json_has_every_number_and_the_environment(report_run):
    out, report = report_run
    assert json.loads((out / "report.json").read_text("utf-8")) == report
    env = report["environment"]
    assert env["cpu"]["model"] and env["cpu"]["cores"] >= 1
    assert {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"} <= set(env["cpu"]["isa"])
    assert env["packages"]["openvino"] and env["packages"]["onnxruntime"] and env["openvino_hint"]
    rows = {r["label"]: r for r in report["results"]}
    assert set(rows) == {"v4_mobile ov fp32", "v4_mobile ov fp16", "v4_mobile ort fp32", "v4_mobile ort fp32 no-spin"}
    keys = {"dataset", "model", "engine", "precision", "acc", "norm_edit_dis", "alnum_acc", "agree_fp32", "p50_ms",
            "p95_ms", "b8_lines_per_s", "pre_ms", "infer_ms", "decode_ms", "size_mb", "peak_rss_mb",
            "cold_start_s", "ratio_vs_ort", "ratio_vs_ov_fp32", "pareto", "engine_config", "compute_precision",
            "timing", "timing_pids", "p50_ms_min", "p50_ms_max", "edgerec"}
    for r in rows.values():
        assert keys <= set(r), keys - set(r)
        assert r["num"] == len(LINES) and 0 < r["p50_ms"] <= r["p95_ms"] and r["b8_lines_per_s"] > 0
        assert r["infer_ms"] > r["pre_ms"] > 0 and r["decode_ms"] > 0
        assert r["size_mb"] > 1 and r["cold_start_s"] > 0 and r["peak_rss_mb"] > r["rss_after_import_mb"] > 0
        assert r["b8_same_text"] == 1.0  # a line's text does not depend on its batch
    assert rows["v4_mobile ort fp32"]["ratio_vs_ort"] == 1.0
    assert rows["v4_mobile ov fp16"]["size_mb"] < 0.7 * rows["v4_mobile ov fp32"]["size_mb"]
    assert rows["v4_mobile ov fp32"]["engine_config"]["PERFORMANCE_HINT"] == "LATENCY"
    ds = report["datasets"][0]
    assert ds["name"] == "tiny_en" and ds["lines"] == len(LINES) and ds["scene_text"]


def test_accuracies_equal_a_direct_computation(report_run, v4, tiny_set):
    from edgerec.data.metrics import rec_metrics

    _, report = report_run
    texts = [r["rec_text"] for r in v4.predict(str(tiny_set / "images"))]
    direct = rec_metrics(texts, LINES)
    row = next(r for r in report["results"] if r["label"] == "v4_mobile ov fp32")
    for key in ("acc", "norm_edit_dis", "alnum_acc"):
        assert math.isclose(row[key], direct[key], abs_tol=1e-6), key
    assert row["score"] == row["alnum_acc"]  # scene-text set: the plot uses alnum acc
    assert direct["acc"] > 0.5  # real weights reading real rendered lines
    # the difference from fp32, paired over the lines: none for fp32 itself, the acc gap with an interval otherwise
    assert row["d_acc_fp32"] is None and row["d_acc_fp32_ci95"] is None
    for label in ("v4_mobile ov fp16", "v4_mobile ort fp32"):
        other = next(r for r in report["results"] if r["label"] == label)
        assert math.isclose(other["d_acc_fp32"], other["acc"] - row["acc"], abs_tol=1e-5), label
        assert math.isclose(other["d_ned_fp32"], other["norm_edit_dis"] - row["norm_edit_dis"], abs_tol=1e-5)
        assert other["d_acc_fp32_ci95"] >= 0 and other["d_ned_fp32_ci95"] >= 0


def test_missing_configs_are_skipped_with_reasons(report_run):
    out, report = report_run
    reasons = {s["label"]: s["reason"] for s in report["skipped"]}
    assert "edgerec quantize" in reasons["v4_mobile ov int8"]
    assert "fp32 only" in reasons["v4_mobile ort fp16"] and "fp32 only" in reasons["v4_mobile ort int8"]
    assert "not on PATH" in reasons["tesseract eng"]
    if importlib.util.find_spec("rapidocr_openvino") is None:  # a peer that is absent is said, not an error
        assert "rapidocr-openvino is not installed" in reasons["rapidocr-openvino fp32"]
    # PaddleX itself: no interpreter given, so skipped with how to add it (one line)
    px = reasons["v4_mobile paddlex fp32"]
    assert "no PaddleX interpreter given" in px and "--paddlex-python" in px and "EDGEREC_PADDLEX_PYTHON" in px
    assert "paddlex[ocr-core]==3.7.2" in px and "\n" not in px
    md = (out / "report.md").read_text("utf-8")
    assert "## Skipped" in md and "v4_mobile ov int8: no int8 model" in md
    assert "- v4_mobile paddlex fp32: no PaddleX interpreter given" in md


def test_markdown_tables_have_the_columns(report_run):
    out, _ = report_run
    md = (out / "report.md").read_text("utf-8")
    header = next(ln for ln in md.splitlines() if ln.startswith("| config | acc %"))
    for col in ("acc %", "norm_edit_dis", "alnum acc %", "agree fp32 %", "Δ acc vs fp32 pt (95 %)", "p50 ms",
                "p95 ms", "× ORT", "b8 lines/s", "mean pre / infer / dec ms", "size MB", "peak RSS MB", "cold start s"):
        assert f"| {col} |" in header, col
    assert "| v4_mobile ort fp32" in md and "## Environment" in md and "avx2" in md.lower()


def test_paired_difference_on_a_hand_made_example():
    from edgerec.data.metrics import paired_difference, rec_metrics

    labels = ["cat", "dog", "bird", "fish", "cow"]
    a = ["cat", "dog", "bird", "fsh", "cow"]      # 4 right, one edit on "fish"
    b = ["cat", "dg", "bird", "fish", "cat"]      # 3 right
    d = paired_difference(a, b, labels)
    assert d["num"] == 5 and d["only_a_right"] == 2 and d["only_b_right"] == 1
    assert d["acc"]["delta"] == pytest.approx(-0.2)
    ma, mb = rec_metrics(a, labels), rec_metrics(b, labels)
    assert d["norm_edit_dis"]["delta"] == pytest.approx(mb["norm_edit_dis"] - ma["norm_edit_dis"], abs=1e-6)
    # per-line acc differences 0, -1, 0, +1, -1: sd 0.8367, so 1.96 * sd / sqrt(5)
    assert d["acc"]["ci95"] == pytest.approx(1.96 * 0.83666 / 5 ** 0.5, rel=1e-4)
    same = paired_difference(a, a, labels)
    assert same["acc"] == {"delta": 0.0, "ci95": 0.0} and same["only_a_right"] == same["only_b_right"] == 0
    assert paired_difference(["x"], ["y"], ["x"])["acc"] == {"delta": -1.0, "ci95": None}  # one line: no interval
    with pytest.raises(ValueError):
        paired_difference(a, b[:4], labels)


def test_pareto_front_on_a_hand_made_example():
    from edgerec.bench import pareto_front

    pts = [(10, 0.80), (20, 0.90), (15, 0.70), (30, 0.90), (5, 0.50), (20, 0.95), (40, 0.99), (3, float("nan")),
           (10, 0.80)]
    # (20, .90) loses to (20, .95); (15, .70) to (10, .80); (30, .90) to (20, .95); the duplicate keeps the first
    assert pareto_front(pts) == [4, 0, 5, 6]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.1), (2.0, 0.1)]) == [0]


def test_shape_plan_covers_every_batch_shape_once():
    from edgerec.bench import batch_groups, shape_plan

    widths = [320, 320, 400, 320, 320, 320, 400]
    assert batch_groups(widths, chunk=4, batch_size=2) == [[0, 1], [3], [2], [4, 5], [6]]
    plan = shape_plan(widths, chunk=4, batch_size=2)
    assert sorted((len(i), w) for i, w in plan) == [(1, 320), (1, 400), (2, 320)]


def test_dataset_formats_and_scene_text_detection(tmp_path):
    import cv2

    from edgerec.bench import load_dataset
    from edgerec.io.fonts import render_line

    ds_dir = tmp_path / "my_svt_like"
    (ds_dir / "imgs").mkdir(parents=True)
    for i, t in enumerate(["train me", "val one", "val two"]):
        cv2.imwrite(str(ds_dir / "imgs" / f"{i}.png"), render_line(t, font_kind="latin"))
    (ds_dir / "train.txt").write_text("imgs/0.png\ttrain me\n", encoding="utf-8")
    (ds_dir / "val.txt").write_text("imgs/1.png\tval one\nimgs/2.png\tval two\nimgs/missing.png\tgone\n",
                                    encoding="utf-8")
    ds = load_dataset(ds_dir)
    assert ds.kind == "MSTextRecDataset" and ds.list_file.name == "val.txt"
    assert ds.labels == ["val one", "val two"] and len(ds.unreadable) == 1 and ds.scene_text
    assert load_dataset(ds_dir, limit=1).labels == ["val one"]
    assert not load_dataset(ds_dir, scene_text=False).scene_text


def test_tesseract_peer_through_a_stand_in_binary(v4, tiny_set, tmp_path, monkeypatch):
    """The Tesseract path (subprocess per line, its own RSS) with a stand-in that answers one fixed line."""
    from edgerec.bench import ReportOptions, run_report
    from edgerec.data.metrics import rec_metrics

    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "tesseract"
    exe.write_text('#!/bin/sh\ncase "$1" in\n'
                   '  --list-langs) echo \'List of available languages in "/nowhere/" (1):\'; echo eng; exit 0;;\n'
                   '  --version) echo "tesseract 0.0-standin"; exit 0;;\nesac\n'
                   'cat >/dev/null\necho "Hello World"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    report = run_report(ReportOptions(models=[V4], datasets=[tiny_set], output=tmp_path / "out",
                                      fresh_process=False, rounds=1, repeats=1), say=lambda m: None)
    row = next(r for r in report["results"] if r["engine"] == "tesseract")
    assert row["acc"] == pytest.approx(rec_metrics(["Hello World"] * len(LINES), LINES)["acc"], abs=1e-6)
    assert row["engine_config"]["version"] == "tesseract 0.0-standin" and row["b8_lines_per_s"] is None
    assert row["cold_start_s"] > 0 and row["infer_ms"] is None
    if sys.platform.startswith("linux"):  # peak RSS comes from /proc
        # the stand-in's own few MB, not this process's hundreds (which wait4's ru_maxrss carries across the exec)
        assert 0 < row["peak_rss_mb"] < 50
    assert row["timing"] == "process" and row["ratio_vs_ov_fp32"] is None and not row["edgerec"]
    assert np.isfinite(row["p50_ms"]) and (tmp_path / "out" / "acc_vs_latency.png").is_file()


def _fake_rapidocr(tmp_path, threads_check: str):
    """A stand-in rapidocr_openvino package that reads every line as 'OpenVINO' (the 1.x result shape
    ([[text, score]], elapse)), checking ``threads_check`` on its inference_num_threads."""
    pkg = tmp_path / "fake" / "rapidocr_openvino"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "class RapidOCR:\n"
        "    def __init__(self, inference_num_threads=-1):\n"
        f"        assert {threads_check}, inference_num_threads\n"
        "    def __call__(self, img, use_det=True, use_cls=True, use_rec=True):\n"
        "        assert not use_det and not use_cls and use_rec and img.ndim == 3\n"
        "        return [['OpenVINO', 0.9]], [0.0, 0.0, 0.001]\n", encoding="utf-8")
    return pkg


def test_rapidocr_peer_through_a_stand_in_module(v4, tiny_set, tmp_path, monkeypatch):
    """The RapidOCR peer (in this process for texts, in child processes for timing) with a stand-in package that
    answers every line with one fixed text, in the 1.x result shape ([[text, score]], elapse)."""
    from edgerec.bench import ReportOptions, run_report
    from edgerec.data.metrics import rec_metrics

    pkg = _fake_rapidocr(tmp_path, "inference_num_threads >= 1")
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.setenv("PYTHONPATH", f"{pkg.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    report = run_report(ReportOptions(models=[V4], datasets=[tiny_set], output=tmp_path / "out", tesseract=False,
                                      fresh_process=False, rounds=2, repeats=1), say=lambda m: None)
    row = next(r for r in report["results"] if r["engine"] == "rapidocr")
    assert row["label"] == "rapidocr-openvino fp32" and not row["edgerec"]
    assert row["acc"] == pytest.approx(rec_metrics(["OpenVINO"] * len(LINES), LINES)["acc"], abs=1e-6)
    assert row["timing"] == "process" and len(set(row["timing_pids"])) == 2 and os.getpid() not in row["timing_pids"]
    assert row["b8_lines_per_s"] is None and row["ratio_vs_ov_fp32"] is None and row["p50_ms"] > 0


def test_rapidocr_peer_from_its_own_interpreter(v4, tiny_set, tmp_path, monkeypatch):
    """--rapidocr-python: RapidOCR's texts from a serving child and its timing children, all started with that
    interpreter (a wrapper that logs each start), none in this process; its thread count is the report's."""
    from edgerec.bench import ReportOptions, run_report
    from edgerec.data.metrics import rec_metrics

    pkg = _fake_rapidocr(tmp_path, "inference_num_threads == 2")
    # only the children see the package: this process must not run RapidOCR itself
    log = tmp_path / "starts.log"
    wrapper = tmp_path / "rapidpython"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nPYTHONPATH="{pkg.parent}:$PYTHONPATH" '
                       f'exec "{sys.executable}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    report = run_report(ReportOptions(models=[V4], datasets=[tiny_set], output=tmp_path / "out", tesseract=False,
                                      paddlex=False, fresh_process=False, rounds=2, repeats=1, threads=2,
                                      rapidocr_python=str(wrapper)), say=lambda m: None)
    row = next(r for r in report["results"] if r["engine"] == "rapidocr")
    assert row["label"] == "rapidocr-openvino fp32" and not row["edgerec"]
    assert row["engine_options"]["python"] == str(wrapper) and row["engine_config"]["threads"] == 2
    assert row["acc"] == pytest.approx(rec_metrics(["OpenVINO"] * len(LINES), LINES)["acc"], abs=1e-6)
    assert row["timing"] == "process" and len(set(row["timing_pids"])) == 2 and os.getpid() not in row["timing_pids"]
    assert report["settings"]["rapidocr_python"] == str(wrapper)
    assert log.read_text().splitlines().count("-m edgerec.bench.child") == 3  # the serving child + 2 timing rounds


def test_rapidocr_peer_with_a_broken_interpreter_is_skipped_with_how_to(v4, tiny_set, tmp_path):
    from edgerec.bench import ReportOptions, run_report

    report = run_report(ReportOptions(models=[V4], datasets=[tiny_set], output=tmp_path / "out", tesseract=False,
                                      paddlex=False, fresh_process=False, rounds=0, repeats=1,
                                      rapidocr_python=str(tmp_path / "no-such-python")), say=lambda m: None)
    reason = {s["label"]: s["reason"] for s in report["skipped"]}["rapidocr-openvino fp32"]
    assert "RapidOCR" in reason and "--rapidocr-python" in reason and "\n" not in reason
    assert not [r for r in report["results"] if r["engine"] == "rapidocr"]


def test_a_peer_that_hangs_at_start_is_stopped_with_a_reason(tmp_path, monkeypatch):
    """A peer's interpreter that never answers (a package retrying a model download offline) is stopped after
    the start timeout, not the 10-minute per-batch one, and the error says what happened and how to fix it."""
    import time

    from edgerec.bench import peer_process
    from edgerec.bench.configs import Config
    from edgerec.errors import EdgeRecError

    hang = tmp_path / "hangpython"
    hang.write_text('#!/bin/sh\necho "downloading the model..." >&2\nexec sleep 600\n')
    hang.chmod(hang.stat().st_mode | stat.S_IEXEC)
    cfg = Config(V4, "fp32", "rapidocr", (("python", str(hang)),))
    t0 = time.monotonic()
    with pytest.raises(EdgeRecError) as err:
        peer_process.PeerProcess(cfg, 1, name="RapidOCR", how_to="see --rapidocr-python", start_timeout=1)
    assert time.monotonic() - t0 < 30
    msg = str(err.value)
    assert "took more than 1 s to start" in msg and "downloading the model" in msg and "--rapidocr-python" in msg


# ------------------------------------------------------------------ PaddleX itself, from its own interpreter

def test_paddlex_peer_is_skipped_without_a_working_interpreter(tmp_path):
    """No interpreter, one that does not exist, one that cannot import paddlex: each a one-line skip that says how
    to add the peer (no network, no PaddleX needed)."""
    from edgerec.bench import report as rep
    from edgerec.bench.configs import Config

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'paddlex'\" >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    for python, why in ((None, "no PaddleX interpreter given"), (str(tmp_path / "nowhere"), "cannot run"),
                        (str(broken), "No module named 'paddlex'")):
        said: list[str] = []
        skips = rep._Skips(said.append)
        opts = rep.ReportOptions(models=[V4], datasets=[], output=tmp_path, paddlex_python=python)
        configs, version = rep._paddlex_configs([Config(V4, "fp32", "openvino")], opts, skips)
        assert configs == [] and version is None
        if python is not None:  # the probe may take minutes: it says so first
            assert said.pop(0).startswith(f"checking the PaddleX peer at {python}")
        assert len(said) == 1 and said[0].startswith("skip v4_mobile paddlex fp32: ") and why in said[0], said
        assert "--paddlex-python" in said[0] and "\n" not in said[0]
    # not asked for, or no model of the run in paddlex_models: nothing planned, nothing said
    said = []
    for opts in (rep.ReportOptions(models=[V4], datasets=[], output=tmp_path, paddlex=False),
                 rep.ReportOptions(models=[V4], datasets=[], output=tmp_path, paddlex_models=[])):
        assert rep._paddlex_configs([Config(V4, "fp32", "openvino")], opts, rep._Skips(said.append)) == ([], None)
    assert said == []


def test_paddlex_children_run_with_the_configured_interpreter(tmp_path, monkeypatch):
    """The PaddleX peer's child command is its configuration's interpreter (edgerec's children keep this one), with
    this checkout first on PYTHONPATH; the interpreter and model folder survive the row -> timing child trip."""
    import subprocess

    from edgerec.bench import timing
    from edgerec.bench.configs import Config
    from edgerec.bench.paddlex_peer import paddlex_config

    px = paddlex_config(V4, "/opt/pxvenv/bin/python", tmp_path / "px")
    assert px.label == "v4_mobile paddlex fp32" and not px.edgerec
    assert Config.of(px.as_dict()) == px  # report rows carry the options to the timing children
    spec = timing.timing_spec(px, ["a.png"], threads=2, chunk=4, batch_size=8, repeats=1)
    assert spec["engine_options"] == {"model_dir": str(tmp_path / "px"), "python": "/opt/pxvenv/bin/python"}
    assert timing.child_command(spec) == ["/opt/pxvenv/bin/python", "-m", "edgerec.bench.child"]
    ov = timing.timing_spec(Config(V4, "fp32", "openvino"), ["a.png"], 2, 4, 8, 1)
    assert timing.child_command(ov) == [sys.executable, "-m", "edgerec.bench.child"]
    calls = []

    def fake_run(cmd, **kw):
        calls.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, 0, stdout='{"pid": 1}\n', stderr="")

    monkeypatch.setattr(timing.subprocess, "run", fake_run)
    assert timing.run_child(spec, px.label) == {"pid": 1}
    (cmd, kw), = calls
    assert cmd[0] == "/opt/pxvenv/bin/python" and json.loads(kw["input"]) == spec
    root = str(Path(__file__).resolve().parents[1])
    assert kw["env"]["PYTHONPATH"].split(os.pathsep)[0] == root


def test_paddlex_model_folder_is_what_paddlex_reads(v4, edgerec_home):
    """inference.yml as PaddleX 3.7.2 reads it: BGR decode first, the model's height, CTC with the same dict
    (YAML-awkward entries survive), and the Paddle weights edgerec exports."""
    import yaml

    from edgerec.bench.paddlex_peer import inference_yml, model_folder
    from edgerec.zoo.resolve import model_charset

    tricky = [" ", "\u3000", "'", '"', ":", "#", "- ", "null", "yes", "1", "0x1", "~", "&", "*", "!", "%", "@", "`"]
    for loader in (yaml.safe_load, lambda t: yaml.load(t, Loader=yaml.FullLoader)):  # PaddleX: FullLoader
        doc = loader(inference_yml(V4, 48, tricky))
        assert doc["PostProcess"] == {"name": "CTCLabelDecode", "character_dict": tricky}
    ops = doc["PreProcess"]["transform_ops"]
    assert ops[0] == {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}}
    assert ops[1] == {"RecResizeImg": {"image_shape": [3, 48, 320]}} and doc["Global"] == {"model_name": V4}
    folder = model_folder(V4)
    assert folder.parent == edgerec_home / "paddlex" and model_folder(V4) == folder  # reused
    assert {p.name for p in folder.iterdir()} == {"inference.pdmodel", "inference.pdiparams", "inference.yml",
                                                   "edgerec.json"}
    doc = yaml.load((folder / "inference.yml").read_text("utf-8"), Loader=yaml.FullLoader)
    assert doc["PostProcess"]["character_dict"] + [" "] == model_charset(V4)  # PaddleX adds the space itself
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # written in one rename


def test_paddlex_peer_through_a_stand_in_interpreter(v4, tiny_set, tmp_path, monkeypatch):
    """The whole PaddleX path (probe, model folder, the serving child for texts, timing children) with a stand-in
    ``paddlex`` package and an interpreter wrapper that logs each start: every PaddleX child ran through it."""
    from edgerec.bench import ReportOptions, run_report
    from edgerec.data.metrics import rec_metrics

    fake = tmp_path / "fake"
    (fake / "paddlex").mkdir(parents=True)
    (fake / "paddle").mkdir()
    (fake / "paddle" / "__init__.py").write_text("__version__ = '0.0-standin'\n", encoding="utf-8")
    (fake / "paddlex" / "__init__.py").write_text(
        "import os\n__version__ = '0.0-standin'\n"
        "class _Model:\n"
        "    def predict(self, input, batch_size=1):\n"
        "        for img in input:\n"
        "            assert img.ndim == 3 and img.shape[2] == 3 and img.dtype.name == 'uint8'\n"
        "            yield {'rec_text': 'OpenVINO', 'rec_score': 0.9}\n"
        "def create_model(model_name, model_dir=None, device=None, engine_config=None):\n"
        "    yml = open(os.path.join(model_dir, 'inference.yml'), encoding='utf-8').read()\n"
        "    assert f'model_name: {model_name}' in yml and 'img_mode: BGR' in yml, yml[:200]\n"
        "    assert os.path.isfile(os.path.join(model_dir, 'inference.pdiparams')) and device == 'cpu'\n"
        "    assert engine_config['cpu_threads'] >= 1\n"
        "    return _Model()\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    log = tmp_path / "starts.log"
    wrapper = tmp_path / "pxpython"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    report = run_report(ReportOptions(models=[V4], datasets=[tiny_set], output=tmp_path / "out", tesseract=False,
                                      rapidocr=False, fresh_process=False, rounds=2, repeats=1,
                                      paddlex_python=str(wrapper)), say=lambda m: None)
    row = next(r for r in report["results"] if r["engine"] == "paddlex")
    assert row["label"] == "v4_mobile paddlex fp32" and not row["edgerec"] and row["engine_options"]["python"] == str(
        wrapper)
    assert row["acc"] == pytest.approx(rec_metrics(["OpenVINO"] * len(LINES), LINES)["acc"], abs=1e-6)
    assert row["b8_same_text"] == 1.0 and row["b8_lines_per_s"] > 0 and row["size_mb"] > 1
    assert row["timing"] == "process" and len(set(row["timing_pids"])) == 2 and os.getpid() not in row["timing_pids"]
    assert row["ratio_vs_ov_fp32"] > 0  # PaddleX reads the same model: timed against edgerec's fp32
    assert row["engine_config"]["paddlex"] == "0.0-standin"
    assert report["settings"]["paddlex"] and report["environment"]["packages"]["paddlex"].startswith("0.0-standin")
    starts = log.read_text().splitlines()
    assert sum(s.startswith("-c ") for s in starts) == 1  # the probe
    assert starts.count("-m edgerec.bench.child") == 3  # the serving child (texts) + one timing child per round


def test_a_paddlex_child_imports_no_openvino(tmp_path):
    """What a PaddleX child imports (serve and timing modes) needs none of edgerec's own heavy packages, which
    PaddleX's virtualenv lacks: run here with them blocked."""
    import subprocess

    code = ("import sys\n"
            "BLOCK = {'openvino', 'nncf', 'rapidfuzz', 'onnxruntime', 'onnx', 'paddle', 'paddle2onnx', 'matplotlib',\n"
            "         'torch', 'click', 'tqdm', 'filelock', 'yaml'}\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in BLOCK:\n"
            "            raise ImportError(f'blocked: {name}')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import edgerec.bench.child, edgerec.bench.paddlex_peer\n"
            "from edgerec.bench.configs import Config\n"
            "from edgerec.bench.measure import shape_plan\n"
            "from edgerec.bench.runners import open_runner\n"
            "from edgerec.io.inputs import load_image\n"
            "print('ok')\n")
    from edgerec.bench.timing import child_env

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_cli_report_command(v4, tiny_set, tmp_path):
    from click.testing import CliRunner

    from edgerec.cli import main

    out = tmp_path / "cli"
    res = CliRunner().invoke(main, ["report", "--models", V4, "--dataset", str(tiny_set), "--output", str(out),
                                    "--limit", "4", "--no-fresh-process", "--no-tesseract", "--rounds", "0"])
    assert res.exit_code == 0, res.output
    assert "| v4_mobile ov fp32 |" in res.output and (out / "report.md").is_file()
    rep = json.loads((out / "report.json").read_text("utf-8"))
    assert rep["datasets"][0]["lines"] == 4 and rep["settings"]["rounds"] == 0
    # --rounds 0 is the quick in-process timing, and every output says it is biased
    assert rep["settings"]["timing"] == rep["results"][0]["timing"] == "in-process (biased)"
    assert "in-process (biased)" in (out / "report.md").read_text("utf-8")
    bad = CliRunner().invoke(main, ["report", "--models", V4, "--precisions", "fp8", "--dataset", str(tiny_set),
                                    "--output", str(out)])
    assert bad.exit_code == 2 and "fp8" in bad.output


def test_isa_line_in_every_output(report_run):
    """The machine's ISA decides the numbers (bf16/VNNI kernels), so report.json and report.md both name it."""
    import json

    from edgerec.utils.cpu import isa_summary

    out, _ = report_run
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["environment"]["isa"] == isa_summary()
    assert "ISA:" in (out / "report.md").read_text(encoding="utf-8")


def test_child_is_a_real_module_in_its_own_process(v4, tiny_set):
    """Cold start and peak RSS come from `python -m edgerec.bench.child`, a process other than this one."""
    import os

    from edgerec.bench.configs import Config
    from edgerec.bench.measure import fresh_process

    first = sorted((tiny_set / "images").iterdir())[0]
    res = fresh_process(Config(V4, "fp32", "openvino"), 1, first, [([str(first)], 320)])
    assert res["pid"] != os.getpid()
    assert res["first_text"] == LINES[0]


def test_a_config_carries_create_models_own_options(v4):
    """A width bucket is create_model's option, not the engine's: the runner (and each child, through the same
    create_kwargs) passes it by name, and the label names it."""
    from edgerec.bench.configs import NO_SPIN, Config, create_kwargs
    from edgerec.bench.runners import ModelRunner

    assert create_kwargs({"width_bucket": 160, "allow_spinning": False}) == {
        "engine_options": dict(NO_SPIN), "width_bucket": 160}
    assert create_kwargs(None) == {"engine_options": None}
    assert create_kwargs({"recheck": "fp32", "recheck_below": 0.8}) == {
        "engine_options": None, "recheck": "fp32", "recheck_below": 0.8}
    cfg = Config(V4, "fp32", "openvino", (("width_bucket", 160),))
    runner = ModelRunner(cfg, 1)
    assert runner.predictor.width_bucket == 160 and cfg.label == "v4_mobile ov fp32 width_bucket=160"
    runner.close()


# ------------------------------------------------------------------ timing in separate processes

def test_every_configuration_is_timed_in_its_own_processes(report_run):
    """A child process per configuration and round: the pids differ from each other and from this process."""
    _, report = report_run
    pids = []
    for r in report["results"]:
        assert r["timing"] == "process" and r["timing_rounds"] == 2 and r["timing_repeats"] == 2
        assert len(r["timing_pids"]) == 2 and len(r["p50_ms_rounds"]) == 2
        assert r["p50_ms_min"] <= r["p50_ms"] <= r["p50_ms_max"]
        pids += r["timing_pids"]
    assert len(pids) == len(set(pids)) == 2 * len(report["results"]) and os.getpid() not in pids
    assert report["settings"]["timing"] == "process" and report["settings"]["rounds"] == 2
    rows = {r["label"]: r for r in report["results"]}
    assert rows["v4_mobile ov fp32"]["ratio_vs_ov_fp32"] == 1.0
    assert rows["v4_mobile ov fp32"]["ratio_vs_ov_fp32_rounds"] == [1.0, 1.0]


def _fake_child(log: list, fail: str | None = None):
    def run(spec: dict, label: str, timeout: float = 600) -> dict:
        log.append((label, spec))
        if label == fail:
            from edgerec.errors import EdgeRecError

            raise EdgeRecError(f"child process for {label} failed: boom")
        k = len(log)
        return {"pid": 1000 + k, "repeats": spec["repeats"], "line_ms": [float(k)] * len(spec["lines"]),
                "b1_total_s": [k / 1000] * spec["repeats"], "b8_total_s": [], "b8_avg_batch": None,
                "stages1": {"pre_ms": None, "infer_ms": None, "decode_ms": None}, "stages8": {}, "precision": "f32"}
    return run


def test_timing_children_are_interleaved_over_rounds(monkeypatch):
    from edgerec.bench import timing
    from edgerec.bench.configs import NO_SPIN, Config

    a, b = Config(V4, "fp32", "openvino"), Config(V4, "fp32", "onnxruntime", NO_SPIN)
    log: list = []
    monkeypatch.setattr(timing, "run_child", _fake_child(log))
    res = timing.time_in_processes([a, b], ["x.png", "y.png"], threads=2, chunk=64, batch_size=8, rounds=3,
                                   repeats=2)
    assert [label for label, _ in log] == [a.label, b.label] * 3  # A B A B A B, one child each
    assert {spec["threads"] for _, spec in log} == {2} and {spec["mode"] for _, spec in log} == {"timing"}
    assert log[1][1]["engine_options"] == {"allow_spinning": False} and log[0][1]["engine_options"] == {}
    assert [r["round"] for r in res[a]] == [0, 1, 2] and len({r["pid"] for r in res[a] + res[b]}) == 6


def test_timing_lines_cut_only_what_the_children_time(v4, tiny_set, tmp_path, monkeypatch):
    """--timing-lines N: accuracy reads every line of the set, each timing child only the first N; the report says
    so."""
    from edgerec.bench import ReportOptions, run_report, timing
    from edgerec.errors import EdgeRecError

    log: list = []
    monkeypatch.setattr(timing, "run_child", _fake_child(log))
    report = run_report(ReportOptions(models=[V4], datasets=[tiny_set], output=tmp_path / "out", tesseract=False,
                                      rapidocr=False, fresh_process=False, rounds=1, repeats=1, timing_lines=3),
                        say=lambda m: None)
    assert log and {len(spec["lines"]) for _, spec in log} == {3}
    ds = report["datasets"][0]
    assert ds["lines"] == len(LINES) > 3 and ds["timed_lines"] == 3 and report["settings"]["timing_lines"] == 3
    assert "timed on the first 3" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    with pytest.raises(EdgeRecError, match="timing_lines=0"):
        ReportOptions(models=[V4], datasets=[], output=tmp_path, timing_lines=0)


def test_a_failing_child_costs_only_its_configuration(monkeypatch):
    from edgerec.bench import timing
    from edgerec.bench.configs import Config

    a, b = Config(V4, "fp32", "openvino"), Config(V4, "fp16", "openvino")
    log: list = []
    errors: list = []
    monkeypatch.setattr(timing, "run_child", _fake_child(log, fail=b.label))
    res = timing.time_in_processes([a, b], ["x.png"], 1, 64, 8, rounds=3, repeats=1,
                                   on_error=lambda cfg, why: errors.append((cfg, why)))
    assert list(res) == [a] and len(res[a]) == 3
    assert [label for label, _ in log] == [a.label, b.label, a.label, a.label]  # not run again after it failed
    assert errors[0][0] == b and "round 1" in errors[0][1] and "boom" in errors[0][1]


def test_ratio_arithmetic_is_per_round_against_the_baseline():
    from edgerec.bench import round_ratios, summarize
    from edgerec.bench.configs import Config

    def res(rnd: int, b1: list[float], lines: list[float]) -> dict:
        return {"round": rnd, "pid": 100 + rnd, "repeats": len(b1), "line_ms": lines, "b1_total_s": b1,
                "b8_total_s": [], "b8_avg_batch": None, "precision": "f32",
                "stages1": {"pre_ms": 1.0, "infer_ms": 2.0 + rnd, "decode_ms": 0.5}, "stages8": {}}

    base, ort = Config(V4, "fp32", "openvino"), Config(V4, "fp32", "onnxruntime")
    # the baseline's set time per round is 1.0 s then 2.0 s (a slow round); ORT's 2.0 s then 3.0 s
    results = {base: [res(0, [1.0, 1.2, 0.8], [4.0, 6.0]), res(1, [2.0], [8.0, 12.0])],
               ort: [res(0, [2.0], [8.0, 9.0]), res(1, [3.0, 3.0], [10.0, 14.0])]}
    s = summarize(results)
    assert s[ort]["ratio_vs_ov_fp32_rounds"] == [2.0, 1.5]  # not (2 + 3) / (1 + 2)
    assert s[ort]["ratio_vs_ov_fp32"] == 1.75 and (s[ort]["ratio_vs_ov_fp32_min"], s[ort]["ratio_vs_ov_fp32_max"]) == (
        1.5, 2.0)
    assert s[ort]["ratio_vs_ort"] == 1.0 and s[base]["ratio_vs_ov_fp32"] == 1.0
    assert s[base]["ratio_vs_ort_rounds"] == [0.5, 2.0 / 3.0]
    assert s[base]["p50_ms_rounds"] == [5.0, 10.0] and s[base]["p50_ms"] == 7.5
    assert (s[base]["p50_ms_min"], s[base]["p50_ms_max"]) == (5.0, 10.0)
    assert s[base]["b1_lines_per_s"] == 2 / 1.5 and s[base]["mean_ms"] == 750.0 and s[base]["infer_ms"] == 2.5
    # a round the baseline lacks is left out of the ratios, not paired with another round
    s2 = summarize({base: results[base][:1], ort: results[ort]})
    assert s2[ort]["ratio_vs_ov_fp32_rounds"] == [2.0]
    assert summarize({ort: results[ort]})[ort]["ratio_vs_ov_fp32"] is None
    with pytest.raises(ValueError, match="same rounds"):
        round_ratios([1.0, 2.0], [1.0])


def test_onnxruntime_runs_as_shipped_and_without_spinning(report_run):
    pytest.importorskip("onnxruntime")
    from edgerec.bench import plan_configs
    from edgerec.bench.configs import NO_SPIN, Config
    from edgerec.engines.base import EngineOptionError
    from edgerec.engines.onnxruntime import ONNXRuntimeOptions

    _, report = report_run
    rows = {r["label"]: r for r in report["results"]}
    ship, nospin = rows["v4_mobile ort fp32"], rows["v4_mobile ort fp32 no-spin"]
    assert ship["engine_config"]["allow_spinning"] == "1 (default)" and ship["engine_options"] == {}
    assert nospin["engine_config"]["allow_spinning"] == "0" and nospin["engine_options"] == {"allow_spinning": False}
    assert ship["acc"] == nospin["acc"] and nospin["agree_fp32"] == ship["agree_fp32"]
    # thread counts alike: ONNX Runtime's intra-op threads = OpenVINO's inference threads = the report's
    threads = report["environment"]["threads"]
    assert ship["engine_config"]["intra_op_num_threads"] == nospin["engine_config"]["intra_op_num_threads"] == threads
    assert rows["v4_mobile ov fp32"]["engine_config"]["INFERENCE_NUM_THREADS"] == threads
    # a configuration that says how to spin is not doubled
    explicit = [Config(V4, "fp32", "onnxruntime", NO_SPIN)]
    assert plan_configs([], [], [], explicit)[0] == explicit
    with pytest.raises(EngineOptionError, match="allow_spinning must be True, False or None"):
        ONNXRuntimeOptions(allow_spinning="no")


def test_rows_record_the_precision_that_ran_and_the_machine(report_run):
    from edgerec.utils.cpu import cpu_info, isa_summary

    out, report = report_run
    rows = {r["label"]: r for r in report["results"]}
    assert rows["v4_mobile ort fp32"]["compute_precision"] == "f32"
    for r in rows.values():  # what the engine read back, in this process and in the timing child alike
        assert r["compute_precision"] in ("f32", "bf16", "f16") and r["child_precision"] == r["compute_precision"]
        if r["engine"] == "openvino":
            assert r["compute_precision"] == r["engine_config"]["INFERENCE_PRECISION_HINT"]
    assert rows["v4_mobile ov fp32"]["compute_precision"] == "f32"  # fp32 is forced f32, even on a bf16 CPU
    md = (out / "report.md").read_text("utf-8")
    assert f"CPU and ISA: {isa_summary()}" in md and cpu_info()["model"] in md
    assert "| runs in |" in md and "| v4_mobile ov fp32 | f32 |" in md and "a separate process per configuration" in md


def test_plot_fills_edgerec_points_and_leaves_peers_hollow(report_run):
    from edgerec.bench.plot import point_style

    _, report = report_run
    for r in report["results"]:
        style = point_style(r, "red")
        assert r["edgerec"] == (r["engine"] == "openvino")
        assert (style["facecolors"] == "red") == r["edgerec"] and (style["facecolors"] == "none") != r["edgerec"]
    tess = point_style({"engine": "tesseract", "precision": "eng"}, "0.35")
    assert tess["facecolors"] == "none" and tess["marker"] == "X"
    spin = {"engine": "onnxruntime", "precision": "fp32"}
    assert point_style(spin, "b")["marker"] != point_style({**spin, "engine_options": {"allow_spinning": False}},
                                                           "b")["marker"]


def test_report_options_refuse_bad_rounds(tmp_path):
    from edgerec.bench import ReportOptions
    from edgerec.errors import EdgeRecError

    with pytest.raises(EdgeRecError, match="rounds=-1"):
        ReportOptions(models=[V4], datasets=[], output=tmp_path, rounds=-1)
    with pytest.raises(EdgeRecError, match="repeats=0"):
        ReportOptions(models=[V4], datasets=[], output=tmp_path, repeats=0)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_is_planned_only_where_the_cpu_has_it(monkeypatch, native):
    from edgerec.bench import plan_configs
    from edgerec.utils import cpu

    monkeypatch.setattr(cpu, "has_native_bf16", lambda: native)
    configs, skipped = plan_configs([V4], ["fp32", "bf16"], ["openvino", "onnxruntime"])
    planned = {(c.precision, c.engine) for c in configs}
    assert ("fp32", "openvino") in planned and ("bf16", "onnxruntime") not in planned
    assert (("bf16", "openvino") in planned) is native
    reasons = {(s["precision"], s["engine"]): s["reason"] for s in skipped}
    assert "fp32 only" in reasons[("bf16", "onnxruntime")]
    if not native:
        assert "has no native bf16" in reasons[("bf16", "openvino")]


def test_same_text_share_counts_equal_lines():
    from edgerec.data.metrics import same_text_share

    assert same_text_share(["a", "b", None, "d"], ["a", "x", None, "d"]) == 0.75  # a failed line equals a failed one
    assert same_text_share([], []) == 0.0
