"""Scale: the streaming folder walk, the crash-safe JSONL results file with --resume, and the Ray Data UDF."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgerec.errors import EdgeRecError, InputError
from edgerec.io.walk import walk_files
from edgerec.sinks.jsonl import JsonlSink, repair_and_read

from conftest import EN_LINES, V4

SUFFIXES = frozenset({".png", ".jpg", ".pdf"})


def _tree(root: Path) -> list[str]:
    names = ["b.png", "a.png", "a/x.png", "a/b/c.jpg", "a-b.png", "A.png", "z/notes.txt", "z/y.PNG",
             "deep/" * 40 + "d.png"]
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return names


def test_walk_streams_in_the_sorted_path_order(tmp_path):
    _tree(tmp_path)
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")  # a loop back up: walked once, never forever
    want = sorted((p for p in tmp_path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and "loop" not in p.parts), key=lambda p: p.relative_to(tmp_path).parts)
    got = list(walk_files(str(tmp_path), SUFFIXES))
    assert got == [str(p) for p in want]
    assert got[0].endswith("A.png") and any(g.endswith("y.PNG") for g in got)


def test_walk_yields_the_first_file_before_listing_the_rest(tmp_path):
    (tmp_path / "0.png").write_bytes(b"x")
    big = tmp_path / "zz"
    big.mkdir()
    it = walk_files(str(tmp_path), SUFFIXES)
    assert next(it).endswith("0.png")  # the sub-folder is not listed yet
    (big / "late.png").write_bytes(b"x")
    assert [Path(p).name for p in it] == ["late.png"]


def test_walk_of_a_missing_folder_is_an_error_item(tmp_path):
    got = list(walk_files(str(tmp_path / "nope"), SUFFIXES))
    assert got == [] or isinstance(got[0], InputError)


def test_sink_refuses_to_overwrite_and_resumes_after_a_torn_line(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlSink(out, chunk=2) as sink:
        for k in range(5):
            sink.add({"input_path": f"{k}.png", "page_index": None, "rec_text": "t", "rec_score": 0.5, "error": None})
    lines = out.read_text("utf-8").splitlines()
    assert len(lines) == 5 and json.loads(lines[0]) == {"input_path": "0.png", "page_index": None,
                                                          "rec_text": "t", "rec_score": 0.5, "error": None}
    with pytest.raises(EdgeRecError, match="--resume"):
        JsonlSink(out)
    with open(out, "ab") as fh:
        fh.write(b'{"input_path": "5.png", "page_in')  # a kill inside a write
    done = repair_and_read(out)
    assert done == {(f"{k}.png", None) for k in range(5)}
    assert out.read_bytes().endswith(b"\n") and len(out.read_text("utf-8").splitlines()) == 5
    with JsonlSink(out, resume=True) as sink:
        assert len(sink.done) == 5
        sink.add({"input_path": "5.png", "page_index": None, "rec_text": "u", "rec_score": 0.1, "error": None})
    assert len(out.read_text("utf-8").splitlines()) == 6


def test_sink_names_a_file_that_is_not_ours(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text("hello\n", encoding="utf-8")
    with pytest.raises(EdgeRecError, match="r.jsonl:1"):
        JsonlSink(out, resume=True)
    assert out.read_text("utf-8") == "hello\n"  # a user's file is left as it was


@pytest.fixture(scope="module")
def crop_tree(tmp_path_factory, rendered):
    root = tmp_path_factory.mktemp("crops")
    for k in range(36):
        text, img = rendered[k % len(EN_LINES)]
        sub = root / f"d{k % 3}"
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{k:03d}.png"), img)
    (root / "d1" / "broken.png").write_bytes(b"not a png")
    return root


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgerec.cli", *args]


def test_predict_output_resume_after_a_kill_gives_every_input_once(crop_tree, tmp_path, edgerec_home):
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "EDGEREC_JSONL_CHUNK": "4"}
    child = subprocess.Popen(_cli("predict", str(crop_tree), "--model", V4, "--output", str(out), "--quiet"),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 8):
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = len(out.read_bytes().splitlines())
    assert 0 < before
    done = subprocess.run(_cli("predict", str(crop_tree), "--model", V4, "--output", str(out), "--resume",
                               "--quiet"), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the broken file is an error line, so the status is 1
    rows = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    paths = [r["input_path"] for r in rows]
    files = sorted(str(p) for p in crop_tree.rglob("*.png"))
    assert sorted(paths) == files and len(paths) == len(set(paths))  # every input exactly once
    bad = [r for r in rows if r["input_path"].endswith("broken.png")]
    assert bad[0]["error"] and bad[0]["rec_text"] == "" and bad[0]["rec_score"] == 0.0
    good = [r for r in rows if not r["error"]]
    assert all(r["rec_text"].strip() in EN_LINES for r in good)


def test_ray_udf_gives_the_texts_predict_gives(crop_tree, v4):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'edgerec[ray]')")
    from edgerec.integrations.ray import TextRecognizerUDF

    files = sorted(str(p) for p in crop_tree.rglob("*.png"))
    want = {r["input_path"]: (r["rec_text"], r.error) for r in v4.predict(files)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.read_binary_files(files, include_paths=True, num_cpus=0)
        out = ds.map_batches(TextRecognizerUDF, fn_constructor_kwargs={"model_name": V4, "threads": 1},
                             concurrency=2, num_cpus=1, batch_size=8, batch_format="numpy")
        rows = out.take_all()
    finally:
        ray.shutdown()
    assert len(rows) == len(files)
    for row in rows:
        text, error = want[row["path"]]
        if error:
            assert row["error"] and row["rec_text"] == ""
        else:
            assert row["rec_text"] == text and not row["error"]


def test_reader_pool_keeps_input_order_and_bounds_work_ahead():
    import threading

    from edgerec.io.prefetch import ordered_prefetch

    started: list[int] = []
    lock = threading.Lock()

    def load(k: int) -> int:
        with lock:
            started.append(k)
        time.sleep(0.001 * (k % 5))  # later items finish first sometimes
        return k * k

    consumed = 0
    gen = ordered_prefetch(range(200), load, workers=4, ahead=8)
    for k, v in enumerate(gen):
        assert v == k * k
        consumed += 1
        assert len(started) <= consumed + 8  # never more than `ahead` loads beyond what was consumed
    assert consumed == 200


def test_predict_output_keeps_the_walk_order_with_the_reader_pool(crop_tree, tmp_path, edgerec_home):
    out = tmp_path / "ordered.jsonl"
    res = subprocess.run(_cli("predict", str(crop_tree), "--model", V4, "--output", str(out), "--workers", "3",
                              "--quiet"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "broken.png" in res.stderr  # the bad file is named on stderr and in the file
    rows = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    files = sorted((p for p in crop_tree.rglob("*.png")), key=lambda p: p.relative_to(crop_tree).parts)
    assert [r["input_path"] for r in rows] == [str(p) for p in files]
    assert [r["error"] is not None for r in rows] == [p.name == "broken.png" for p in files]
    again = subprocess.run(_cli("predict", str(crop_tree), "--model", V4, "--output", str(out), "--quiet"),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "--resume" in again.stderr  # an existing results file is never overwritten
    assert [json.loads(x) for x in out.read_text("utf-8").splitlines()] == rows


def test_reader_pool_gives_what_the_serial_loader_gives(crop_tree, v4):
    serial = list(v4.predict(str(crop_tree), workers=1))
    pooled = list(v4.predict(str(crop_tree), workers=4, keep_image=False))
    assert [r["input_path"] for r in pooled] == [r["input_path"] for r in serial]
    assert [r["rec_text"] for r in pooled] == [r["rec_text"] for r in serial]
    assert all(r["input_img"] is None for r in pooled) and any(r["input_img"] is not None for r in serial)
    skipped = list(v4.predict(str(crop_tree), skip=lambda p: p.endswith("000.png")))
    assert len(skipped) == len(serial) - 1 and not any(r["input_path"].endswith("000.png") for r in skipped)


def test_predict_ray_writes_every_input_once(crop_tree, tmp_path, edgerec_home):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'edgerec[ray]')")
    out = tmp_path / "ray-out"
    res = subprocess.run(_cli("predict", str(crop_tree), "--model", V4, "--ray", "--output", str(out)),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "1 failed" in res.stderr, res.stderr  # broken.png: a row with its error
    rows = [json.loads(line) for f in sorted(out.glob("*.json")) for line in f.read_text("utf-8").splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in crop_tree.rglob("*.png"))
    bad = [r for r in rows if r["path"].endswith("broken.png")]
    assert bad[0]["error"] and all(r["rec_text"].strip() in EN_LINES for r in rows if not r["error"])
    again = subprocess.run(_cli("predict", str(crop_tree), "--model", V4, "--ray", "--output", str(out)),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "exists" in again.stderr


def test_predict_holds_a_bounded_number_of_image_bytes(v4, rendered, monkeypatch):
    """Pages of a PDF are megabytes each: predict runs what it holds once the images pass WINDOW_BYTES."""
    import edgerec.api as api

    imgs = [img for _, img in rendered[:6]]
    want = [r["rec_text"] for r in v4.predict(imgs)]
    runs: list[int] = []
    real = api.TextRecognizer._run

    def spy(self, items, *args, **kwargs):
        runs.append(len(items))
        return real(self, items, *args, **kwargs)

    monkeypatch.setattr(api.TextRecognizer, "_run", spy)
    monkeypatch.setattr(api, "WINDOW_BYTES", min(i.nbytes for i in imgs))  # every image alone fills it
    assert [r["rec_text"] for r in v4.predict(imgs)] == want
    assert runs == [1] * len(imgs)
    monkeypatch.setattr(api, "WINDOW_BYTES", sum(i.nbytes for i in imgs[:3]))
    runs.clear()
    assert [r["rec_text"] for r in v4.predict(imgs)] == want
    assert runs[0] == 3 and sum(runs) == len(imgs)


def test_a_damaged_tiff_costs_only_its_own_file(tmp_path, rendered):
    """PIL raises non-InputErrors on a broken TIFF directory: that file's error, the folder goes on."""
    from edgerec.io.inputs import iter_inputs

    folder = tmp_path / "t"
    folder.mkdir()
    _, img = rendered[0]
    for name in ("a.png", "c.png", "d.png"):
        cv2.imwrite(str(folder / name), img)
    ok, tif = cv2.imencode(".tif", img)
    data = bytearray(tif.tobytes())
    order = "little" if data[:2] == b"II" else "big"
    ifd = int.from_bytes(data[4:8], order)
    nxt = ifd + 2 + 12 * int.from_bytes(data[ifd:ifd + 2], order)
    data[nxt:nxt + 4] = (len(data) + 1000).to_bytes(4, order)  # the next-IFD pointer points past the end
    (folder / "b.tif").write_bytes(bytes(data))
    for workers in (1, 3):
        items = list(iter_inputs(str(folder), workers=workers))
        assert [os.path.basename(it.input_path) for it in items] == ["a.png", "b.tif", "c.png", "d.png"]
        assert [it.error is None for it in items] == [True, False, True, True]
        assert "b.tif" in str(items[1].error)


