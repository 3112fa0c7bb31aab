"""quantize, report, bench and the model home against careless and hostile use (an audit, 2026-12-07)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.errors import EdgeRecError, ModelError


def test_report_keeps_a_users_report_files(tmp_path):
    from edgerec.bench.render import check_report_output

    (tmp_path / "report.md").write_text("my own notes\n", "utf-8")
    with pytest.raises(EdgeRecError, match="holds report.md, not an earlier edgerec report's"):
        check_report_output(tmp_path)
    assert (tmp_path / "report.md").read_text("utf-8") == "my own notes\n"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.json").write_text(json.dumps({"environment": {}, "settings": {}, "results": []}), "utf-8")
    (earlier / "report.md").write_text("# edgerec accuracy vs latency\n\n...", "utf-8")
    check_report_output(earlier)  # an earlier report is replaced


def test_a_report_that_measures_nothing_leaves_the_earlier_one(tmp_path, monkeypatch):
    from edgerec.bench import report as rep

    monkeypatch.setattr(rep, "plan_configs", lambda *a: ([], [{"model": "m", "precision": "fp32",
                                                                "engine": "openvino", "reason": "offline"}]))
    import cv2

    from edgerec.io.fonts import render_line

    ds = tmp_path / "set"
    (ds / "images").mkdir(parents=True)
    cv2.imwrite(str(ds / "images" / "a.png"), render_line("Gate 7", height=48, font_kind="latin"))
    (ds / "val.txt").write_text("images/a.png\tGate 7\n", "utf-8")
    out = tmp_path / "out"
    out.mkdir()
    before = {"environment": {}, "settings": {}, "results": [{"x": 1}]}
    (out / "report.json").write_text(json.dumps(before), "utf-8")
    (out / "report.md").write_text("# edgerec accuracy vs latency\n", "utf-8")
    with pytest.raises(EdgeRecError, match="nothing was measured"):
        rep.run_report(rep.ReportOptions(models=["m"], datasets=[str(ds)], output=str(out), rounds=0,
                                         tesseract=False, rapidocr=False, paddlex=False), say=lambda *a: None)
    assert json.loads((out / "report.json").read_text("utf-8")) == before
    fresh = tmp_path / "new" / "out"  # a folder the failed run made is not left behind, empty
    with pytest.raises(EdgeRecError, match="nothing was measured"):
        rep.run_report(rep.ReportOptions(models=["m"], datasets=[str(ds)], output=str(fresh), rounds=0,
                                         tesseract=False, rapidocr=False, paddlex=False), say=lambda *a: None)
    assert not (tmp_path / "new").exists()


def test_report_options_refuse_a_limit_or_threads_below_one():
    from edgerec.bench.report import ReportOptions

    for kw in ({"limit": 0}, {"limit": -1}, {"threads": 0}, {"threads": -2}):
        with pytest.raises(EdgeRecError, match="use an integer >= 1"):
            ReportOptions(models=["m"], datasets=["d"], output="o", **kw)


def test_model_names_never_make_paths_outside_the_home(tmp_path, monkeypatch):
    from edgerec.zoo import home as homes

    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path / "home"))
    for name in ("../../escape", "/tmp/victim/y", "a\0b", "..", ".hidden", "x" * 500):
        key = homes.local_key(name, "0123456789abcdef")
        for path in (homes.local_ir_dir(key, "fp32"), homes.lock_path(name)):
            assert path.resolve().is_relative_to((tmp_path / "home").resolve()), path
    assert homes.local_key("PP-OCRv4_mobile_rec", "0123456789abcdef") == "PP-OCRv4_mobile_rec-0123456789ab"


def test_a_model_home_that_is_not_a_folder_is_one_error(tmp_path, monkeypatch):
    from edgerec.zoo import home as homes

    (tmp_path / "file").write_text("x", "utf-8")
    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path / "file"))
    with pytest.raises(ModelError, match="is not a folder"):
        homes.home()


@pytest.mark.parametrize("args, match", [
    (["--seed", "-5"], "--seed"), (["--max-drop", "nan"], "nan is not a finite number"),
    (["--search-seconds", "nan"], "nan is not a finite number"), (["--qat", "--qat-lr", "nan"], "not a finite"),
])
def test_quantize_refuses_negative_seeds_and_nan(args, match):
    res = CliRunner().invoke(main, ["quantize", "PP-OCRv4_mobile_rec", *args])
    assert res.exit_code == 2 and match in res.output and "Traceback" not in res.output, res.output


def test_a_second_quantize_into_the_same_folder_is_refused_at_once(tmp_path, monkeypatch):
    from edgerec.quant.quantize import QuantizationError, _install_lock

    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path / "home"))
    first = _install_lock(tmp_path / "int8")
    try:
        with pytest.raises(QuantizationError, match="another edgerec quantize is writing"):
            _install_lock(tmp_path / "int8")
    finally:
        first.release()
    _install_lock(tmp_path / "int8").release()  # free again once the first is done
    # a model home that cannot be written (EDGEREC_HOME under a file here): the lock goes beside the output
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path / "file" / "home"))
    beside = _install_lock(tmp_path / "out" / "int8")
    try:
        assert (tmp_path / "out" / ".int8.edgerec-quantize.lock").exists()
        with pytest.raises(QuantizationError, match="another edgerec quantize is writing"):
            _install_lock(tmp_path / "out" / "int8")
    finally:
        beside.release()


def test_sigterm_ends_a_command_through_its_cleanup_and_the_handler_is_given_back():
    import signal

    from edgerec.commands import shell

    before = signal.getsignal(signal.SIGTERM)
    seen = []

    @main.command("sigterm-probe", hidden=True)
    def probe():
        seen.append(signal.getsignal(signal.SIGTERM))
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            seen.append("cleanup ran")

    try:
        res = CliRunner().invoke(main, ["sigterm-probe"])
    finally:
        main.commands.pop("sigterm-probe", None)
    assert res.exit_code == shell.EXIT_TERMINATED and seen[1] == "cleanup ran" and seen[0] is not before
    assert signal.getsignal(signal.SIGTERM) == before
