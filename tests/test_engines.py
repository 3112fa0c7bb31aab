"""Engines and devices: Paddle Inference and ONNX Runtime agree with OpenVINO; device strings; threads; use_hpip."""

from __future__ import annotations

import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgerec import create_model
from edgerec.engines import registry
from edgerec.engines.base import EngineOptionError, parse_device
from edgerec.engines.registry import default_engine
from edgerec.errors import DeviceError

from conftest import V4, assert_same_results


def texts(model, images):
    return [r["rec_text"] for r in model.predict(images)]


@pytest.fixture(scope="module")
def crops(rendered):
    """Rendered EN + ZH lines plus lines of many widths and heights, as a kiosk's crops would be."""
    from edgerec.io.fonts import render_line

    rng = np.random.default_rng(5)
    words = ["Gate", "12", "closed", "出口", "Total", "$3.50", "北京", "Ticket", "No.", "0042", "欢迎", "A-7"]
    extra = [render_line(" ".join(rng.choice(words, size=int(rng.integers(1, 7)))), height=int(rng.integers(28, 72)),
                         font_kind="cjk") for _ in range(16)]
    return [img for _, img in rendered] + extra


@pytest.fixture(scope="module")
def paddle_cpu(edgerec_home):
    pytest.importorskip("paddle")
    return create_model(V4, engine="paddle", device="cpu", progress=False)


def test_paddle_engine_on_cpu_matches_openvino(v4, paddle_cpu, rendered, crops):
    assert paddle_cpu.engine == "paddle" and paddle_cpu.device == "cpu"
    assert paddle_cpu.model_path.name == "paddle-wheel"  # the Paddle model itself, not the IR made from it
    assert [t.strip() for t in texts(paddle_cpu, [img for _, img in rendered])] == [t for t, _ in rendered]
    ov_res = list(v4.predict(crops))
    pd_res = list(paddle_cpu.predict(crops))
    assert [r["rec_text"] for r in pd_res] == [r["rec_text"] for r in ov_res]
    assert [r["rec_score"] for r in pd_res] == pytest.approx([r["rec_score"] for r in ov_res], abs=2e-3)


def test_onnxruntime_engine_matches_openvino(v4, rendered, crops):
    pytest.importorskip("onnxruntime")
    ort = create_model(V4, engine="onnxruntime", progress=False)
    assert ort.engine == "onnxruntime"
    assert [t.strip() for t in texts(ort, [img for _, img in rendered])] == [t for t, _ in rendered]
    assert texts(ort, crops) == texts(v4, crops)


@pytest.mark.parametrize("device, family, index, engine", [
    (None, "cpu", None, "openvino"),
    ("cpu", "cpu", None, "openvino"),
    ("CPU", "cpu", None, "openvino"),
    ("GPU", "intel-gpu", None, "openvino"),
    ("GPU.1", "intel-gpu", 1, "openvino"),
    ("AUTO", "auto", None, "openvino"),
    ("auto:GPU,CPU", "auto", None, "openvino"),
    ("NPU", "openvino", None, "openvino"),
    ("gpu", "nvidia", 0, "paddle"),
    ("gpu:3", "nvidia", 3, "paddle"),
])
def test_device_strings_resolve_as_documented(device, family, index, engine):
    spec = parse_device(device)
    assert (spec.family, spec.index) == (family, index)
    assert default_engine(device) == engine and registry.pick(None, device).name == engine


@pytest.mark.parametrize("device", ["gpu.0", "gpu:x", "Gpu", "gpu:", "cuda:0?", ""])
def test_malformed_device_strings(device):
    if device == "":
        assert parse_device(device).family == "cpu"  # empty means the default
        return
    with pytest.raises(DeviceError, match="device"):
        parse_device(device)


def _has_cuda() -> bool:
    try:
        import paddle

        return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    except ImportError:
        return False


def test_nvidia_gpu_without_cuda_says_what_to_install():
    if _has_cuda():
        pytest.skip("this machine has a CUDA paddlepaddle and a GPU")
    # ch_SVTRv2_rec is not fetchable here: the device check must answer before any fetch is tried
    for device in ("gpu", "gpu:0"):
        with pytest.raises(DeviceError, match=rf"device '{device}'.*paddlepaddle-gpu"):
            create_model("ch_SVTRv2_rec", device=device, progress=False, strict_device=True)