def test_resume_matches_inputs_however_the_folder_was_spelled(crop_tree, tmp_path, v4, monkeypatch):
    from edgerec.sinks.stream import predict_to_jsonl

    out = tmp_path / "spell.jsonl"
    sub = crop_tree / "d0"
    first = predict_to_jsonl(v4, [str(sub)], str(out), progress=False)
    monkeypatch.chdir(crop_tree)
    again = predict_to_jsonl(v4, ["./d0/"], str(out), resume=True, progress=False)
    assert first.written == len(list(sub.glob("*.png"))) and again.written == 0 and again.skipped == first.written


def test_a_failed_chunk_write_leaves_no_torn_line(tmp_path, monkeypatch):
    out = tmp_path / "full.jsonl"
    sink = JsonlSink(out, chunk=100)
    sink.add({"input_path": "a.png", "page_index": None, "rec_text": "t", "rec_score": 0.5, "error": None})
    sink.flush()
    real = sink._fh.write

    def half(data: bytes) -> int:  # the disk fills in the middle of the chunk
        real(data[: len(data) // 2])
        sink._fh.flush()
        raise OSError(28, "No space left on device")

    sink.add({"input_path": "b.png", "page_index": None, "rec_text": "u", "rec_score": 0.5, "error": None})
    monkeypatch.setattr(sink._fh, "write", half, raising=False)
    with pytest.raises(OSError):
        sink.flush()
    monkeypatch.setattr(sink._fh, "write", real, raising=False)
    sink.close()  # space came back: the retried chunk lands whole
    assert [json.loads(x)["input_path"] for x in out.read_text("utf-8").splitlines()] == ["a.png", "b.png"]


def test_two_runs_cannot_write_one_results_file(tmp_path):
    out = tmp_path / "busy.jsonl"
    with JsonlSink(out) as sink:
        sink.add({"input_path": "a.png", "page_index": None, "rec_text": "t", "rec_score": 0.5, "error": None})
        sink.flush()
        for kw in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(EdgeRecError, match="another edgerec run"):
                JsonlSink(out, **kw)
        assert len(out.read_text("utf-8").splitlines()) == 1  # the second run truncated nothing
    with JsonlSink(out, resume=True) as again:  # once the first is done, resuming works
        assert again.done == {("a.png", None)}


def test_ray_udf_reads_rgb_image_columns(v4, rendered):
    """ray.data.read_images gives RGB: the UDF hands the model BGR, the layout every edgerec path uses."""
    from edgerec.integrations.ray import TextRecognizerUDF

    _, img = rendered[0]
    bgr = img.copy()
    bgr[..., 0] //= 2  # a colour the channel order shows
    udf = TextRecognizerUDF(V4, threads=1)
    seen = []
    real = udf.model.recognize_batch
    udf.model.recognize_batch = lambda images, **kw: seen.extend(images) or real(images, **kw)
    column = np.empty(1, dtype=object)  # Ray's column of variable-size images
    column[0] = np.ascontiguousarray(bgr[..., ::-1])  # RGB
    got = udf({"image": column, "path": np.array(["x"], dtype=object)})
    assert np.array_equal(seen[0], bgr)
    assert got["rec_text"][0] == v4.recognize(bgr)["rec_text"] and got["error"][0] == ""


def test_a_pdf_named_png_is_not_rendered_whole_in_the_reader_pool(tmp_path, monkeypatch):
    """Pages stay one at a time in the consumer even when the suffix lies about the content."""
    import edgerec.io.inputs as inputs

    pdfium = pytest.importorskip("pypdfium2")
    doc = pdfium.PdfDocument.new()
    for _ in range(3):
        doc.new_page(200, 100)
    doc.save(str(tmp_path / "pages.png"))
    routed = []
    real = inputs._paged_content
    monkeypatch.setattr(inputs, "_paged_content", lambda p: routed.append(p) or real(p))
    items = list(inputs.iter_inputs(str(tmp_path), workers=3))
    assert [it.page_index for it in items] == [0, 1, 2] and routed and real(routed[0])
