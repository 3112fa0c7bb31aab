"""The input loader: every input kind -> BGR uint8 HxWx3, and bad items become error items, never exceptions."""

from __future__ import annotations

import http.server
import io
import os
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from edgerec.errors import InputError
from edgerec.io.inputs import (
    IMAGE_SUFFIXES,
    LoadedItem,
    _apply_orientation,
    iter_inputs,
    load_image,
    to_bgr,
)

from conftest import local_http


def _items(inputs, **kw) -> list[LoadedItem]:
    items = list(iter_inputs(inputs, **kw))
    assert [it.index for it in items] == list(range(len(items)))
    for it in items:
        assert (it.image is None) != (it.error is None)
        if it.image is not None:
            _assert_bgr(it.image)
    return items


def _assert_bgr(img: np.ndarray) -> None:
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.flags.c_contiguous


def _pattern(h: int = 40, w: int = 64) -> np.ndarray:
    """An asymmetric BGR image: any flip or rotation changes it."""
    img = np.full((h, w, 3), 255, np.uint8)
    img[: h // 2, : w // 3] = (0, 0, 255)  # red block top-left
    img[h // 2 :, w // 2 :] = (255, 0, 0)  # blue block bottom-right
    img[: h // 4, w - w // 5 :] = (0, 160, 0)  # green block top-right
    return img


def _write(path: Path, img: np.ndarray) -> Path:
    ok, enc = cv2.imencode(path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".png", img)
    assert ok
    path.write_bytes(enc.tobytes())
    return path


# ------------------------------------------------------------------------------------------ to_bgr


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((2, 3), 7, np.uint8), (7, 7, 7)),
        (np.full((2, 3, 1), 9, np.uint8), (9, 9, 9)),
        (np.full((2, 3, 3), (1, 2, 3), np.uint8), (1, 2, 3)),  # user arrays are BGR: kept as they are
        (np.full((2, 3, 2), (50, 255), np.uint8), (50, 50, 50)),  # opaque gray+alpha
        (np.full((2, 3, 2), (50, 0), np.uint8), (255, 255, 255)),  # transparent -> white page
        (np.full((2, 3, 4), (10, 20, 30, 255), np.uint8), (10, 20, 30)),
        (np.full((2, 3, 4), (10, 20, 30, 0), np.uint8), (255, 255, 255)),
        (np.full((2, 3, 4), (0, 0, 0, 128), np.uint8), (127, 127, 127)),  # half over white
        (np.full((2, 3), 65535, np.uint16), (255, 255, 255)),
        (np.full((2, 3), 32896, np.uint16), (128, 128, 128)),  # 128 * 257
        (np.full((2, 3), 256, np.uint16), (1, 1, 1)),  # scaling rounds (truncation >> 8 would give 0)
        (np.full((2, 3), 128, np.uint16), (0, 0, 0)),
        (np.full((2, 3, 4), (65535, 0, 257, 65535), np.uint16), (255, 0, 1)),
        (np.full((2, 3), 0.5, np.float32), (128, 128, 128)),
        (np.full((2, 3), 1.0, np.float64), (255, 255, 255)),
        (np.full((2, 3), 0.5, np.float16), (128, 128, 128)),
        (np.full((2, 3, 3), (300.0, -5.0, 0.4), np.float32), (255, 0, 0)),  # above 1.5: 0..255, clipped
        (np.full((2, 3, 3), (1.2, -5.0, 0.4), np.float32), (255, 0, 102)),  # at most 1.5: 0..1, clipped
        (np.full((2, 3), True), (255, 255, 255)),
        (np.full((2, 3), False), (0, 0, 0)),
        (np.full((2, 3, 3), (-5, 300, 42), np.int16), (0, 255, 42)),
        (np.full((2, 3, 3), (-5, 1000, 42), np.int32), (0, 255, 42)),
        (np.full((2, 3), -1, np.int8), (0, 0, 0)),
        (np.full((2, 3), 70000, np.uint32), (255, 255, 255)),
    ],
    ids=lambda v: f"{v.dtype}{v.shape}" if isinstance(v, np.ndarray) else None,
)
def test_to_bgr_normalises(array, expected):
    out = to_bgr(array)
    _assert_bgr(out)
    assert out.shape[:2] == array.shape[:2]
    assert tuple(int(v) for v in out[0, 0]) == expected


def test_to_bgr_keeps_a_contiguous_bgr_array_and_makes_views_contiguous():
    img = _pattern()
    assert to_bgr(img) is img
    view = img[:, ::-1]
    out = to_bgr(view)
    _assert_bgr(out)
    assert np.array_equal(out, view)


