"""int8 on CPUs without VNNI: the guard's second reading (a child process under a oneDNN ISA cap), what the report
says of it, and what use_hpip does with it on such a CPU."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from edgerec.utils import cpu

from conftest import V4


@pytest.fixture(scope="module")
def q_model(v4):
    """The v4 IR quantized on 8 rendered lines (NNCF's default overflow fix), in memory."""
    import nncf
    import openvino as ov

    from edgerec.quant.calibration import render_lines
    from edgerec.quant.recipe import QuantizationConfig
    from edgerec.runtime.preprocess import preprocess_batch, target_width

    model = ov.Core().read_model(str(v4.model_path))
    tensors = [preprocess_batch([im], target_width(*im.shape[:2]), 48)
               for im, _ in render_lines(v4.info.classes, 8, seed=0)]
    kwargs = QuantizationConfig(subset_size=8, fast_bias_correction=True).nncf_kwargs(model)
    nncf.set_log_level(40)
    return nncf.quantize(model, nncf.Dataset(tensors), **kwargs)


def _texts(q_model, v4, images):
    from edgerec.quant.quantize import _predictor

    return [t for t, _ in _predictor(q_model, v4.info.classes, 48).recognize(images, 8)]


def test_the_child_reads_the_job_it_is_given(q_model, v4, rendered, monkeypatch):
    """The parent's job file and the child's reading of it, with the child's whole work run in this process: it
    refuses unless oneDNN is capped below VNNI (so it never reports VNNI texts as the other arithmetic's), and then
    reads the lines (of several shapes) through RecPredictor at the job's widths: the texts equal a direct read."""
    from edgerec.quant import without_vnni

    images = [img for _, img in rendered]
    assert len({im.shape for im in images}) > 1
    codes = []

    def child_here(cmd, env, **kw):
        assert env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
        codes.append(without_vnni._main(cmd[-1]))
        return subprocess.CompletedProcess(cmd, codes[-1], "", "not capped" if codes[-1] else "")

    monkeypatch.setattr(without_vnni, "why_not_emulated", lambda: "")
    monkeypatch.setattr(subprocess, "run", child_here)
    reading = {"min_width": 320, "width_bucket": None}
    monkeypatch.setattr(without_vnni, "int8_saturates", lambda: False)  # the environment says capped, oneDNN not
    texts, why = without_vnni.read_without_vnni(q_model, v4.info.classes, images, 48, reading, 8)
    assert codes == [2] and texts is None and "not capped" in why
    monkeypatch.setattr(without_vnni, "int8_saturates", lambda: True)
    texts, why = without_vnni.read_without_vnni(q_model, v4.info.classes, images, 48, reading, 8)
    assert codes == [2, 0] and why == "" and texts == _texts(q_model, v4, images)


@pytest.mark.skipif(cpu.int8_vnni() is None, reason="not an x86 CPU with readable ISA flags")
def test_the_known_answer_says_which_arithmetic_runs():
    """In this process nothing is capped: int8 saturates exactly where the CPU has no VNNI."""
    from edgerec.quant.without_vnni import int8_saturates

    assert int8_saturates() is (not cpu.has_int8_vnni())


def test_what_the_child_is_not_handed(q_model, v4, rendered, monkeypatch):
    import numpy as np

    from edgerec.quant import without_vnni

    monkeypatch.setattr(without_vnni, "why_not_emulated", lambda: "")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no child for these"))
    assert without_vnni.read_without_vnni(q_model, v4.info.classes, [], 48, {}, 8) == (None, "no eval lines")
    floats = [rendered[0][1].astype(np.float32)]
    assert "not all uint8" in without_vnni.read_without_vnni(q_model, v4.info.classes, floats, 48, {}, 8)[1]


def test_a_failing_second_reading_never_costs_the_quantization(q_model, v4, rendered, monkeypatch):
    from edgerec.quant import quantize, without_vnni
    from edgerec.quant.recipe import QuantizationConfig

    def broken(*a, **k):
        raise ValueError("disk full")

    monkeypatch.setattr(without_vnni, "read_without_vnni", broken)
    eval_set = quantize.EvalSet([rendered[0][1]], [rendered[0][0]], "one")
    out = quantize._check_without_vnni(q_model, v4.info.classes, eval_set, 48, QuantizationConfig(),
                                       {"acc": 1.0, "norm_edit_dis": 1.0}, [rendered[0][0]])
    assert out == {"checked": False, "why": "failed: ValueError: disk full"}


@pytest.mark.parametrize("vnni,avx512,expect", [(False, True, "no int8 VNNI"), (True, False, "needs AVX-512"),
                                                (True, True, "")])
def test_emulation_needs_vnni_to_remove_and_avx512(monkeypatch, vnni, avx512, expect):
    from edgerec.quant import without_vnni

    monkeypatch.setattr(cpu, "has_int8_vnni", lambda: vnni)
    isa = {k: False for k in cpu.ISA_FLAGS} | {"avx2": True, "avx512f": avx512, "avx512bw": avx512}
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"isa": isa})
    why = without_vnni.why_not_emulated()
    assert (expect in why) if expect else why == ""