def test_nvidia_gpu_without_paddle_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "paddle", None)  # import paddle now raises ImportError
    monkeypatch.setitem(sys.modules, "paddle.inference", None)
    with pytest.raises(DeviceError, match=r"device 'gpu:1' \(NVIDIA GPU\).*not installed.*paddlepaddle-gpu"):
        create_model(V4, device="gpu:1", progress=False, strict_device=True)
    from edgerec.errors import EngineUnavailableError

    with pytest.raises(EngineUnavailableError, match="pip install"):
        create_model(V4, engine="paddle", device="cpu", progress=False)


def test_engine_device_mismatches_are_clear_errors():
    from edgerec.engines.openvino import get_core

    with pytest.raises(DeviceError, match="NVIDIA GPU in PaddleX's naming"):
        create_model(V4, device="gpu:0", engine="openvino", progress=False)
    with pytest.raises(DeviceError, match="'cpu' only"):
        create_model(V4, device="AUTO", engine="onnxruntime", progress=False)
    with pytest.raises(DeviceError, match="paddle engine runs on 'cpu' or 'gpu'"):
        create_model(V4, device="GPU", engine="paddle", progress=False)
    with pytest.raises(DeviceError, match="engine 'tensorflow'"):
        create_model(V4, engine="tensorflow", progress=False)
    if not any(d.startswith("GPU") for d in get_core().available_devices):
        with pytest.raises(DeviceError, match="'GPU.0' is not available to OpenVINO here.*libOpenCL"):
            create_model(V4, device="GPU.0", progress=False)


def test_precision_hint_is_f32_unless_fp16_is_asked_for(edgerec_home, rendered):
    cpu = create_model(V4, precision="fp16", warmup=False, progress=False)
    assert cpu.predictor.engine.config["INFERENCE_PRECISION_HINT"] == "f32"  # the opt-in is for Intel GPUs only
    auto = create_model(V4, device="AUTO", progress=False)
    assert auto.predictor.engine.config["INFERENCE_PRECISION_HINT"] == "f32"
    auto16 = create_model(V4, device="AUTO", precision="fp16", progress=False)
    assert auto16.predictor.engine.config["INFERENCE_PRECISION_HINT"] == "f16"
    assert "f16 precision hint" in auto16.config_summary
    assert auto16.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]


def test_shape_cache_bounds_kernels_without_changing_text(v4, crops):
    """The bounded shape cache evicts kernels of old widths; a line's text must not depend on what was evicted."""
    from edgerec.engines.openvino import DEFAULT_SHAPE_CACHE, KERNELS_PER_SHAPE

    assert v4.predictor.engine.config["CPU_RUNTIME_CACHE_CAPACITY"] == DEFAULT_SHAPE_CACHE * KERNELS_PER_SHAPE == 0
    widths = {v4.predictor.width_of(c) for c in crops}
    assert len(widths) > 4  # more widths than the tiny cache below holds, so it evicts
    tiny = create_model(V4, shape_cache=1, progress=False)
    assert tiny.predictor.engine.config["CPU_RUNTIME_CACHE_CAPACITY"] == KERNELS_PER_SHAPE
    ref = [(r["rec_text"], r["rec_score"]) for r in v4.predict(crops)]
    for _ in range(2):  # the second pass re-prepares every evicted width
        got = [(r["rec_text"], r["rec_score"]) for r in tiny.predict(crops)]
        assert_same_results(got, ref)
    with pytest.raises(ValueError, match="shape_cache"):
        create_model(V4, shape_cache=-1, progress=False)