def test_to_bgr_mixed_alpha_composites_per_pixel():
    bgra = np.zeros((1, 2, 4), np.uint8)
    bgra[0, 0] = (0, 0, 0, 255)  # black ink
    bgra[0, 1] = (0, 0, 0, 0)  # transparent background
    out = to_bgr(bgra)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((0, 5), np.uint8), "(0, 5)"),
        (np.zeros((5, 0, 3), np.uint8), "(5, 0, 3)"),
        (np.zeros((5,), np.uint8), "(5,)"),
        (np.zeros((2, 3, 4, 3), np.uint8), "(2, 3, 4, 3)"),
        (np.zeros((4, 4, 5), np.uint8), "(4, 4, 5)"),
        (np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.full((2, 2), np.inf, np.float64), "NaN or infinite"),
        (np.zeros((2, 2), np.complex64), "dtype complex64"),
        (np.zeros((2, 2), object), "dtype object"),
    ],
)
def test_to_bgr_refuses_with_shape_or_reason(array, words):
    with pytest.raises(InputError) as err:
        to_bgr(array, source="frame7")
    assert str(err.value).startswith("frame7: ")
    assert words in str(err.value)


def test_to_bgr_refuses_non_arrays():
    with pytest.raises(InputError, match="expected a numpy array, got list"):
        to_bgr([[1, 2]])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ PIL images


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.new("RGB", (4, 3), (255, 0, 0)), (0, 0, 255)),
        (lambda: Image.new("RGBA", (4, 3), (255, 0, 0, 255)), (0, 0, 255)),
        (lambda: Image.new("RGBA", (4, 3), (0, 0, 0, 0)), (255, 255, 255)),
        (lambda: Image.new("L", (4, 3), 77), (77, 77, 77)),
        (lambda: Image.new("LA", (4, 3), (0, 0)), (255, 255, 255)),
        (lambda: Image.new("1", (4, 3), 1), (255, 255, 255)),
        (lambda: Image.new("RGB", (4, 3), (0, 255, 0)).convert("P"), (0, 255, 0)),
        (lambda: Image.new("CMYK", (4, 3), (0, 0, 0, 0)), (255, 255, 255)),
        (lambda: Image.fromarray(np.full((3, 4), 65535, np.uint16)), (255, 255, 255)),
        (lambda: Image.new("I", (4, 3), 32896), (128, 128, 128)),
        (lambda: Image.new("F", (4, 3), 0.5), (128, 128, 128)),
    ],
    ids=["RGB", "RGBA", "RGBA-clear", "L", "LA-clear", "1", "P", "CMYK", "I16", "I", "F"],
)
def test_pil_images_become_bgr(make, expected):
    (item,) = _items(make())
    assert item.input_path is None and item.page_index is None
    assert item.image.shape == (3, 4, 3)
    assert tuple(int(v) for v in item.image[1, 2]) == expected


# ------------------------------------------------------------------------------------------ image files


def test_gray_png(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8), (10, 1))
    path = _write(tmp_path / "gray.png", gray)
    img = load_image(path)
    _assert_bgr(img)
    assert np.array_equal(img[:, :, 0], gray) and np.array_equal(img[:, :, 2], gray)


def test_rgba_png_transparent_background_is_white(tmp_path):
    bgra = np.zeros((10, 20, 4), np.uint8)
    bgra[2:8, 5:15] = (0, 0, 0, 255)  # black text on a fully transparent (and black) background
    path = _write(tmp_path / "clear.png", bgra)
    img = load_image(path)
    assert img[0, 0].tolist() == [255, 255, 255]
    assert img[5, 10].tolist() == [0, 0, 0]


def test_16bit_png_is_scaled_not_truncated(tmp_path):
    a = np.zeros((4, 5, 3), np.uint16)
    a[..., 0], a[..., 1], a[..., 2] = 65535, 256, 32896
    path = _write(tmp_path / "deep.png", a)
    img = load_image(path)
    assert img[0, 0].tolist() == [255, 1, 128]


