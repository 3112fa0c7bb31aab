"""What an audit of the Python API found, kept fixed: a model_dir never runs as another precision or model than
asked, one image for ``recognize``, ``batch_size`` checked when ``predict`` is called, float images in 0..255 (as
PaddleX reads them), results from a stream as soon as a batch is full, bounded engine options."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgerec.errors import InputError, ModelError, ModelNotFoundError, OutputExistsError

from conftest import EN_LINES, V4, install_relabelled_int8, linked_home


@pytest.fixture()
def ir_copy(v4, edgerec_home, tmp_path) -> Path:
    """A user's own IR folder: a copy of PP-OCRv4's fp32 IR (model.xml + model.bin) outside any model home."""
    out = tmp_path / "myir"
    out.mkdir()
    for name in ("model.xml", "model.bin"):
        shutil.copy(edgerec_home / "models" / V4 / "fp32" / name, out / name)
    return out


# ------------------------------------------------------------------ model_dir: the precision asked for, or an error

def test_an_ir_folder_runs_as_its_own_precision_unless_another_is_asked(v4, edgerec_home, tmp_path, monkeypatch):
    from edgerec import create_model

    root = linked_home(edgerec_home, tmp_path / "home", monkeypatch)
    int8 = install_relabelled_int8(root)
    assert create_model(model_dir=int8.parent, progress=False).precision == "int8"  # as it is
    # asked for fp32 / bf16 in the int8 folder: the fp32 IR beside it (a folder of precisions), never the int8 one
    fp32 = create_model(model_dir=int8.parent, precision="fp32", progress=False)
    assert fp32.precision == "fp32" and fp32.model_path == root / "fp32" / "model.xml"
    # asked for int8 in the fp32 folder, or in the folder of precisions: the int8 IR
    for folder in (root / "fp32", root):
        model = create_model(model_dir=folder, precision="int8", progress=False)
        assert model.precision == "int8" and model.model_path == int8


def test_an_ir_of_another_precision_with_none_beside_it_is_an_error(ir_copy):
    from edgerec import create_model

    with pytest.raises(ModelError, match=r"holds an fp32 IR, not the int8 one.*edgerec quantize --model-dir"):
        create_model(model_dir=ir_copy, precision="int8", progress=False)
    with pytest.raises(ModelError, match="holds an fp32 IR, not the fp16 one"):
        create_model(model_dir=ir_copy / "model.xml", precision="fp16", progress=False)
    assert create_model(model_dir=ir_copy, progress=False).precision == "fp32"


def test_a_model_name_that_is_not_the_irs_is_an_error_as_in_paddlex(ir_copy):
    from edgerec import create_model

    with pytest.raises(ModelError, match=f"this IR is {V4}, not en_PP-OCRv3_mobile_rec"):
        create_model("en_PP-OCRv3_mobile_rec", model_dir=ir_copy, progress=False)
    assert create_model(V4, model_dir=ir_copy, progress=False).model_name == V4


def test_quantize_writes_int8_inside_a_users_ir_folder_and_never_beside_it(ir_copy, tmp_path):
    from edgerec.zoo.resolve import ResolvedModel, installed_ir, quantize_target, resolve_model

    resolved = resolve_model(model_dir=ir_copy)
    assert quantize_target(resolved, ir_copy) == ir_copy / "int8"  # not tmp_path / "int8", a folder not ours
    home_like = ResolvedModel(V4, tmp_path / "tree" / "fp32" / "model.xml", "ir", "fp32")
    assert quantize_target(home_like, tmp_path / "tree" / "fp32") == tmp_path / "tree" / "int8"
    assert installed_ir(None, ir_copy, "int8") is None
    (ir_copy / "int8").mkdir()
    install_relabelled_int8_at(ir_copy / "model.xml", ir_copy / "int8")
    assert installed_ir(None, ir_copy, "int8") == ir_copy / "int8" / "model.xml"
    assert resolve_model(model_dir=ir_copy, precision="int8").path == ir_copy / "int8" / "model.xml"


def install_relabelled_int8_at(fp32_xml: Path, folder: Path) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(fp32_xml))
    model.set_rt_info("int8", ["model_info", "precision"])
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)


def test_quantize_refuses_an_output_folder_holding_a_users_files_before_any_work(ir_copy, tmp_path, monkeypatch):
    from edgerec.quant import calibration
    from edgerec.quant.quantize import quantize_model

    (ir_copy / "int8").mkdir()
    (ir_copy / "int8" / "precious.txt").write_text("mine")
    monkeypatch.setattr(calibration, "render_lines", lambda *a, **k: pytest.fail("rendered before the check"))
    with pytest.raises(OutputExistsError, match=r"precious\.txt"):
        quantize_model(model_dir=ir_copy, progress=False)
    other = tmp_path / "out"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"notes\.md"):
        quantize_model(model_dir=ir_copy, output=other, progress=False)
    assert (ir_copy / "int8" / "precious.txt").read_text() == "mine" and (other / "notes.md").read_text() == "mine"


def test_atomic_dir_with_owned_names_replaces_only_its_own_folder(tmp_path):
    from edgerec.utils.fs import atomic_dir

    out = tmp_path / "out"
    with atomic_dir(out, owned=("a.txt",), what="writer") as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_dir(out, owned=("a.txt",), what="writer") as tmp:  # its own earlier output: replaced
        (tmp / "a.txt").write_text("2")
    assert (out / "a.txt").read_text() == "2"
    (out / "b.txt").write_text("user")
    with pytest.raises(OutputExistsError, match=r"holds files writer did not write \(b\.txt\)"):
        with atomic_dir(out, owned=("a.txt",), what="writer") as tmp:
            pytest.fail("must refuse before the body runs")
    assert (out / "b.txt").read_text() == "user" and (out / "a.txt").read_text() == "2"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        with atomic_dir(tmp_path / "file", owned=("a.txt",)):
            pass
    # filled while the writer wrote: still refused at the swap, the new content dropped
    late = tmp_path / "late"
    with pytest.raises(OutputExistsError):
        with atomic_dir(late, owned=("a.txt",)) as tmp:
            (tmp / "a.txt").write_text("new")
            late.mkdir()
            (late / "c.txt").write_text("user")
    assert sorted(p.name for p in late.iterdir()) == ["c.txt"]
    assert not list(tmp_path.glob(".late.tmp-*"))


# ------------------------------------------------------------------ recognize, batch_size, streams

def test_recognize_takes_exactly_one_image(v4, rendered, tmp_path):
    img = rendered[0][1]
    assert v4.recognize(img)["rec_text"] == next(v4.predict(img))["rec_text"]
    for many in ([], [img, img], (img,), iter([img]), np.stack([img, img])):
        with pytest.raises(InputError, match="recognize takes one image"):
            v4.recognize(many)
    folder = tmp_path / "two"
    folder.mkdir()
    import cv2

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), img)
    with pytest.raises(InputError, match="more than one image"):
        v4.recognize(str(folder))
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="no image"):
        v4.recognize(str(tmp_path / "none"))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8", [2], float("nan")])
def test_batch_size_is_checked_when_predict_is_called(v4, rendered, bad):
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        v4.predict(rendered[0][1], batch_size=bad)  # no next(): the call itself refuses
    with pytest.raises(ValueError, match="batch_size"):
        v4.recognize_batch([rendered[0][1]], batch_size=bad)


def test_create_model_checks_batch_size_and_names(v4):
    from edgerec import create_model

    with pytest.raises(ValueError, match="batch_size"):
        create_model(V4, batch_size="8", progress=False)
    with pytest.raises(ModelNotFoundError, match="string"):
        create_model(5)


def test_a_stream_gets_its_first_result_before_it_yields_the_next_input(v4, rendered):
    pulled = []

    def frames():
        for i, (_, img) in enumerate(rendered):
            pulled.append(i)
            yield img

    results = v4.predict(frames(), batch_size=1)
    first = next(results)
    assert pulled == [0] and first["rec_text"] == next(v4.predict(rendered[0][1]))["rec_text"]
    assert len(list(results)) == len(rendered) - 1
    pulled.clear()
    next(v4.predict(frames(), batch_size=2))  # one batch of two
    assert pulled == [0, 1]
    pulled.clear()
    next(v4.predict([img for _, img in rendered], batch_size=1))  # a list is read ahead to group widths
    assert pulled == []


def test_lines_in_hand_are_read_before_an_interrupt_goes_on(v4, rendered):
    """Ctrl-C while the next input loads (a slow PDF page, a URL) still hands out the lines already loaded."""
    def frames():
        for _, img in rendered[:3]:
            yield img
        raise KeyboardInterrupt

    got = []
    with pytest.raises(KeyboardInterrupt):
        for res in v4.predict(frames(), batch_size=8):
            got.append(res["rec_text"])
    assert got == [text for text, _ in rendered[:3]]


def test_slow_inputs_do_not_hold_results_back(v4, rendered, monkeypatch):
    import edgerec.api

    monkeypatch.setattr(edgerec.api, "FLUSH_AFTER_S", 0.2)
    pulled = []

    def files():
        import time

        for i, (_, img) in enumerate(rendered[:4]):
            pulled.append(i)
            if i == 2:
                time.sleep(0.3)  # the third input is slow to come
            yield img

    results = v4.predict([img for _, img in rendered[:4]], batch_size=8)
    assert len(list(results)) == 4  # a list read ahead as before
    results = v4.predict(iter(files()), batch_size=8)
    first = next(results)  # the window held lines 0-2 for over FLUSH_AFTER_S: read without waiting for more
    assert first["rec_text"] == rendered[0][0] and pulled == [0, 1, 2]
    assert [r["rec_text"] for r in results] == [text for text, _ in rendered[1:4]]


# ------------------------------------------------------------------ float images, engine options

def test_float_images_in_0_to_255_read_as_the_uint8_image(v4, rendered):
    for text, img in rendered[: len(EN_LINES)]:
        want = next(v4.predict(img))["rec_text"]
        assert want == text
        assert next(v4.predict(img.astype(np.float32)))["rec_text"] == want  # PaddleX's float convention
        assert next(v4.predict(img.astype(np.float64) / 255.0))["rec_text"] == want  # 0..1


def test_pil_float_images_read_as_the_uint8_image(v4, rendered):
    from PIL import Image

    text, img = rendered[0]
    gray = Image.fromarray(img[:, :, 0])
    assert next(v4.predict(gray.convert("F")))["rec_text"] == next(v4.predict(gray))["rec_text"]


@pytest.mark.parametrize("bad", [10**9, 1.5, "4", -1, True])
def test_shape_cache_must_be_a_bounded_whole_number(bad):
    from edgerec.engines.base import EngineOptionError
    from edgerec.engines.openvino import OpenVINOOptions

    with pytest.raises(EngineOptionError, match="shape_cache must be a whole number"):
        OpenVINOOptions(shape_cache=bad)


# ------------------------------------------------------------------ evaluate's output, models fetch

def test_evaluate_refuses_an_unusable_output_before_it_runs(v4, rendered, tmp_path, monkeypatch):
    import cv2

    from edgerec.data import evaluate as ev

    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    cv2.imwrite(str(ds / "images" / "a.png"), rendered[0][1])
    (ds / "val.txt").write_text(f"images/a.png\t{rendered[0][0]}\n", encoding="utf-8")
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(v4, "predict", lambda *a, **k: pytest.fail("ran before the output was checked"))
    with pytest.raises(InputError, match="not a folder|cannot make"):
        ev.evaluate(v4, ds, output=tmp_path / "afile")
    (tmp_path / "out" / ev.RESULT_FILE).mkdir(parents=True)
    with pytest.raises(InputError, match="in the way"):
        ev.evaluate(v4, ds, output=tmp_path / "out")
    monkeypatch.undo()
    res = ev.evaluate(v4, ds, output=tmp_path / "ok")
    assert res["samples"] == 1 and sorted(p.name for p in (tmp_path / "ok").iterdir()) == sorted(
        [ev.RESULT_FILE, ev.PREDICTIONS_FILE])


def test_models_fetch_goes_on_after_a_bad_name(v4):
    from click.testing import CliRunner

    from edgerec.cli import main

    res = CliRunner().invoke(main, ["models", "fetch", "no_such_model_rec", V4])
    assert res.exit_code == 1
    assert "no_such_model_rec" in res.stderr and "1 of 2 not fetched" in res.stderr
    assert f"{V4}: " in res.stdout


# ------------------------------------------------------------------ use_hpip and Ray with an IR folder

def test_use_hpip_with_an_ir_folder_runs_what_the_folder_holds(v4, edgerec_home, tmp_path):
    import openvino as ov

    from edgerec import create_model
    from edgerec.utils import cpu

    fp16 = tmp_path / "fp16ir"  # a user's IR folder holding one fp16 IR (the fp32 one relabelled: the choice is tested)
    fp16.mkdir()
    ov.save_model(_relabel(edgerec_home, "fp16"), str(fp16 / "model.xml"), compress_to_fp16=False)
    model = create_model(model_dir=fp16, use_hpip=True, progress=False)
    assert model.precision == "fp16" and "holds only an fp16 IR" in model.config_summary
    fp32 = create_model(model_dir=edgerec_home / "models" / V4 / "fp32", use_hpip=True, progress=False)
    assert fp32.precision == ("bf16" if cpu.has_native_bf16() else "fp32")


def _relabel(edgerec_home: Path, precision: str):
    import openvino as ov

    model = ov.Core().read_model(str(edgerec_home / "models" / V4 / "fp32" / "model.xml"))
    model.set_rt_info(precision, ["model_info", "precision"])
    return model


def test_ray_actor_with_a_model_dir_loads_the_model_in_it(v4, edgerec_home, tmp_path):
    import openvino as ov

    from edgerec.integrations.ray import TextRecognizerUDF

    other = tmp_path / "other"
    other.mkdir()
    model = ov.Core().read_model(str(edgerec_home / "models" / V4 / "fp32" / "model.xml"))
    model.set_rt_info("my_finetuned_rec", ["model_info", "model_name"])
    ov.save_model(model, str(other / "model.xml"), compress_to_fp16=False)
    udf = TextRecognizerUDF(model_dir=str(other))  # no model_name: it used to default to PP-OCRv4's and refuse
    assert udf.model.model_name == "my_finetuned_rec"


def test_export_with_a_route_takes_the_cards_paddle_source(monkeypatch):
    from edgerec.zoo import resolve
    from edgerec.zoo.cards import get_card

    asked = []

    class Stop(Exception):
        pass

    def fake_fetch(name, source=None, **kw):
        asked.append(source)
        raise Stop

    monkeypatch.setattr(resolve, "fetch", fake_fetch)
    paddle = next(s.id for s in get_card(V4).sources if s.format == "paddle")
    for via in ("direct", "paddle2onnx"):
        with pytest.raises(Stop):
            resolve.export_model(V4, None, via=via)
    with pytest.raises(Stop):
        resolve.export_model(V4, None)  # auto: the card's first source, as before
    assert asked == [paddle, paddle, None]


def test_atomic_dir_swaps_in_one_step_or_puts_the_old_folder_back(tmp_path, monkeypatch):
    from edgerec.utils import fs

    out = tmp_path / "out"
    with fs.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("old")
    # where renameat2 cannot swap: Ctrl-C between the two renames puts the old folder back
    monkeypatch.setattr(fs, "_exchange", lambda a, b: False)
    real = os.replace
    calls = []

    def interrupted(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(fs.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with fs.atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("new")
    monkeypatch.setattr(fs.os, "replace", real)
    assert (out / "a.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # a kill between them left .out.old-PID and no out: the next write puts the old one back before anything
    real(out, tmp_path / ".out.old-999")
    with pytest.raises(RuntimeError):
        with fs.atomic_dir(out) as tmp:
            assert (out / "a.txt").read_text() == "old"
            raise RuntimeError("the writer fails: the old folder stays")
    assert (out / "a.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_exchange_is_used_where_linux_has_it(tmp_path):
    from edgerec.utils import fs

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "from_a").touch()
    if not fs._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here: the two-rename path is tested above")
    assert (b / "from_a").exists() and not (a / "from_a").exists()


# ------------------------------------------------------------------ the second round: what the re-verification found

def test_a_folder_or_file_named_like_an_output_but_not_ours_is_foreign(tmp_path):
    from edgerec.quant.calibration import dataset_files
    from edgerec.utils.fs import check_replaceable

    out = tmp_path / "set"
    (out / "images").mkdir(parents=True)
    (out / "images" / "00000.png").write_bytes(b"png")
    (out / "train.txt").write_text("images/00000.png\tx\n")
    check_replaceable(out, dataset_files(), "calibrate")  # an earlier set: fine
    (out / "images" / "holiday.jpg").write_bytes(b"jpg")
    with pytest.raises(OutputExistsError, match="images/"):
        check_replaceable(out, dataset_files(), "calibrate")
    ir = tmp_path / "ir"
    (ir / "model.bin").mkdir(parents=True)  # a folder where the IR's file goes
    (ir / "model.bin" / "a.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="model.bin/"):
        check_replaceable(ir, ("model.xml", "model.bin"), "export")


def test_an_output_given_as_a_link_is_written_into_the_folder_it_points_to(tmp_path):
    from edgerec.utils.fs import atomic_dir

    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    with atomic_dir(link, owned=("a.txt",)) as tmp:
        (tmp / "a.txt").write_text("new")
    assert link.is_symlink() and (target / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]  # no leftover


def test_a_folder_of_precisions_runs_the_precision_it_holds_and_checks_each_ir(v4, edgerec_home, tmp_path):
    from edgerec.errors import OtherPrecisionError
    from edgerec.zoo.resolve import resolve_model

    home = edgerec_home / "models" / V4
    only = tmp_path / "only"
    (only / "int8").mkdir(parents=True)
    install_relabelled_int8_at(home / "fp32" / "model.xml", only / "int8")
    assert resolve_model(model_dir=only, precision=None).precision == "int8"  # the one it holds
    with pytest.raises(OtherPrecisionError, match="holds IRs of int8, not fp32"):
        resolve_model(model_dir=only, precision="fp32")
    with pytest.raises(OtherPrecisionError, match="not bf16"):  # resolved before the CPU is asked about bf16
        resolve_model(model_dir=only, precision="bf16")
    mislabelled = tmp_path / "mis"
    (mislabelled / "fp32").mkdir(parents=True)
    install_relabelled_int8_at(home / "fp32" / "model.xml", mislabelled / "fp32")  # an int8 IR in "fp32"
    with pytest.raises(OtherPrecisionError, match="an int8 IR in the fp32 folder"):
        resolve_model(model_dir=mislabelled, precision="fp32")


# ------------------------------------------------------------------ train and report outputs (the last round)

def _tiny_dataset(root: Path, rendered) -> Path:
    import cv2

    (root / "images").mkdir(parents=True)
    rows = []
    for i, (text, img) in enumerate(rendered[:4]):
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        rows.append(f"images/{i}.png\t{text}")
    (root / "train.txt").write_text("\n".join(rows[:3]) + "\n", encoding="utf-8")
    (root / "val.txt").write_text(rows[3] + "\n", encoding="utf-8")
    return root


def test_train_refuses_to_replace_an_earlier_runs_models_unless_overwrite(rendered, tmp_path):
    pytest.importorskip("torch")
    from edgerec.train import TrainError
    from edgerec.train.finetune import TrainConfig, finetune

    ds = _tiny_dataset(tmp_path / "ds", rendered)
    out = tmp_path / "out"
    (out / "best_accuracy").mkdir(parents=True)
    (out / "best_accuracy" / "inference.onnx").write_bytes(b"an earlier run's model")
    with pytest.raises(TrainError, match=r"holds best_accuracy/ of an earlier run; pass --overwrite"):
        finetune(TrainConfig(model=V4, dataset=str(ds), output=str(out), epochs=1), progress=False)
    assert (out / "best_accuracy" / "inference.onnx").read_bytes() == b"an earlier run's model"
    assert not (out / "train.log").exists()


def test_report_checks_its_output_and_datasets_before_measuring(tmp_path, rendered):
    from edgerec.bench import ReportOptions, run_report
    from edgerec.bench.render import check_report_output
    from edgerec.errors import EdgeRecError

    out = tmp_path / "rep"
    (out / "report.md").mkdir(parents=True)
    with pytest.raises(EdgeRecError, match="in the way"):
        check_report_output(out)
    ds = _tiny_dataset(tmp_path / "ds", rendered)
    with pytest.raises(EdgeRecError, match="given twice"):
        run_report(ReportOptions(models=[V4], datasets=[ds, tmp_path / "ds" / "."], output=tmp_path / "r2"))


# ------------------------------------------------------------------ a read-only model home, IRs copied by hand


def _no_writing(monkeypatch):
    """The model home's lock files cannot be made, as on a read-only mount (root ignores chmod, so simulated)."""
    import edgerec.utils.fs as fs

    def refuse(path, timeout=-1):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(fs, "file_lock", refuse)


