"""The click CLI: predict (text and JSON output, bad inputs), models list/fetch, export, --help everywhere."""

from __future__ import annotations

import json

import cv2
import pytest
from click.testing import CliRunner

from edgerec.cli import main

from conftest import V4


@pytest.fixture()
def runner():
    return CliRunner()


@pytest.mark.parametrize("args", [[], ["predict"], ["models"], ["models", "list"], ["models", "fetch"],
                                  ["export"]])
def test_help_on_every_command(runner, args):
    res = runner.invoke(main, [*args, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


def test_predict_json_and_bad_input(v4, runner, rendered, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[0][1])
    folder = tmp_path / "lines"
    folder.mkdir()
    cv2.imwrite(str(folder / "zh.png"), rendered[4][1])
    bad = tmp_path / "bad.png"
    bad.write_text("this is not an image")
    save = tmp_path / "out"
    res = runner.invoke(main, ["predict", str(good), str(bad), str(folder), "--model", V4, "--json",
                               "--save-dir", str(save), "--quiet"])
    assert res.exit_code == 1
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["rec_text"].strip() for o in out] == [rendered[0][0], rendered[4][0]]
    assert set(out[0]) == {"input_path", "page_index", "rec_text", "rec_score"}
    assert "bad.png" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (save / "good_res.json").is_file() and (save / "zh_res.png").is_file()


def test_predict_plain_output(v4, runner, rendered, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[1][1])
    res = runner.invoke(main, ["predict", str(good)])
    assert res.exit_code == 0, res.output
    path, text, score = res.stdout.strip().split("\t")
    assert path == str(good) and text.strip() == rendered[1][0] and 0 < float(score) <= 1
    bigger = runner.invoke(main, ["predict", str(good), "--shape-cache", "16"])
    assert bigger.exit_code == 0 and bigger.stdout == res.stdout  # the cache size never changes a text
    assert runner.invoke(main, ["predict", str(good), "--shape-cache", "-1"]).exit_code == 2


def test_unknown_model_is_one_line_error(runner, tmp_path):
    res = runner.invoke(main, ["predict", str(tmp_path), "--model", "PP-OCRv4_mobile_recc"])
    assert res.exit_code == 1
    assert "unknown model" in res.stderr and "PP-OCRv4_mobile_rec" in res.stderr


def test_models_list_shows_every_card(v4, runner):
    from edgerec.zoo.cards import list_names

    res = runner.invoke(main, ["models", "list", "--json"])
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(list_names())
    assert "fp32" in rows[V4]["cached"] and rows[V4]["fetch"].startswith("yes")
    assert rows["ch_SVTRv2_rec"]["fetch"].startswith("needs internet")


def test_export_command(v4, runner, tmp_path):
    out = tmp_path / "ir16"
    res = runner.invoke(main, ["export", V4, "--precision", "fp16", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    from edgerec.zoo.export import read_info

    assert read_info(out / "model.xml").precision == "fp16"


def test_predict_device_follows_the_api(runner, rendered, tmp_path):
    """--device gpu:0 with no --engine picks the engine as create_model does (paddle for an NVIDIA GPU), so the
    CLI answers as the API does, never the openvino engine's "NVIDIA GPU in PaddleX's naming" refusal."""
    from edgerec import create_model
    from edgerec.errors import EdgeRecError

    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[0][1])
    try:
        model = create_model(V4, device="gpu:0", progress=False)
        api = ("ok", [r["rec_text"] for r in model.predict(str(good))][0])
    except EdgeRecError as exc:
        api = ("error", str(exc))
    res = runner.invoke(main, ["predict", str(good), "--device", "gpu:0", "--quiet"])
    if api[0] == "error":
        assert res.exit_code == 1 and res.stderr.strip() == f"edgerec: error: {api[1]}"
        assert "PaddleX's naming" not in res.stderr
    else:
        assert res.exit_code == 0 and res.stdout.split("\t")[1] == api[1]
    forced = runner.invoke(main, ["predict", str(good), "--device", "gpu:0", "--engine", "openvino", "--quiet"])
    assert forced.exit_code == 1 and "NVIDIA GPU in PaddleX's naming" in forced.stderr


def test_predict_engine_choices_come_from_the_registry(runner):
    from edgerec.engines import registry

    res = runner.invoke(main, ["predict", "--help"])
    assert all(name in res.output for name in registry.names())
    bad = runner.invoke(main, ["predict", "x.png", "--engine", "tensorflow"])
    assert bad.exit_code == 2 and "tensorflow" in bad.output


def test_an_option_the_engine_does_not_take_is_a_one_line_error(v4, runner, rendered, tmp_path):
    pytest.importorskip("onnxruntime")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[0][1])
    res = runner.invoke(main, ["predict", str(good), "--engine", "onnxruntime", "--shape-cache", "4", "--quiet"])
    assert res.exit_code == 1 and "engine 'onnxruntime' has no option 'shape_cache'" in res.stderr