def test_16bit_gray_png_via_pil(tmp_path):
    path = tmp_path / "deep_gray.png"
    Image.fromarray(np.full((6, 7), 65535, np.uint16)).save(path)
    (item,) = _items(str(path))
    assert item.image.shape == (6, 7, 3) and int(item.image.min()) == 255


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_comes_back_upright(tmp_path, orientation):
    stored = _pattern(40, 64)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rot{orientation}.jpg"
    Image.fromarray(stored[:, :, ::-1]).save(path, quality=95, exif=exif)
    img = load_image(path)
    assert img.shape == (64, 40, 3)  # width and height swapped
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))[:, :, ::-1]
    assert upright.shape == img.shape
    assert np.abs(upright.astype(int) - img.astype(int)).mean() < 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil(tmp_path, orientation):
    stored = _pattern(30, 50)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"  # lossless, so the comparison is exact
    Image.fromarray(stored[:, :, ::-1]).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))[:, :, ::-1]
    assert np.array_equal(load_image(path), expected)
    assert np.array_equal(_apply_orientation(stored, orientation), expected)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"])
def test_formats_round_trip(tmp_path, suffix):
    img = _pattern()
    path = _write(tmp_path / f"x{suffix}", img)
    out = load_image(path)
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 4


@pytest.mark.parametrize("suffix", [".pgm", ".pbm"])
def test_gray_formats(tmp_path, suffix):
    gray = np.zeros((8, 16), np.uint8)
    gray[:, 8:] = 255
    path = tmp_path / f"g{suffix}"
    Image.fromarray(gray).convert("1" if suffix == ".pbm" else "L").save(path)
    out = load_image(path)
    assert out.shape == (8, 16, 3) and out[0, 0].tolist() == [0, 0, 0] and out[0, 15].tolist() == [255] * 3


def test_multi_frame_tiff_gives_every_page(tmp_path):
    path = tmp_path / "pages.tiff"
    first, second = Image.new("RGB", (30, 20), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))
    first.save(path, save_all=True, append_images=[second])
    one, two = _items(path)
    assert (one.page_index, two.page_index) == (0, 1)
    assert one.image.shape == (20, 30, 3) and one.image[0, 0].tolist() == [0, 0, 255]
    assert two.image.shape == (10, 10, 3) and two.image[0, 0].tolist() == [255, 0, 0]


def test_non_ascii_file_name(tmp_path):
    path = _write(tmp_path / "文字_ürün.png", _pattern())
    (item,) = _items(str(path))
    assert item.error is None and item.input_path == str(path)
    assert np.array_equal(item.image, _pattern())


def test_uppercase_suffix_file_and_folder(tmp_path):
    path = _write(tmp_path / "SHOUT.PNG", _pattern())
    (item,) = _items(path)
    assert item.error is None and item.input_path == str(path)
    (item,) = _items(tmp_path)
    assert item.error is None and item.input_path == str(path)


def test_bytes_input_and_load_image_bytes():
    ok, enc = cv2.imencode(".png", _pattern())
    (item,) = _items(enc.tobytes())
    assert item.input_path is None and np.array_equal(item.image, _pattern())
    assert np.array_equal(load_image(bytearray(enc.tobytes())), _pattern())


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 400 megapixels, gray
    idat = zlib.compress(b"\x00" * 64)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    (item,) = _items([path])
    assert item.error is not None and "too large" in str(item.error) and "bomb.png" in str(item.error)


def test_load_image_raises_for_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "doc.pdf").write_bytes(_pdf_bytes(1))
    with pytest.raises(InputError, match="is a PDF"):
        load_image(tmp_path / "doc.pdf")
    with pytest.raises(InputError, match="not a decodable image"):
        load_image(b"hello", source="blob")


# ------------------------------------------------------------------------------------------ bad items


