"""Issue 15 classes: memory guards, wrong results, hangs and leaks in the input loader (one test per class)."""

from __future__ import annotations

import io
import socket
import threading
import time
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from edgerec.errors import InputError, redact
from edgerec.io import images, pdf
from edgerec.io.inputs import iter_inputs, load_image, to_bgr


def _pattern() -> np.ndarray:
    img = np.full((20, 40, 3), 255, np.uint8)
    img[:10, :10] = (0, 0, 255)
    img[10:, 30:] = (255, 0, 0)
    return img


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _pdf(pages: int) -> bytes:
    buf = io.BytesIO()
    first, *rest = [Image.new("RGB", (60, 30), (255, 255, 255)) for _ in range(pages)]
    first.save(buf, "PDF", save_all=True, append_images=rest)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ memory


def test_a_file_over_the_byte_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as fh:  # sparse: 1 GB claimed, nothing written
        fh.truncate(2**30)
    (item,) = iter_inputs(str(path), max_image_bytes=1 << 20)
    assert "too large" in str(item.error) and str(path) in str(item.error)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1 << 20)
    with pytest.raises(InputError, match="too large"):
        load_image(path)


def test_decoded_bytes_not_only_pixels_bound_an_image(monkeypatch):
    rgba16 = np.zeros((100, 100, 4), np.uint16)
    data = _png(rgba16)
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 100 * 100 * 4 * 2 - 1)  # one byte short
    with pytest.raises(InputError, match="too large to decode.*16 bits"):
        load_image(data)
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 100 * 100 * 4 * 2)
    assert load_image(data).shape == (100, 100, 3)
    # the same pixel count at 8 bits gray is far under the limit
    assert load_image(_png(np.zeros((100, 100), np.uint8))).shape == (100, 100, 3)


def test_pdf_pages_are_capped_with_one_error_for_the_rest(monkeypatch):
    monkeypatch.setattr(pdf, "MAX_PDF_PAGES", 2)
    items = list(iter_inputs(_pdf(5), pdf_dpi=36))
    assert [it.page_index for it in items] == [0, 1, 2]
    assert items[0].error is None and items[1].error is None
    assert "5 pages" in str(items[2].error) and "first 2" in str(items[2].error)
    assert len(list(iter_inputs(_pdf(5), pdf_dpi=36, max_pdf_pages=4))) == 5


def test_pdf_pages_are_rendered_as_they_are_consumed(monkeypatch):
    rendered: list[int] = []
    real = pdf._pdf_bitmap_to_bgr

    def spy(arr, mode, source):
        rendered.append(1)
        return real(arr, mode, source)

    monkeypatch.setattr(pdf, "_pdf_bitmap_to_bgr", spy)
    it = iter_inputs(_pdf(6), pdf_dpi=36)
    next(it)
    assert len(rendered) == 1  # one page in memory, not all six
    next(it)
    assert len(rendered) == 2


# ------------------------------------------------------------------------------------------ wrong results


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_exif_orientation_is_applied_once(orientation):
    im = Image.fromarray(_pattern()[:, :, ::-1].copy())
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "TIFF", exif=exif)
    data = buf.getvalue()
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))[:, :, ::-1]
    assert np.array_equal(load_image(data), expected)


def test_multi_page_tiff_yields_every_page_with_its_index():
    buf = io.BytesIO()
    pages = [Image.new("L", (8 + i, 5), 10 * i) for i in range(3)]
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    items = list(iter_inputs(buf.getvalue()))
    assert [(it.page_index, it.image.shape[1], int(it.image[0, 0, 0])) for it in items] == [
        (0, 8, 0), (1, 9, 10), (2, 10, 20)]


def test_png_with_pdf_magic_in_its_metadata_stays_an_image(tmp_path):
    data = _png(_pattern())
    text = b"Comment\x00%PDF-1.7 not a pdf"
    chunk = len(text).to_bytes(4, "big") + b"tEXt" + text + zlib.crc32(b"tEXt" + text).to_bytes(4, "big")
    data = data[:33] + chunk + data[33:]  # right after IHDR: within the first KB
    assert b"%PDF-" in data[:1024]
    assert np.array_equal(load_image(data), _pattern())
    path = tmp_path / "meta.png"
    path.write_bytes(data)
    (item,) = iter_inputs(str(path))
    assert item.error is None and item.page_index is None


