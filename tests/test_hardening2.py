"""Issue 15, round two: camera open deadline, per-input save errors, broken ONNX files, full disks, plain-output
escaping, closed pipes and Ctrl-C, NPU advice (one test per class)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.errors import DeviceError, ExportError, ModelError

from conftest import ROOT, V4

PY = [sys.executable, "-m", "edgerec.cli"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _ctrl_c_reaches_it() -> None:
    """Popen's preexec_fn for a child the test sends Ctrl-C: a shell starts background jobs with SIGINT ignored
    and Python keeps it ignored, so a suite run as `make test &` would otherwise test nothing about Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture()
def lines(rendered, tmp_path) -> Path:
    """A folder of rendered lines (enough that a run is still going when the test acts on it)."""
    folder = tmp_path / "lines"
    folder.mkdir()
    for i in range(30):
        cv2.imwrite(str(folder / f"l{i:03d}.png"), rendered[i % 4][1])
    return folder


# ------------------------------------------------------------------------------------------ camera: open deadline


def test_camera_source_that_blocks_on_open_times_out_naming_it(tmp_path, monkeypatch):
    import edgerec.camera.reader as cam

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: none will
    monkeypatch.setattr(cam, "OPEN_TIMEOUT_S", 1.0)
    t0 = time.monotonic()
    res = CliRunner().invoke(main, ["camera", "--source", str(fifo)])
    assert time.monotonic() - t0 < 20
    assert res.exit_code == 1
    assert f"{fifo}: did not open within 1 s" in res.stderr and "Traceback" not in res.output
    # the open we gave up on must not keep OpenCV's video lock: later captures and writers of the process work
    from edgerec.utils.deadline import call_within

    writer = call_within(lambda: cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5,
                                                 (32, 16)), 15)
    writer.release()


def test_camera_open_deadline_releases_a_late_capture_and_passes_errors():
    from edgerec.utils.deadline import call_within

    released = threading.Event()

    class Late:
        def release(self):
            released.set()

    with pytest.raises(TimeoutError):
        call_within(lambda: (time.sleep(0.5), Late())[1], 0.1, discard=lambda c: c.release())
    assert released.wait(5), "a capture that opened after the deadline was left open"
    with pytest.raises(ZeroDivisionError):
        call_within(lambda: 1 / 0, 5)
    assert call_within(lambda: 42, 5) == 42


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_camera_stops_on_sigterm_and_ctrl_c_while_a_source_is_opening(tmp_path, sig):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*PY, "camera", "--source", str(fifo)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_reaches_it)
    time.sleep(3)  # imports, then blocked opening the pipe (the deadline is 30 s)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("edgerec camera ignored the signal while opening a named pipe")
    assert proc.returncode == 0, err
    assert f"stopped while opening {fifo}" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ predict: lost data


def test_one_result_that_cannot_be_saved_fails_only_that_input(v4, lines, tmp_path):
    save = tmp_path / "out"
    (save / "l001_res.json").mkdir(parents=True)  # a folder where l001's result must go
    res = CliRunner().invoke(main, ["predict", str(lines), "--model", V4, "--save-dir", str(save), "--quiet"])
    assert res.exit_code == 1
    errors = [x for x in res.stderr.splitlines() if x.startswith("edgerec: error:")]
    assert len(errors) == 1 and "l001.png: cannot save its result in" in errors[0], res.stderr
    assert len(res.stdout.splitlines()) == 30  # every input still printed
    saved = sorted(p.name for p in save.glob("*_res.json") if p.is_file())
    assert len(saved) == 29 and "l029_res.json" in saved  # the later inputs were processed and saved


# ------------------------------------------------------------------------------------------ ONNX files


@pytest.fixture()
def random_onnx(tmp_path) -> Path:
    path = tmp_path / "broken" / "inference.onnx"
    path.parent.mkdir()
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (path.parent / "ppocr_keys.txt").write_text("a\nb\n")
    return path


