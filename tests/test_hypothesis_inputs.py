"""Property tests on malformed inputs: every input gives a result or an edgerec error naming it, nothing else.

The known-good lines in the same call must still get their text. The real PP-OCRv4 recognizer runs every
example. Examples are bounded so the file stays under a minute; ``scripts/fuzz_inputs.py`` goes wider.
"""

from __future__ import annotations

import io
import os
import tempfile

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgerec.errors import EdgeRecError, InputError
from edgerec.io.fonts import render_line
from edgerec.results import TextRecResult

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GOOD = ["Hello World", "ABC-123"]
SUFFIXES = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".webp", ".pdf", ".PNG", ".gif", ""]

DTYPES = [np.uint8, np.uint16, ">u2", np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64, np.float16,
          np.float32, np.float64, ">f8", np.bool_, np.complex64]
SHAPES = st.one_of(
    st.sampled_from([(0, 7), (7, 0), (1, 1), (0, 0, 3), (3, 0, 3), (0, 4, 5, 3), (2, 3), (5,), (), (1, 2, 3, 4, 5)]),
    # widths stay under ~60 line heights: wider lines are split into windows, which test_long_lines covers
    st.tuples(st.just(1), st.integers(1, 60)),  # 1 x N
    st.tuples(st.integers(1, 400), st.just(1)),  # N x 1
    st.tuples(st.integers(8, 40), st.integers(1, 300), st.integers(1, 5)),  # H x W x 1..5
    st.tuples(st.integers(1, 3), st.integers(2, 30), st.integers(1, 120), st.sampled_from([1, 3, 4, 5])),  # 4-D
)


@pytest.fixture(scope="module")
def good(v4):
    """The known-good lines, with the text each gives when recognized on its own."""
    imgs = {t: render_line(t, height=48, font_kind="latin") for t in GOOD}
    return {t: (img, v4.recognize(img)["rec_text"]) for t, img in imgs.items()}


def arrays() -> st.SearchStrategy[np.ndarray]:
    def build(dtype_shape):
        dtype, shape = dtype_shape
        dt = np.dtype(dtype)
        if dt.kind == "f":
            elements = st.floats(allow_nan=True, allow_infinity=True, width=min(64, dt.itemsize * 8))
        elif dt.kind == "c":
            elements = st.complex_numbers(allow_nan=True, width=64)
        else:
            elements = None
        return hnp.arrays(dt, shape, elements=elements)
    return st.tuples(st.sampled_from(DTYPES), SHAPES).flatmap(build)


def check(results: list, inputs_named: list[str | None] | None = None) -> None:
    """Every item is a TextRecResult; an error result names its input; an ok one has text and a sane score."""
    for k, res in enumerate(results):
        assert isinstance(res, TextRecResult)
        if res.error:
            assert res["rec_text"] == "" and res["rec_score"] == 0.0
            name = res["input_path"]
            if name is not None:
                assert name in res.error or repr(name) in res.error, res.error
            else:
                assert "#" in res.error, res.error  # "<ndarray #3>: ...", "<bytes #0>: ..."
            if inputs_named is not None and inputs_named[k] is not None:
                assert inputs_named[k] in res.error
        else:
            assert isinstance(res["rec_text"], str) and 0.0 <= res["rec_score"] <= 1.0


@SETTINGS
@given(arr=arrays())
def test_any_array_gives_a_result_or_a_named_error(v4, good, arr):
    check(list(v4.predict(arr)))
    try:
        res = v4.recognize(arr)
    except InputError as exc:
        assert "<ndarray #" in str(exc)
    else:
        assert isinstance(res, TextRecResult) and res.error is None


@SETTINGS
@given(arr=arrays().filter(lambda a: a.ndim != 4), batch_size=st.sampled_from([1, 3]))
def test_good_lines_around_a_bad_array_keep_their_text(v4, good, arr, batch_size):
    (img_a, text_a), (img_b, text_b) = good["Hello World"], good["ABC-123"]
    results = list(v4.predict([img_a, arr, img_b], batch_size=batch_size))
    assert len(results) == 3
    check(results)
    assert results[0]["rec_text"] == text_a and results[2]["rec_text"] == text_b


def _write(folder: str, name: bytes, data: bytes) -> str:
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as f:
        f.write(data)
    return os.fsdecode(path)


def _encodings() -> dict[str, bytes]:
    from PIL import Image

    img = render_line("Hello World", height=48, font_kind="latin")
    out = {s: cv2.imencode(s, img)[1].tobytes() for s in (".png", ".jpg", ".bmp", ".tif", ".webp")}
    pdf = io.BytesIO()
    Image.fromarray(img[:, :, ::-1]).save(pdf, format="PDF", resolution=72.0)
    out[".pdf"] = pdf.getvalue()
    return out