def test_min_width_runs_a_static_width_copy_with_the_same_results(v4, crops, tmp_path):
    """Lines at the minimum width (most of them) run a copy compiled with that width static, so their kernels are
    never evicted; results are those of the dynamic-width model, at that width and at every other."""
    import openvino as ov

    from edgerec.engines.openvino import KERNELS_PER_SHAPE, STATIC_WIDTH_SHAPES, OpenVINOEngine

    eng = v4.predictor.engine
    assert eng.static_width == 320 and "width 320 compiled static" in v4.config_summary
    assert eng.static_config["CPU_RUNTIME_CACHE_CAPACITY"] == STATIC_WIDTH_SHAPES * KERNELS_PER_SHAPE
    calls = []
    real = eng._request
    eng._request = lambda static: calls.append(static) or real(static)
    try:
        ref = list(v4.predict(crops, batch_size=3))
    finally:
        del eng._request
    widths = [v4.predictor.width_of(c) for c in crops]
    assert True in calls and False in calls and 320 in widths and any(w != 320 for w in widths)
    dynamic = create_model(V4, progress=False, engine_options={"static_width": None})
    assert dynamic.predictor.engine.static_width is None and "static" not in dynamic.config_summary
    assert_same_results([(r["rec_text"], r["rec_score"]) for r in dynamic.predict(crops, batch_size=3)],
                        [(r["rec_text"], r["rec_score"]) for r in ref])
    other = create_model(V4, progress=False, min_width=160)  # the copy follows min_width
    assert other.predictor.engine.static_width == 160
    # an IR whose width is already static gets no copy (nothing to gain), and still runs
    model = ov.Core().read_model(str(v4.model_path))
    model.reshape({model.inputs[0].any_name: [1, 3, 48, 320]})
    ov.save_model(model, str(tmp_path / "static.xml"))
    fixed = OpenVINOEngine(tmp_path / "static.xml", "cpu", static_width=320)
    assert fixed.static_width is None and fixed.infer(np.zeros((1, 3, 48, 320), np.float32)).ndim == 3
    with pytest.raises(EngineOptionError, match="static_width"):
        create_model(V4, progress=False, engine_options={"static_width": 0})


def test_loaded_model_keeps_only_the_compiled_model_and_trims_the_heap(v4, crops, monkeypatch):
    """The source ov.Model is dropped after its metadata is read (its weights file is unmapped), and a call whose
    input shape differs from the request's last one asks for freed heap to go back (glibc's malloc_trim, rate-limited
    to TRIM_INTERVAL_S); a trim skipped for its interval stays pending for a later call."""
    import platform

    from edgerec.engines import openvino as ov_engine
    from edgerec.utils.memory import trim_heap, trim_pending

    assert not hasattr(v4.predictor.engine, "model")  # only the CompiledModel is kept
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert trim_heap() is True
        assert trim_heap(min_interval=3600) is False  # just trimmed: skipped, and left pending
        assert trim_pending() is True
        assert trim_heap() is True and trim_pending() is False
    calls = []
    monkeypatch.setattr(ov_engine, "trim_heap", lambda **kw: calls.append(kw["min_interval"]) or True)
    monkeypatch.setattr(ov_engine, "trim_pending", lambda: False)
    # two widths above the minimum: both run the dynamic-width request (the minimum has its own, static one)
    by_width = {v4.predictor.width_of(c): c for c in crops if v4.predictor.width_of(c) > 320}
    narrow, wide = by_width[min(by_width)], by_width[max(by_width)]
    assert v4.predictor.width_of(narrow) != v4.predictor.width_of(wide)
    want = [v4.recognize(img)["rec_text"] for img in (narrow, wide)]
    calls.clear()
    got = [v4.recognize(img)["rec_text"] for img in (narrow, narrow, narrow, wide, wide)]
    # narrow after wide, then wide after narrow: two shape changes, two (rate-limited) trims
    assert calls == [ov_engine.TRIM_INTERVAL_S] * 2
    monkeypatch.setattr(ov_engine, "trim_pending", lambda: True)  # one was skipped: the next call, same shape, trims
    calls.clear()
    assert v4.recognize(wide)["rec_text"] == want[1] and calls == [ov_engine.TRIM_INTERVAL_S]
    assert got == [want[0]] * 3 + [want[1]] * 2


def test_eight_threads_on_one_predictor_match_a_serial_run(v4, crops):
    serial = [(r["rec_text"], r["rec_score"]) for r in v4.predict(crops)]
    order = [np.random.default_rng(k).permutation(len(crops)) for k in range(8)]

    def work(k: int) -> list[tuple[str, float]]:
        got = {}
        for _ in range(2):
            for i in order[k]:
                res = v4.recognize(crops[i])
                got[i] = (res["rec_text"], res["rec_score"])
        return [got[i] for i in range(len(crops))]

    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(work, range(8)))
    for out in outs:
        assert out == serial  # bit-identical: each thread has its own InferRequest on the one CompiledModel


