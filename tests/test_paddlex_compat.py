"""A PaddleX 3.x script runs unchanged (issue 14, items 1-8): the module tutorial's code, then each item as
PaddleX would call it. Each assertion's comment says which PaddleX behaviour it stands for (PaddleX 3.x,
paddlex/inference/models/text_recognition/{predictor,processors,result}.py)."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from edgerec.errors import DeviceError
from edgerec.io.fonts import render_line

V4 = "PP-OCRv4_mobile_rec"


def _has_cuda() -> bool:
    try:
        import paddle

        return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    except ImportError:
        return False


@pytest.fixture(scope="module")
def line_png(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    path = folder / "general_ocr_rec_001.png"
    cv2.imwrite(str(path), render_line("Hello World", height=48, font_kind="latin"))
    return path


def test_module_tutorial_quick_integration_runs_as_written(line_png, tmp_path, monkeypatch, capsys, edgerec_home):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "general_ocr_rec_001.png").write_bytes(line_png.read_bytes())  # the tutorial downloads this file
    # --- the tutorial's code; only the import changed ---
    from edgerec import create_model
    model = create_model(model_name="PP-OCRv4_mobile_rec")
    output = model.predict(input="general_ocr_rec_001.png", batch_size=1)
    for res in output:
        res.print()
        res.save_to_img(save_path="./output/")
        res.save_to_json(save_path="./output/res.json")
    # --- end of the tutorial's code ---
    printed = capsys.readouterr().out
    # PaddleX prints {'res': {'input_path': ..., 'page_index': None, 'rec_text': ..., 'rec_score': ...}}
    assert printed.startswith("{'res': {'input_path': 'general_ocr_rec_001.png', 'page_index': None, "
                              "'rec_text': 'Hello World', 'rec_score': ")
    # PaddleX writes <stem>_res.<input suffix> into the folder and the JSON to the .json path as given
    assert (tmp_path / "output" / "general_ocr_rec_001_res.png").is_file()
    data = json.loads((tmp_path / "output" / "res.json").read_text("utf-8"))
    assert list(data) == ["input_path", "page_index", "rec_text", "rec_score"] and data["rec_text"] == "Hello World"


# ------------------------------------------------------------------ 1. engine_config and engine=

def test_engine_config_cpu_threads_and_ov_config_are_honoured(caplog, edgerec_home):
    from edgerec import create_model

    with caplog.at_level(logging.WARNING):
        model = create_model(model_name=V4, warmup=False, progress=False, engine_config={
            "cpu_threads": 2, "ov_config": {"PERFORMANCE_HINT": "THROUGHPUT"}, "run_mode": "trt_fp16"})
    config = model.predictor.engine.config
    # PaddleX's engine_config={"cpu_threads": N} sets the inference threads
    assert int(config["INFERENCE_NUM_THREADS"]) == 2
    # a key with an OpenVINO meaning (ov_config: OpenVINO properties) is passed through
    assert str(config["PERFORMANCE_HINT"]) == "THROUGHPUT"
    # only the key with no OpenVINO meaning is warned about
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("run_mode" in m for m in warned) and not any("cpu_threads" in m or "ov_config" in m for m in warned)


def test_engine_config_mapping_without_a_model(caplog):
    from edgerec.compat import map_engine_config

    # cpu_threads (PaddleX's Paddle engine) and cpu_num_threads (its hpi OpenVINO backend) both mean threads
    assert map_engine_config({"cpu_threads": "3"}) == {"threads": 3} == map_engine_config({"cpu_num_threads": 3})
    assert map_engine_config(None) == {} and not caplog.records
    with pytest.raises(TypeError, match="ov_config"):
        map_engine_config({"ov_config": "THROUGHPUT"})


def test_paddlex_engine_names():
    from edgerec.compat import map_engine

    # PaddleX's paddle / paddle_static / paddle_dynamic run Paddle Inference: edgerec's paddle engine
    assert [map_engine(n) for n in ("paddle", "paddle_static", "paddle_dynamic")] == [("paddle", False)] * 3
    # PaddleX's hpi (high-performance inference) = use_hpip: the fastest installed configuration, engine by device
    assert map_engine("hpi") == (None, True)
    # edgerec's own names keep their meaning
    assert map_engine("openvino") == ("openvino", False) and map_engine(None) == (None, False)
    # PaddleX engines with no meaning here (generative-model servers) are a clear error, before any load
    with pytest.raises(DeviceError, match="engine 'vllm'.*no equivalent"):
        map_engine("vllm")
    with pytest.raises(DeviceError, match="engine 'tensorflow'"):
        map_engine("tensorflow")


# ------------------------------------------------------------------ 2. device="gpu" without an NVIDIA GPU

def test_gpu_without_nvidia_runs_on_cpu_with_a_warning(line_png, caplog, edgerec_home):
    if _has_cuda():
        pytest.skip("this machine has a CUDA paddlepaddle and a GPU")
    from click.testing import CliRunner

    from edgerec import create_model
    from edgerec.cli import main

    with caplog.at_level(logging.WARNING):
        model = create_model(model_name=V4, device="gpu:0", warmup=False, progress=False)
    # PaddleX warns and runs on the CPU; the warning names what is missing (CUDA paddle / GPU)
    assert model.device.upper().startswith("CPU")
    assert any("gpu:0" in r.getMessage() and "paddle" in r.getMessage() for r in caplog.records)
    assert next(iter(model.predict(str(line_png))))["rec_text"] == "Hello World"
    # opt-in refusal (edgerec only)
    with pytest.raises(DeviceError, match="gpu:0"):
        create_model(model_name=V4, device="gpu:0", strict_device=True, progress=False)
    # the CLI does the same: falls back by default, refuses with --strict-device
    ok = CliRunner().invoke(main, ["predict", str(line_png), "--device", "gpu", "--quiet"])
    assert ok.exit_code == 0 and "Hello World" in ok.output, ok.output
    refused = CliRunner().invoke(main, ["predict", str(line_png), "--device", "gpu", "--strict-device", "--quiet"])
    assert refused.exit_code != 0 and "gpu" in refused.output


# ------------------------------------------------------------------ 3-5. the result dict, save_to_img, {"img": ...}

def test_result_dict_holds_input_img_and_vis_font_while_json_stays(v4, line_png, tmp_path):
    [res] = list(v4.predict(input=str(line_png), batch_size=1))
    # PaddleX's result dict holds input_img (the decoded image) and, in 3.x, vis_font (a font with .path)
    assert isinstance(res["input_img"], np.ndarray) and res["input_img"].shape == cv2.imread(str(line_png)).shape
    assert "input_img" in res and "vis_font" in res and res["vis_font"].path.endswith((".otf", ".ttf", ".ttc"))
    # PaddleX pops them from .json / .str / saved JSON: those stay {input_path, page_index, rec_text, rec_score}
    assert list(res.json["res"]) == ["input_path", "page_index", "rec_text", "rec_score"]
    assert list(res.str["res"]) == ["input_path", "page_index", "rec_text", "rec_score"]
    saved = json.loads(res.save_to_json(tmp_path).read_text("utf-8"))
    assert saved == res.json["res"]


def test_save_to_img_keeps_the_input_suffix(v4, line_png, tmp_path):
    jpg = tmp_path / "line.jpg"
    cv2.imwrite(str(jpg), cv2.imread(str(line_png)))
    [res] = list(v4.predict(str(jpg)))
    # PaddleX writes <stem>_res.jpg for a .jpg input (the input's suffix), as a JPEG
    written = res.save_to_img(tmp_path / "out")
    assert written.name == "line_res.jpg" and written.read_bytes()[:3] == b"\xff\xd8\xff"
    # an array input has no suffix: .png
    [arr] = list(v4.predict(cv2.imread(str(line_png))))
    assert arr.save_to_img(tmp_path / "out").suffix == ".png"


def test_predict_accepts_img_dicts(v4, line_png):
    # PaddleX's docs: predict([{"img": path}, ...]) (a path or an array under "img")
    results = list(v4.predict([{"img": str(line_png)}, {"img": cv2.imread(str(line_png))}]))
    assert [r["rec_text"] for r in results] == ["Hello World"] * 2 and all(r.ok for r in results)
    assert results[0]["input_path"] == str(line_png)


# ------------------------------------------------------------------ 6. return_word_box

def test_word_info_splits_runs_as_paddlex():
    from edgerec.runtime.decode import word_info

    text = "VGG-16 中文,1.5"
    words, cols, states = word_info(text, list(range(0, 2 * len(text), 2)))
    # PaddleX get_word_info: 'cn' / 'en&num' / 'symbol' runs; '-' after en&num and '.' before a digit stay in
    assert ["".join(w) for w in words] == ["VGG-16", " ", "中文", ",", "1.5"]
    assert states == ["en&num", "symbol", "cn", "symbol", "en&num"]
    assert cols[0] == [0, 2, 4, 6, 8, 10] and cols[2] == [14, 16]


def test_ctc_decode_word_box_columns():
    from edgerec.runtime.decode import ctc_greedy_decode

    charset = ["blank", "a", "b", "1", " "]
    steps = [1, 1, 0, 2, 0, 4, 3, 3]  # a a _ b _ ' ' 1 1
    probs = np.full((1, len(steps), len(charset)), 0.01, np.float32)
    probs[0, np.arange(len(steps)), steps] = 0.9
    [(text, score, box)] = ctc_greedy_decode(probs, charset, word_box=True)
    # PaddleX decode(return_word_box=True): (text, score, [T, words, columns of the kept steps, states])
    assert text == "ab 1" and box == [8, [["a", "b"], [" "], ["1"]], [[0, 3], [5], [6]], ["en&num", "symbol",
                                                                                           "en&num"]]
    assert ctc_greedy_decode(probs, charset) == [(text, score)]


def test_predict_return_word_box(v4):
    wide = render_line("Total 1.5 中文 VGG-16 model", height=48, font_kind="cjk")
    narrow = render_line("ab", height=48, font_kind="latin")
    [res, small] = list(v4.predict([wide, narrow], return_word_box=True))
    # PaddleX: rec_text becomes (text, [T * wh_ratio / max_wh_ratio, words, word columns, states])
    text, (cols, words, word_cols, states) = res["rec_text"]
    assert text == "Total 1.5 中文 VGG-16 model"
    assert ["".join(w) for w in words] == ["Total", " ", "1.5", " ", "中文", " ", "VGG-16", " ", "model"]
    assert states == ["en&num", "symbol", "en&num", "symbol", "cn", "symbol", "en&num", "symbol", "en&num"]
    flat = [c for run in word_cols for c in run]
    assert flat == sorted(flat) and len(flat) == len(text)
    # a line wider than 320/48 fills its input: the scale is 1 (T steps)
    h, w = wide.shape[:2]
    assert w / h > 320 / 48 and cols == v4.predictor.width_of(wide) // 8 and max(flat) < cols
    # a line narrower than 320/48 is right-padded to 320: PaddleX scales T by wh_ratio / (320/48)
    s_text, (s_cols, *_rest) = small["rec_text"]
    hs, ws = narrow.shape[:2]
    assert s_text == "ab" and s_cols == pytest.approx(40 * (ws / hs) / (320 / 48))
    # the score is the same as without word boxes; JSON carries the pair as a list
    [plain] = list(v4.predict(wide))
    assert plain["rec_score"] == res["rec_score"] and res.json["res"]["rec_text"][0] == text


# ------------------------------------------------------------------ 7. batch_size, 8. bad inputs

def test_batch_size_applies_to_the_call_only(v4, line_png):
    before = v4.batch_size
    results = list(v4.predict([str(line_png)] * 3, batch_size=8))
    # PaddleX keeps predict(batch_size=8) for later calls; edgerec applies it to this call only (documented in
    # docs/differences-from-paddlex-api.md) so a recognizer shared by threads is never changed by one caller
    assert v4.batch_size == before and [r["rec_text"] for r in results] == ["Hello World"] * 3


def test_one_warning_per_bad_input(v4, line_png, tmp_path, caplog):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="edgerec.bad_input"):
        results = list(v4.predict([str(empty), str(line_png), str(tmp_path / "missing.png")]))
    # PaddleX raises on a bad input and loses the rest of the list; edgerec yields an error result for it and
    # logs one WARNING naming it, the good input still read
    warned = [r.getMessage() for r in caplog.records if r.name == "edgerec.bad_input"]
    assert len(warned) == 2 and "empty.png" in warned[0] and "missing.png" in warned[1]
    assert [r.ok for r in results] == [False, True, False] and results[1]["rec_text"] == "Hello World"


def test_return_word_box_on_a_line_read_in_windows(v4):
    long_line = render_line("the quick brown fox jumps over the lazy dog " * 8, height=48, font_kind="latin")
    assert long_line.shape[1] > 3200  # wider than the model's widest input: read in overlapping windows
    [res] = list(v4.predict(long_line, return_word_box=True))
    # PaddleX squashes such a line and still gives columns; edgerec reads it in windows, which have no single
    # set of CTC columns: the pair keeps PaddleX's (text, info) shape with info None
    text, info = res["rec_text"]
    assert info is None and text.startswith("the quick brown fox")


# ------------------------------------------------------------------ from a side-by-side audit against PaddleX 3.7.2


def test_create_model_return_word_box_and_paddlex_attributes(line_png, edgerec_home):
    """PaddleX's TextRecPredictor(return_word_box=True) gives word boxes on every call; its model has
    batch_sampler.batch_size, model_dir, config, close() and device "cpu"."""
    from edgerec import create_model

    model = create_model(V4, return_word_box=True, batch_size=2)
    [res] = list(model.predict(str(line_png)))
    text, box = res["rec_text"]
    assert text.strip() == "Hello World" and isinstance(box, list)
    assert model.batch_sampler.batch_size == 2 and model.device == "cpu"
    model.batch_sampler.batch_size = 4
    assert model.batch_size == 4
    with pytest.raises(ValueError):
        model.batch_sampler.batch_size = 0
    assert model.model_dir.is_dir() and (model.model_dir / model.model_path.name).exists()
    assert model.config["Global"]["model_name"] == V4
    model.close()


def test_exceptions_have_paddlex_base_classes(v4, tmp_path, edgerec_home):
    from edgerec import create_model

    with pytest.raises(FileNotFoundError, match="no such file"):
        list(v4.predict(str(tmp_path / "missing.png"), on_error="raise"))
    with pytest.raises(ValueError, match="unknown model"):
        create_model("NoSuch_rec")
    with pytest.raises(FileNotFoundError):
        create_model(model_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        create_model(model_dir=tmp_path)  # a folder without a model
    source = edgerec_home / "models" / V4 / "sources" / "onnx-wheel"
    folder = tmp_path / "finetuned"
    folder.mkdir()
    for f in source.iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "inference.yml").write_text("Global:\n  model_name: PP-OCRv4_mobile_rec\n", "utf-8")
    with pytest.raises(ValueError, match="Model name mismatch: its inference.yml names PP-OCRv4_mobile_rec, not "
                                         "en_PP-OCRv3_mobile_rec"):
        create_model("en_PP-OCRv3_mobile_rec", model_dir=folder)


def test_array_results_are_saved_under_paddlex_names_never_twice(v4, line_png, tmp_path):
    """PaddleX names an array's files <unix time>_<1000-9999>; edgerec's never repeat within a process."""
    import re

    img = cv2.imread(str(line_png))
    results = list(v4.predict([img] * 40))
    names = {r.save_to_json(tmp_path).name for r in results}
    assert len(names) == 40 and all(re.fullmatch(r"\d{10}_\d{4}_res\.json", n) for n in names)


def test_save_to_img_takes_image_types_as_paddlex_does(v4, line_png, tmp_path):
    from PIL import Image

    [res] = list(v4.predict(str(line_png)))
    assert res.save_to_img(tmp_path / "x.gif") == tmp_path / "x.gif"
    with Image.open(tmp_path / "x.gif") as im:
        assert im.format == "GIF"
    with pytest.raises(ValueError, match="cannot write .svg images"):
        res.save_to_img(tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()  # not a folder of that name either


def test_visualisation_has_paddlexs_layout(v4, line_png):
    """The crop at its own width, the label in a font of 6 % of it (shrunk until it fits), rows of 1.2 x the
    label's height: PaddleX's TextRecResult._to_img."""
    from edgerec.io.fonts import load_font

    [res] = list(v4.predict(str(line_png)))
    img = res.img["res"]
    h, w = res["input_img"].shape[:2]
    label = f"{res['rec_text']} ({res['rec_score']})"
    size = int(w * 0.06)
    while load_font(size).getbbox(label)[2] > w:
        size -= 1
    assert img.size == (w, h + int(load_font(size).getbbox(label)[3] * 1.2))


def test_the_suffixes_edgerec_writes_name_files_whatever_the_mime_table(monkeypatch):
    import mimetypes

    from edgerec.results import is_image_path

    monkeypatch.setattr(mimetypes, "guess_type", lambda *a, **k: (None, None))  # a slim container's table
    assert is_image_path("x.webp") and is_image_path("x.GIF") and not is_image_path("out")


def test_input_shape_stretches_every_line_as_paddlex_static_resize(v4, edgerec_home):
    """PaddleX 3.7.2 with input_shape=[3, 48, 640] and [3, 48, 200] gave the same texts and scores to 5 digits on
    the samples (checked side by side); here: the same as the engine on a hand-made stretch."""
    from edgerec import create_model
    from edgerec.errors import ModelError
    from edgerec.runtime.decode import ctc_greedy_decode

    line = render_line("Gate 12 opens", height=40, font_kind="latin")
    model = create_model(V4, input_shape=[3, 48, 200])
    [res] = list(model.predict(line))
    x = cv2.resize(line, (200, 48)).transpose(2, 0, 1).astype(np.float32)[None] / 255.0
    want = ctc_greedy_decode(v4.predictor.engine.infer((x - 0.5) / 0.5), v4.predictor.classes)[0]
    assert res["rec_text"] == want[0] and res["rec_score"] == pytest.approx(want[1], abs=1e-5)
    with pytest.raises(ModelError, match="height must be the model's input height, 48"):
        create_model(V4, input_shape=[3, 32, 320])
    for bad in ([3, 48], [1, 48, 320], "3,48,320", [3, 48, 5]):
        with pytest.raises(ValueError, match="input_shape"):
            create_model(V4, input_shape=bad)
    with pytest.raises(ValueError, match="width_bucket"):
        create_model(V4, input_shape=[3, 48, 320], width_bucket=160)


def test_a_model_cannot_be_pickled_but_a_shallow_copy_has_its_own_batch_size(v4):
    import copy
    import pickle

    for f in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="call create_model in each worker"):
            f(v4)
    handle = copy.copy(v4)
    handle.batch_sampler.batch_size = 8
    assert handle.batch_size == 8 and v4.batch_size != 8
