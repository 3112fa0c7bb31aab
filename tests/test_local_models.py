"""A user's own model folders, as an audit made them: every bad one is one ModelError naming it, never a hang, a
traceback from inside a library, or an IR of files that changed since it was made."""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from edgerec.errors import ModelError, UnsafeArchiveError, reason

from conftest import V4

SOURCES = Path(os.environ.get("EDGEREC_HOME", "")) / "models" / V4 / "sources"


@pytest.fixture()
def home(v4, tmp_path, monkeypatch) -> Path:
    """A model home of this test's own (local IRs are made there)."""
    monkeypatch.setenv("EDGEREC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _onnx_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "inference.onnx").symlink_to(SOURCES / "onnx-wheel" / "inference.onnx")
    return folder


def _paddle_folder(folder: Path, yml: str | None = None) -> Path:
    folder.mkdir(parents=True)
    for name in ("inference.pdmodel", "inference.pdiparams"):
        (folder / name).symlink_to(SOURCES / "paddle-wheel" / name)
    if yml is not None:
        (folder / "inference.yml").write_text(yml, encoding="utf-8")
    return folder


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_pipe_or_device_named_like_a_model_file_is_refused_not_read(home, tmp_path):
    from edgerec.zoo.fetch import open_local

    fifo = tmp_path / "pipe"
    fifo.mkdir()
    os.mkfifo(fifo / "model.onnx")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "model.onnx").symlink_to("/dev/zero")
    dicts = _paddle_folder(tmp_path / "dicts")  # its charset comes from a dict file
    os.mkfifo(dicts / "my_dict.txt")
    for folder, name in ((fifo, "model.onnx"), (dev, "model.onnx"), (dicts, "my_dict.txt")):
        with pytest.raises(ModelError, match=f"{name} is not a regular file"):
            open_local(folder)


@pytest.mark.parametrize("yml, match", [
    ("just a string\n", "not a PaddleX inference.yml"),
    ("Global: [1, 2]\n", "not a PaddleX inference.yml"),
    ("\udcff", "not UTF-8"),
    ("Global: {model_name: [a, b]}\n", "Global.model_name is not a name"),
    ("Global: {model_name: x}\nPostProcess: {character_dict: 5}\n", "is not a list of characters"),
    ("Global: {model_name: x}\nPostProcess: {character_dict: [[a, b], c]}\n", "is not a list of characters"),
    ("Global: {model_name: x}\nPreProcess: {transform_ops: [{RecResizeImg: {image_shape: [3, abc, 320]}}]}\n"
     "PostProcess: {character_dict: [a, b]}\n", r"image_shape \[3, 'abc', 320\] is not \[3, height, width\]"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "Global: {model_name: *f}\n", "Global.model_name is not a name"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "Global: {model_name: x}\nPostProcess: {character_dict: *f}\n", "is not a list of characters"),
])
def test_an_inference_yml_that_is_not_one_is_a_model_error(tmp_path, yml, match):
    """Read as the export reads it (name, input height, charset), within a second (aliases are not expanded)."""
    from edgerec.zoo.export import ExportSpec, read_charset_entries
    from edgerec.zoo.fetch import open_local

    folder = _paddle_folder(tmp_path / "m")
    (folder / "inference.yml").write_bytes(yml.encode("utf-8", "surrogateescape"))
    t0 = time.monotonic()
    with pytest.raises(ModelError, match=match):
        src = open_local(folder)
        ExportSpec.of(src)
        read_charset_entries(src)
    assert time.monotonic() - t0 < 5


def test_a_tar_bomb_and_a_tar_without_a_model_leave_nothing_behind(home, tmp_path, monkeypatch):
    import edgerec.zoo.fetch as fetch

    many = tmp_path / "many.tar"
    with tarfile.open(many, "w") as tar:
        for i in range(6):
            info = tarfile.TarInfo(f"m/f{i}.txt")
            tar.addfile(info)
    monkeypatch.setattr(fetch, "MAX_TAR_MEMBERS", 5)
    with pytest.raises(UnsafeArchiveError, match="over 5 members"):
        fetch.safe_extract_tar(many, tmp_path / "out")
    monkeypatch.setattr(fetch, "MAX_TAR_MEMBERS", 10_000)
    monkeypatch.setattr(fetch, "MAX_TAR_BYTES", 1 << 20)
    big = tmp_path / "big.tar"
    with tarfile.open(big, "w") as tar:
        info = tarfile.TarInfo("m/zeros.bin")
        info.size = 2 << 20
        tar.addfile(info, fileobj=open("/dev/zero", "rb"))  # noqa: SIM115 (tarfile reads size bytes)
    with pytest.raises(UnsafeArchiveError, match="unpacks to over 2 MB"):
        fetch.safe_extract_tar(big, tmp_path / "out2")
    monkeypatch.setattr(fetch, "MAX_TAR_BYTES", 4 << 30)
    with pytest.raises(ModelError, match=r"many\.tar: no inference\.onnx"):
        fetch.open_local(many)
    assert not any((home / "local").iterdir()) if (home / "local").exists() else True