def test_paddle_engine_from_threads(paddle_cpu, crops):
    serial = texts(paddle_cpu, crops)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda k: texts(paddle_cpu, crops[k:] + crops[:k]), range(4)))
    for k, out in enumerate(outs):
        assert out == serial[k:] + serial[:k]


def test_warmup_is_optional_and_the_summary_says_what_was_loaded(v4, rendered):
    cold = create_model(V4, warmup=False, progress=False)
    assert cold.recognize(rendered[1][1])["rec_text"].strip() == rendered[1][0]
    assert cold.config_summary.startswith(f"{V4} fp32: openvino on CPU")
    assert "compiled-model cache on" in cold.config_summary and "use_hpip" not in cold.config_summary


def test_use_hpip_picks_int8_when_it_is_installed(edgerec_home, tmp_path, monkeypatch, caplog, rendered):
    from conftest import install_relabelled_int8, linked_home

    # a model home that shares the real sources and fp32 IR, then gets an "int8" model: the fp32 IR labelled int8
    # (selection is what is tested here; quantization itself is issue 3's)
    root = linked_home(edgerec_home, tmp_path, monkeypatch)
    without = create_model(V4, use_hpip=True, progress=False)
    from edgerec.utils.cpu import has_native_bf16

    assert without.precision == ("bf16" if has_native_bf16() else "fp32")  # bf16 where native: test_bf16
    assert "no int8 model installed" in without.config_summary

    install_relabelled_int8(root)
    with caplog.at_level(logging.INFO, logger="edgerec.api"):
        hpip = create_model(V4, use_hpip=True, progress=False)
    assert hpip.precision == "int8" and hpip.model_path == root / "int8" / "model.xml"
    assert hpip.config_summary.startswith(f"{V4} int8: openvino on CPU") and "use_hpip: int8" in hpip.config_summary
    # bucketed by use_hpip, and told that nothing says how this int8 (no report here) was checked
    assert hpip.predictor.width_bucket == 160
    assert "no readable quantization report, so how its accuracy was checked is unknown" in hpip.config_summary
    assert "use_hpip chose" in caplog.text and "int8" in caplog.text
    assert hpip.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]
    assert create_model(V4, progress=False).precision == "fp32"  # without use_hpip nothing changes