ENCODED = _encodings()
NAMES = st.one_of(
    st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20
            ).map(lambda s: s.encode("utf-8")),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"/" not in b and b"\0" not in b),  # not UTF-8 either
).filter(lambda b: b not in (b".", b".."))


@SETTINGS
@given(data=st.binary(max_size=3000), name=NAMES, suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_as_files_and_as_bytes(v4, good, data, name, suffix):
    img, text = good["Hello World"]
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, name + b"-x" + suffix.encode(), data)
        results = list(v4.predict([path, img, data]))
    check(results, [path, None, None])
    assert results[0]["input_path"] == path
    assert len(results) == 3 and results[1]["rec_text"] == text


@SETTINGS
@given(fmt=st.sampled_from(sorted(ENCODED)), cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 10**6),
                                                                                    max_size=8))
def test_truncated_and_corrupt_real_files(v4, good, fmt, cut, flips):
    data = bytearray(ENCODED[fmt][: int(len(ENCODED[fmt]) * cut)])
    for pos in flips:
        if data:
            data[pos % len(data)] ^= 0xFF
    img, text = good["ABC-123"]
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, b"line" + fmt.encode(), bytes(data))
        results = list(v4.predict([path, img]))
    check(results)
    assert results[-1]["rec_text"] == text and results[-1]["input_path"] is None
    assert all(r["input_path"] == path for r in results[:-1])


def _pil(mode_size):
    from PIL import Image

    mode, w, h, seed = mode_size
    img = Image.new(mode, (w, h))
    if w and h:
        raw = np.random.default_rng(seed).integers(0, 256, len(img.tobytes()), dtype=np.uint8).tobytes()
        img = Image.frombytes(mode, (w, h), raw)
    return img


@SETTINGS
@given(img=st.tuples(st.sampled_from(["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F",
                                      "I;16", "I;16B", "LA", "PA", "La", "RGBa"]),
                     st.integers(0, 300), st.integers(0, 50), st.integers(0, 2**16)).map(_pil))
def test_pil_images_in_any_mode(v4, img):
    results = list(v4.predict(img))
    check(results)
    assert len(results) == 1


SPECIAL = ["missing", "folder-named-png", "through-a-file", "nul", "too-long", "loop", "fifo", "empty", "text",
           "dev-zero", "empty-folder", "url-ftp", "url-refused"]


def _special(d: str, kind: str) -> str:
    p = os.path.join(d, f"{kind}.png")
    if kind == "folder-named-png":
        os.mkdir(p)
        with open(os.path.join(p, "junk.png"), "wb") as f:
            f.write(b"junk")
    elif kind == "through-a-file":
        open(os.path.join(d, "plain"), "wb").close()
        p = os.path.join(d, "plain", "x.png")
    elif kind == "nul":
        p = p + "\0.png"
    elif kind == "too-long":
        p = os.path.join(d, "n" * 5000 + ".png")
    elif kind == "loop":
        os.symlink(p + ".b.png", p)
        os.symlink(p, p + ".b.png")
    elif kind == "fifo":
        os.mkfifo(p)  # reading it would block forever: it must be refused, not opened
    elif kind == "empty":
        open(p, "wb").close()
    elif kind == "text":
        with open(p, "w") as f:
            f.write("not an image\n")
    elif kind == "dev-zero":
        os.symlink("/dev/zero", p)
    elif kind == "empty-folder":
        os.mkdir(p)
    elif kind == "url-ftp":
        p = "ftp://example.com/x.png"
    elif kind == "url-refused":
        p = "http://127.0.0.1:1/x.png"
    return p


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(SPECIAL + ["good", "good"]), min_size=1, max_size=6),
       batch_size=st.sampled_from([1, 4]))
def test_lists_mixing_good_lines_and_bad_paths(v4, good, kinds, batch_size):
    img, text = good["Hello World"]
    with tempfile.TemporaryDirectory() as d:
        inputs = []
        for k, kind in enumerate(kinds):
            if kind == "good":
                inputs.append(_write(d, f"good{k}.png".encode(), cv2.imencode(".png", img)[1].tobytes()))
            else:
                sub = os.path.join(d, str(k))
                os.mkdir(sub)
                inputs.append(_special(sub, kind))
        results = list(v4.predict(inputs, batch_size=batch_size))
    assert len(results) == len(inputs)  # every bad path here is exactly one item
    check(results)
    for kind, path, res in zip(kinds, inputs, results):
        if kind == "folder-named-png":  # a folder: its item is the file inside
            assert res["input_path"] == os.path.join(path, "junk.png")
        else:
            assert res["input_path"] == path
        if kind == "good":
            assert res.error is None and res["rec_text"] == text
        else:
            assert res.error, (kind, res)


