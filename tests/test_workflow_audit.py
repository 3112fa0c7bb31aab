"""The workflow audit's fixes: calibrate does not delete an output folder it did not write, quantize refuses an empty
or train.txt-only eval set before NNCF runs, symlink loops in a dataset are reported as bad paths, train leaves
its output folder alone when it cannot start and keeps the earlier train.log, and rendering streams to disk."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.cli import main
from edgerec.errors import InputError, OutputExistsError

from conftest import EN_LINES, V4

# a charset for the renderer without loading a model: blank first, then letters and digits (so prose and numbers
# are rendered too)
CLASSES = ["blank", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]


def _one_error_line(res) -> str:
    """The CLI failed as edgerec fails: exit 1 and one `edgerec: error: ...` line on stderr, no traceback."""
    assert res.exit_code == 1, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgerec: error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def _dataset(folder: Path, lists: dict[str, list[str]]) -> Path:
    """A dataset folder with images/w0.png ... for EN_LINES and the given list files (names of those lines)."""
    from edgerec.io.fonts import render_line

    (folder / "images").mkdir(parents=True)
    for i, text in enumerate(EN_LINES):
        cv2.imwrite(str(folder / f"images/w{i}.png"), render_line(text, height=32, font_kind="latin"))
    for name, rows in lists.items():
        (folder / name).write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
    return folder


ROWS = [f"images/w{i}.png\t{t}" for i, t in enumerate(EN_LINES)]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ 1. calibrate --output


def test_save_dataset_keeps_a_folder_that_holds_other_files(tmp_path):
    from edgerec.quant.calibration import render_lines, save_dataset

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(OutputExistsError, match="notes.txt"):
        save_dataset(render_lines(CLASSES, 2, seed=0), mine)
    assert _tree(mine) == {"notes.txt": b"my notes"}
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary folder left behind

    # an earlier set (images/ and train.txt only) is replaced whole
    calib = tmp_path / "calib"
    save_dataset(render_lines(CLASSES, 3, seed=0), calib)
    save_dataset(render_lines(CLASSES, 2, seed=1), calib)
    assert sorted(p.name for p in (calib / "images").iterdir()) == ["00000.png", "00001.png"]
    assert len((calib / "train.txt").read_text("utf-8").splitlines()) == 2


def test_calibrate_refuses_a_folder_with_other_files_before_rendering(tmp_path, monkeypatch):
    import edgerec.api  # noqa: F401 (imported first: it binds the real resolve_model, not the stand-in)
    import edgerec.quant.calibration as calibration
    import edgerec.zoo.resolve as resolve

    def never(*args, **kwargs):
        raise AssertionError("the output folder must be checked before the model is resolved or lines rendered")

    monkeypatch.setattr(resolve, "resolve_model", never)
    monkeypatch.setattr(calibration, "LineRenderer", never)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.png").write_bytes(b"not mine")
    (out / "train.txt").write_text("an earlier list\n")
    line = _one_error_line(CliRunner().invoke(main, ["calibrate", V4, "--output", str(out), "--n", "3"]))
    assert str(out) in line and "keep.png" in line and "edgerec calibrate" in line
    assert _tree(out) == {"keep.png": b"not mine", "train.txt": b"an earlier list\n"}


def test_calibrate_writes_and_replaces_its_own_set(tmp_path):
    out = tmp_path / "calib"
    res = CliRunner().invoke(main, ["calibrate", V4, "--output", str(out), "--n", "3", "--seed", "2"])
    assert res.exit_code == 0, res.output
    rows = (out / "train.txt").read_text("utf-8").splitlines()
    assert [r.split("\t")[0] for r in rows] == [f"images/{i:05d}.png" for i in range(3)]
    assert all(cv2.imread(str(out / r.split("\t")[0])) is not None for r in rows)
    res = CliRunner().invoke(main, ["calibrate", V4, "--output", str(out), "--n", "2"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["00000.png", "00001.png"]


# ------------------------------------------------------------------------------------ 2 and 3. quantize's sets


@pytest.fixture
def no_quantizing(monkeypatch):
    """Anything past the set checks (model resolution, rendering, NNCF) fails the test."""
    import nncf

    import edgerec.api  # noqa: F401 (imported first: it binds the real resolve_model, not the stand-in)
    import edgerec.quant.calibration as calibration
    import edgerec.quant.quantize as q
    import edgerec.zoo.resolve as resolve

    def never(*args, **kwargs):
        raise AssertionError("the eval / calibration sets must be refused before anything else runs")

    for mod, name in ((nncf, "quantize"), (q, "quantize_ir"), (resolve, "resolve_model"),
                      (calibration, "LineRenderer"), (calibration, "load_image")):
        monkeypatch.setattr(mod, name, never)


def test_an_empty_eval_set_is_refused_before_quantizing(tmp_path, no_quantizing):
    from edgerec.quant.quantize import quantize_model

    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS, "val.txt": ["", "  "]})  # blank lines only
    with pytest.raises(InputError, match="no labelled lines to check int8 on") as exc:
        quantize_model(V4, eval_dir=ds, output=tmp_path / "int8", progress=False)
    assert str(ds / "val.txt") in str(exc.value)
    assert not (tmp_path / "int8").exists()
    line = _one_error_line(CliRunner().invoke(main, ["quantize", V4, "--eval", str(ds), "--output",
                                                     str(tmp_path / "int8")]))
    assert "val.txt" in line and "no labelled lines" in line


def test_an_empty_calibration_set_is_refused_before_quantizing(tmp_path, no_quantizing):
    from edgerec.quant.quantize import QuantizationError, quantize_model

    ds = _dataset(tmp_path / "ds", {"train.txt": []})
    with pytest.raises(InputError, match="no labelled lines to calibrate on") as exc:
        quantize_model(V4, calibration=ds, output=tmp_path / "int8", progress=False)
    assert str(ds / "train.txt") in str(exc.value)
    with pytest.raises(QuantizationError, match="at least 1"):
        quantize_model(V4, eval_size=0, output=tmp_path / "int8", progress=False)
    with pytest.raises(QuantizationError, match="at least 1"):
        quantize_model(V4, subset_size=0, output=tmp_path / "int8", progress=False)
    line = _one_error_line(CliRunner().invoke(main, ["quantize", V4, "--calibration", str(ds)]))
    assert "train.txt" in line and "calibrate on" in line


def test_eval_does_not_fall_back_to_train_txt(tmp_path, no_quantizing):
    from edgerec.quant.quantize import quantize_model

    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS})
    with pytest.raises(InputError) as exc:
        quantize_model(V4, eval_dir=ds, output=tmp_path / "int8", progress=False)
    msg = str(exc.value)
    assert str(ds) in msg and "val.txt or label.txt" in msg and "train.txt is not used" in msg
    line = _one_error_line(CliRunner().invoke(main, ["quantize", V4, "--eval", str(ds)]))
    assert "no val.txt or label.txt" in line


@pytest.mark.parametrize("lists, want", [
    ({"val.txt": ROWS[:2], "train.txt": ROWS[2:]}, ROWS[:2]),  # val.txt first, as edgerec evaluate reads it
    ({"label.txt": ROWS[1:3], "train.txt": ROWS}, ROWS[1:3]),  # an evalset
])
def test_eval_reads_val_txt_or_label_txt(tmp_path, lists, want):
    from edgerec.quant.calibration import dataset_lines

    ds = _dataset(tmp_path / "ds", lists)
    got = dataset_lines(ds, split="val", fallback=False, purpose="to check int8 on (--eval)")
    assert sorted(t for _, t in got) == sorted(r.split("\t")[1] for r in want)
    assert all(isinstance(img, np.ndarray) for img, _ in got)


def test_calibration_falls_back_from_train_txt_as_documented(tmp_path):
    from edgerec.quant.calibration import dataset_sample

    ds = _dataset(tmp_path / "ds", {"label.txt": ROWS[:3]})
    assert [label for _, label in dataset_sample(ds, split="train")] == EN_LINES[:3]
    both = _dataset(tmp_path / "both", {"label.txt": ROWS[:1], "train.txt": ROWS[1:]})
    assert [label for _, label in dataset_sample(both, split="train")] == EN_LINES[1:]  # train.txt first
    # the same seeded sample as before the images were read separately
    import random

    from edgerec.data.dataset import read_labelled

    want = random.Random(5).sample(read_labelled(both.resolve(), split="train"), 2)
    assert dataset_sample(both, 2, seed=5) == want and len(want) == 2


# ------------------------------------------------------------------------------------ 4. symlink loops


@pytest.fixture
def looped(tmp_path):
    """A dataset whose train.txt and val.txt list a path through a symlink loop (la -> lb -> la) on line 2."""
    ds = _dataset(tmp_path / "ds", {"train.txt": [ROWS[0], "la/x.png\tX"], "val.txt": [ROWS[1], "la/x.png\tX"],
                                    "dict.txt": sorted(set("".join(EN_LINES)) - {" "})})
    os.symlink("lb", ds / "la")
    os.symlink("la", ds / "lb")
    return ds


def test_a_symlink_loop_is_a_bad_path_with_file_and_line(looped, tmp_path):
    from edgerec.data.check import check_dataset
    from edgerec.data.dataset import read_lines

    with pytest.raises(InputError, match=r"train\.txt:2: invalid image path 'la/x.png' \(a symlink loop\)"):
        read_lines(looped, "train")
    lines, problems = read_lines(looped, "train", strict=False)
    assert len(lines) == 1 and [(p.kind, p.where) for p in problems] == [("bad_path", "train.txt:2")]

    res = check_dataset(looped, tmp_path / "out", progress=False)
    assert res["check_pass"] is False
    bad = [p for p in res["problems"] if p["kind"] == "bad_path"]
    assert [(p["file"], p["line"]) for p in bad] == [("train.txt", 2), ("val.txt", 2)]
    assert all("symlink loop" in p["message"] for p in bad)


def test_a_dataset_folder_that_is_a_symlink_loop_is_a_clear_error(tmp_path):
    from edgerec.data.check import check_dataset
    from edgerec.data.dataset import read_lines
    from edgerec.quant.calibration import dataset_sample

    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    for call in (lambda: check_dataset(tmp_path / "a", tmp_path / "out"), lambda: read_lines(tmp_path / "a"),
                 lambda: dataset_sample(tmp_path / "a")):
        with pytest.raises(InputError, match="not a dataset folder") as exc:
            call()
        assert str(tmp_path / "a") in str(exc.value)
    res = CliRunner().invoke(main, ["check-dataset", str(tmp_path / "a"), "--output", str(tmp_path / "out")])
    assert "symlink loop" in _one_error_line(res)


def test_the_commands_report_a_symlink_loop_without_a_traceback(looped, tmp_path, no_quantizing):
    runner = CliRunner()
    res = runner.invoke(main, ["check-dataset", str(looped), "--output", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{looped / 'train.txt'}:2: invalid image path 'la/x.png' (a symlink loop)" in res.stdout
    line = _one_error_line(runner.invoke(main, ["evaluate", V4, "--dataset", str(looped), "--output",
                                                str(tmp_path / "ev"), "--quiet"]))
    assert "val.txt:2" in line and "symlink loop" in line
    line = _one_error_line(runner.invoke(main, ["quantize", V4, "--calibration", str(looped)]))
    assert "train.txt:2" in line and "symlink loop" in line


# ------------------------------------------------------------------------------------ 5. train's output folder

_NO_TORCH = [m for m in ("torch", "onnx2torch") if importlib.util.find_spec(m) is None]
needs_torch = pytest.mark.skipif(bool(_NO_TORCH), reason="needs the train extra")


def _earlier_run(out: Path) -> dict[str, bytes]:
    out.mkdir()
    (out / "train.log").write_text("[2026-01-01 00:00:00] the earlier run\n", encoding="utf-8")
    (out / "config.yaml").write_text("earlier: config\n", encoding="utf-8")
    return _tree(out)


@needs_torch
@pytest.mark.parametrize("lists, model, match", [
    ({"train.txt": ROWS}, V4, "no val.txt / label.txt"),
    ({"train.txt": ROWS, "val.txt": []}, V4, "nothing to validate on"),
    ({"train.txt": [], "val.txt": ROWS}, V4, "nothing to train on"),
    ({"train.txt": ROWS, "val.txt": ["images/w0.png"]}, V4, r"val\.txt:1"),
    ({"train.txt": ROWS, "val.txt": ROWS}, "no_such_model_rec", "no_such_model_rec"),
    ({"train.txt": ROWS, "val.txt": ROWS}, "<a folder with no model>", "no_model"),
])
def test_train_that_cannot_start_leaves_the_output_folder_as_it_was(tmp_path, lists, model, match):
    from edgerec.train import TrainError
    from edgerec.train.finetune import TrainConfig, finetune

    if model.startswith("<"):  # a local path that exists but holds no model: refused before the output is touched
        (tmp_path / "no_model").mkdir()
        (tmp_path / "no_model" / "notes.txt").write_text("not a model\n", encoding="utf-8")
        model = str(tmp_path / "no_model")
    ds = _dataset(tmp_path / "ds", lists)
    out = tmp_path / "out"
    before = _earlier_run(out)
    with pytest.raises(TrainError, match=match):
        finetune(TrainConfig(model=model, dataset=str(ds), output=str(out)), progress=False)
    assert _tree(out) == before and sorted(p.name for p in out.iterdir()) == ["config.yaml", "train.log"]


@needs_torch
def test_train_whose_dict_covers_no_training_label_is_refused_before_config_yaml(tmp_path):
    """The dict lacks a character of every label: no line can train. The run says so (with the characters)
    instead of training on nothing, and an earlier run's config.yaml is left as it was."""
    from edgerec.train import TrainError
    from edgerec.train.finetune import TrainConfig, finetune

    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS, "val.txt": ROWS})
    kept = list("0123456789")  # every line has a letter
    assert all(set(t) - set(kept) for t in EN_LINES)
    (ds / "dict.txt").write_text("".join(f"{c}\n" for c in kept), encoding="utf-8")
    out = tmp_path / "out"
    before = _earlier_run(out)
    with pytest.raises(TrainError, match=r"none of the \d+ lines of .*train\.txt can be trained on .*missing"):
        finetune(TrainConfig(model=V4, dataset=str(ds), output=str(out), threads=2), progress=False)
    assert (out / "config.yaml").read_bytes() == before["config.yaml"]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "train.log"]  # no model folder, no scratch


