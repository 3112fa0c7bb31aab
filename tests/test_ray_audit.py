"""predict --ray after the audit: the one-box walk and loader, one error line per failure, bounded waits.

Most checks run without starting Ray (listing, the UDF called directly, the actor-pool and address checks); one
test starts a local Ray once and compares `predict --ray` with the one-box `predict --output` on a folder of bad
inputs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.errors import EdgeRecError, ModelError
from edgerec.integrations import ray as ray_mod
from edgerec.integrations import ray_cluster

from conftest import V4

BAD_NAME = b"bad\xff\xfename.png"  # not UTF-8: pyarrow's listing raised UnicodeDecodeError on it


def _bad_tree(root: Path, rendered) -> Path:
    """Files Ray's own listing dropped or crashed on, next to good ones."""
    from PIL import Image

    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "_skipped_by_ray").mkdir()
    for k, name in enumerate(["a.png", "_under.png", ".hidden.png", "UPPER.PNG", "sub/b.png",
                              "_skipped_by_ray/c.png"]):
        cv2.imwrite(str(tree / name), rendered[k % 4][1])
    with open(os.fsencode(tree) + b"/" + BAD_NAME, "wb") as fh:
        fh.write(cv2.imencode(".png", rendered[1][1])[1].tobytes())
    (tree / "empty.png").write_bytes(b"")
    os.symlink("/nonexistent/missing.png", tree / "dangling.png")
    os.mkfifo(tree / "pipe.png")
    pages = [Image.fromarray(img[..., ::-1]) for _, img in rendered[:3]]
    pages[0].save(tree / "multi.tif", save_all=True, append_images=pages[1:])
    os.symlink("..", tree / "sub" / "loop")  # a symlink loop: pyarrow listed the tree again through it
    return tree


@pytest.fixture
def bad_tree(tmp_path, rendered):
    return _bad_tree(tmp_path, rendered)


def test_list_inputs_walks_as_the_one_box_path_does(bad_tree, tmp_path):
    from edgerec.io.inputs import INPUT_SUFFIXES
    from edgerec.io.walk import walk_files

    (tmp_path / "empty_dir").mkdir()
    files, failed = ray_mod.list_inputs([str(bad_tree), str(tmp_path / "empty_dir"), str(tmp_path / "nope.png"),
                                         "https://user:secret@example.com/a.png"])
    assert files == [*walk_files(str(bad_tree), INPUT_SUFFIXES), str(tmp_path / "nope.png")]
    names = {os.path.basename(f) for f in files}
    assert {"_under.png", ".hidden.png", "c.png", "dangling.png", "pipe.png", "multi.tif"} <= names
    assert os.fsdecode(BAD_NAME) in names and len(files) == len(set(files))  # the loop is cut: each file once
    assert failed[0] == (str(tmp_path / "empty_dir"), f"{tmp_path / 'empty_dir'}: folder contains no images")
    assert "secret" not in failed[1][1] and "not read with --ray" in failed[1][1]


def test_arrow_text_keeps_a_non_utf8_name_readable():
    assert ray_mod.arrow_text("plain.png") == "plain.png"
    assert ray_mod.arrow_text(os.fsdecode(BAD_NAME)) == "bad\\xff\\xfename.png"
    assert ray_mod.arrow_text("\ud800.png").encode("utf-8")  # any lone surrogate: still valid UTF-8


def test_udf_reads_path_rows_with_the_one_box_loader(v4, bad_tree):
    """Every name works, a multi-page TIFF gives every page, and bad files are rows with the one-box errors."""
    udf = ray_mod.TextRecognizerUDF(V4, threads=1, cwd=str(bad_tree.parent))
    files, _ = ray_mod.list_inputs([str(bad_tree)])
    rel = [os.path.relpath(f, bad_tree.parent) for f in files]  # relative rows, read against cwd
    got = udf({"path": np.array([os.fsencode(p) for p in rel], dtype=object)})
    cwd = os.getcwd()
    os.chdir(bad_tree.parent)
    try:
        want = list(v4.predict(rel, keep_image=False))
    finally:
        os.chdir(cwd)
    assert list(got["path"]) == [ray_mod.arrow_text(r["input_path"]) for r in want]
    assert list(got["page_index"]) == [r["page_index"] for r in want]
    assert [p for p, f in zip(got["page_index"], got["path"]) if f.endswith("multi.tif")] == [0, 1, 2]
    assert list(got["rec_text"]) == [r["rec_text"] for r in want]
    assert list(got["error"]) == [ray_mod.arrow_text(r.error or "") for r in want]
    assert got["rec_score"].dtype == np.float64
    assert [p for p in got["path"] if p.endswith("multi.tif")] == ["tree/multi.tif"] * 3
    errors = dict(zip(got["path"], got["error"]))
    assert errors["tree/dangling.png"] == "tree/dangling.png: broken symbolic link"
    assert errors["tree/empty.png"].startswith("tree/empty.png: ") and errors["tree/pipe.png"]
    assert errors["tree/bad\\xff\\xfename.png"] == "" and errors["tree/_under.png"] == ""