def test_recognize_raises_only_edgerec_errors(v4):
    for bad in (np.zeros((0, 5)), np.full((4, 4), np.nan), b"junk", "missing.png", 42, None,
                np.zeros((2, 2, 2, 2, 2)), np.zeros((20000, 20000), np.uint8)):
        with pytest.raises(EdgeRecError):
            v4.recognize(bad)


def test_a_folder_nested_deeper_than_the_recursion_limit(v4, good, tmp_path):
    img, text = good["ABC-123"]
    deep = tmp_path / "deep"
    chain = [deep]
    for _ in range(1100):  # Python's recursion limit is 1000
        chain.append(chain[-1] / "d")
    for d in chain:  # one by one: os.makedirs and shutil.rmtree recurse too
        d.mkdir()
    leaf = chain[-1]
    cv2.imwrite(str(leaf / "line.png"), img)
    try:
        results = list(v4.predict([str(deep), img]))
    finally:
        (leaf / "line.png").unlink()
        for d in reversed(chain):
            d.rmdir()
    assert [r["rec_text"] for r in results] == [text, text]
    assert results[0]["input_path"] == str(leaf / "line.png")


# ------------------------------------------------------------------ security: URLs, datasets, YAML, pickle

@pytest.fixture()
def http_server(monkeypatch):
    """127.0.0.1 server: /big sends 3 MB with no Content-Length; /drip sends a byte every 0.2 s for a minute."""
    import http.server
    import time

    from conftest import local_http

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # no Content-Length: the body ends when the connection closes

        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                if self.path == "/big":
                    for _ in range(48):
                        self.wfile.write(b"\0" * 65536)
                else:
                    for _ in range(300):
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                        time.sleep(0.2)
            except OSError:  # the client gave up, as it should
                pass

        def log_message(self, *args):
            pass

    with local_http(Handler, monkeypatch) as url:
        yield url


@pytest.mark.timeout(60)
def test_url_size_cap_holds_without_content_length(http_server):
    from edgerec.io.inputs import iter_inputs

    (item,) = list(iter_inputs(f"{http_server}/big", max_url_bytes=1 << 20, url_timeout=20))
    assert "too large" in str(item.error) and "/big" in str(item.error)


@pytest.mark.timeout(60)
def test_url_that_drips_a_byte_at_a_time_is_cut_at_the_deadline(http_server, good):
    import time

    from edgerec.io.inputs import iter_inputs

    img, _ = good["ABC-123"]
    t = time.monotonic()
    items = list(iter_inputs([f"{http_server}/drip", img], url_timeout=2))
    assert time.monotonic() - t < 8  # each read is within the timeout, so only the overall deadline stops it
    assert "timed out" in str(items[0].error) and items[1].error is None


def test_dataset_paths_may_not_leave_the_dataset_folder(tmp_path):
    from edgerec.data.dataset import read_labelled

    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", ds / "images" / "link.png")
    for rel in ("../secret.png", "/etc/passwd", "images/link.png", "images/../../secret.png"):
        (ds / "label.txt").write_text(f"images/ok.png\tok\n{rel}\tbad\n", "utf-8")
        with pytest.raises(InputError, match="leaves the dataset folder"):
            read_labelled(ds)


def test_yaml_is_safe_loaded_and_nothing_is_unpickled():
    """Model cards, inference.yml and datasets come from outside: only yaml.safe_load, no pickle of them."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "edgerec"
    # yaml.load only with a safe loader; eval() the builtin, not a torch module's .eval()
    risky = re.compile(r"yaml\.load\((?!.*Loader=yaml\.C?SafeLoader\))|yaml\.(full_load|unsafe_load)\(|yaml\.Loader"
                       r"|pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load\((?!.*weights_only=True)"
                       r"|marshal\.loads?\(|(?<![.\w])eval\(|shell\s*=\s*True")
    hits = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p in sorted(root.rglob("*.py"))
            for n, line in enumerate(p.read_text("utf-8").splitlines(), 1) if risky.search(line)]
    assert hits == []
    assert any("yaml.safe_load" in p.read_text("utf-8") for p in root.rglob("*.py"))
