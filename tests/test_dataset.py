"""Custom datasets: check-dataset (every bad case with file:line), --split, and evaluate against a hand computation."""

from __future__ import annotations

import json
import os
import shutil
import stat

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.data.check import check_dataset, length_histogram, split_dataset
from edgerec.data.evaluate import evaluate
from edgerec.data.metrics import rec_metrics
from edgerec.errors import InputError

from conftest import EN_LINES, V4, ZH_LINES

EPS = 1e-5  # PaddleOCR RecMetric's


@pytest.fixture(scope="session")
def good_ds(rendered, tmp_path_factory):
    """A valid MSTextRecDataset: the rendered lines as images/en0..3.png, zh0..2.png; 4 train, 3 val."""
    root = tmp_path_factory.mktemp("good_ds")
    (root / "images").mkdir()
    names = [f"en{i}" for i in range(len(EN_LINES))] + [f"zh{i}" for i in range(len(ZH_LINES))]
    lines = []
    for name, (text, img) in zip(names, rendered):
        cv2.imwrite(str(root / "images" / f"{name}.png"), img)
        lines.append(f"images/{name}.png\t{text}\n")
    (root / "train.txt").write_text("".join(lines[:3] + lines[4:5]), "utf-8")
    (root / "val.txt").write_text("".join(lines[3:4] + lines[5:]), "utf-8")
    return root


@pytest.fixture()
def ds(good_ds, tmp_path):
    """A fresh copy of the good dataset, to break."""
    return shutil.copytree(good_ds, tmp_path / "ds")


def append(path, text: str) -> int:
    """Append lines to a list file; the line number of the first appended line."""
    before = path.read_text("utf-8").count("\n")
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(text)
    return before + 1


def problems_at(res: dict, kind: str) -> list[str]:
    return [f"{p['file']}:{p['line']}: {p['message']}" if p["line"] else f"{p['file']}: {p['message']}"
            for p in res["problems"] if p["kind"] == kind]


# ------------------------------------------------------------------------------------------------ check

def test_good_dataset_passes_with_paddlex_outputs(v4, ds, tmp_path):
    out = tmp_path / "out"
    res = check_dataset(ds, out, progress=False)
    assert res["check_pass"] is True, res["reasons"]
    written = json.loads((out / "check_dataset_result.json").read_text("utf-8"))
    assert written == res
    for key in ("done_flag", "check_pass", "attributes", "analysis", "dataset_path", "show_type", "dataset_type"):
        assert key in written
    assert written["dataset_type"] == "MSTextRecDataset" and written["show_type"] == "image"
    assert written["dataset_path"] == str(ds) and written["done_flag"] is True
    a = written["attributes"]
    assert (a["train_samples"], a["val_samples"]) == (4, 3)
    assert a["train_sample_paths"][0] == "check_dataset/demo_img/en0.png" and len(a["val_sample_paths"]) == 3
    for rel in a["train_sample_paths"] + a["val_sample_paths"]:
        assert (out / rel).read_bytes() == (ds / "images" / rel.rsplit("/", 1)[1]).read_bytes()
    assert written["analysis"]["histogram"] == "check_dataset/histogram.png"
    png = (out / "check_dataset" / "histogram.png").read_bytes()
    assert png.startswith(b"\x89PNG") and cv2.imdecode(np.frombuffer(png, np.uint8), 1) is not None
    lengths = written["analysis"]["label_length"]
    assert sum(lengths["train"]) == 4 and sum(lengths["val"]) == 3
    assert written["charset"]["source"] == V4 and written["images"] == {"decoded": 7, "unreadable": 0}
    assert written["reasons"] == [] and written["problems"] == []
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # atomic writes leave no temp files


def test_histogram_buckets_of_five():
    names, counts = length_histogram({"train": [0, 1, 5, 6, 11], "val": [10, 200]})
    assert names[:3] == ["0-5", "5-10", "10-15"] and names[-1] == "> 100" and len(names) == 21
    assert counts["train"][:3] == [3, 1, 1] and counts["val"][1] == 1 and counts["val"][-1] == 1


def _no_tab(ds):
    return "train.txt", append(ds / "train.txt", "images/en0.png\n"), "0 tabs"