def test_dict_warnings_name_duplicates_and_entries_no_label_can_use(tmp_path):
    from edgerec.train.charset_head import dict_warnings

    path = tmp_path / "dict.txt"
    assert dict_warnings(["a", "b", " "], path) == []
    got = dict_warnings(["a", "b", "a", "🇩🇪", "", "b"], path)
    assert len(got) == 2
    assert "2 entries are listed more than once" in got[0] and "'a' on lines 1, 3" in got[0]
    assert "'b' on lines 2, 6" in got[0]
    assert "2 entries are not one character" in got[1] and "line 4 '🇩🇪'" in got[1] and "line 5 ''" in got[1]


@needs_torch
def test_train_cli_without_val_txt_is_one_error_line(tmp_path):
    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS})
    out = tmp_path / "out"
    before = _earlier_run(out)
    line = _one_error_line(CliRunner().invoke(main, ["train", V4, "--dataset", str(ds), "--output", str(out)]))
    assert "val.txt" in line
    assert _tree(out) == before


@needs_torch
def test_train_appends_to_the_earlier_train_log(tmp_path, monkeypatch):
    """Two runs into one folder: the first run's lines stay, the second starts after a run line (the training
    itself is stubbed out: what is checked is the log file's handling)."""
    import edgerec.train.finetune as ft

    def fake_run(cfg, torch, device, out, logf, state, result, progress):
        logf(f"trained {cfg.seed}")
        return result

    monkeypatch.setattr(ft, "_run", fake_run)
    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS, "val.txt": ROWS})
    out = tmp_path / "out"
    _earlier_run(out)
    for seed in (1, 2):
        ft.finetune(ft.TrainConfig(model=V4, dataset=str(ds), output=str(out), seed=seed), progress=False)
    log = (out / "train.log").read_text("utf-8")
    assert log.startswith("[2026-01-01 00:00:00] the earlier run\n\n")
    assert log.count(ft.RUN_MARK) == 2 and log.index("trained 1") < log.index("trained 2")
    blocks = log.split("\n\n")
    assert len(blocks) == 3 and all(ft.RUN_MARK in b.splitlines()[0] for b in blocks[1:])