def test_float_images_are_0_to_1_up_to_1_5_else_0_to_255_as_paddlex():
    img = np.full((4, 4), 0.5, np.float32)
    img[0, 0] = 1.0001  # resize overshoot: the rest of the image must not become 0..255
    out = to_bgr(img)
    assert int(out[1, 1, 0]) == 128 and int(out[0, 0, 0]) == 255
    # a float image in 0..255 (what PaddleX assumes for every float array, and PIL's "F" mode) reads as such
    assert int(to_bgr(np.full((2, 2), 128.0, np.float32))[0, 0, 0]) == 128
    assert int(to_bgr(np.full((2, 2), 128.0, np.float32), value_range=255)[0, 0, 0]) == 128
    assert int(to_bgr(np.full((2, 2), 0.5, np.float32), value_range=255)[0, 0, 0]) == 0  # said 0..255: 0.5 is black
    with pytest.raises(InputError, match="value_range"):
        to_bgr(img, value_range=100)


def test_negative_values_in_signed_arrays_warn():
    with pytest.warns(UserWarning, match="negative values"):
        out = to_bgr(np.full((2, 2), -3, np.int16))
    assert int(out.max()) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_bgr(np.full((2, 2), 3, np.int16))  # no negatives: no warning


def test_an_iterator_that_raises_part_way_loses_only_that_element():
    class Flaky:
        def __init__(self):
            self.i = 0

        def __iter__(self):
            return self

        def __next__(self):
            self.i += 1
            if self.i == 2:
                raise OSError("camera hiccup")
            if self.i > 4:
                raise StopIteration
            return np.zeros((3, 3), np.uint8)

    items = list(iter_inputs(Flaky()))
    assert [it.error is None for it in items] == [True, False, True, True]
    assert "camera hiccup" in str(items[1].error)


def test_credentials_in_urls_are_redacted_everywhere():
    assert redact("http://bob:secret@host/a.png") == "http://***@host/a.png"
    assert redact("no url here a@b") == "no url here a@b"
    (item,) = iter_inputs("http://bob:secret@127.0.0.1:9/a.png", url_timeout=2)
    assert "secret" not in str(item.error) and "secret" not in (item.input_path or "")
    assert item.input_path == "http://***@127.0.0.1:9/a.png"


# ------------------------------------------------------------------------------------------ hangs (local servers)


def _serve(behaviour, seconds: float = 8.0):
    """A raw 127.0.0.1 server running ``behaviour(conn)`` for each connection, for at most ``seconds``."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    stop = time.monotonic() + seconds

    def loop():
        while time.monotonic() < stop:
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.recv(4096)
                    behaviour(conn, stop)
                except OSError:
                    pass
        srv.close()

    threading.Thread(target=loop, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}"


def _drip_headers(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while time.monotonic() < stop:
        conn.sendall(b"X")  # a header line that never ends, a byte at a time
        time.sleep(0.1)


def _continue_forever(conn, stop):
    while time.monotonic() < stop:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.1)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("behaviour", [_drip_headers, _continue_forever], ids=["header-drip", "100-continue"])
def test_url_has_one_deadline_from_connect_to_last_byte(behaviour):
    url = _serve(behaviour)
    t0 = time.monotonic()
    (item,) = iter_inputs(f"{url}/a.png", url_timeout=1.0)
    assert time.monotonic() - t0 < 4
    assert "timed out after 1 s" in str(item.error)


@pytest.mark.timeout(30)
def test_url_body_shorter_than_content_length_is_a_clear_error():
    body = _png(_pattern())

    def short(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(body) + 100) + body)

    (item,) = iter_inputs(f"{_serve(short)}/a.png", url_timeout=5)
    assert "incomplete" in str(item.error) and f"{len(body)} of {len(body) + 100} bytes" in str(item.error)