def test_compile_falls_back_to_no_cache_when_the_cache_fails(tmp_path, caplog):
    """A compile that fails with CACHE_DIR (a broken entry another process left) is retried without the cache."""
    from edgerec.engines.compile_cache import compile_cached as _compile

    class Core:
        def __init__(self, fail_without_cache=False):
            self.calls, self.fail_without_cache = [], fail_without_cache

        def compile_model(self, model, device, cfg):
            self.calls.append(dict(cfg))
            if "CACHE_DIR" in cfg or self.fail_without_cache:
                raise RuntimeError("Exception from core.cpp:117\nmore")
            return "compiled"

    core, cfg = Core(), {"PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(tmp_path / "cache")}
    with caplog.at_level(logging.WARNING, logger="edgerec.engines.compile_cache"):
        assert _compile(core, None, "CPU", cfg, tmp_path / "model.xml") == "compiled"
    assert [("CACHE_DIR" in c) for c in core.calls] == [True, False]
    assert "CACHE_DIR" not in cfg and "compiling without it" in caplog.text
    with pytest.raises(RuntimeError, match="core.cpp:117"):  # the engine turns this into a DeviceError
        _compile(Core(fail_without_cache=True), None, "CPU", {"CACHE_DIR": str(tmp_path / "c2")}, tmp_path / "m")


def test_the_compiled_model_cache_keeps_within_its_bound(tmp_path, monkeypatch):
    """Each new entry is followed by a prune: the least recently used entries go, the newest always stays."""
    import os

    from edgerec.engines.compile_cache import CACHE_MB_ENV, prune_cache
    from edgerec.engines.compile_cache import compile_cached as _compile

    cache = tmp_path / "cache"
    cache.mkdir()

    class Core:  # writes a 1 MB entry per compile, as OpenVINO does for a new model or config
        def __init__(self):
            self.n = 0

        def compile_model(self, model, device, cfg):
            self.n += 1
            (Path(cfg["CACHE_DIR"]) / f"{self.n}.blob").write_bytes(b"\0" * 2**20)
            (Path(cfg["CACHE_DIR"]) / f"{self.n}.blob").chmod(0o440)  # as OpenVINO writes them
            os.utime(Path(cfg["CACHE_DIR"]) / f"{self.n}.blob", (1000 + self.n, 1000 + self.n))
            return "compiled"

    monkeypatch.setenv(CACHE_MB_ENV, "2.5")
    core = Core()
    (cache / "notes.txt").write_text("not a cache entry: never removed", "utf-8")
    (cache / "0.blob").write_bytes(b"\0" * 2**20)  # at the root: an older edgerec's (never read) or another app's
    os.utime(cache / "0.blob", (999, 999))
    (cache / "other-app").mkdir()  # a cache_dir shared with another program: its files are not edgerec's
    (cache / "other-app" / "x.blob").write_bytes(b"\0" * 2**20)
    for hint in ("f32", "bf16", "f32", "bf16", "f32"):  # entries in two folders
        assert _compile(core, None, "CPU", {"CACHE_DIR": str(cache), "INFERENCE_PRECISION_HINT": hint},
                        tmp_path / "m") == "compiled"
    blobs = {p.name: p for p in cache.rglob("*.blob") if p.parent.name != "other-app" and p.parent != cache}
    assert sorted(blobs) == ["4.blob", "5.blob"] and blobs["4.blob"].parent != blobs["5.blob"].parent
    assert sorted(p.name for p in cache.iterdir()) == [".compile.lock", "0.blob", blobs["4.blob"].parent.name,
                                                       blobs["5.blob"].parent.name, "notes.txt",
                                                       "other-app"]  # none left empty; others' files all kept
    assert (cache / "other-app" / "x.blob").exists()
    from edgerec.utils.fs import current_umask

    want = 0o440 | (0o444 & ~current_umask())  # readable by a kiosk's other user where the umask allows
    assert all(p.stat().st_mode & 0o777 == want for p in blobs.values())
    assert (cache / "notes.txt").exists()
    os.utime(blobs["4.blob"], (5000, 1004))  # read again since: the older write now is the later use
    assert [p.name for p in prune_cache(cache, 2**20)] == ["5.blob"]
    assert prune_cache(cache, 0) == [] and prune_cache(cache, 1) == []  # 0: no bound; the newest always stays
    assert prune_cache(cache, 1, keep={blobs["4.blob"]}) == []  # just written: kept whatever its time
    from edgerec.engines.compile_cache import CACHE_MB, cache_limit_bytes

    for bad in ("lots", "inf", "nan", "1e400"):  # the default bound, with a warning; one compile, not two
        monkeypatch.setenv(CACHE_MB_ENV, bad)
        assert cache_limit_bytes() == CACHE_MB * 2**20
        n = core.n
        _compile(core, None, "CPU", {"CACHE_DIR": str(cache)}, tmp_path / "m")
        assert core.n == n + 1


def test_each_compile_configuration_has_its_own_cache_folder(monkeypatch):
    """OpenVINO's CPU plugin keys a cache entry on the model and the CPU's name only, so f32 and bf16 compiles of
    one IR shared an entry (on an AMX Xeon, bf16 loaded from an f32 entry read NaN): edgerec keys the folder."""
    from edgerec.engines.compile_cache import entry_folder
    from edgerec.utils import cpu

    for var in cpu.ISA_CAP_VARS:
        monkeypatch.delenv(var, raising=False)
    root = Path("/c")
    f32 = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    first = entry_folder(root, "CPU", f32)
    assert first.parent == root and first.name.startswith("cpu-f32-")
    assert entry_folder(root, "CPU", dict(reversed(f32.items()))) == first  # the order of the properties: same
    assert entry_folder(root, "CPU", {**f32, "CACHE_DIR": "/elsewhere"}) == first
    # how it is run is applied when an entry is loaded: a kiosk prepared with other threads finds its entries
    assert entry_folder(root, "CPU", {**f32, "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": 1,
                                      "CPU_RUNTIME_CACHE_CAPACITY": 0}) == first
    others = [entry_folder(root, "CPU", {**f32, "INFERENCE_PRECISION_HINT": "bf16"}),
              entry_folder(root, "CPU", {**f32, "EXECUTION_MODE_HINT": "ACCURACY"}),
              entry_folder(root, "GPU.0", f32)]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")  # quantize's reading as a CPU without VNNI
    others.append(entry_folder(root, "CPU", f32))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"model": "Intel(R) Xeon(R) Processor",
                                                  "isa": {"avx2": True, "amx_bf16": False}, "isa_cap": None})
    others.append(entry_folder(root, "CPU", f32))  # a VM's CPU of the same name, another generation
    assert others[0].name.startswith("cpu-bf16-") and others[2].name.startswith("gpu.0-f32-")
    assert len({first, *others}) == 6
    from edgerec.engines.compile_cache import ENTRY_FOLDER  # the folders pruning looks into: every one it names

    for device in ("CPU", "GPU.0", "AUTO:GPU,CPU", "HETERO:GPU-1,CPU"):
        assert all(ENTRY_FOLDER.fullmatch(entry_folder(root, device, cfg).name) for cfg in (f32, {}))