def test_udf_bytes_rows_name_their_path_and_give_every_tiff_page(v4, bad_tree):
    udf = ray_mod.TextRecognizerUDF(V4, threads=1)
    tif = (bad_tree / "multi.tif").read_bytes()
    got = udf({"path": np.array(["m.tif", "none.png", "str.png"], dtype=object),
               "bytes": np.array([tif, None, "not bytes"], dtype=object)})
    assert list(got["path"]) == ["m.tif"] * 3 + ["none.png", "str.png"]
    assert list(got["page_index"]) == [0, 1, 2, None, None]
    assert all(got["rec_text"][:3]) and not any(got["error"][:3])
    assert got["error"][3].startswith("none.png: ") and got["error"][4].startswith("str.png: ")
    broken = udf({"path": np.array(["x.png"], dtype=object), "bytes": np.array([b"junk"], dtype=object)})
    assert broken["error"][0].startswith("x.png: ")
    with pytest.raises(ValueError, match="'path' column has 1 values for 2"):
        udf({"path": np.array(["a"], dtype=object), "bytes": np.array([tif, tif], dtype=object)})
    with pytest.raises(ValueError, match="'path', a 'bytes' or an 'image'"):
        udf({"foo": np.array([1])})


def test_the_udf_outside_ray_never_starts_ray(monkeypatch):
    """ray.get_runtime_context() starts a local Ray when none runs: only a connected process may ask it."""
    fake = types.SimpleNamespace(is_initialized=lambda: False,
                                 get_runtime_context=lambda: pytest.fail("a local Ray was started"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert ray_mod._actor_cpus() is None
    context = types.SimpleNamespace(get_assigned_resources=lambda: {"CPU": 2.0})
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: True,
                                                                  get_runtime_context=lambda: context))
    assert ray_mod._actor_cpus() == 2


def test_actors_must_fit_a_node():
    assert ray_cluster.actor_slots([3, 3], 2) == 2  # 6 CPUs, but an actor's 2 come from one node
    assert ray_cluster.check_actors([3.0, 3.0], 2, None) == 2
    with pytest.raises(EdgeRecError, match="--threads 4: .* has 2.*--threads 2 or less"):
        ray_cluster.check_actors([2.0], 4, None)
    with pytest.raises(EdgeRecError, match="3 actors of 2 CPUs do not fit"):
        ray_cluster.check_actors([3.0, 3.0], 2, 3)
    assert ray_cluster.check_actors([0.0], 2, None) == 1  # no CPUs yet (autoscaling): one actor asked for, not refused


