"""bf16 compute on CPUs that have it natively (issue 12 section 2) and a quiet ``edgerec quantize`` (section 6).
The min_width opt-in (section 5) is in test_input_widths.py."""

from __future__ import annotations

import logging

import cv2
import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.errors import DeviceError, ModelError
from edgerec.utils import cpu

from conftest import V4, install_relabelled_int8, linked_home

NATIVE = cpu.has_native_bf16()
if not NATIVE:
    print(f"test_bf16: this CPU ({cpu.isa_summary()}) has no native bf16: the bf16 runs are skipped")
needs_bf16 = pytest.mark.skipif(not NATIVE, reason=f"no native bf16 on this CPU ({cpu.isa_summary()})")


@pytest.fixture()
def uncapped(monkeypatch):
    """No oneDNN ISA cap in the environment: a cap (set to see a CPU without VNNI) is refused with its own
    message, before the simulated CPU is asked."""
    for var in cpu.ISA_CAP_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def no_bf16(monkeypatch, uncapped):
    """This CPU as one without native bf16, through the one detection function."""
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: False)


# --- detection -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, caps, want", [
    ({"avx2", "avx512_bf16"}, ("FP32", "BF16", "INT8"), True),
    ({"avx2", "amx_bf16"}, ("FP32", "BF16"), True),
    ({"avx2", "avx512_vnni"}, ("FP32", "BF16", "INT8"), False),  # OpenVINO would emulate it
    ({"avx2", "avx512_bf16"}, ("FP32", "INT8"), False),          # a plugin without the kernels
    ({"avx512_bf16"}, (), False),                                # OpenVINO cannot say
])
def test_native_bf16_needs_the_flag_and_openvino_to_agree(monkeypatch, uncapped, flags, caps, want):
    monkeypatch.setattr(cpu, "_proc_cpuinfo", lambda: ("Test CPU", frozenset(flags)))
    monkeypatch.setattr(cpu, "_openvino_cpu_capabilities", lambda: caps)
    assert cpu.has_native_bf16() is want


# --- refusal ---------------------------------------------------------------------------------------------------

def test_bf16_is_refused_on_a_cpu_without_it(no_bf16, tmp_path, monkeypatch):
    from edgerec import create_model

    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path))  # refused before any fetch: an empty home stays empty
    name = cpu.cpu_info()["model"]
    with pytest.raises(DeviceError, match="no native bf16") as err:
        create_model(V4, precision="bf16", progress=False)
    assert name in str(err.value) and "fp32" in str(err.value) and "int8" in str(err.value)
    assert not (tmp_path / "models").exists()


def test_bf16_is_refused_off_the_cpu():
    from edgerec import create_model

    with pytest.raises(DeviceError, match="CPU only.*'AUTO'"):
        create_model(V4, precision="bf16", device="AUTO", progress=False)
    with pytest.raises(DeviceError, match="CPU only.*'GPU'"):
        cpu.require_native_bf16("GPU")


def test_the_engine_refuses_a_bf16_hint_without_native_bf16(v4, no_bf16):
    from edgerec.engines.openvino import OpenVINOEngine

    with pytest.raises(DeviceError, match="no native bf16"):
        OpenVINOEngine(v4.model_path, "cpu", infer_precision="bf16")
    with pytest.raises(DeviceError, match="no native bf16"):
        OpenVINOEngine(v4.model_path, "cpu", precision="bf16")


@pytest.mark.parametrize("engine", ["onnxruntime", "paddle"])
def test_other_engines_refuse_bf16(engine):
    from edgerec import create_model
    from edgerec.engines import registry

    assert "bf16" not in registry.get(engine).precisions
    assert "bf16" in registry.get("openvino").precisions
    with pytest.raises(ModelError, match=f"the {engine} engine runs fp32 only"):
        create_model(V4, precision="bf16", engine=engine, progress=False)


def test_resolve_maps_bf16_to_the_fp32_ir(v4):
    from edgerec.zoo import home as homes
    from edgerec.zoo.resolve import resolve_model

    assert homes.ir_precision("bf16") == "fp32" and "bf16" not in homes.PRECISIONS
    resolved = resolve_model(V4, precision="bf16", progress=False)
    assert resolved.path == v4.model_path and resolved.precision == "fp32"
    with pytest.raises(ModelError, match="runs as it is"):
        resolve_model(V4, precision="bf16", source_format="onnx")