_LOAD_FROM_CACHE = """
import json, sys
import numpy as np
from edgerec.engines.openvino import OpenVINOEngine
xml, cache, batch, precision, hint = sys.argv[1:]
eng = OpenVINOEngine(xml, precision=precision, hint=hint, cache_dir=cache, threads=2, shape_cache=None)
np.save(batch + "." + precision + "." + hint + ".npy", eng.infer(np.load(batch)))
print(json.dumps({"loaded": bool(eng.compiled.get_property("LOADED_FROM_CACHE")),
                  "precision": str(eng.properties()["precision"])}))
"""


def test_a_model_loaded_from_the_cache_reads_as_compiled(v4, rendered, tmp_path):
    """The same IR compiled with several configurations into one cache: a later process loads each from its
    entry, and it reads exactly as a compile without the cache (bf16 too, where the CPU has it: loaded from an
    f32 entry it read NaN; LATENCY and THROUGHPUT share theirs)."""
    import json
    import subprocess

    from edgerec.engines.openvino import OpenVINOEngine
    from edgerec.runtime.preprocess import resize_norm_into
    from edgerec.utils import cpu

    batch = np.zeros((2, 3, 48, 320), np.float32)
    resize_norm_into(rendered[0][1], batch[0])
    batch[1, ..., :200] = np.random.default_rng(0).random((3, 48, 200)) * 2 - 1  # bf16 read NaN here
    np.save(tmp_path / "batch.npy", batch)
    cache = tmp_path / "cache"
    configs = [("fp32", "LATENCY"), ("fp32", "THROUGHPUT")] + ([("bf16", "LATENCY")] if cpu.has_native_bf16() else [])
    for precision, hint in configs:  # each written by this process
        OpenVINOEngine(v4.model_path, precision=precision, hint=hint, cache_dir=cache, threads=2, shape_cache=None)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == len({p for p, _ in configs})  # hints share one
    for precision, hint in configs[::-1]:  # and read back by another
        out = subprocess.run([sys.executable, "-c", _LOAD_FROM_CACHE, str(v4.model_path), str(cache),
                              str(tmp_path / "batch.npy"), precision, hint], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got == {"loaded": True, "precision": {"fp32": "f32", "bf16": "bf16"}[precision]}
        read = np.load(tmp_path / f"batch.npy.{precision}.{hint}.npy")
        want = OpenVINOEngine(v4.model_path, precision=precision, hint=hint, threads=2, shape_cache=None).infer(batch)
        assert np.isfinite(read).all() and np.array_equal(read, want), (precision, hint)


def test_a_read_only_compiled_model_cache_is_read_without_the_lock(tmp_path, monkeypatch, caplog):
    import edgerec.utils.fs as fs
    from edgerec.engines.compile_cache import compile_cached

    def refuse(path, timeout=-1):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(fs, "file_lock", refuse)
    seen = []

    class Core:
        def compile_model(self, model, device, cfg):
            seen.append(dict(cfg))
            return "compiled"

    # a folder this process may write, whose lock it cannot take (another user's lock file): no cache at all
    cfg = {"CACHE_DIR": str(tmp_path)}
    with caplog.at_level(logging.INFO, logger="edgerec.engines.compile_cache"):
        assert compile_cached(Core(), None, "CPU", cfg, tmp_path / "m") == "compiled"
    assert seen == [{}] and "cannot lock the compiled-model cache" in caplog.text
    # a read-only folder (simulated: root may write anywhere): read as it is, without the lock, quietly
    seen.clear()
    caplog.clear()
    import edgerec.engines.compile_cache as cc

    monkeypatch.setattr(cc.os, "access", lambda path, mode: False)
    cfg = {"CACHE_DIR": str(tmp_path)}
    with caplog.at_level(logging.INFO, logger="edgerec.engines.compile_cache"):
        assert compile_cached(Core(), None, "CPU", cfg, tmp_path / "m") == "compiled"
    assert seen == [{"CACHE_DIR": str(cc.entry_folder(tmp_path, "CPU", {}))}] and "cannot be written" in caplog.text
    assert "WARNING" not in caplog.text
    # a home prepared without any cache folder, read-only: nothing to read, so no cache, quietly
    seen.clear()
    caplog.clear()
    (tmp_path / "file").write_text("x")
    cfg = {"CACHE_DIR": str(tmp_path / "file" / "cache")}
    with caplog.at_level(logging.INFO, logger="edgerec.engines.compile_cache"):
        assert compile_cached(Core(), None, "CPU", cfg, tmp_path / "m") == "compiled"
    assert seen == [{}] and "no compiled-model cache" in caplog.text and "WARNING" not in caplog.text


# ------------------------------------------------------------------ the registry, typed options, properties

def test_the_registry_names_every_engine_and_each_module_declares_itself():
    from dataclasses import fields, is_dataclass

    from edgerec.engines.base import EngineOptions

    assert registry.names() == ("openvino", "onnxruntime", "paddle")
    formats = {}
    for name in registry.names():
        kind = registry.get(name)
        assert kind.name == name and registry.get(name.upper()) is kind
        assert is_dataclass(kind.options) and issubclass(kind.options, EngineOptions)
        assert "threads" in {f.name for f in fields(kind.options)}  # the one option every engine takes
        formats[name] = kind.source_format
    assert formats == {"openvino": "ir", "onnxruntime": "onnx", "paddle": "paddle"}
    assert registry.get("openvino").precisions == ("fp32", "fp16", "int8", "bf16")
    with pytest.raises(DeviceError, match=r"engine 'tensorflow': use openvino, onnxruntime, paddle"):
        registry.get("tensorflow")


def test_only_the_registry_names_engine_kinds():
    """No engine name as a string in the API, the CLI, the camera, the predictor or quantization: they read the
    registry. (The resolver names model formats, onnx and paddle, which are not engines.)"""
    import ast
    from pathlib import Path

    import edgerec

    root = Path(edgerec.__file__).parent
    commands = [f"commands/{p.name}" for p in sorted((root / "commands").glob("*.py"))]
    camera = [f"camera/{p.name}" for p in sorted((root / "camera").glob("*.py"))]
    assert len(commands) > 5 and len(camera) > 4
    for rel in ("api.py", "cli.py", "runtime/predictor.py", "quant/quantize.py", *camera, *commands):
        tree = ast.parse((root / rel).read_text("utf-8"))
        named = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in registry.names()]
        assert named == [], (rel, named)