def test_the_connect_bound_is_checked_and_leaves_local_runs_alone(monkeypatch):
    monkeypatch.delenv("EDGEREC_RAY_CONNECT_TIMEOUT", raising=False)
    assert ray_cluster.connect_timeout() == ray_cluster.CONNECT_TIMEOUT_S
    monkeypatch.setenv("EDGEREC_RAY_CONNECT_TIMEOUT", "2.5")
    assert ray_cluster.connect_timeout() == 2.5
    for bad in ("abc", "0", "-1", "nan"):
        monkeypatch.setenv("EDGEREC_RAY_CONNECT_TIMEOUT", bad)
        with pytest.raises(EdgeRecError, match="EDGEREC_RAY_CONNECT_TIMEOUT"):
            ray_cluster.connect_timeout()
    monkeypatch.delenv("EDGEREC_RAY_CONNECT_TIMEOUT")
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    for var in ("RAY_py_gcs_connect_timeout_s", "RAY_gcs_server_port_wait_time_s", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    for address in (None, "local", "ray://127.0.0.1:10001"):  # nothing to join, or refused by check_address
        ray_cluster._bound_the_join(address)
        assert "RAY_gcs_server_port_wait_time_s" not in os.environ
    ray_cluster._bound_the_join("127.0.0.1:6379")
    assert os.environ["RAY_gcs_server_port_wait_time_s"] == "1"


def _fake_ray(cpus: float) -> types.SimpleNamespace:
    return types.SimpleNamespace(is_initialized=lambda: True, nodes=lambda: [{"Alive": True,
                                                                              "Resources": {"CPU": cpus}}])


def test_too_many_threads_is_refused_not_a_hang(bad_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_mod, "require_ray", lambda: _fake_ray(2.0))
    monkeypatch.setattr(ray_mod, "prepare", lambda *a: None)
    with pytest.raises(EdgeRecError, match="--threads 3: .*has 2"):
        ray_mod.recognize_folder([str(bad_tree)], str(tmp_path / "out"), num_cpus=3)


def test_a_bad_model_dir_is_one_error_before_ray_starts(bad_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_mod, "_join", lambda *a: pytest.fail("Ray was started"))
    with pytest.raises(ModelError, match="nonexistent"):
        ray_mod.recognize_folder([str(bad_tree)], str(tmp_path / "out"), model_dir="/nonexistent/model")
    res = CliRunner().invoke(main, ["predict", str(bad_tree), "--ray", "--output", str(tmp_path / "out"),
                                    "--model-dir", "/nonexistent/model"])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "edgerec: error:" in res.output, res.output


def test_address_endpoints():
    assert ray_cluster.address_endpoint(None) is None and ray_cluster.address_endpoint("auto") is None
    assert ray_cluster.address_endpoint("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert ray_cluster.address_endpoint("[::1]:7") == ("::1", 7)
    assert ray_cluster.address_endpoint("ray://head:10001") is None and ray_cluster.address_endpoint("head") is None


def test_ray_client_is_refused_before_anything_runs(bad_tree, tmp_path, monkeypatch):
    """Ray Data does not run through Ray Client (it failed deep in Ray with 'no attribute core_worker'): one line
    that says where to run it instead, for --address and RAY_ADDRESS alike, before the inputs are listed."""
    monkeypatch.setattr(ray_mod, "list_inputs", lambda *a: pytest.fail("inputs listed"))
    client = ("Ray Data does not run through Ray Client (ray://): run edgerec on a node of the cluster with "
              "--address auto")
    for args, env, want in ((["--address", "ray://127.0.0.1:10001"], {}, f"--address ray://127.0.0.1:10001: {client}"),
                            ([], {"RAY_ADDRESS": "RAY://head:10001"}, f"RAY_ADDRESS=RAY://head:10001: {client}"),
                            (["--address", "http://head:8265"], {}, "http://head:8265: give 'auto', 'local' or a "
                                                                    "head's HOST:PORT")):
        res = CliRunner().invoke(main, ["predict", str(bad_tree), "--ray", "--output", str(tmp_path / "o"), *args],
                                 env=env)
        assert res.exit_code == 1 and res.output.count("\n") == 1 and want in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_an_address_where_nothing_answers_is_one_line_in_bounded_time(bad_tree, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'edgerec[ray]')")
    monkeypatch.setattr(ray_mod, "prepare", lambda *a: None)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"[::1]:{port}"):
        t0 = time.monotonic()
        res = CliRunner().invoke(main, ["predict", str(bad_tree), "--ray", "--output", str(tmp_path / "out"),
                                        "--address", address])
        assert time.monotonic() - t0 < 30
        assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
        assert f"--address {address}: nothing answers" in res.output


def test_ray_error_finds_the_edgerec_error_inside():
    inner = ModelError("/nonexistent/model: no such file or folder")
    outer = RuntimeError("The actor died because of an error raised in its creation task")
    outer.cause = inner
    assert ray_cluster.ray_error(outer) == "/nonexistent/model: no such file or folder"
    text = RuntimeError("Traceback ...\n  File x\nedgerec.errors.ModelError: bad IR\n")
    assert ray_cluster.ray_error(text) == "bad IR"
    assert ray_cluster.ray_error(KeyError("k")) == "KeyError: 'k'"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgerec.cli", *args]


def _ray_rows(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(out.glob("*.json")) for line in f.read_text("utf-8").splitlines()]


def test_predict_ray_reads_what_predict_reads(bad_tree, tmp_path, edgerec_home):
    """One local Ray for the audit's folder: the same rows and error lines as the one-box `predict --output`."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'edgerec[ray]')")
    (tmp_path / "empty_dir").mkdir()
    inputs = ["tree", "empty_dir", "nope.png"]
    one = subprocess.run(_cli("predict", *inputs, "--model", V4, "--output", "one.jsonl", "--quiet"),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, errors="surrogateescape")
    res = subprocess.run(_cli("predict", *inputs, "https://example.com/a.png", "--model", V4, "--ray",
                              "--output", "ray-out"),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, errors="surrogateescape")
    assert one.returncode == 1 and res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    want = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text("utf-8").splitlines()]
    got = _ray_rows(tmp_path / "ray-out")
    url = [r for r in got if r["path"].startswith("https://")]
    assert len(url) == 1 and "not read with --ray" in url[0]["error"]
    assert sorted((r["path"], r["page_index"], r["rec_text"], r["error"]) for r in got if r not in url) == sorted(
        (ray_mod.arrow_text(r["input_path"]), r["page_index"], r["rec_text"], ray_mod.arrow_text(r["error"] or ""))
        for r in want)
    assert sorted(r["page_index"] for r in got if r["path"] == "tree/multi.tif") == [0, 1, 2]
    assert url[0]["page_index"] is None
    failed = [r["error"] for r in got if r["error"]]
    assert f"{len(got)} results written to ray-out/ through Ray ({len(failed)} failed)" in res.stderr
    for error in failed:  # each failed row is also one line on stderr, as without --ray
        assert f"edgerec: error: {error}" in res.stderr