# ------------------------------------------------------------------------------------ 6. rendering


def test_save_dataset_writes_each_line_as_it_comes(tmp_path):
    """A generator is consumed one line at a time: when line k is asked for, line k-1 is already on disk (in the
    temporary folder) and nothing holds the earlier images."""
    from edgerec.quant.calibration import iter_lines, render_lines, save_dataset

    out = tmp_path / "calib"
    written: list[int] = []

    def lines():
        for k, line in enumerate(iter_lines(CLASSES, 5, seed=3)):
            tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".calib.tmp-")]
            assert len(tmp) == 1
            written.append(len(list((tmp[0] / "images").iterdir())))
            assert written[-1] == k
            yield line

    save_dataset(lines(), out, total=5)
    assert written == [0, 1, 2, 3, 4]
    want = render_lines(CLASSES, 5, seed=3)  # the streamed set is the in-memory one
    rows = (out / "train.txt").read_text("utf-8").splitlines()
    assert [r.split("\t")[1] for r in rows] == [t for _, t in want]
    for row, (img, _) in zip(rows, want):
        assert np.array_equal(cv2.imread(str(out / row.split("\t")[0])), img)


def test_rendering_shows_a_progress_bar_when_asked_and_on_a_terminal_only(capsys, monkeypatch):
    from edgerec.quant import calibration

    calibration.render_lines(CLASSES, 3, seed=0, progress=True)
    assert "rendering lines" in capsys.readouterr().err
    calibration.render_lines(CLASSES, 3, seed=0, progress=None)  # not a terminal here
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(calibration, "PROGRESS_MIN", 3)
    calibration.render_lines(CLASSES, 3, seed=0, progress=None)
    assert "rendering lines" in capsys.readouterr().err
    calibration.render_lines(CLASSES, 2, seed=0, progress=None)  # below the threshold: no bar
    assert capsys.readouterr().err == ""