def test_an_option_the_engine_does_not_take_is_an_error_naming_it(v4):
    pytest.importorskip("onnxruntime")
    with pytest.raises(EngineOptionError, match=r"engine 'onnxruntime' has no option 'hint'; its options are threads"):
        create_model(V4, engine="onnxruntime", hint="THROUGHPUT", progress=False)
    with pytest.raises(EngineOptionError, match=r"engine 'onnxruntime' has no option 'shape_cache'"):
        create_model(V4, engine="onnxruntime", shape_cache=4, progress=False)
    with pytest.raises(EngineOptionError, match=r"engine 'openvino' has no option 'tensorrt'.*hint"):
        create_model(V4, engine_options={"tensorrt": True}, progress=False)
    with pytest.raises(EngineOptionError, match="hint must be one of"):
        create_model(V4, hint="FASTEST", progress=False)
    with pytest.raises(EngineOptionError, match="threads must be a positive integer"):
        create_model(V4, engine_options={"threads": 0}, progress=False)
    from edgerec.engines.onnxruntime import ONNXRuntimeEngine

    with pytest.raises(EngineOptionError, match="no option 'intra_op'"):  # keywords go through the same check
        ONNXRuntimeEngine(v4.model_path, intra_op=2)


def test_engine_options_reach_the_engine(rendered):
    m = create_model(V4, engine_options={"hint": "THROUGHPUT", "threads": 2, "config": {"NUM_STREAMS": 1}},
                     progress=False)
    assert m.predictor.engine.options.hint == "THROUGHPUT"
    props = m.properties()
    assert props["hint"] == "THROUGHPUT" and props["threads"] == 2 and props["streams"] == 1
    assert m.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]
    with pytest.raises(ValueError, match="threads given twice"):
        create_model(V4, threads=3, engine_options={"threads": 2}, progress=False)