def test_random_bytes_onnx_is_a_model_error_naming_it(random_onnx, tmp_path):
    from edgerec import create_model

    for model_dir in (random_onnx, random_onnx.parent):
        with pytest.raises(ModelError, match=f"{random_onnx}: not a readable ONNX model"):
            create_model(model_dir=model_dir, progress=False)
    runner = CliRunner()
    for args in (["predict", "x.png", "--model-dir", str(random_onnx)],
                 ["export", "--model-dir", str(random_onnx.parent), "--output", str(tmp_path / "ir")]):
        res = runner.invoke(main, args)
        assert res.exit_code == 1, res.output
        assert f"edgerec: error: {random_onnx}: not a readable ONNX model" in res.stderr
        assert "Traceback" not in res.output and "DecodeError:" not in res.output
    assert not (tmp_path / "ir").exists()


def _onnx_with_external(folder: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_external_data_outside_its_folder_is_refused(tmp_path):
    from edgerec.zoo.export import load_onnx

    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    with pytest.raises(ModelError, match="outside the model's folder"):
        load_onnx(_onnx_with_external(model_dir, "../secret.bin"))
    with pytest.raises(ModelError, match="outside the model's folder"):
        load_onnx(_onnx_with_external(model_dir, str(tmp_path / "secret.bin")))
    with pytest.raises(ModelError, match="which is missing"):
        load_onnx(_onnx_with_external(model_dir, "weights.bin"))
    (model_dir / "weights.bin").write_bytes(b"\0" * 2)
    with pytest.raises(ModelError, match="truncated"):
        load_onnx(_onnx_with_external(model_dir, "weights.bin"))
    (model_dir / "weights.bin").write_bytes(b"\0" * 4)
    assert load_onnx(_onnx_with_external(model_dir, "weights.bin")).graph.node
    res = CliRunner().invoke(main, ["export", "--model-dir", str(_onnx_with_external(model_dir, "../secret.bin")),
                                    "--output", str(tmp_path / "ir")])
    assert res.exit_code == 1 and "outside the model's folder" in res.stderr, res.output


# ------------------------------------------------------------------------------------------ full disk


@pytest.fixture()
def v4_source(v4):
    from edgerec.zoo.fetch import cached_source

    src = cached_source(V4)
    assert src is not None
    return src


def test_export_checks_free_space_before_writing(v4_source, tmp_path, monkeypatch):
    import shutil as sh

    from edgerec.zoo import export as ex

    class Usage:
        total, used, free = 10 << 30, 10 << 30, 1 << 20

    monkeypatch.setattr(sh, "disk_usage", lambda p: Usage)
    out = tmp_path / "disk" / "ir"
    with pytest.raises(ExportError, match=f"no space left on {tmp_path}: 1 MB free"):
        ex.export(v4_source, out)
    assert not (tmp_path / "disk").exists() or not any((tmp_path / "disk").iterdir())


@pytest.mark.parametrize("failure", ["enospc", "iostream", "eio"])
def test_a_full_disk_during_export_says_so_and_leaves_nothing(v4_source, tmp_path, monkeypatch, failure):
    import openvino as ov

    from edgerec.zoo import export as ex

    def save_model(model, path, **kw):
        Path(path).write_bytes(b"<?xml half")  # half-written, then the disk is full
        if failure in ("enospc", "eio"):
            raise OSError(errno.ENOSPC if failure == "enospc" else errno.EIO, os.strerror(errno.EIO))
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp: basic_ios::clear: iostream error")

    monkeypatch.setattr(ov, "save_model", save_model)
    parent = tmp_path / "target"
    parent.mkdir()
    want = f"{parent / 'ir'}: cannot write the IR there" if failure == "eio" else f"no space left on {parent}"
    with pytest.raises(ExportError, match=want):
        ex.export(v4_source, parent / "ir")
    assert list(parent.iterdir()) == []  # no half-written IR, no temporary folder


# ------------------------------------------------------------------------------------------ plain output


def test_plain_output_escapes_control_characters_in_names(v4, rendered, tmp_path):
    from edgerec.commands.shell import plain

    assert plain("a\nb\tc\rd\x1b[2Je\u2028f") == "a\\nb\\tc\\rd\\x1b[2Je\\u2028f"
    assert plain("ordinary name é 中.png") == "ordinary name é 中.png"
    name = tmp_path / "fake.png\tFORGED\t1.0000\nevil.png"
    cv2.imwrite(str(tmp_path / "x.png"), rendered[0][1])
    os.replace(tmp_path / "x.png", name)
    res = CliRunner().invoke(main, ["predict", str(name), "--model", V4, "--quiet"])
    assert res.exit_code == 0, res.output
    (line,) = res.stdout.splitlines()
    assert line.split("\t")[0] == str(name).replace("\t", "\\t").replace("\n", "\\n")
    assert line.split("\t")[1] == "Hello World"
    res = CliRunner().invoke(main, ["predict", str(name), "--model", V4, "--quiet", "--json"])
    assert json.loads(res.stdout)["input_path"] == str(name)  # JSON keeps the exact name


# ------------------------------------------------------------------------------------------ pipes and Ctrl-C


def test_predict_into_a_closed_pipe_exits_quietly(v4, lines):
    # 1800 lines (> 64 KB, more than a pipe holds): the writer is still writing when the reader goes away
    proc = subprocess.Popen([*PY, "predict", *[str(lines)] * 60, "--model", V4, "--quiet"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()  # `| head -1`: one line, then the reader goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == "", err  # no "cannot write results to None: [Errno 32] Broken pipe", no traceback


def test_ctrl_c_during_predict_exits_130_with_one_line(v4, lines):
    proc = subprocess.Popen([*PY, "predict", *[str(lines)] * 60, "--model", V4, "--quiet"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_ctrl_c_reaches_it)
    assert proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 130, err
    assert err.strip() == "edgerec: interrupted", err


# ------------------------------------------------------------------------------------------ devices


def test_npu_gets_no_intel_gpu_driver_advice(monkeypatch):
    from edgerec.engines import openvino as ovx

    class Core:
        available_devices = ["CPU"]

    monkeypatch.setattr(ovx, "get_core", lambda: Core())
    with pytest.raises(DeviceError) as info:
        ovx.resolve_device("NPU")
    assert "does not support the NPU" in str(info.value)
    assert "driver" not in str(info.value) and "opencl" not in str(info.value).lower()
    with pytest.raises(DeviceError, match="driver"):  # an Intel GPU still gets its advice
        ovx.resolve_device("GPU.1")


# ------------------------------------------------------------------------------------------ decoder warnings


def _noisy_images(folder: Path) -> list[Path]:
    """Images that decode fine but make libpng / libjpeg print a warning with their default handlers."""
    import struct
    import zlib

    data = cv2.imencode(".png", np.full((20, 60, 3), 255, np.uint8))[1].tobytes()
    body = b"bad\x00\x00" + zlib.compress(b"\x00" * 132)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    png = folder / "iccp.png"
    png.write_bytes(data[:33] + chunk + data[33:])  # libpng: "iCCP: too short", the pixels are fine
    jpeg = cv2.imencode(".jpg", np.full((20, 60, 3), 200, np.uint8))[1].tobytes()
    jpg = folder / "extraneous.jpg"
    jpg.write_bytes(jpeg[:-2] + b"\x00\x00\x00" + jpeg[-2:])  # "Corrupt JPEG data: 3 extraneous bytes"
    return [png, jpg]


def test_decoder_warnings_do_not_reach_stderr_for_an_image_that_decodes(tmp_path):
    paths = _noisy_images(tmp_path)
    code = ("import sys; from edgerec.io.inputs import load_image\n"
            "for p in sys.argv[1:]: print(load_image(p).shape)")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split("\n")[:2] == ["(20, 60, 3)", "(20, 60, 3)"]
    assert proc.stderr == ""


def test_decoder_warnings_are_logged_under_the_input_name(tmp_path, caplog):
    import logging

    from edgerec.io.inputs import load_image

    png, jpg = _noisy_images(tmp_path)
    with caplog.at_level(logging.INFO, logger="edgerec.io"):
        assert load_image(str(png)).shape == (20, 60, 3)
        assert load_image(str(jpg)).shape == (20, 60, 3)
    messages = [r.getMessage() for r in caplog.records if r.name == "edgerec.io"]
    assert any(str(png) in m and "iCCP" in m for m in messages), messages
    assert any(str(jpg) in m and "extraneous" in m for m in messages), messages


def test_other_output_on_fd2_during_a_decode_is_passed_on(tmp_path):
    code = ("import os, sys; from edgerec.io.decoder_log import quiet_decode\n"
            "print(quiet_decode(lambda: os.write(2, b'libpng warning: x\\nsomething else\\n'), 'in'))")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "something else\n"