def test_the_set_size_bounds():
    """--subset-size and --eval-size stay bounded by what memory holds (about 2.5 and 4 GB at the bounds, from 40 KB
    a rendered line plus 0.2 MB a calibration tensor); calibrate's --n streams to disk."""
    from edgerec.commands.quantize import calibrate, quantize

    bounds = {p.name: (p.type.min, p.type.max) for p in [*quantize.params, *calibrate.params]
              if p.name in ("subset_size", "eval_size", "count")}
    assert bounds == {"subset_size": (1, 10000), "eval_size": (1, 100000), "count": (1, 100000)}


# ------------------------------------------------------------------------------------ from an audit, 2026-12-07


@needs_torch
@pytest.mark.parametrize("blocker", ["train_result.json", "config.yaml"])
def test_train_whose_output_file_is_blocked_stops_before_any_work(tmp_path, blocker):
    from edgerec.train import TrainError
    from edgerec.train.finetune import TrainConfig, finetune

    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS, "val.txt": ROWS})
    out = tmp_path / "out"
    (out / blocker).mkdir(parents=True)  # a folder where a file goes: the run would end in a traceback
    with pytest.raises(TrainError, match=f"{blocker}: is in the way"):
        finetune(TrainConfig(model=V4, dataset=str(ds), output=str(out)), progress=False)
    assert sorted(p.name for p in out.iterdir()) == [blocker]