def test_cli_refusal_is_one_line(no_bf16, rendered, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[0][1])
    res = CliRunner().invoke(main, ["predict", str(good), "--precision", "bf16", "--quiet"])
    assert res.exit_code == 1 and "no native bf16" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# --- on a CPU with native bf16 ------------------------------------------------------------------------------

def test_fp32_stays_f32(v4):
    assert v4.properties()["precision"] == "f32" and v4.precision == "fp32"
    assert "f32 precision hint" in v4.config_summary


@needs_bf16
def test_bf16_agrees_with_fp32_and_reads_back_bf16(v4, rendered):
    from edgerec import create_model

    bf16 = create_model(V4, precision="bf16", progress=False)
    props = bf16.properties()
    assert props["precision"] == "bf16" and props["model_precision"] == "fp32"  # what the plugin runs
    assert bf16.precision == "bf16" and f"{V4} bf16:" in bf16.config_summary
    assert "bf16 precision hint" in bf16.config_summary
    assert bf16.model_path == v4.model_path  # the fp32 IR: no bf16 IR on disk
    imgs = [img for _, img in rendered]
    got = [t for t, _ in bf16.recognize_batch(imgs)]
    want = [t for t, _ in v4.recognize_batch(imgs)]
    same = sum(a == b for a, b in zip(got, want))
    assert same >= len(imgs) - 1, list(zip(got, want))  # bf16 rounds; a clear rendered line keeps its text
    assert sum(g.strip() == t for g, (t, _) in zip(got, rendered)) >= len(imgs) - 1
    # harder lines (random characters of the model's charset, seeded): bf16 keeps fp32's text on the large
    # majority (55 of 60 when written; a compute hint that did nothing would give 60, so the read-back above
    # is what says bf16 ran)
    from edgerec.quant.calibration import render_lines

    lines = [img for img, _ in render_lines(v4.info.classes, 60, seed=11)]
    got = [t for t, _ in bf16.recognize_batch(lines)]
    want = [t for t, _ in v4.recognize_batch(lines)]
    assert sum(a == b for a, b in zip(got, want)) >= 0.8 * len(lines)


@needs_bf16
def test_use_hpip_picks_bf16_without_int8(v4, tmp_path, monkeypatch, edgerec_home):
    from edgerec import create_model
    from edgerec.zoo import home as homes

    real = edgerec_home / "models" / V4
    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path))  # a home with no int8 model, sharing the fp32 IR
    root = homes.model_root(V4)
    root.mkdir(parents=True)
    (root / "sources").symlink_to(real / "sources")
    (root / "fp32").symlink_to(real / "fp32")
    hpip = create_model(V4, use_hpip=True, progress=False)
    assert hpip.precision == "bf16" and hpip.properties()["precision"] == "bf16"
    assert "no int8 model installed" in hpip.config_summary and "computes bf16 natively" in hpip.config_summary
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: False)
    plain = create_model(V4, use_hpip=True, progress=False)
    assert plain.precision == "fp32" and plain.properties()["precision"] == "f32"