def test_a_failed_child_is_reported_not_raised(q_model, v4, rendered, monkeypatch):
    from edgerec.quant import without_vnni

    monkeypatch.setattr(without_vnni, "why_not_emulated", lambda: "")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, -11, "", "boom\nSegfault"))
    texts, why = without_vnni.read_without_vnni(q_model, v4.info.classes, [rendered[0][1]], 48, {}, 8)
    assert texts is None and "child process failed" in why and "Segfault" in why


def test_an_eval_set_too_large_for_the_child_is_not_sent(q_model, v4, rendered, monkeypatch):
    from edgerec.quant import without_vnni

    monkeypatch.setattr(without_vnni, "why_not_emulated", lambda: "")
    monkeypatch.setattr(without_vnni, "MAX_JOB_BYTES", 1000)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no child for a set this large"))
    texts, why = without_vnni.read_without_vnni(q_model, v4.info.classes, [rendered[0][1]], 48, {}, 8)
    assert texts is None and "too many to hand to a child" in why


def test_the_report_compares_the_second_reading(q_model, v4, rendered, monkeypatch):
    """What the child read becomes the report's without_vnni: metrics against the labels, the drop from fp32, the
    bound, and the share of texts equal to int8's with VNNI. The child is simulated here (one wrong line)."""
    from edgerec.quant import quantize, without_vnni
    from edgerec.quant.recipe import QuantizationConfig

    labels = [t for t, _ in rendered]
    eval_set = quantize.EvalSet([img for _, img in rendered], labels, "rendered")
    seen = {}

    def fake_child(cmd, env, **kw):
        seen["env"] = env
        work = cmd[-1]
        with open(f"{work}/texts.json", "w", encoding="utf-8") as f:
            json.dump(["not it"] + labels[1:], f)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(without_vnni, "why_not_emulated", lambda: "")
    monkeypatch.setattr(subprocess, "run", fake_child)
    fp32 = {"acc": 1.0, "norm_edit_dis": 1.0}
    out = quantize._check_without_vnni(q_model, v4.info.classes, eval_set, 48, QuantizationConfig(max_drop=0.01),
                                       fp32, labels)
    assert seen["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
    import edgerec

    # the child finds this edgerec even where it is not installed
    assert str(Path(edgerec.__file__).resolve().parents[1]) in seen["env"]["PYTHONPATH"].split(os.pathsep)
    n = len(labels)
    assert out["checked"] and out["emulated_with"] == "ONEDNN_MAX_CPU_ISA=AVX512_CORE"
    assert out["int8"]["acc"] == pytest.approx((n - 1) / n, abs=1e-6)
    assert out["drop"]["acc"] == pytest.approx(1 / n, abs=1e-6)
    assert out["within_bound"] is (1 / n <= 0.01)
    assert out["same_text_as_int8"] == pytest.approx((n - 1) / n, abs=1e-6)


@pytest.mark.skipif(bool(__import__("edgerec.quant.without_vnni", fromlist=["x"]).why_not_emulated()),
                    reason="this CPU cannot read int8 as one without VNNI")
def test_the_real_child_reads_int8_without_vnni(q_model, v4, rendered):
    """On a CPU with VNNI and AVX-512: the child under the cap returns one text per line, and they are int8's
    texts of this arithmetic (most equal to the VNNI reading; rendered lines are easy)."""
    from edgerec.quant import without_vnni

    images = [img for _, img in rendered]
    texts, why = without_vnni.read_without_vnni(q_model, v4.info.classes, images, 48,
                                                {"min_width": 320, "width_bucket": None}, 8)
    assert why == "" and len(texts) == len(images) and all(isinstance(t, str) for t in texts)  # the cap took
    vnni = _texts(q_model, v4, images)
    assert sum(a == b for a, b in zip(texts, vnni)) >= 0.5 * len(images)  # the same model, another arithmetic


@pytest.mark.parametrize("within", [True, False])
@pytest.mark.parametrize("fix", ["first_layer", "enable"])
def test_use_hpip_goes_by_the_second_reading_on_a_cpu_without_vnni(tmp_path, monkeypatch, within, fix):
    """The measured reading decides, whatever the overflow fix (with it, int8 still moved 0.3 pt on PP-OCRv4)."""
    from edgerec import api, hpip

    int8 = tmp_path / "int8" / "model.xml"
    int8.parent.mkdir()
    report = {"forced": False, "int8_vnni": True, "config": {"overflow_fix": fix},
              "without_vnni": {"checked": True, "within_bound": within,
                               "drop": {"acc": 0.0 if within else 0.07, "norm_edit_dis": 0.0 if within else 0.03}}}
    (int8.parent / "quantization_report.json").write_text(json.dumps(report))
    monkeypatch.setattr(hpip, "installed_ir", lambda name, model_dir, precision: int8 if precision == "int8" else None)
    monkeypatch.setattr(cpu, "int8_vnni", lambda: False)
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: False)
    precision, _, why = hpip.hpip_choice(api.registry.pick(None, "cpu"), api.parse_device("cpu"), V4, None, "fp32")
    assert (precision == "int8") is within
    if not within:
        assert "but not without it" in why and "+0.0700" in why