@needs_torch
def test_train_overwrite_refuses_a_users_file_in_best_accuracy_before_touching_config_yaml(tmp_path):
    from edgerec.train import TrainError
    from edgerec.train.finetune import TrainConfig, finetune

    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS, "val.txt": ROWS})
    out = tmp_path / "out"
    (out / "best_accuracy").mkdir(parents=True)
    (out / "best_accuracy" / "README.md").write_text("mine", "utf-8")
    (out / "config.yaml").write_text("my: config\n", "utf-8")
    before = _tree(out)
    with pytest.raises(TrainError, match=r"best_accuracy: holds files edgerec train did not write \(README\.md\)"):
        finetune(TrainConfig(model=V4, dataset=str(ds), output=str(out), overwrite=True), progress=False)
    assert _tree(out) == before


def test_training_leaves_out_empty_labels_and_validation_keeps_unreadable_images(tmp_path):
    from edgerec.train.data import char_index, read_split

    rows = [*ROWS[:3], "images/w3.png\t", "images/w4.png\t   ", "images/missing.png\tgone"]
    ds = _dataset(tmp_path / "ds", {"train.txt": rows, "val.txt": rows})
    index = char_index(CLASSES + [" ", ",", ".", "-", "'", ":"])
    train, rep = read_split(ds, "train", index, input_height=48, max_width=3200, stride=8, keep_all=False)
    assert rep.empty_lines == 2 and len(rep.unreadable) == 1
    assert train and not {"train.txt:4", "train.txt:5"} & {s.where for s in train}
    assert any("2 empty labels (left out of training" in line for line in rep.summary())
    val, vrep = read_split(ds, "val", index, input_height=48, max_width=10**6, stride=8, keep_all=True)
    assert len(val) == 6 and [s.height for s in val][-1] == 0  # read as '' (wrong), as edgerec evaluate counts it
    assert any("kept: counted as read wrong" in line for line in vrep.summary())