def _two_tabs(ds):
    return "val.txt", append(ds / "val.txt", "images/en0.png\tHello\tWorld\n"), "2 tabs"


def _empty_label(ds):
    shutil.copy(ds / "images" / "en0.png", ds / "images" / "blank.png")
    return "train.txt", append(ds / "train.txt", "images/blank.png\t\n"), "empty label"


def _duplicate(ds):
    return "val.txt", append(ds / "val.txt", "images/en0.png\tHello World\n"), "listed already at train.txt:1"


def _unreadable(ds):
    (ds / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return "train.txt", append(ds / "train.txt", "images/broken.png\tbroken\n"), "cannot be read"


def _missing_image(ds):
    return "val.txt", append(ds / "val.txt", "images/nowhere.png\tnowhere\n"), "no such file"


def _outside(ds):
    return "train.txt", append(ds / "train.txt", "../escape.png\tescape\n"), "leaves the dataset folder"


def _absolute_outside(ds):
    return "val.txt", append(ds / "val.txt", "/etc/hostname\thost\n"), "leaves the dataset folder"


def _missing_chars(ds):
    shutil.copy(ds / "images" / "en0.png", ds / "images" / "euro.png")
    return "train.txt", append(ds / "train.txt", "images/euro.png\t5 € ŵ\n"), "not in the PP-OCRv4_mobile_rec charset"


def _not_utf8(ds):
    with open(ds / "train.txt", "ab") as f:
        f.write(b"images/en0.png\t\xff\xfe\n")
    return "train.txt", 5, "not UTF-8"


def _nul_path(ds):
    return "train.txt", append(ds / "train.txt", "images/a\x00b.png\tnul\n"), "invalid image path"


WARNING_KINDS = {"empty_label", "duplicate", "missing_chars"}
BAD_CASES = {
    "format": [_no_tab, _two_tabs],
    "empty_label": [_empty_label],
    "duplicate": [_duplicate],
    "unreadable": [_unreadable, _missing_image],
    "outside": [_outside, _absolute_outside],
    "missing_chars": [_missing_chars],
    "not_utf8": [_not_utf8],
    "bad_path": [_nul_path],
}


@pytest.mark.parametrize(("kind", "case"), [(k, c) for k, cs in BAD_CASES.items() for c in cs],
                         ids=[c.__name__.strip("_") for cs in BAD_CASES.values() for c in cs])
def test_each_bad_case_is_reported_with_file_and_line(v4, ds, tmp_path, kind, case):
    file, line, fragment = case(ds)
    res = check_dataset(ds, tmp_path / "out", progress=False)
    # PaddleX's verdict: unreadable images and lines not 'path<TAB>label' fail; what it does not check warns
    assert res["check_pass"] is (kind in WARNING_KINDS)
    found = problems_at(res, kind)
    assert any(p.startswith(f"{file}:{line}: ") and fragment in p for p in found), (found, res["problems"])
    said = res["warnings"] if kind in WARNING_KINDS else res["reasons"]
    assert any(r.startswith("1 ") and f"{file}:{line}" in r for r in said), said
    listed = (tmp_path / "out" / "check_dataset" / "problems.txt").read_text("utf-8")
    assert f"{file}:{line}: " in listed
    if kind == "missing_chars":
        missing = res["charset"]["missing_chars"]
        assert set(missing) == {"€", "ŵ"} and missing["€"] == {"count": 1, "examples": [f"train.txt:{line}"]}


def test_missing_chars_warn_and_fail_only_when_strict(v4, ds, tmp_path):
    # PaddleX passes a dataset whose labels hold characters outside the charset (it trains with its dict)
    line = _missing_chars(ds)[1]
    res = check_dataset(ds, tmp_path / "out", progress=False)
    assert res["check_pass"] is True and res["reasons"] == [] and res["strict"] is False
    assert res["warnings"] == [f"1 label(s) with characters missing from the charset: train.txt:{line}"]
    assert res["charset"]["missing_chars"]["€"]["count"] == 1
    res = check_dataset(ds, tmp_path / "out", progress=False, strict=True)
    assert res["check_pass"] is False and res["warnings"] == []
    assert res["reasons"] == [f"1 label(s) with characters missing from the charset: train.txt:{line}"]


def test_missing_val_txt_and_empty_dataset(v4, ds, tmp_path):
    (ds / "val.txt").unlink()
    res = check_dataset(ds, tmp_path / "out", progress=False)
    assert res["check_pass"] is False and res["problem_counts"] == {"list_file": 1}
    assert problems_at(res, "list_file")[0].startswith("val.txt: missing")
    (ds / "train.txt").write_text("\n\n", "utf-8")
    res = check_dataset(ds, tmp_path / "out", progress=False)
    assert "train.txt: no samples" in problems_at(res, "list_file")
    with pytest.raises(InputError, match="not a dataset folder"):
        check_dataset(tmp_path / "nowhere", tmp_path / "out")


def test_dataset_dict_overrides_the_model_charset(ds, tmp_path):
    line = _missing_chars(ds)[1]
    chars = sorted({c for text in EN_LINES + ZH_LINES for c in text} - {" "})
    (ds / "dict.txt").write_text("\n".join([*chars, "€"]) + "\n", "utf-8")
    res = check_dataset(ds, tmp_path / "out", model_name="no-such-model-needed", progress=False)
    assert res["charset"]["source"] == "dict.txt" and res["charset"]["size"] == len(chars) + 2  # + ' '
    assert problems_at(res, "missing_chars") == [
        f"train.txt:{line}: label '5 € ŵ' has 2 character(s) not in the dict.txt charset: '5ŵ'"]
    assert list(res["charset"]["missing_chars"]) == ["5", "ŵ"]


def test_duplicates_and_unreadable_images_are_reported_once(v4, ds, tmp_path):
    line = append(ds / "train.txt", "images/gone.png\ta\nimages/gone.png\tb\n")
    res = check_dataset(ds, tmp_path / "out", progress=False)
    assert problems_at(res, "unreadable") == [f"train.txt:{line}: image 'images/gone.png' cannot be read: "
                                              "no such file or directory"]
    assert problems_at(res, "duplicate") == [f"train.txt:{line + 1}: image 'images/gone.png' is listed already "
                                             f"at train.txt:{line} with another label ('a')"]


def test_u2028_label_gives_the_same_answer_in_check_train_and_evaluate(v4, ds, tmp_path):
    # U+2028 is a line break to str.splitlines() but not to PaddleX's readlines(): one line, the editor's number
    from edgerec.data.check import model_charset
    from edgerec.train.data import char_index, read_split

    shutil.copy(ds / "images" / "en0.png", ds / "images" / "sep.png")
    line = append(ds / "val.txt", "images/sep.png\tHello\u2028World\nimages/en1.png\tafter\n")
    res = check_dataset(ds, tmp_path / "out", progress=False)
    assert res["check_pass"] is True and res["attributes"]["val_samples"] == 5
    assert problems_at(res, "missing_chars")[0].startswith(f"val.txt:{line}: ")
    index = char_index(["blank", *model_charset()])
    _, report = read_split(ds, "val", index, input_height=48, max_width=320, stride=8, keep_all=True)
    assert report.lines == 5 and [e["where"] for e in report.missing_examples] == [f"val.txt:{line}"]
    assert report.missing_examples[0]["missing"] == ["\u2028"]
    out = evaluate(v4, ds, output=tmp_path / "eval", batch_size=4)
    assert out["samples"] == 5 and out["unreadable"] == 0


def test_strict_reader_names_the_line_that_check_dataset_fails_on(v4, ds, tmp_path):
    from edgerec.data.dataset import read_labelled, read_lines

    line = _two_tabs(ds)[1]
    res = check_dataset(ds, tmp_path / "out", progress=False)
    assert res["check_pass"] is False and res["problems"][0]["line"] == line
    with pytest.raises(InputError, match=f"val.txt:{line}: expected 'path<TAB>label', found 2 tabs"):
        read_labelled(ds, "val")
    lines, problems = read_lines(ds, "val", strict=False)
    assert [p.where for p in problems] == [f"val.txt:{line}"] and len(lines) == 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_named_pipe_list_file_is_not_called_missing(ds, tmp_path):
    from edgerec.data.dataset import read_labelled

    (ds / "val.txt").unlink()
    os.mkfifo(ds / "val.txt")
    res = check_dataset(ds, tmp_path / "out", model_name="PP-OCRv4_mobile_rec", progress=False)  # must not block
    assert res["check_pass"] is False
    assert problems_at(res, "list_file") == ["val.txt: not a regular file (a named pipe)"]
    with pytest.raises(InputError, match="not a regular file"):
        read_labelled(ds, "val")
    with pytest.raises(InputError, match="not a regular file"):
        split_dataset(ds, 50, 50)


def test_output_folder_keeps_files_it_did_not_write(v4, ds, tmp_path):
    out = tmp_path / "out"
    (out / "check_dataset" / "demo_img").mkdir(parents=True)
    (out / "check_dataset" / "mine.txt").write_text("user's", "utf-8")
    (out / "check_dataset" / "demo_img" / "keep.png").write_bytes(b"user's")
    check_dataset(ds, out, progress=False)
    first = sorted(p.name for p in (out / "check_dataset" / "demo_img").iterdir())
    assert "keep.png" in first and (out / "check_dataset" / "mine.txt").read_text("utf-8") == "user's"
    (ds / "val.txt").write_text("images/zh0.png\tx\n", "utf-8")  # fewer samples: our stale images go
    res = check_dataset(ds, out, progress=False)
    now = sorted(p.name for p in (out / "check_dataset" / "demo_img").iterdir())
    ours = {p.rsplit("/", 1)[1] for split in ("train", "val") for p in res["attributes"][f"{split}_sample_paths"]}
    assert set(now) == ours | {"keep.png"} and len(now) < len(first)
    assert (out / "check_dataset" / "mine.txt").is_file()


# ------------------------------------------------------------------------------------------------ split

def test_second_split_keeps_the_users_originals_as_the_one_backup(good_ds, tmp_path):
    ds = shutil.copytree(good_ds, tmp_path / "d")
    (ds / "val.txt").unlink()
    original = (ds / "train.txt").read_bytes()
    assert split_dataset(ds, 50, 50, seed=0)["backups"] == ["train.txt.bak"]
    assert split_dataset(ds, 70, 30, seed=5)["backups"] == []  # val.txt is our output: no val.txt.bak from it
    assert (ds / "train.txt.bak").read_bytes() == original and not (ds / "val.txt.bak").exists()


def test_split_is_all_or_nothing_and_names_the_failing_file(good_ds, tmp_path, monkeypatch):
    import edgerec.data.split as split_mod

    ds = shutil.copytree(good_ds, tmp_path / "d")
    before = {n: (ds / n).read_bytes() for n in ("train.txt", "val.txt")}
    real = os.replace

    def fail_on_val(src, dst):
        if str(dst).endswith("val.txt"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(split_mod.os, "replace", fail_on_val)
    with pytest.raises(InputError, match=r"val\.txt: cannot replace it \(No space left on device\); nothing was "
                                         "changed"):
        split_dataset(ds, 70, 30, seed=1)
    monkeypatch.undo()
    assert {n: (ds / n).read_bytes() for n in before} == before
    assert not [p for p in ds.iterdir() if ".tmp" in p.name or p.suffix == ".bak"]

    real_stage = split_mod._stage

    def fail_staging_val(folder, name, data, mode):
        if name == "val.txt":
            raise OSError(122, "Disk quota exceeded")
        return real_stage(folder, name, data, mode)

    monkeypatch.setattr(split_mod, "_stage", fail_staging_val)
    with pytest.raises(InputError, match=r"val\.txt: cannot write it"):
        split_dataset(ds, 70, 30, seed=1)
    assert {n: (ds / n).read_bytes() for n in before} == before
    assert not [p for p in ds.iterdir() if ".tmp" in p.name or p.suffix == ".bak"]
    monkeypatch.undo()
    assert split_dataset(ds, 70, 30, seed=1)["backups"] == ["train.txt.bak", "val.txt.bak"]  # now it works


def test_split_refuses_a_read_only_list_file_and_keeps_modes(good_ds, tmp_path):
    ds = shutil.copytree(good_ds, tmp_path / "d")
    (ds / "train.txt").chmod(0o444)
    before = (ds / "train.txt").read_bytes()
    with pytest.raises(InputError, match=r"train\.txt: read-only \(mode 0444\)"):
        split_dataset(ds, 70, 30)
    assert (ds / "train.txt").read_bytes() == before and not (ds / "train.txt.bak").exists()
    (ds / "train.txt").chmod(0o640)
    split_dataset(ds, 70, 30)
    assert stat.S_IMODE((ds / "train.txt").stat().st_mode) == 0o640



def test_split_is_seeded_reproducible_and_keeps_bak(good_ds, tmp_path):
    a, b, c = (shutil.copytree(good_ds, tmp_path / n) for n in "abc")
    original = {n: (good_ds / n).read_bytes() for n in ("train.txt", "val.txt")}
    assert split_dataset(a, 70, 30, seed=0) == {"train": 5, "val": 2, "backups": ["train.txt.bak", "val.txt.bak"]}
    split_dataset(b, 70, 30, seed=0)
    split_dataset(c, 70, 30, seed=1)
    files = {d: [(d / n).read_bytes() for n in ("train.txt", "val.txt")] for d in (a, b, c)}
    assert files[a] == files[b] and files[a] != files[c]
    pool = sorted(ln for data in original.values() for ln in data.decode().splitlines())
    assert sorted(b"".join(files[a]).decode().splitlines()) == pool
    for n, data in original.items():
        assert (a / f"{n}.bak").read_bytes() == data
    # again: the .bak still holds the files from before the first split, and the same seed deals the same lines
    assert split_dataset(a, 70, 30, seed=0)["backups"] == []
    assert [(a / n).read_bytes() for n in ("train.txt", "val.txt")] == files[b]
    assert all((a / f"{n}.bak").read_bytes() == data for n, data in original.items())
    assert not [p for p in a.iterdir() if ".tmp" in p.name]


def test_split_needs_percentages_summing_to_100(good_ds, tmp_path):
    with pytest.raises(InputError, match="sum to 100"):
        split_dataset(good_ds, 90, 20)
    with pytest.raises(InputError, match="0 to 100"):
        split_dataset(good_ds, 110, -10)
    with pytest.raises(InputError, match="nothing to split"):
        split_dataset(tmp_path, 80, 20)
    only_train = shutil.copytree(good_ds, tmp_path / "t")
    (only_train / "val.txt").unlink()
    assert split_dataset(only_train, 50, 50) == {"train": 2, "val": 2, "backups": ["train.txt.bak"]}


# ------------------------------------------------------------------------------------------------ evaluate

@pytest.fixture()
def eval_ds(ds):
    """val.txt with labels made so that some are wrong; one image is missing and has an empty label."""
    (ds / "val.txt").write_text(
        "images/en0.png\tHello World\n"  # right
        "images/en3.png\tABC-124\n"  # the image says ABC-123: distance 1/7
        "images/en1.png\tTotal:$1,299.00\n"  # right: spaces are ignored
        "images/zh2.png\t北京欢迎\n"  # the image says 北京欢迎你: distance 1/5
        "images/missing.png\t\n",  # unreadable: wrong (distance 1) even with an empty label
        "utf-8")
    return ds


def test_evaluate_equals_a_hand_computation(v4, eval_ds, tmp_path):
    out = tmp_path / "eval"
    res = evaluate(v4, eval_ds, output=out, batch_size=4)
    preds = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text("utf-8").splitlines()]
    # the model reads these rendered lines exactly (test_recognize checks it): the hand computation rests on it
    assert [p["pred"].strip() for p in preds[:4]] == ["Hello World", "ABC-123", EN_LINES[1], "北京欢迎你"]
    assert res["metrics"]["acc"] == pytest.approx(2 / (5 + EPS), abs=1e-12)
    assert res["metrics"]["norm_edit_dis"] == pytest.approx(1 - (1 / 7 + 1 / 5 + 1) / (5 + EPS), abs=1e-12)
    assert [p["correct"] for p in preds] == [True, False, True, False, False]
    assert [p["path"] for p in preds] == ["images/en0.png", "images/en3.png", "images/en1.png", "images/zh2.png",
                                          "images/missing.png"]
    assert preds[4]["error"] == "no such file or directory" and preds[4]["pred"] == "" and preds[4]["score"] == 0
    assert all(0.5 < p["score"] <= 1 for p in preds[:4])
    assert (res["samples"], res["correct"], res["unreadable"]) == (5, 2, 1)
    assert res["unreadable_images"] == ["images/missing.png: no such file or directory"]
    assert json.loads((out / "evaluate_result.json").read_text("utf-8")) == res
    assert res["done_flag"] is True and set(res["metrics"]) == {"acc", "norm_edit_dis"}
    from edgerec.utils import cpu

    assert res["cpu"] == cpu.isa_summary() and res["int8_vnni"] is cpu.int8_vnni()  # whose arithmetic the figures are


def test_failed_samples_count_as_wrong_in_the_metric():
    assert rec_metrics(["", "a"], ["", "a"])["acc"] == pytest.approx(1.0, abs=1e-4)
    m = rec_metrics(["", "a"], ["", "a"], failed=[True, False])
    assert m["acc"] == pytest.approx(0.5, abs=1e-4) and m["norm_edit_dis"] == pytest.approx(0.5, abs=1e-4)


# ------------------------------------------------------------------------------------------------ CLI

@pytest.fixture()
def runner():
    return CliRunner()


def test_cli_check_dataset_exit_codes(v4, runner, ds, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(main, ["check-dataset", str(ds), "--output", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "check_pass: true" in res.stdout and (out / "check_dataset_result.json").is_file()
    line = _no_tab(ds)[1]
    res = runner.invoke(main, ["check-dataset", str(ds), "--output", str(out), "--quiet"])
    assert res.exit_code == 1
    assert f"{ds / 'train.txt'}:{line}: expected 'path<TAB>label', found 0 tabs" in res.stdout
    assert "check_pass: false" in res.stdout and "the dataset check failed" in res.stderr
    assert json.loads((out / "check_dataset_result.json").read_text("utf-8"))["check_pass"] is False
    res = runner.invoke(main, ["check-dataset", str(ds), "--model", "PP-OCRv4_mobile_recc"])
    assert res.exit_code == 1 and "unknown model" in res.stderr


def test_cli_missing_chars_warn_exit_0_and_fail_with_strict(v4, runner, ds, tmp_path):
    line = _missing_chars(ds)[1]
    args = ["check-dataset", str(ds), "--output", str(tmp_path / "out"), "--quiet"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output  # PaddleX passes it
    assert "check_pass: true" in res.stdout
    assert f"edgerec: warning: 1 label(s) with characters missing from the charset: train.txt:{line}" in res.stderr
    res = runner.invoke(main, [*args, "--strict"])
    assert res.exit_code == 1 and "check_pass: false" in res.stdout and "the dataset check failed" in res.stderr


def test_cli_split_then_check(v4, runner, ds, tmp_path):
    res = runner.invoke(main, ["check-dataset", str(ds), "--split", "--train-percent", "70", "--val-percent", "30",
                               "--seed", "3", "--output", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "train.txt 5, val.txt 2 (seed 3)" in res.stdout and (ds / "train.txt.bak").is_file()
    for args in (["--split"], ["--split", "--train-percent", "90", "--val-percent", "20"], ["--train-percent", "90"]):
        res = runner.invoke(main, ["check-dataset", str(ds), *args])
        assert res.exit_code == 2, args


def test_cli_evaluate(v4, runner, eval_ds, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(main, ["evaluate", V4, "--dataset", str(eval_ds), "--output", str(out), "--quiet"])
    assert res.exit_code == 1  # an unreadable image: reported, counted wrong, the others still evaluated
    assert "missing.png: no such file or directory" in res.stderr
    assert "acc 0.4000  norm_edit_dis 0.7314  (2/5 correct, 1 unreadable" in res.stdout
    (eval_ds / "val.txt").write_text("images/en0.png\tHello World\n", "utf-8")
    res = runner.invoke(main, ["evaluate", V4, "--dataset", str(eval_ds), "--output", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "evaluate_result.json").read_text("utf-8"))["metrics"]["acc"] == pytest.approx(1, 1e-4)
    assert runner.invoke(main, ["evaluate", "--dataset", str(eval_ds)]).exit_code == 2


@pytest.mark.parametrize("args", [["check-dataset"], ["evaluate"]])
def test_help(runner, args):
    res = runner.invoke(main, [*args, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output