def test_properties_say_what_really_runs_and_files_what_was_loaded(v4):
    props = v4.predictor.engine.properties()
    assert {"engine", "device", "precision", "threads", "streams"} <= set(props)
    assert props["engine"] == "openvino" and props["device"] == "CPU"
    # read back from the compiled model: f32 as asked, even on a CPU that would pick bf16 by itself
    hint = v4.predictor.engine.compiled.get_property("INFERENCE_PRECISION_HINT")
    assert props["precision"] == "f32" == hint.to_string()
    assert isinstance(props["threads"], int) and props["threads"] > 0 and isinstance(props["streams"], int)
    files = v4.files()
    assert [f.name for f in files] == ["model.xml", "model.bin"] and all(f.is_file() for f in files)
    assert v4.properties()["model_name"] == V4 and v4.properties()["model_precision"] == "fp32"


def test_source_engines_report_properties_and_files(v4):
    pytest.importorskip("onnxruntime")
    ort = create_model(V4, engine="onnxruntime", threads=2, progress=False)
    props = ort.properties()
    assert (props["engine"], props["device"], props["precision"], props["threads"]) == ("onnxruntime", "cpu", "f32", 2)
    assert ort.files() == [ort.model_path] and ort.model_path.suffix == ".onnx"


def test_precision_an_engine_cannot_run_is_refused_before_any_fetch():
    pytest.importorskip("onnxruntime")
    from edgerec.errors import ModelError

    # ch_SVTRv2_rec is not fetchable here: the answer must come first
    with pytest.raises(ModelError, match="the onnxruntime engine runs fp32 only"):
        create_model("ch_SVTRv2_rec", engine="onnxruntime", precision="int8", progress=False)


def test_adding_an_engine_is_one_module_and_one_register_line(v4, rendered, monkeypatch):
    """A new engine (here: OpenVINO that counts its calls) is a module with KIND plus ``registry.register``; the
    API then loads it by name, with its own options checked, and nothing else changes."""
    import types
    from dataclasses import dataclass

    from edgerec.engines.base import EngineKind, EngineOptions
    from edgerec.engines.openvino import OpenVINOEngine

    @dataclass(frozen=True)
    class CountingOptions(EngineOptions):
        label: str = "counted"

    class Counting(OpenVINOEngine):
        name = "counting"
        calls = 0

        def infer(self, batch):
            Counting.calls += 1
            return super().infer(batch)

    module = types.ModuleType("counting_engine")
    module.KIND = EngineKind("counting", "ir", CountingOptions, check_device=lambda spec: None,
                             open=lambda path, spec, opts, precision: Counting(path, spec, threads=opts.threads))
    monkeypatch.setitem(sys.modules, "counting_engine", module)
    monkeypatch.setattr(registry, "ENGINES", dict(registry.ENGINES))
    registry.register("counting", "counting_engine")
    model = create_model(V4, engine="counting", threads=2, warmup=False, progress=False)
    assert model.engine == "counting" and model.properties()["engine"] == "counting"
    assert model.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0] and Counting.calls == 1
    with pytest.raises(EngineOptionError, match="'counting' has no option 'hint'; its options are threads, label"):
        create_model(V4, engine="counting", hint="LATENCY", progress=False)