def test_bad_files_become_error_items_and_the_rest_still_loads(tmp_path):
    good1 = _write(tmp_path / "good1.png", _pattern())
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    ok, enc = cv2.imencode(".png", _pattern(200, 300))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(enc.tobytes()[: len(enc) // 2])
    ok, enc = cv2.imencode(".jpg", _pattern(200, 300))
    truncated_jpg = tmp_path / "truncated.jpg"
    truncated_jpg.write_bytes(enc.tobytes()[: len(enc) // 2])
    text_png = tmp_path / "text.png"
    text_png.write_text("this is not an image\n")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    missing = tmp_path / "missing.png"
    good2 = _write(tmp_path / "good2.jpg", _pattern())

    inputs = [good1, empty, truncated, truncated_jpg, text_png, txt, str(missing), 42, None, good2]
    items = _items(inputs)
    assert len(items) == len(inputs)
    assert items[0].error is None and items[-1].error is None
    expect = {
        1: ("empty.png", "file is empty (0 bytes)"),
        2: ("truncated.png", "not a decodable image (corrupt or unsupported format)"),
        3: ("truncated.jpg", "not a decodable image"),
        4: ("text.png", "not a decodable image"),
        5: ("notes.txt", "unsupported file type '.txt' (supported: "),
        6: ("missing.png", "no such file or directory"),
        7: ("42", "unsupported input type int"),
        8: ("None", "unsupported input type NoneType"),
    }
    for i, (name, words) in expect.items():
        err = items[i].error
        assert isinstance(err, InputError), i
        assert name in str(err) and words in str(err), str(err)
        assert items[i].image is None
    assert items[1].input_path == str(empty) and items[6].input_path == str(missing)
    assert items[7].input_path is None


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "label.txt").write_text("a\tb\n")
    items = _items([str(tmp_path / "empty") + os.sep, tmp_path / "texts"])
    assert [str(it.error).endswith("folder contains no images") for it in items] == [True, True]
    assert items[0].error.source == str(tmp_path / "empty") + os.sep


def test_unsupported_url_schemes_are_refused():
    items = _items(["ftp://example.com/a.png", "file:///etc/passwd", "FILE:///x.png"])
    assert all(it.error is not None and "unsupported URL scheme" in str(it.error) for it in items)
    assert items[0].input_path == "ftp://example.com/a.png"


def test_iter_inputs_never_raises_on_a_failing_iterator():
    def frames():
        yield np.zeros((4, 4), np.uint8)
        raise RuntimeError("camera gone")

    items = _items(frames())
    assert items[0].error is None and "camera gone" in str(items[1].error)


# ------------------------------------------------------------------------------------------ folders


def test_folder_is_recursive_and_sorted(tmp_path):
    for rel in ["b/2.png", "a.png", "b/1.jpg", "sub/deep/x.BMP", "c.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        _write(tmp_path / rel, _pattern())
    (tmp_path / "b" / "labels.txt").write_text("ignored")
    items = _items(tmp_path)
    rels = [os.path.relpath(it.input_path, tmp_path).replace(os.sep, "/") for it in items]
    assert rels == ["a.png", "b/1.jpg", "b/2.png", "c.png", "sub/deep/x.BMP"]
    assert all(it.error is None for it in items)


def test_folder_items_keep_the_folder_as_given(tmp_path):
    _write(tmp_path / "one.png", _pattern())
    (item,) = _items(str(tmp_path) + os.sep)
    assert item.input_path == os.path.join(str(tmp_path) + os.sep, "one.png")


def test_folder_with_symlink_loop_terminates(tmp_path):
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    _write(root / "inner" / "a.png", _pattern())
    try:
        os.symlink(root, root / "inner" / "loop", target_is_directory=True)
        os.symlink(root / "inner", root / "again", target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("symlinks not supported here")
    items = _items(root)
    assert len(items) == 1 and items[0].error is None


def test_folder_bad_file_does_not_stop_the_others(tmp_path):
    (tmp_path / "a_bad.png").write_bytes(b"garbage")
    _write(tmp_path / "b_good.png", _pattern())
    items = _items(tmp_path)
    assert [it.error is None for it in items] == [False, True]
    assert "a_bad.png" in str(items[0].error)


# ------------------------------------------------------------------------------------------ PDF, arrays, lists


def _pdf_bytes(pages: int) -> bytes:
    imgs = [Image.new("RGB", (100 + 20 * i, 50), (255, 0, 0)) for i in range(pages)]
    buf = io.BytesIO()
    imgs[0].save(buf, "PDF", save_all=True, append_images=imgs[1:], resolution=72)
    return buf.getvalue()


def test_two_page_pdf_yields_one_item_per_page(tmp_path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(_pdf_bytes(2))
    items = _items([path, _pattern()], pdf_dpi=144)
    assert [(it.input_path, it.page_index) for it in items] == [(str(path), 0), (str(path), 1), (None, None)]
    assert items[0].image.shape == (100, 200, 3)  # 144 dpi = 2 pixels per point
    assert items[1].image.shape == (100, 240, 3)
    assert items[0].image[50, 100].tolist() == pytest.approx([0, 0, 255], abs=3)


def test_pdf_in_folder_and_as_bytes(tmp_path):
    (tmp_path / "d.PDF").write_bytes(_pdf_bytes(2))
    _write(tmp_path / "e.png", _pattern())
    items = _items(tmp_path, pdf_dpi=72)
    assert [it.page_index for it in items] == [0, 1, None]
    items = _items(_pdf_bytes(1), pdf_dpi=72)
    assert len(items) == 1 and items[0].page_index == 0 and items[0].image.shape == (50, 100, 3)


def test_corrupt_pdf_is_an_error_item(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    items = _items([path, _pattern()])
    assert items[0].error is not None and "broken.pdf" in str(items[0].error)
    assert items[1].error is None


def test_4d_array_is_a_batch():
    batch = np.zeros((3, 8, 10, 3), np.uint8)
    batch[1] = 255
    items = _items(batch)
    assert len(items) == 3 and [it.index for it in items] == [0, 1, 2]
    assert all(it.input_path is None and it.page_index is None for it in items)
    assert int(items[1].image.min()) == 255 and int(items[0].image.max()) == 0


def test_bad_array_in_a_list_is_an_error_item_naming_it():
    items = _items([np.zeros((4, 4), np.uint8), np.zeros((0, 4), np.uint8), np.zeros((4, 4, 3), np.float32)])
    assert items[0].error is None and items[2].error is None
    assert "(0, 4)" in str(items[1].error) and "#1" in str(items[1].error)


def test_nested_lists_and_tuples_are_flattened_in_order(tmp_path):
    p = _write(tmp_path / "p.png", _pattern())
    items = _items([np.zeros((2, 2), np.uint8), (str(p), [Image.new("L", (3, 3)), (p,)]), []])
    assert [it.input_path for it in items] == [None, str(p), None, str(p)]


# ------------------------------------------------------------------------------------------ URLs (local server)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(monkeypatch):
    ok, enc = cv2.imencode(".png", _pattern())
    _Handler.routes = {"/line.png": enc.tobytes(), "/doc": _pdf_bytes(2), "/big.png": b"\x89PNG" + b"0" * 5000}
    with local_http(_Handler, monkeypatch) as url:
        yield url


@pytest.mark.timeout(60)
def test_url_happy_path_404_size_cap_and_pdf(server):
    urls = [f"{server}/line.png", f"{server}/nope.png", f"{server}/big.png", f"{server}/doc"]
    items = _items(urls, url_timeout=5, max_url_bytes=4096, pdf_dpi=72)
    assert [(it.input_path, it.page_index) for it in items] == [
        (urls[0], None), (urls[1], None), (urls[2], None), (urls[3], 0), (urls[3], 1)]
    assert np.array_equal(items[0].image, _pattern())
    assert "HTTP 404" in str(items[1].error) and urls[1] in str(items[1].error)
    assert "too large" in str(items[2].error)
    assert items[3].error is None and items[4].image.shape == (50, 120, 3)


class _Hostile(http.server.BaseHTTPRequestHandler):
    """What a URL audit served: non-ASCII paths, compressed bodies, web pages, a body that never ends."""
    protocol_version = "HTTP/1.1"
    image = b""
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        if self.path in ("/ok/%E5%9B%BE%E7%89%87%20a.png?name=%E4%B8%AD", "/ok/plain.png"):
            self._send(200, "image/png", self.image)
        elif self.path == "/gz":
            self._send(200, "image/png", b"\x1f\x8b\x08" + b"\0" * 64, {"Content-Encoding": "gzip"})
        elif self.path == "/page":
            self._send(200, "text/html; charset=utf-8", b"  <html><body>Sign in</body></html>")
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"1000\r\n" + b"\0" * 4096 + b"\r\n")
                    self.wfile.flush()
                    time.sleep(0.01)
            except OSError:
                return
        else:
            self._send(404, "text/plain", b"no")

    def _send(self, code, ctype, body, extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def hostile(monkeypatch):
    ok, enc = cv2.imencode(".png", _pattern())
    _Hostile.image, _Hostile.hits = enc.tobytes(), []
    with local_http(_Hostile, monkeypatch) as url:
        yield url


@pytest.mark.timeout(60)
def test_urls_a_browser_would_take_and_bodies_that_are_no_image(hostile):
    urls = [f"{hostile}/ok/图片 a.png?name=中", f"{hostile}/gz", f"{hostile}/page", f"{hostile}/endless",
            "data:image/png;base64,iVBORw0KGgo=", f"http://user:p@ss@{hostile[7:]}/ok/plain.png",
            f"{hostile}?mail=me@example.invalid", f"http://user:pa?ss@{hostile[7:]}/ok/plain.png"]
    t0 = time.monotonic()
    items = _items(urls, url_timeout=2)
    assert time.monotonic() - t0 < 10
    assert items[0].error is None and np.array_equal(items[0].image, _pattern())  # percent-encoded, as browsers do
    assert "Content-Encoding: gzip" in str(items[1].error)
    assert "a web page (Content-Type text/html" in str(items[2].error)
    assert "timed out after 2 s" in str(items[3].error)  # the deadline cut it, not "the server closed early"
    assert "unsupported URL scheme 'data'" in str(items[4].error)
    assert items[5].error is None and items[5].input_path == f"http://***@{hostile[7:]}/ok/plain.png"
    assert "HTTP 404" in str(items[6].error)  # asked of the host the URL names, not of what follows an @
    assert "pa?ss" not in str(items[7].error) and "pa?ss" not in items[7].input_path  # malformed: never shown
    assert "password holds an unescaped ? or #" in str(items[7].error)  # refused: nothing was asked of host "user"
    assert not any("p@ss" in p or "pa?ss" in p for p in _Hostile.hits)


@pytest.mark.parametrize("url, shown, contacted", [
    ("http://user:p@ss@h.example/ok", "http://***@h.example/ok", "h.example"),
    ("http://user:pa?ss@h.example/ok", "http://***@h.example/ok", None),  # refused
    ("http://user:p@ss?w#rd@h.example/x", "http://***@h.example/x", None),  # refused
    ("http://h.example:8080?mail=a@b.example", "http://h.example:8080?mail=a@b.example", "h.example"),
    ("http://[::1]:8080?@good.example/", "http://[::1]:8080?@good.example/", "::1"),
    ("http://token@h.example/x", "http://***@h.example/x", "h.example"),
    ("see http://u:p@a.example/x and http://v:q@b.example/y", "see http://***@a.example/x and http://***@b.example/y",
     None),
])
def test_urls_show_no_password_and_name_the_host_they_reach(url, shown, contacted):
    import urllib.parse

    from edgerec.errors import redact, typed_password, without_credentials

    assert redact(url) == shown
    if contacted is not None:
        assert not typed_password(url) and urllib.parse.urlsplit(without_credentials(url)).hostname == contacted
    elif " " not in url:
        assert typed_password(url)
    t0 = time.monotonic()
    redact("@ " + "a." * 20000)  # no quadratic scan on long texts
    assert time.monotonic() - t0 < 1


def test_a_url_port_out_of_range_and_unsafe_ascii(monkeypatch):
    from edgerec.io.url import requote

    items = _items(["http://127.0.0.1:99999/x.png"], url_timeout=2)
    assert "its port is not a number from 0 to 65535" in str(items[0].error)
    assert requote("http://h/a{b}|c?q=1+2&s=%20") == "http://h/a%7Bb%7D%7Cc?q=1+2&s=%20"


@pytest.mark.timeout(60)
def test_the_url_deadline_covers_name_lookup_and_connect(monkeypatch):
    import socket

    def stalled(*args, **kwargs):
        time.sleep(5)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", stalled)
    t0 = time.monotonic()
    items = _items(["http://stalled.example/x.png"], url_timeout=1)
    assert time.monotonic() - t0 < 3 and "timed out after 1 s" in str(items[0].error)


def test_a_resumed_run_does_not_download_urls_again(hostile):
    url = f"{hostile}/ok/plain.png"
    skipped = []
    items = list(iter_inputs([url, "data:x"], skip=lambda p: skipped.append(p) or p == url))
    assert skipped == [url] and _Hostile.hits == [] and len(items) == 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_fifo_named_like_an_image_inside_a_folder_is_an_error_not_a_hang(tmp_path, workers):
    """The folder walk sniffs each file's first bytes (PDF/TIFF by content): a FIFO must not be opened blocking."""
    import subprocess
    import sys

    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 60, 3), 255, np.uint8))
    os.mkfifo(tmp_path / "sub" / "x.png")  # no writer will ever come
    code = ("import sys; from edgerec.io.inputs import iter_inputs\n"
            f"for it in iter_inputs([sys.argv[1]], workers={workers}): print(it.input_path, it.error)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    assert lines[0] == f"{tmp_path / 'a.png'} None"
    assert lines[1].startswith(str(tmp_path / "sub" / "x.png")) and "not a regular file" in lines[1]


# ------------------------------------------------------------------------------------------ from an audit, 2026-12-07


def _tiling_pdf(step: float) -> bytes:
    """One 2000 x 2000 pt page filled with a tiling pattern of ``step`` pt: 0.02 asks pdfium for 10^10 tiles
    (minutes), from 700 bytes."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 2000 2000] /Contents 4 0 R "
            b"/Resources << /Pattern << /P 5 0 R >> >> >>"]
    content = b"/Pattern cs /P scn 0 0 2000 2000 re f"
    tile = b"0 0 %g %g re f" % (step / 2, step / 2)
    objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objs.append(b"<< /Length %d /PatternType 1 /PaintType 1 /TilingType 1 /BBox [0 0 %g %g] /XStep %g /YStep %g "
                b"/Resources << >> >>\nstream\n" % (len(tile), step / 2, step / 2, step, step) + tile
                + b"\nendstream")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def test_a_pdf_page_that_renders_for_minutes_is_its_own_error(tmp_path, monkeypatch):
    """The page renders in a helper process that is killed at the deadline; the next inputs still read."""
    import time

    import edgerec.io.pdf as pdf

    if not pdf._use_helper():
        pytest.skip("no helper process on this platform")
    monkeypatch.setattr(pdf, "RENDER_TIMEOUT_S", 2.0)
    slow = tmp_path / "tiles.pdf"
    slow.write_bytes(_tiling_pdf(0.02))
    good = tmp_path / "doc.pdf"
    good.write_bytes(_pdf_bytes(2))
    t0 = time.monotonic()
    items = _items([slow, good, _pattern()], pdf_dpi=72)
    assert time.monotonic() - t0 < 30
    assert "tiles.pdf page 0: rendering took more than 2 s" in str(items[0].error)
    assert [(it.page_index, it.error is None) for it in items[1:]] == [(0, True), (1, True), (None, True)]


def test_pages_render_the_same_without_the_helper(tmp_path, monkeypatch):
    import edgerec.io.pdf as pdf

    path = tmp_path / "doc.pdf"
    path.write_bytes(_pdf_bytes(2))
    helper = _items([path], pdf_dpi=144)
    monkeypatch.setattr(pdf, "_use_helper", lambda: False)
    here = _items([path], pdf_dpi=144)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(helper, here)) and len(here) == 2


def test_a_file_named_pdf_that_is_no_pdf_says_so(tmp_path):
    path = tmp_path / "page.pdf"
    path.write_bytes(b"<!doctype html><html><body>not found</body></html>")
    [item] = _items([path])
    assert str(item.error) == f"{path}: not a PDF (it does not start with %PDF-), nor an image"


def test_a_folder_that_cannot_be_entered_is_an_error_not_a_silent_drop(tmp_path):
    deep = tmp_path / "top"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    try:  # past PATH_MAX, made one level at a time: the walk lists a folder but cannot stat the next one down
        for _ in range(24):
            os.mkdir("d" * 200, dir_fd=fd)
            fd, old = os.open("d" * 200, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
    except OSError:
        pytest.skip("this file system cannot hold a tree that deep")
    finally:
        os.close(fd)
    _write(deep / "a.png", _pattern())
    items = _items(deep)
    assert items[0].error is None and items[0].input_path == str(deep / "a.png")
    assert any(it.error is not None and "cannot access folder" in str(it.error) for it in items[1:])


def test_with_resume_an_empty_folder_is_still_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "done").mkdir()
    _write(tmp_path / "done" / "a.png", _pattern())
    items = list(iter_inputs([str(tmp_path / "empty"), str(tmp_path / "done")], skip=lambda p: True))
    assert [str(it.error) for it in items] == [f"{tmp_path / 'empty'}: folder contains no images"]


# ---------------------------------------------------------------------- the PDF helper process, from a review


def test_the_pdf_helper_reads_a_relative_path_against_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "doc.pdf").write_bytes(_pdf_bytes(1))
    (tmp_path / "b" / "doc.pdf").write_bytes(_pdf_bytes(3))
    monkeypatch.chdir(tmp_path / "a")
    assert len(_items(["doc.pdf"])) == 1
    monkeypatch.chdir(tmp_path / "b")  # the helper started in a/: it must not read a/doc.pdf again
    assert len(_items(["doc.pdf"])) == 3


def test_a_pdf_error_does_not_hold_the_renderer_while_its_consumer_waits(tmp_path):
    import threading

    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4\nnot really")
    good = tmp_path / "good.pdf"
    good.write_bytes(_pdf_bytes(1))
    paused = iter_inputs([str(bad)])
    assert next(paused).error is not None  # this consumer now waits, holding its generator open
    got = []
    reader = threading.Thread(target=lambda: got.extend(_items([good])))
    reader.start()
    reader.join(60)
    assert not reader.is_alive() and len(got) == 1 and got[0].error is None
    paused.close()


def test_the_pdf_helper_goes_with_its_parent(tmp_path):
    """A parent killed in the middle of a page must not leave the helper rendering for minutes."""
    import signal
    import subprocess
    import sys
    import time

    import edgerec.io.pdf as pdf

    if not pdf._use_helper() or not os.path.isdir("/proc"):
        pytest.skip("no helper process, or no /proc to watch it in")
    slow = tmp_path / "tiles.pdf"
    slow.write_bytes(_tiling_pdf(0.02))
    code = "\n".join([
        "import threading, time",
        "import edgerec.io.pdf as pdf",
        "from edgerec.io.inputs import iter_inputs",
        f"threading.Thread(target=lambda: list(iter_inputs([{str(slow)!r}])), daemon=True).start()",
        "while pdf._RENDERER.proc is None: time.sleep(0.05)",
        "print(pdf._RENDERER.proc.pid, flush=True)",
        "time.sleep(120)"])

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(") ", 1)[1][0] in "ZX"  # dead, waiting to be reaped by init
        except (FileNotFoundError, ProcessLookupError):
            return True

    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        helper = int(parent.stdout.readline())
        time.sleep(1)  # rendering now
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while not gone(helper) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gone(helper), "the PDF helper kept rendering after its parent was killed"
    finally:
        parent.kill()


def test_pdfs_render_in_this_process_where_no_helper_can_start(tmp_path, monkeypatch):
    import sys

    import edgerec.io.pdf as pdf

    monkeypatch.setattr(pdf, "_helper_failed", False)
    monkeypatch.setattr(pdf, "_RENDERER", pdf._Renderer())
    monkeypatch.setattr(sys, "executable", "/bin/true")  # starts, but is no Python: it never answers hello
    path = tmp_path / "doc.pdf"
    path.write_bytes(_pdf_bytes(2))
    items = _items([path])
    assert [(it.page_index, it.error) for it in items] == [(0, None), (1, None)]
    assert pdf._helper_failed


def test_a_helper_that_died_between_pages_is_restarted_for_the_next(tmp_path):
    import edgerec.io.pdf as pdf

    if not pdf._use_helper():
        pytest.skip("no helper process on this platform")
    path = tmp_path / "doc.pdf"
    path.write_bytes(_pdf_bytes(3))
    items = iter_inputs([str(path)])
    first = next(items)
    pdf._RENDERER.proc.kill()  # as the OOM killer would
    pdf._RENDERER.proc.wait(5)
    rest = list(items)
    assert first.error is None and [(it.page_index, it.error) for it in rest] == [(1, None), (2, None)]


def test_many_open_files_do_not_stop_pdfs(tmp_path):
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"the open-file limit here is {soft}")
    held = [open(os.devnull) for _ in range(1100)]  # the helper's pipe gets a descriptor above 1024
    try:
        path = tmp_path / "doc.pdf"
        path.write_bytes(_pdf_bytes(1))
        import edgerec.io.pdf as pdf

        pdf._RENDERER.kill()  # a new helper, started now
        assert [it.error for it in _items([path])] == [None]
    finally:
        for f in held:
            f.close()


def test_ctrl_c_while_the_pdf_helper_starts_does_not_shift_later_replies(tmp_path, monkeypatch):
    """A KeyboardInterrupt before the helper's hello was read left that reply to answer the next request: every
    later PDF read one reply behind ("PDF has no pages")."""
    import edgerec.io.pdf as pdf

    if not pdf._use_helper():
        pytest.skip("no helper process on this platform")
    monkeypatch.setattr(pdf, "_RENDERER", pdf._Renderer())
    real = pdf._Renderer._exchange
    calls = []

    def interrupted(self, proc, request, timeout_s, payload=b""):
        calls.append(request[0])
        if request == ["hello"] and len(calls) == 1:
            proc.stdin.write(pdf.pdf_worker.encode(request))  # sent, its answer never read
            proc.stdin.flush()
            raise KeyboardInterrupt
        return real(self, proc, request, timeout_s, payload)

    monkeypatch.setattr(pdf._Renderer, "_exchange", interrupted)
    path = tmp_path / "doc.pdf"
    path.write_bytes(_pdf_bytes(3))
    with pytest.raises(KeyboardInterrupt):
        _items([path])
    assert [(it.page_index, it.error) for it in _items([path])] == [(0, None), (1, None), (2, None)]