def test_an_onnx_whose_external_weights_change_is_exported_again(home, tmp_path, rendered):
    """The IR remembers every file it was made from: new weights in the external data file (same graph file)
    make a new IR, not the old weights' texts."""
    import numpy as np
    import onnx

    from edgerec import create_model

    folder = tmp_path / "ext"
    folder.mkdir()
    model = onnx.load(str(SOURCES / "onnx-wheel" / "inference.onnx"))
    keep = []
    for node in model.graph.node:  # paddle2onnx keeps weights in Constant nodes: make them initializers
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is None:
            keep.append(node)
        else:
            value.name = node.output[0]
            model.graph.initializer.append(value)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    onnx.save_model(model, str(folder / "inference.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=1024)
    assert (folder / "weights.bin").stat().st_size > 5_000_000
    text, img = rendered[0]
    first = create_model(model_dir=folder, progress=False, cache=False)
    assert first.recognize(img)["rec_text"] == text
    data = np.fromfile(folder / "weights.bin", np.uint8)
    data[:] = 0  # "retrained": the graph file is byte for byte the same
    data.tofile(folder / "weights.bin")
    again = create_model(model_dir=folder, progress=False, cache=False)
    assert again.recognize(img)["rec_text"] != text
    assert again.info.extra["files_sha256"] != first.info.extra["files_sha256"]


def test_a_folder_name_that_is_not_utf8_exports_and_reads(home, tmp_path, rendered):
    from edgerec import create_model

    folder = _onnx_folder(tmp_path / os.fsdecode(b"bad\xffname"))
    text, img = rendered[0]
    model = create_model(model_dir=folder, progress=False, cache=False)
    assert model.recognize(img)["rec_text"] == text


def test_a_model_that_cannot_read_a_line_is_a_model_error(home, tmp_path):
    import onnx

    pytest.importorskip("onnxruntime")
    from edgerec import create_model

    folder = tmp_path / "static"
    folder.mkdir()
    model = onnx.load(str(SOURCES / "onnx-wheel" / "inference.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, 32, 100)):
        d.dim_value = v
    onnx.save_model(model, str(folder / "inference.onnx"))
    shutil.copy(SOURCES / "onnx-wheel" / "ppocr_keys_v1.txt", folder / "ppocr_keys_v1.txt")
    with pytest.raises(ModelError, match=r"the model cannot read a line \(1 x 3 x 48 x 320\)"):
        create_model(model_dir=folder, engine="onnxruntime", progress=False)


def test_a_padded_dict_is_said_at_every_load(home, tmp_path, caplog):
    import logging

    from edgerec import create_model
    from edgerec.runtime.charset import read_dict_file

    folder = _paddle_folder(tmp_path / "short")
    entries = read_dict_file(SOURCES / "paddle-wheel" / "ppocr_keys_v1.txt")
    (folder / "ppocr_keys_v1.txt").write_text("".join(f"{e}\n" for e in entries[:100] + entries[103:]), "utf-8")
    for _ in range(2):  # the first load exports, the second reads the IR: both say it
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            create_model(model_dir=folder, progress=False, cache=False)
        assert "3 more classes than its dict holds" in caplog.text


def test_reason_skips_the_lines_that_only_say_where():
    msg = ("Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at src/frontends/common_"
           "translators/src/unconverted_ops_report.cpp:151:\nOpenVINO does not support the following ONNX "
           "operations: Foo\n")
    assert reason(RuntimeError(msg)) == "OpenVINO does not support the following ONNX operations: Foo"
    assert reason(RuntimeError("")) == "RuntimeError" and reason(ValueError("one line")) == "one line"


def test_a_failed_export_leaves_no_empty_folder_and_an_ir_folder_says_what_it_is(home, tmp_path, caplog):
    import logging

    from edgerec import create_model
    from edgerec.zoo.fetch import open_local

    folder = _paddle_folder(tmp_path / "m")
    (folder / "my_dict.txt").write_text("a\nb\n", "utf-8")  # far fewer entries than the model's classes
    with pytest.raises(ModelError, match="wrong dict for this model"):
        create_model(model_dir=folder, progress=False, cache=False)
    assert not (home / "local-ir").exists() or not any((home / "local-ir").iterdir())
    (folder / "inference.yml").write_text("Global: {model_name: m}\nPostProcess: {character_dict: [a, c]}\n")
    with caplog.at_level(logging.WARNING):
        open_local(folder)
    assert "my_dict.txt and inference.yml's character_dict differ" in caplog.text
    ir = tmp_path / "ir"
    ir.mkdir()
    (ir / "model.xml").write_text("<net/>")
    with pytest.raises(ModelError, match="model.xml here is an OpenVINO IR"):
        open_local(ir)


def _edited_onnx(folder: Path, edit) -> Path:
    """V4's ONNX source, changed by ``edit(model)``, with its dict, in ``folder``."""
    import onnx

    folder.mkdir(parents=True)
    model = onnx.load(str(SOURCES / "onnx-wheel" / "inference.onnx"))
    edit(model)
    onnx.save_model(model, str(folder / "inference.onnx"))
    shutil.copy(SOURCES / "onnx-wheel" / "ppocr_keys_v1.txt", folder / "ppocr_keys_v1.txt")
    return folder


def _drop_softmax(model) -> None:
    """The graph's output becomes the logits that went into its final Softmax."""
    graph = model.graph
    last = next(n for n in graph.node if graph.output[0].name in n.output)
    assert last.op_type == "Softmax"
    graph.node.remove(last)
    graph.output[0].name = last.input[0]


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_a_model_without_its_softmax_still_gives_probabilities(home, tmp_path, rendered, v4, engine, caplog):
    """Texts are the argmax either way; the scores would be logits (above 1) without the softmax edgerec takes of
    such a model's output."""
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    from edgerec import create_model

    folder = _edited_onnx(tmp_path / "logits", _drop_softmax)
    imgs = [img for _, img in rendered]
    for warmup in (True, False):  # the first output decides, the warm-up line's or the user's
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgerec"):
            model = create_model(model_dir=folder, engine=engine, progress=False, warmup=warmup)
            got, want = model.recognize_batch(imgs), v4.recognize_batch(imgs)
        assert [t for t, _ in got] == [t for t, _ in want]
        assert all(abs(a - b) <= 1e-5 for (_, a), (_, b) in zip(got, want)), (got, want)
        assert caplog.text.count("the model's output is not probabilities") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgerec"):
        v4.recognize_batch(imgs)
    assert "not probabilities" not in caplog.text  # a model with its Softmax: nothing taken, nothing said


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_a_model_that_outputs_nan_is_a_model_error_not_empty_texts(home, tmp_path, engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgerec import create_model

    def poison(model) -> None:  # every convolution's weights (paddle2onnx writes them as Constant nodes)
        for node in model.graph.node:
            if node.op_type == "Constant" and len(node.attribute[0].t.dims) == 4:
                arr = numpy_helper.to_array(node.attribute[0].t).copy()
                arr[...] = np.nan
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(arr, node.attribute[0].t.name))

    folder = _edited_onnx(tmp_path / "nan", poison)
    assert onnx.load(str(folder / "inference.onnx"))
    with pytest.raises(ModelError, match="the model's output holds NaN for a blank line: its weights, or its "):
        create_model(model_dir=folder, engine=engine, progress=False)


def test_a_line_whose_output_holds_nan_reads_empty_and_is_said(v4, rendered, caplog, monkeypatch):
    """One line's NaN (an overflow, say) does not cost the batch: that line reads '' at score 0, with a warning."""
    import numpy as np

    engine = v4.predictor.engine
    real = engine.infer

    def second_line_nan(batch, *a, **k):
        out = real(batch, *a, **k)
        if len(out) > 1:
            out[1, 3, 5] = np.nan
        return out

    monkeypatch.setattr(engine, "infer", second_line_nan)
    imgs = [rendered[0][1]] * 3  # one width: one batch
    before = v4.predictor.nan_lines
    with caplog.at_level(logging.WARNING, logger="edgerec"):
        got = v4.recognize_batch(imgs, batch_size=3)
    monkeypatch.undo()
    want = v4.recognize_batch(imgs, batch_size=3)
    assert got[1] == ("", 0.0) and got[0] == want[0] and got[2] == want[2]
    assert v4.predictor.nan_lines == before + 1 and "held NaN for 1 line(s) of a batch of 3" in caplog.text