def test_a_read_only_home_serves_the_models_prepared_in_it(v4, edgerec_home, tmp_path, monkeypatch, rendered):
    from edgerec import create_model

    linked_home(edgerec_home, tmp_path, monkeypatch)
    _no_writing(monkeypatch)
    model = create_model(V4, progress=False, cache=False)
    assert model.recognize(rendered[0][1])["rec_text"] == rendered[0][0]
    with pytest.raises(ModelError, match=r"cannot be written \(Read-only file system\); set EDGEREC_HOME"):
        create_model(V4, precision="fp16", progress=False, cache=False)  # would need an export
    from edgerec.zoo.fetch import fetch
    from edgerec.zoo.resolve import export_model

    assert fetch(V4, progress=False).name == V4  # fetched already: nothing to write
    out = export_model(V4, None, "fp32", output=tmp_path / "elsewhere")  # writes only --output
    assert out == tmp_path / "elsewhere" / "model.xml" and out.is_file()
    local = edgerec_home / "models" / V4 / "sources" / "onnx-wheel"  # a local model needs a local IR made
    with pytest.raises(ModelError, match=rf"{re.escape(str(local))}: needs .* `edgerec export --model-dir"):
        create_model(model_dir=local, progress=False, cache=False)


def test_a_copied_ir_of_another_precision_is_never_run_in_its_place(v4, edgerec_home, tmp_path, monkeypatch):
    """IR folders copied to an offline box without their sources: an int8 IR in fp32/ is refused, not run."""
    from edgerec import create_model
    from edgerec.errors import OtherPrecisionError

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "fp32").symlink_to(edgerec_home / "models" / V4 / "fp32")
    install_relabelled_int8(scratch)
    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path / "home"))
    root = tmp_path / "home" / "models" / V4
    root.mkdir(parents=True)
    shutil.move(str(scratch / "int8"), str(root / "fp32"))  # an int8 IR where the fp32 one belongs
    with pytest.raises(OtherPrecisionError, match="an int8 IR in the fp32 folder"):
        create_model(V4, precision="fp32", progress=False, cache=False)
    with pytest.raises(OtherPrecisionError, match="an int8 IR in the fp32 folder, not the bf16"):
        create_model(V4, precision="bf16", progress=False, cache=False)


def test_int8_without_an_int8_model_is_refused_before_anything_is_fetched(edgerec_home, tmp_path, monkeypatch):
    import edgerec.zoo.resolve as resolve
    from edgerec import create_model

    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path))
    (tmp_path / "models" / V4).mkdir(parents=True)
    (tmp_path / "models" / V4 / "fp32").symlink_to(edgerec_home / "models" / V4 / "fp32")
    monkeypatch.setattr(resolve, "fetch", lambda *a, **k: pytest.fail("fetched for an int8 that cannot be made"))
    with pytest.raises(ModelError, match=r"no int8 model in .*edgerec quantize PP-OCRv4_mobile_rec"):
        create_model(V4, precision="int8", progress=False)
