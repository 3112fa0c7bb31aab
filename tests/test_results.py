"""TextRecResult (PaddleX surface) and the packaged fonts / line renderer."""

from __future__ import annotations

import copy
import json
import pickle
import re
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edgerec.io import fonts
from edgerec.io.fonts import font_path, load_font, render_line
from edgerec.results import TextRecResult


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return render_line("Hello", height=48)


def _res(**kw) -> TextRecResult:
    args = {"input_path": "word.png", "page_index": None, "rec_text": "abc", "rec_score": 0.98}
    args.update(kw)
    return TextRecResult(**args)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- fonts


def test_font_paths_come_from_installed_packages():
    cjk = font_path("cjk")
    assert cjk.is_file() and cjk.name == "NotoSansCJKsc-Regular.otf"
    assert "mplfonts" in cjk.parts
    latin = font_path("latin")
    assert latin.is_file() and latin.name == "DejaVuSans.ttf"
    assert font_path() == cjk
    with pytest.raises(ValueError):
        font_path("klingon")


def _glyph(ch: str, kind: str) -> np.ndarray:
    font = load_font(32, kind)
    img = Image.new("L", (48, 48), 0)
    ImageDraw.Draw(img).text((8, 4), ch, font=font, fill=255)
    return np.asarray(img)


def test_cjk_font_has_chinese_glyphs():
    font = load_font(32, "cjk")
    for ch in "中文":
        x0, y0, x1, y1 = font.getbbox(ch)
        assert x1 > x0 and y1 > y0
    tofu = _glyph("\uffff", "cjk")
    zhong, wen = _glyph("中", "cjk"), _glyph("文", "cjk")
    assert zhong.any() and wen.any()
    assert not np.array_equal(zhong, tofu) and not np.array_equal(wen, tofu)
    assert not np.array_equal(zhong, wen)
    # the check can fail: DejaVu (Latin only) draws the same .notdef box for both
    assert np.array_equal(_glyph("中", "latin"), _glyph("\uffff", "latin"))


def test_load_font_is_cached():
    assert load_font(20) is load_font(20, "cjk")
    assert load_font(20) is not load_font(21)