def test_an_image_listed_on_many_lines_is_decoded_once(tmp_path, monkeypatch):
    import edgerec.train.data as data

    rows = [ROWS[0]] * 500 + ["images/missing.png\tgone"] * 300 + ROWS[1:3]
    ds = _dataset(tmp_path / "ds", {"train.txt": rows})
    decoded = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda path: decoded.append(str(path)) or real(path))
    index = data.char_index(CLASSES + [" ", ",", ".", "-", "'", ":"])
    train, rep = data.read_split(ds, "train", index, input_height=48, max_width=3200, stride=8, keep_all=False)
    assert sum(Path(s.path).name == "w0.png" for s in train) == 500 and len(rep.unreadable) == 300  # all there
    assert sorted(decoded) == sorted({str(ds / "images/w0.png"), str(ds / "images/missing.png"),
                                      str(ds / "images/w1.png"), str(ds / "images/w2.png")})


def test_split_refuses_a_list_file_that_is_not_utf8_and_changes_nothing(tmp_path):
    from edgerec.data.split import split_dataset

    ds = _dataset(tmp_path / "ds", {"val.txt": ROWS})
    (ds / "train.txt").write_bytes("".join(f"{r}\n" for r in ROWS).encode("utf-16"))
    before = _tree(ds)
    with pytest.raises(InputError, match=r"train\.txt:1: not UTF-8"):
        split_dataset(ds, 50, 50)
    assert _tree(ds) == before


def test_a_dict_with_a_byte_order_mark_keeps_its_first_character(tmp_path):
    from edgerec.runtime.charset import read_dict_lines

    assert read_dict_lines("\ufeffH\ne\n".encode()) == ["H", "e"]
    assert read_dict_lines("\u3000\na\n".encode()) == ["\u3000", "a"]  # PP-OCRv5's first entry stays


def test_a_dict_txt_that_is_a_folder_is_refused_by_check_and_train(tmp_path):
    from edgerec.train import TrainError
    from edgerec.train.charset_head import dataset_dict

    ds = _dataset(tmp_path / "ds", {"train.txt": ROWS, "val.txt": ROWS})
    (ds / "dict.txt").mkdir()
    with pytest.raises(TrainError, match="dict.txt: not a regular file"):
        dataset_dict(ds, None)
    res = CliRunner().invoke(main, ["check-dataset", str(ds), "--model", V4])
    assert res.exit_code == 1 and "not a regular file" in res.output, res.output


@pytest.mark.parametrize("edit, match", [
    (("input_height", "0"), "corrupt input_height"), (("input_height", "100000"), "corrupt input_height"),
    (("input_height", "32"), "the model's input is 48 high"), (("charset", "[1, 2]"), "not a list of strings"),
])
def test_an_ir_with_corrupt_metadata_is_one_model_error(tmp_path, edgerec_home, edit, match):
    import re
    import shutil

    from edgerec.errors import ModelError
    from edgerec.zoo.export import read_info

    src = edgerec_home / "models" / V4 / "fp32"
    for name in ("model.xml", "model.bin"):
        shutil.copy(src / name, tmp_path / name)
    xml = (tmp_path / "model.xml").read_text("utf-8")
    key, value = edit
    xml, n = re.subn(rf'(<{key} value=")[^"]*(")', lambda m: m.group(1) + value.replace('"', "&quot;") + m.group(2),
                     xml, count=1)
    assert n == 1
    (tmp_path / "model.xml").write_text(xml, "utf-8")
    with pytest.raises(ModelError, match=match):
        read_info(tmp_path / "model.xml")


def test_a_utf16_list_file_is_one_problem_not_one_per_line(tmp_path):
    from edgerec.data.dataset import parse_list_file

    ds = _dataset(tmp_path / "ds", {})
    (ds / "val.txt").write_bytes("".join(f"{r}\n" for r in ROWS).encode("utf-16"))
    lines, problems = parse_list_file(ds, "val.txt")
    assert lines == [] and [(p.kind, p.line, p.message) for p in problems] == [
        ("not_utf8", None, "the file is UTF-16: save it as UTF-8")]


def test_export_output_keeps_a_users_own_model_xml(tmp_path, edgerec_home):
    from edgerec.errors import ExportError
    from edgerec.zoo.resolve import export_model

    out = tmp_path / "ir"
    out.mkdir()
    (out / "model.xml").write_text("<?xml version='1.0'?><net name='mine'/>", "utf-8")
    with pytest.raises(ExportError, match="an IR edgerec did not export"):
        export_model(V4, None, output=out)
    assert (out / "model.xml").read_text("utf-8") == "<?xml version='1.0'?><net name='mine'/>"