def test_only_x86_cpus_are_concerned(tmp_path, monkeypatch):
    """On an ARM CPU (no VNNI flags to read) an int8 model checked with VNNI is not skipped for it."""
    from edgerec import api, hpip

    int8 = tmp_path / "int8" / "model.xml"
    int8.parent.mkdir()
    (int8.parent / "quantization_report.json").write_text(json.dumps({"forced": False, "int8_vnni": True}))
    monkeypatch.setattr(hpip, "installed_ir", lambda name, model_dir, precision: int8 if precision == "int8" else None)
    monkeypatch.setattr(cpu, "is_x86", lambda: False)
    assert cpu.int8_vnni() is None
    assert hpip.hpip_choice(api.registry.pick(None, "cpu"), api.parse_device("cpu"), V4, None, "fp32")[0] == "int8"


@pytest.mark.parametrize("check,force,within,expect_call", [
    (False, False, True, False), (True, False, True, True), (True, False, False, False), (True, True, False, True)])
def test_the_second_reading_runs_only_when_asked_and_installed(v4, rendered, tmp_path, monkeypatch, check, force,
                                                                within, expect_call):
    """Asked for (the default) and the model installed (within the bound, or forced): a refused model is not
    installed, so nothing would ever read its second reading. NNCF is stubbed (the fp32 model comes back)."""
    import nncf

    from edgerec.quant import quantize
    from edgerec.quant.recipe import QuantizationConfig

    calls = []
    monkeypatch.setattr(nncf, "quantize", lambda model, dataset, **kw: model)
    monkeypatch.setattr(quantize, "within_bound", lambda drops, bound: within)
    monkeypatch.setattr(quantize, "_check_without_vnni", lambda *a: calls.append(a) or {"checked": False, "why": "x"})
    eval_set = quantize.EvalSet([rendered[0][1]], [rendered[0][0]], "one")
    cfg = QuantizationConfig(subset_size=1, check_without_vnni=check)
    if not within and not force:
        with pytest.raises(quantize.QuantizationError):
            quantize.quantize_ir(v4.model_path, [rendered[0][1]], eval_set, tmp_path / "q", config=cfg)
        assert calls == []
        return
    report = quantize.quantize_ir(v4.model_path, [rendered[0][1]], eval_set, tmp_path / "q", config=cfg, force=force)
    assert bool(calls) is expect_call
    assert report["without_vnni"] == ({"checked": False, "why": "x"} if expect_call else
                                      {"checked": False, "why": "--no-check-without-vnni"})


@pytest.mark.parametrize("here_vnni", [True, False])
def test_int8_asked_for_by_name_warns_where_its_check_does_not_hold(edgerec_home, tmp_path, monkeypatch, caplog,
                                                                   rendered, here_vnni):
    """precision="int8" runs what was asked for; on a CPU without VNNI, an int8 checked only with VNNI (its second
    reading missed) says so in a warning. The "int8" here is the fp32 IR relabelled: the choice is what is tested."""
    import logging

    from edgerec import create_model

    from conftest import install_relabelled_int8, linked_home

    root = linked_home(edgerec_home, tmp_path, monkeypatch)
    install_relabelled_int8(root)
    (root / "int8" / "quantization_report.json").write_text(json.dumps({
        "forced": False, "int8_vnni": True, "config": {"overflow_fix": "first_layer"},
        "without_vnni": {"checked": True, "within_bound": False, "drop": {"acc": 0.05, "norm_edit_dis": 0.02}}}))
    monkeypatch.setattr(cpu, "int8_vnni", lambda: here_vnni)
    with caplog.at_level(logging.WARNING, logger="edgerec.api"):
        int8 = create_model(V4, precision="int8", progress=False)
    assert int8.precision == "int8"
    assert ("but not without it" in caplog.text) is (not here_vnni)
    assert int8.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]