@needs_bf16
def test_cli_predict_bf16(v4, rendered, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[1][1])
    res = CliRunner().invoke(main, ["predict", str(good), "--precision", "bf16", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().split("\t")[1].strip() == rendered[1][0]


@pytest.mark.parametrize("flag", ["--use-hpip", "--use_hpip"])
def test_cli_predict_use_hpip_says_what_it_chose(v4, rendered, tmp_path, monkeypatch, edgerec_home, flag):
    """predict --use-hpip (PaddleX's flag, both spellings) runs create_model's choice and names it on stderr;
    stdout keeps the result lines; --precision still wins."""
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[1][1])
    linked_home(edgerec_home, tmp_path / "home", monkeypatch)  # fp32 only: no int8 to choose
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: False)  # not ISA-dependent: fp32 is the choice
    res = CliRunner().invoke(main, ["predict", str(good), flag])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().split("\t")[1] == rendered[1][0]
    assert f"{V4} fp32" in res.stderr and "use_hpip: no int8 model installed" in res.stderr
    kept = CliRunner().invoke(main, ["predict", str(good), flag, "--precision", "fp32"])
    assert kept.exit_code == 0 and "precision fp32 was given, so use_hpip keeps it" in kept.stderr
    quiet = CliRunner().invoke(main, ["predict", str(good), flag, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == res.stdout


# --- quiet quantize ------------------------------------------------------------------------------------------

def test_quantize_hides_nncf_info_unless_verbose(v4, rendered, tmp_path, monkeypatch, caplog):
    """NNCF logs INFO lines to stdout; they show only when edgerec logs INFO (-v). nncf.quantize is stood in
    for (returns the fp32 model, noting what NNCF's logger would show), so this is about the logging, in seconds."""
    nncf = pytest.importorskip("nncf")
    from nncf.common.logging import nncf_logger

    from edgerec.quant.quantize import EvalSet, QuantizationConfig, quantize_ir

    shown: list[tuple[bool, bool]] = []

    def fake_quantize(model, dataset, **kwargs):
        # a line is printed when the logger and its stdout handler both let it through
        def prints(level: int) -> bool:
            return nncf_logger.isEnabledFor(level) and all(level >= h.level for h in nncf_logger.handlers)
        shown.append((prints(logging.INFO), prints(logging.WARNING)))
        return model

    monkeypatch.setattr(nncf, "quantize", fake_quantize)
    eval_set = EvalSet([img for _, img in rendered[:2]], [t for t, _ in rendered[:2]], "two rendered lines")
    cfg = QuantizationConfig(subset_size=2, search="none", check_without_vnni=False)
    caplog.set_level(logging.WARNING, logger="edgerec")
    # after caplog.set_level: it sets its own handler's level, which NNCF's logger holds too when NNCF was first
    # imported under a capturing test (so this test failed when it ran after test_quantize.py)
    before = (nncf_logger.level, [h.level for h in nncf_logger.handlers])
    quantize_ir(v4.model_path, [rendered[0][1]], eval_set, tmp_path / "a", config=cfg)
    assert shown[-1] == (False, True)  # INFO hidden, warnings still shown
    assert (nncf_logger.level, [h.level for h in nncf_logger.handlers]) == before  # put back as it was
    caplog.set_level(logging.INFO, logger="edgerec")  # what `edgerec -v` sets
    quantize_ir(v4.model_path, [rendered[0][1]], eval_set, tmp_path / "b", config=cfg)
    assert shown[-1] == (True, True)


def test_quantize_cli_prints_no_nncf_info_lines(v4, tmp_path):
    """The real command, in its own process (NNCF's handler writes to the stdout it found at import): a tiny
    run (~20 s) prints NNCF's progress bars and edgerec's summary, and none of NNCF's INFO lines."""
    import os
    import subprocess
    import sys

    pytest.importorskip("nncf")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "int8"
    res = subprocess.run([sys.executable, "-c", "from edgerec.cli import main; main()", "quantize", V4,
                          "--subset-size", "8", "--eval-size", "8", "--max-drop", "1", "--no-accuracy-control",
                          "--output", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "INFO:nncf" not in res.stdout + res.stderr  # with -v these show (3 lines for v4)
    assert "Statistics collection" in res.stdout and "same text" in res.stdout
    assert "95 % interval over the 8 eval lines" in res.stdout  # how much the guard's eval set can resolve
    vnni = cpu.int8_vnni()
    said = "" if vnni is None else ": with VNNI" if vnni else ": without VNNI"
    assert f"int8 read on {cpu.isa_summary()}{said}" in res.stdout
    assert (out / "model.xml").is_file()


@pytest.mark.parametrize("forced", [False, True])
def test_use_hpip_takes_int8_only_when_it_held_its_bound(v4, tmp_path, monkeypatch, edgerec_home, forced):
    """int8 is use_hpip's first choice, unless its quantization report says --force installed it past the bound."""
    import json

    from edgerec import api, hpip

    int8 = tmp_path / "int8" / "model.xml"
    int8.parent.mkdir()
    (int8.parent / "quantization_report.json").write_text(json.dumps({"forced": forced, "installed": True}))
    monkeypatch.setattr(hpip, "installed_ir", lambda name, model_dir, precision: int8 if precision == "int8" else None)
    kind = api.registry.pick(None, "cpu")  # OpenVINO, the CPU default
    precision, _, why = hpip.hpip_choice(kind, api.parse_device("cpu"), V4, None, "fp32")
    if forced:
        assert precision != "int8" and "forced past its accuracy bound" in why
    else:
        assert precision == "int8" and "within its accuracy bound" in why


@pytest.mark.parametrize("guard_vnni,fix,here_vnni,picks_int8", [
    (True, "first_layer", True, True), (True, "first_layer", False, False), (True, "enable", False, True),
    (False, "first_layer", True, True), (None, None, False, True)])
def test_use_hpip_skips_int8_checked_with_vnni_on_a_cpu_without(tmp_path, monkeypatch, guard_vnni, fix, here_vnni,
                                                                picks_int8):
    """Without VNNI int8 sums saturate, so a guard run with VNNI does not hold on a CPU without it, unless the
    overflow fix was on for every layer (nothing can saturate then). A report from before the CPU was recorded
    (no int8_vnni) is taken at its word."""
    import json

    from edgerec import api, hpip

    int8 = tmp_path / "int8" / "model.xml"
    int8.parent.mkdir()
    report = {"forced": False} | ({} if guard_vnni is None else {"int8_vnni": guard_vnni,
                                                                 "config": {"overflow_fix": fix}})
    (int8.parent / "quantization_report.json").write_text(json.dumps(report))
    monkeypatch.setattr(hpip, "installed_ir", lambda name, model_dir, precision: int8 if precision == "int8" else None)
    monkeypatch.setattr(cpu, "int8_vnni", lambda: here_vnni)
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: False)
    kind = api.registry.pick(None, "cpu")
    precision, _, why = hpip.hpip_choice(kind, api.parse_device("cpu"), V4, None, "fp32")
    assert (precision == "int8") is picks_int8
    if not picks_int8:
        assert precision == "fp32" and "this one has none" in why and "--overflow-fix enable" in why


@pytest.mark.parametrize("content", [
    '{"forced": true, "installed"',  # cut short
    '[1, 2]',
    '{"forced": false, "int8_vnni": true, "without_vnni": "checked"}',
    '{"forced": false, "int8_vnni": true, "config": "mixed"}',
    '{"forced": false, "int8_vnni": true, "without_vnni": {"checked": true, "within_bound": false, '
    '"drop": {"acc": null}}}',
])
def test_a_quantization_report_that_cannot_be_read_is_no_warrant(tmp_path, monkeypatch, content):
    """use_hpip does not take an int8 whose report is broken (it cannot tell whether int8 held its bound): never a
    TypeError from the report."""
    from edgerec import api, hpip

    int8 = tmp_path / "int8" / "model.xml"
    int8.parent.mkdir()
    (int8.parent / "quantization_report.json").write_text(content)
    monkeypatch.setattr(hpip, "installed_ir", lambda name, model_dir, precision: int8 if precision == "int8" else None)
    monkeypatch.setattr(cpu, "int8_vnni", lambda: False)  # the branch that formats the without-VNNI drop
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: False)
    kind = api.registry.pick(None, "cpu")
    precision, _, why = hpip.hpip_choice(kind, api.parse_device("cpu"), V4, None, "fp32")
    assert precision == "fp32" and "quantization_report.json" in why and "is unknown" in why
    assert "unreadable" in hpip.int8_report(int8) and hpip.other_arithmetic({}, api.parse_device("cpu")) == ""


@pytest.mark.parametrize("env,cap,vnni", [
    ({}, None, True),
    ({"ONEDNN_MAX_CPU_ISA": "avx512_core"}, "AVX512_CORE", False),
    ({"DNNL_MAX_CPU_ISA": "AVX2"}, "AVX2", False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, "AVX512_CORE_VNNI", True),
    ({"ONEDNN_MAX_CPU_ISA": "default"}, None, True),
    ({"ONEDNN_MAX_CPU_ISA": "DEFAULT", "DNNL_MAX_CPU_ISA": "AVX2"}, None, True),  # the first one set decides
    ({"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"}, "AVX2_VNNI", False),  # 256-bit VNNI only: this CPU has avx512_vnni
])
def test_onednn_isa_cap_decides_vnni_and_bf16(monkeypatch, env, cap, vnni):
    """ONEDNN_MAX_CPU_ISA keeps OpenVINO's kernels below an ISA (how a VNNI machine runs int8 as one without it);
    OpenVINO still lists BF16 then, so the bf16 decision must read the cap itself."""
    for var in cpu.ISA_CAP_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(cpu, "_proc_cpuinfo", lambda: ("Test CPU", frozenset({"avx2", "avx512_vnni", "avx512_bf16"})))
    monkeypatch.setattr(cpu, "_openvino_cpu_capabilities", lambda: ("BF16", "FP32", "INT8"))
    assert cpu.isa_cap() == cap
    assert cpu.has_int8_vnni() is vnni
    assert cpu.has_native_bf16() is (cap is None)
    assert cpu.cpu_info()["int8_vnni"] is vnni and (f"capped at {cap}" in cpu.isa_summary()) is (cap is not None)
    if cap is not None:
        with pytest.raises(DeviceError, match=f"capped at {cap}"):
            cpu.require_native_bf16("CPU")


def test_no_vnni_flag_means_no_vnni(monkeypatch):
    for var in cpu.ISA_CAP_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cpu, "_proc_cpuinfo", lambda: ("Old EPYC", frozenset({"avx2", "fma"})))
    assert not cpu.has_int8_vnni()
    monkeypatch.setattr(cpu, "_proc_cpuinfo", lambda: ("Alder Lake", frozenset({"avx2", "avx_vnni"})))
    assert cpu.has_int8_vnni()


def test_use_hpip_keeps_a_precision_given(v4, monkeypatch):
    """An explicit precision wins over use_hpip's choice, as explicit engine options do."""
    from edgerec import create_model

    monkeypatch.setattr(cpu, "has_native_bf16", lambda: True)  # where bf16 would be chosen
    model = create_model(V4, precision="fp32", use_hpip=True, progress=False)
    assert model.precision == "fp32" and "precision fp32 was given, so use_hpip keeps it" in model.config_summary


def test_an_int8_asked_for_by_name_runs_with_a_broken_report_and_a_warning(v4, edgerec_home, tmp_path, monkeypatch,
                                                                           caplog, rendered):
    from edgerec import create_model

    root = linked_home(edgerec_home, tmp_path, monkeypatch)
    install_relabelled_int8(root)
    (root / "int8" / "quantization_report.json").write_text('{"int8_vnni": true, "without_vnni": "checked"}')
    monkeypatch.setattr(cpu, "int8_vnni", lambda: False)
    with caplog.at_level(logging.WARNING, logger="edgerec.api"):
        model = create_model(V4, precision="int8", progress=False)
    assert model.recognize(rendered[0][1])["rec_text"] == rendered[0][0]
    assert "is not a quantization report (without_vnni malformed); its accuracy check is unknown" in caplog.text


def test_an_int8_named_with_use_hpip_is_still_checked(v4, edgerec_home, tmp_path, monkeypatch, caplog):
    """use_hpip keeps an explicit precision="int8", and the int8's report is read as for any int8 asked for."""
    from edgerec import create_model

    root = linked_home(edgerec_home, tmp_path, monkeypatch)
    install_relabelled_int8(root)
    (root / "int8" / "quantization_report.json").write_text('{"forced": false, "int8_vnni": true}')
    monkeypatch.setattr(cpu, "int8_vnni", lambda: False)
    with caplog.at_level(logging.WARNING, logger="edgerec.api"):
        model = create_model(V4, precision="int8", use_hpip=True, progress=False)
    assert model.precision == "int8" and "this one has none" in caplog.text


def test_cli_camera_passes_use_hpip_to_create_model(monkeypatch, tmp_path):
    """camera --use-hpip reaches create_model (the session loads the model from these options)."""
    import edgerec.camera as camera_pkg

    seen = {}

    def fake_run(source, boxes, **kwargs):
        seen.update(kwargs["model_options"])
        return 0

    monkeypatch.setattr(camera_pkg, "run", fake_run)
    res = CliRunner().invoke(main, ["camera", "--source", str(tmp_path / "v.mp4"), "--use-hpip"])
    assert res.exit_code == 0, res.output
    assert seen["use_hpip"] is True and seen["precision"] is None and seen["width_bucket"] is None
    res = CliRunner().invoke(main, ["camera", "--source", str(tmp_path / "v.mp4"), "--width-bucket", "0"])
    assert res.exit_code == 0, res.output
    assert seen["use_hpip"] is False and seen["width_bucket"] == 0


def test_cli_width_bucket_zero_reaches_create_model_and_ray_as_zero(monkeypatch, tmp_path):
    """--width-bucket 0 must arrive as 0 (exact widths, asked for), not None, which use_hpip would bucket."""
    import edgerec.api as api
    import edgerec.integrations.ray as ray_mod
    from edgerec.errors import EdgeRecError

    seen = {}

    def fake_create_model(*args, **kwargs):
        seen.update(kwargs)
        raise EdgeRecError("stopped here")

    monkeypatch.setattr(api, "create_model", fake_create_model)
    res = CliRunner().invoke(main, ["predict", "x.png", "--use-hpip", "--width-bucket", "0"])
    assert res.exit_code == 1 and "stopped here" in res.output
    assert seen["use_hpip"] is True and seen["width_bucket"] == 0
    monkeypatch.setattr(ray_mod, "recognize_folder", lambda inputs, output, **kw: seen.update(kw) or (0, 0))
    res = CliRunner().invoke(main, ["predict", str(tmp_path), "--ray", "--output", str(tmp_path / "out"),
                                    "--use_hpip", "--width-bucket", "0"])
    assert res.exit_code == 0, res.output
    assert seen["use_hpip"] is True and seen["width_bucket"] == 0