def test_cjk_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(fonts, "_cjk_path", lambda: None)
    monkeypatch.setattr(fonts, "_warned_fallback", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert font_path("cjk").name == "DejaVuSans.ttf"
        assert font_path("cjk").name == "DejaVuSans.ttf"
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1


def test_render_line_shape_and_ink():
    img = render_line("Hello world")
    assert img.ndim == 3 and img.shape[0] == 48 and img.shape[2] == 3 and img.dtype == np.uint8
    assert img.flags["C_CONTIGUOUS"]
    dark = img.max(axis=2) < 100
    assert dark.sum() > 100
    # padding is background; text spans most of the height but stays inside it
    assert not dark[:, :8].any() and not dark[:, -8:].any()
    rows = np.flatnonzero(dark.any(axis=1))
    assert 0 < rows.min() and rows.max() < 47 and rows.max() - rows.min() >= 20
    assert (img[0, 0] == 255).all()


def test_render_line_deterministic_and_fitted():
    a, b = render_line("中文 text 123"), render_line("中文 text 123")
    assert np.array_equal(a, b)
    assert render_line("a longer line of text").shape[1] > render_line("short").shape[1]
    assert render_line("x", height=32).shape[0] == 32
    assert render_line("x", height=100).shape[0] == 100
    assert render_line("").shape == (48, 16, 3)
    # same baseline for every string: ascender-only text sits on the line that descenders hang from
    caps = np.flatnonzero((render_line("HHH").max(axis=2) < 100).any(axis=1)).max()
    desc = np.flatnonzero((render_line("ggg").max(axis=2) < 100).any(axis=1)).max()
    assert desc > caps


def test_render_line_colours_are_bgr():
    img = render_line("Hi", fg=(255, 0, 0), bg=(0, 0, 0))  # blue text on black
    text = img.max(axis=2) > 200
    assert text.any()
    assert (img[text][:, 0] > 200).all() and (img[text][:, 2] < 50).all()
    with pytest.raises(ValueError):
        render_line("a\nb")


# ---------------------------------------------------------------- TextRecResult: printing and json


def test_keys_and_types():
    r = TextRecResult("word.png", None, "abc", np.float32(0.5), input_img=None, name=None)
    # PaddleX's keys and order; input_img and vis_font stay out of .json
    assert list(r) == ["input_path", "page_index", "input_img", "rec_text", "rec_score", "vis_font"]
    assert list(r.json["res"]) == ["input_path", "page_index", "rec_text", "rec_score"]
    assert type(r["rec_score"]) is float and r["rec_score"] == 0.5
    other = TextRecResult("word.png", None, "abc", 0.5, input_img=np.zeros((2, 2, 3), np.uint8))
    assert r != other and other == copy.deepcopy(other)
    assert isinstance(r, dict)


def test_print_json(capsys):
    _res().print(json_format=True)
    assert capsys.readouterr().out == (
        "{\n"
        '    "res": {\n'
        '        "input_path": "word.png",\n'
        '        "page_index": null,\n'
        '        "rec_text": "abc",\n'
        '        "rec_score": 0.98\n'
        "    }\n"
        "}\n"
    )
    _res().print(json_format=True, indent=2)
    assert capsys.readouterr().out.startswith('{\n  "res": {\n    "input_path"')


def test_print_non_json(capsys):
    expected = "{'res': {'input_path': 'word.png', 'page_index': None, 'rec_text': 'abc', 'rec_score': 0.98}}\n"
    _res().print(json_format=False)
    assert capsys.readouterr().out == expected
    _res().print()  # PaddleX's default is the dict repr, not JSON
    assert capsys.readouterr().out == expected


def test_str_is_default_print(capsys):
    """PaddleX: ``.str`` is ``{"res": <the result without input_img and vis_font>}`` (a dict, not JSON text),
    ``print()`` shows it, and ``str(res)`` is the whole dict's repr."""
    r = _res(rec_text="中文")
    r.print()
    assert capsys.readouterr().out == str(r.str) + "\n"
    assert r.str == {"res": {"input_path": "word.png", "page_index": None, "rec_text": "中文", "rec_score": 0.98}}
    assert r.str["res"]["rec_text"] == "中文"
    assert repr(r) == repr(dict(r)) and str(r) == repr(dict(r)) and "'vis_font'" in str(r)


def test_ensure_ascii_on_chinese(capsys):
    r = _res(rec_text="中文")
    r.print(json_format=True)
    out = capsys.readouterr().out
    assert '"rec_text": "中文"' in out
    r.print(json_format=True, ensure_ascii=True)
    out = capsys.readouterr().out
    assert '"rec_text": "\\u4e2d\\u6587"' in out and "中" not in out


def test_json_round_trip():
    r = TextRecResult("a/b/word.png", 2, "Hello", np.float64(0.998))
    j = r.json
    assert j == {"res": {"input_path": "a/b/word.png", "page_index": 2, "rec_text": "Hello", "rec_score": 0.998}}
    assert json.loads(json.dumps(j)) == j
    assert type(j["res"]["rec_score"]) is float
    r["rec_score"] = np.float32(0.25)  # a caller may put NumPy values back in; .json stays plain
    assert type(r.json["res"]["rec_score"]) is float


def test_pickle_and_copy_keep_attributes(crop):
    r = _res(input_img=crop, name="ndarray_0")
    for other in (pickle.loads(pickle.dumps(r)), copy.copy(r), copy.deepcopy(r)):
        assert type(other) is TextRecResult
        assert other == r and list(other) == list(r)
        assert other.name == "ndarray_0"
        assert np.array_equal(other.input_img, crop)
    assert copy.deepcopy(r).input_img is not crop
    assert copy.copy(r).input_img is crop


# ---------------------------------------------------------------- saving


def test_save_to_json_folder_naming(tmp_path):
    out = tmp_path / "out"
    written = _res(rec_text="中文").save_to_json(out)
    assert written == out / "word_res.json"
    text = written.read_text(encoding="utf-8")
    assert "中文" in text
    assert json.loads(text) == {"input_path": "word.png", "page_index": None, "rec_text": "中文", "rec_score": 0.98}
    assert _files(out) == ["word_res.json"]


def test_save_to_json_explicit_path(tmp_path):
    target = tmp_path / "sub" / "mine.json"
    assert _res().save_to_json(target) == target
    assert json.loads(target.read_text()) == _res().json["res"]
    assert _files(target.parent) == ["mine.json"]
    _res(rec_text="中").save_to_json(target, ensure_ascii=True)
    assert "\\u4e2d" in target.read_text()


def test_save_naming_pdf_url_array(tmp_path):
    assert _res(input_path="docs/doc.pdf", page_index=2).save_to_json(tmp_path).name == "doc_2_res.json"
    url = "https://example.com/imgs/line_01.jpg?x=1"
    assert _res(input_path=url).save_to_json(tmp_path).name == "line_01_res.json"
    assert _res(input_path=None, name="ndarray_3").save_to_json(tmp_path).name == "ndarray_3_res.json"
    nameless = _res(input_path=None)  # an array: PaddleX's <unix time>_<1000-9999>, the same for each of its saves
    first = nameless.save_to_json(tmp_path).name
    assert re.fullmatch(r"\d{10}_\d{4}_res\.json", first) and nameless.save_to_json(tmp_path).name == first


def test_save_to_img(tmp_path, crop):
    r = _res(rec_text="Hello", rec_score=0.998, input_img=crop)
    written = r.save_to_img(tmp_path / "vis")
    assert written == tmp_path / "vis" / "word_res.png"
    with Image.open(written) as im:
        assert im.format == "PNG"
        vis = np.asarray(im.convert("RGB"))
    h, w = crop.shape[:2]
    assert vis.shape[0] > h and vis.shape[1] == w  # PaddleX's layout: the crop's width, the label under it
    assert np.array_equal(vis[:h, :w], crop[:, :, ::-1])  # the crop, unchanged, on top
    lower = vis[h:]
    assert (lower.max(axis=2) < 100).sum() > 0  # dark text pixels in the strip (6 % of a 100-px crop: tiny)
    assert _files(tmp_path / "vis") == ["word_res.png"]


def test_save_to_img_explicit_suffixes(tmp_path, crop):
    r = _res(input_img=crop)
    for name, fmt in (("a.png", "PNG"), ("b.JPG", "JPEG"), ("c.jpeg", "JPEG"), ("d.bmp", "BMP")):
        assert r.save_to_img(tmp_path / name) == tmp_path / name
        with Image.open(tmp_path / name) as im:
            assert im.format == fmt
    assert _files(tmp_path) == ["a.png", "b.JPG", "c.jpeg", "d.bmp"]


def test_img_property_and_wide_text(crop):
    vis = _res(input_img=crop).img
    assert set(vis) == {"res"} and isinstance(vis["res"], Image.Image) and vis["res"].mode == "RGB"
    narrow = crop[:, :20]
    long_text = _res(rec_text="a very long recognised line 中文", input_img=narrow).img["res"]
    assert long_text.width == 20 and long_text.height > crop.shape[0]  # the label shrinks to the crop's width
    blank = _res(input_img=None).img["res"]
    assert blank.size[0] == 320 and blank.height > 48 and (np.asarray(blank)[:48] == 255).all()
    gray = _res(input_img=crop[:, :, 0]).img["res"]
    assert gray.height > 48


def test_atomic_writes_leave_no_temp_files(tmp_path, crop, monkeypatch):
    r = _res(input_img=crop)
    for _ in range(3):
        r.save_to_json(tmp_path)
        r.save_to_img(tmp_path)
    assert _files(tmp_path) == ["word_res.json", "word_res.png"]
    before = (tmp_path / "word_res.json").read_bytes()

    # a failure while writing keeps the old file whole and leaves nothing else behind
    import edgerec.utils.fs as fs

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fs.os, "fsync", boom)
    with pytest.raises(OSError):
        _res(rec_text="changed").save_to_json(tmp_path)
    assert (tmp_path / "word_res.json").read_bytes() == before
    assert _files(tmp_path) == ["word_res.json", "word_res.png"]
