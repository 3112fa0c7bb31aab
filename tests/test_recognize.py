"""End to end with the real PP-OCRv4 mobile weights: exact text, batching, inputs, results, IR metadata."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import EN_LINES, V4, ZH_LINES


def texts(model, inputs, **kw):
    return [r["rec_text"] for r in model.predict(inputs, **kw)]


def test_exact_text_on_rendered_english_and_chinese(v4, rendered):
    results = list(v4.predict([img for _, img in rendered], batch_size=1))
    assert [r["rec_text"].strip() for r in results] == [t for t, _ in rendered]
    assert all(0.8 < r["rec_score"] <= 1.0 for r in results)
    assert all(r["input_path"] is None and r["page_index"] is None for r in results)


def test_text_does_not_depend_on_batch(v4, rendered):
    imgs = [img for _, img in rendered]
    ref = texts(v4, imgs, batch_size=1)
    # several lines share the 320 minimum width, so batches of 3 and 8 really group them
    for bs in (2, 3, 8):
        assert texts(v4, imgs, batch_size=bs) == ref
    order = np.random.default_rng(0).permutation(len(imgs))
    shuffled = texts(v4, [imgs[i] for i in order], batch_size=8)
    assert [shuffled[list(order).index(i)] for i in range(len(imgs))] == ref


def test_results_come_back_in_input_order_across_widths(v4, rendered):
    imgs = [img for _, img in rendered] * 3
    got = texts(v4, imgs, batch_size=4)
    assert [t.strip() for t in got] == [t for t, _ in rendered] * 3


def test_every_input_kind(v4, rendered, tmp_path):
    text, bgr = rendered[0]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    pil = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    png = tmp_path / "word.png"
    cv2.imwrite(str(png), bgr)
    folder = tmp_path / "lines"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "b.PNG"), rendered[1][1])
    cv2.imwrite(str(folder / "sub" / "c.jpg"), rendered[2][1])
    pdf = tmp_path / "doc.pdf"
    pages = [Image.fromarray(cv2.cvtColor(im, cv2.COLOR_BGR2RGB)) for _, im in rendered[:2]]
    pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=72)

    results = list(v4.predict([bgr, gray, bgra, pil, str(png), str(folder), str(pdf)]))
    got = [(r["input_path"], r["page_index"], r["rec_text"].strip()) for r in results]
    assert got[:4] == [(None, None, text)] * 4
    assert got[4] == (str(png), None, text)
    assert got[5][0].endswith("b.PNG") and got[5][2] == rendered[1][0]
    assert got[6][0].endswith("c.jpg") and got[6][2] == rendered[2][0]
    assert [(g[1], g[2]) for g in got[7:]] == [(0, rendered[0][0]), (1, rendered[1][0])]
    assert all(g[0] == str(pdf) for g in got[7:])


def test_bad_input_in_a_list_keeps_the_others(v4, rendered, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rendered[0][1])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    results = list(v4.predict([str(good), str(empty), str(tmp_path / "missing.png"), rendered[1][1]]))
    assert len(results) == 4
    assert results[0]["rec_text"].strip() == rendered[0][0] and not results[0].error
    assert "empty.png" in results[1].error and results[1]["rec_text"] == "" and results[1]["rec_score"] == 0.0
    assert "missing.png" in results[2].error
    assert results[3]["rec_text"].strip() == rendered[1][0]
    from edgerec.errors import InputError

    with pytest.raises(InputError, match="empty.png"):
        list(v4.predict([str(empty)], on_error="raise"))


def test_result_methods_and_naming(v4, rendered, tmp_path):
    png = tmp_path / "word.png"
    cv2.imwrite(str(png), rendered[0][1])
    [res] = list(v4.predict(str(png)))
    out = tmp_path / "output"
    assert res.save_to_json(out).name == "word_res.json"
    assert res.save_to_img(out).name == "word_res.png"
    data = json.loads((out / "word_res.json").read_text("utf-8"))
    assert data["rec_text"] == res["rec_text"] and data["input_path"] == str(png)
    vis = cv2.imread(str(out / "word_res.png"))
    assert vis.shape[0] > rendered[0][1].shape[0]
    assert set(res.json["res"]) == {"input_path", "page_index", "rec_text", "rec_score"}


def test_ir_folder_alone_is_enough(v4, rendered, tmp_path):
    from edgerec import create_model
    from edgerec.zoo.export import read_info

    ir = tmp_path / "ir"
    shutil.copytree(v4.model_path.parent, ir)
    info = read_info(ir / "model.xml")
    assert info.model_name == V4 and info.precision == "fp32" and info.input_height == 48
    assert info.num_classes == 6625 and info.classes[0] == "blank" and info.classes[-1] == " "
    assert len(info.source_sha256) == 64
    alone = create_model(model_dir=ir)
    imgs = [img for _, img in rendered]
    assert texts(alone, imgs) == texts(v4, imgs)


def test_recognize_single_frame(v4, rendered):
    res = v4.recognize(rendered[4][1])
    assert res["rec_text"] == ZH_LINES[0]
    from edgerec.errors import InputError

    with pytest.raises(InputError):
        v4.recognize(np.zeros((0, 10, 3), np.uint8))


def test_english_lines_are_rendered_as_expected(rendered):
    assert [t for t, _ in rendered[: len(EN_LINES)]] == EN_LINES


def test_device_strings(v4, rendered):
    from edgerec import create_model
    from edgerec.engines.openvino import get_core, resolve_device
    from edgerec.errors import DeviceError

    assert resolve_device("cpu") == "CPU" and resolve_device(None) == "CPU"
    assert resolve_device("AUTO") == "AUTO"
    with pytest.raises(DeviceError, match="NVIDIA"):
        resolve_device("gpu:0")
    if not any(d.startswith("GPU") for d in get_core().available_devices):
        with pytest.raises(DeviceError, match="not available"):
            create_model(V4, device="GPU", progress=False)
    auto = create_model(V4, device="AUTO", progress=False)
    assert auto.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]


def test_one_model_many_threads(v4, rendered):
    from concurrent.futures import ThreadPoolExecutor

    imgs = [img for _, img in rendered]
    ref = texts(v4, imgs)
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda k: texts(v4, imgs[k % 3:] + imgs[:k % 3], batch_size=1 + k % 3), range(16)))
    for k, out in enumerate(outs):
        assert out == ref[k % 3:] + ref[:k % 3]


def test_array_results_get_distinct_names_across_calls(v4, rendered, tmp_path):
    img = rendered[0][1]
    first, second = v4.recognize(img), v4.recognize(img)
    assert first.save_to_json(tmp_path) != second.save_to_json(tmp_path)  # named on first save, never twice
    assert first.name != second.name and first.save_to_json(tmp_path).name.startswith(first.name)


def test_saved_files_follow_the_umask(v4, rendered, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = v4.recognize(rendered[0][1]).save_to_json(tmp_path / "r.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_int8_without_a_quantized_model_says_so(v4):
    from edgerec import create_model
    from edgerec.errors import ModelError

    with pytest.raises(ModelError, match="no int8 model"):
        create_model(V4, precision="int8", progress=False)
    hpip = create_model(V4, use_hpip=True, progress=False)
    from edgerec.utils.cpu import has_native_bf16

    assert hpip.precision == ("bf16" if has_native_bf16() else "fp32")  # no int8: bf16 where native (test_bf16)


def test_recognize_batch_is_the_integration_call(v4, rendered):
    """Arrays in, (text, score) out, in order: the same as predict, gray and BGRA accepted, a bad one named."""
    from edgerec.errors import InputError

    imgs = [img for _, img in rendered]
    got = v4.recognize_batch(imgs, batch_size=4)
    want = [(r["rec_text"], r["rec_score"]) for r in v4.predict(imgs, batch_size=4)]
    assert got == want and [t.strip() for t, _ in got] == [t for t, _ in rendered]
    gray = cv2.cvtColor(imgs[0], cv2.COLOR_BGR2GRAY)
    assert v4.recognize_batch([gray])[0][0].strip() == rendered[0][0]
    assert v4.recognize_batch([]) == []
    with pytest.raises(InputError, match=r"images\[1\]: .*shape \(4,\)"):
        v4.recognize_batch([imgs[0], np.zeros(4, np.uint8)])
