#!/usr/bin/env python
"""Throw malformed inputs at ``predict`` / ``recognize`` and at the CLI, and count what happens.

    PYTHONPATH=. EDGEREC_HOME=... python scripts/fuzz_inputs.py --n 10000 [--seed 0] [--timeout-per-input 10]

Each case is an input that is built from (seed, case number), so a failing case can be rebuilt with ``--only N``.
The cases include arrays of every dtype and shape, PIL images in odd modes, random, truncated and bit-flipped
PNG/JPEG/BMP/TIFF/WEBP/PDF bytes and files, empty files, text named .png, folders with symlink loops, FIFOs,
paths through a file, NUL bytes, non-UTF-8 names, huge images, bad URLs, and lists that mix good and bad.
Issue 15's hostile classes come on top (``HOSTILE``, drawn from a second random stream so the cases above keep
their numbers): a 127.0.0.1 server that drips headers, repeats ``100 Continue`` or cuts the body short (bounded
loops), credentials in URLs (they must not show in any result), a sparse multi-GB ``.png``, a 16-bit RGBA bomb, a
PDF claiming a million pages, TIFFs with an EXIF orientation, ``%PDF-`` inside a PNG's metadata, float images with
resize overshoot, control characters in file names, an iterator that raises part way, random-bytes ``.onnx``
models and ONNX external data outside the folder, and a camera source (a FIFO) that blocks on open. A fixed
battery of CLI checks runs once: ``| head -1``, plain output of a name with a newline, one unsaveable result,
``export`` of random bytes, ``--device NPU``.
A worker process runs them with the model loaded once. The parent waits ``--timeout-per-input`` seconds for
each case. Past that the case counts as a hang: the worker is killed and a new one started. A worker that dies
counts as a crash. A sample of the path cases also goes through ``edgerec predict`` in subprocesses.

Outcomes, per case:
  ok             every item got a result without error
  edgerec-error  some item got an error result (or raised an EdgeRecError) that names its input
  unnamed-error  an error that does not name its input (a bug)
  wrong          a known-good item in the same call lost its text (a bug)
  crash          an exception that is not an EdgeRecError, a result that is not a TextRecResult, or a dead worker
  hang           no answer within the time limit
The exit status is 1 when there is any crash, hang, wrong or unnamed-error.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import multiprocessing as mp
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOOD_TEXTS = ["Hello World", "Total: $1,299.00", "ABC-123", "北京欢迎你"]
# results saved per case (each save is an atomic, fsynced file): a million-page PDF gives 10,001 results, and
# writing them all is the harness's time, not a hang of the code under test
SAVE_AT_MOST = 50
BAD_OUTCOMES = ("crash", "hang", "wrong", "unnamed-error")
SUFFIXES = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".webp", ".pdf", ".PNG", ".Jpg", ".pgm", ".txt", "", ".gif"]


# ------------------------------------------------------------------------------------------ building inputs


def _render(text: str) -> np.ndarray:
    from edgerec.io.fonts import render_line

    return render_line(text, height=48, font_kind="cjk" if any(ord(c) > 0x2E80 for c in text) else "latin")


def _encode(img: np.ndarray, fmt: str) -> bytes:
    import cv2

    if fmt == ".pdf":
        return _pdf_bytes(img)
    ok, buf = cv2.imencode(fmt, img)
    assert ok, fmt
    return buf.tobytes()


def _pdf_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])).save(out, format="PDF", resolution=72.0)
    return out.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid, tiny PNG (8-bit gray) of width x height: a zlib stream of zeros, built row by row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    parts = [comp.compress(row) for _ in range(height)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rgba16_bomb(side: int = 8000) -> bytes:
    """A ~2 MB PNG of side x side 16-bit RGBA zeros: 64 MP (under the pixel guard), 512 MB decoded."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side * 8 + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _million_page_pdf(count: int = 1_000_000) -> bytes:
    """A ~330-byte PDF whose page tree claims ``count`` pages (it has one)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count %d >>" % count,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 60 30] >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Root 1 0 R /Size %d >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def _oriented_tiff(img: np.ndarray, orientation: int) -> bytes:
    """A TIFF whose pixels are ``img`` turned so that its EXIF ``orientation`` (3, 6, 8) shows it upright."""
    from PIL import Image

    stored = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1]))
    stored = stored.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                               8: Image.Transpose.ROTATE_270}[orientation])
    exif = stored.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, "TIFF", exif=exif)
    return out.getvalue()


def _png_with_pdf_magic(png: bytes) -> bytes:
    """A valid PNG with ``%PDF-`` in a tEXt chunk right after IHDR (within its first KB)."""
    return png[:33] + _png_chunk(b"tEXt", b"Comment\x00%PDF-1.7 not a pdf") + png[33:]


def _onnx_outside(folder: bytes) -> bytes:
    """A tiny ONNX whose one initializer keeps its data in ``../outside.bin`` (outside its folder)."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", "4")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight])
    _write(folder, b"outside.bin", b"\0" * 4)
    inner = os.path.join(folder, b"model")
    os.mkdir(inner)
    path = os.path.join(inner, b"inference.onnx")
    onnx.save(helper.make_model(graph), os.fsdecode(path))
    return path


class HostileServer:
    """A raw HTTP server on 127.0.0.1 for the URL classes; every loop ends within ``BOUND_S`` per connection.

    /drip: the status line, then a header line one byte at a time; /continue: ``100 Continue`` again and again;
    /short: a body shorter than its Content-Length; /good.png: a good line (fetched with user:pass@ in the URL).
    """

    BOUND_S = 15.0

    def __init__(self, good_png: bytes) -> None:
        self.good = good_png
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        stop = time.monotonic() + self.BOUND_S
        with conn:
            try:
                conn.settimeout(self.BOUND_S)
                request = conn.recv(65536).split(b"\r\n", 1)[0]
                path = request.split(b" ")[1] if request.count(b" ") >= 2 else b"/"
                if path.startswith(b"/drip"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    while time.monotonic() < stop:
                        conn.sendall(b"X")
                        time.sleep(0.2)
                elif path.startswith(b"/continue"):
                    while time.monotonic() < stop:
                        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                        time.sleep(0.2)
                elif path.startswith(b"/short"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(self.good) + 500)
                                 + self.good)
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n"
                                 b"Connection: close\r\n\r\n" % len(self.good) + self.good)
            except OSError:
                pass


class Pool:
    """The known-good images (rendered lines) and their encodings, built once per process."""

    def __init__(self) -> None:
        self.images = {t: _render(t) for t in GOOD_TEXTS}
        self.encoded = {(t, f): _encode(img, f) for t, img in self.images.items()
                        for f in (".png", ".jpg", ".bmp", ".tif", ".webp", ".pdf")}
        self._huge: dict[tuple[int, int], bytes] = {}
        self._bomb: bytes | None = None
        self._server: HostileServer | None = None

    def huge_png(self, w: int, h: int) -> bytes:
        if (w, h) not in self._huge:
            self._huge[(w, h)] = _png_claiming(w, h)
        return self._huge[(w, h)]

    def rgba16_bomb(self) -> bytes:
        if self._bomb is None:
            self._bomb = _rgba16_bomb()
        return self._bomb

    def server(self) -> HostileServer:
        if self._server is None:
            self._server = HostileServer(self.encoded[("Hello World", ".png")])
        return self._server


class Case:
    """One fuzz input: what to pass, which items are known good (and their expected text), how to call."""

    def __init__(self, kind: str, inputs: Any, api: str = "predict", batch_size: int = 1) -> None:
        self.kind = kind
        self.inputs = inputs
        self.api = api
        self.batch_size = batch_size
        self.good: dict[int, str] = {}  # flattened item index -> key of the good image (text, variant)
        self.paths: list[bytes] = []  # CLI arguments, when every input is a path
        self.secret: str | None = None  # a URL password that must not show in any result


def _random_array(rng: np.random.Generator) -> np.ndarray:
    dtypes = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64, np.float16,
              np.float32, np.float64, np.bool_, np.complex64, object, ">u2", ">f4", "<U2", "datetime64[s]",
              np.longdouble]
    dt = np.dtype(dtypes[rng.integers(len(dtypes))])
    n = int(rng.integers(1, 400))
    shapes = [(0, n), (n, 0), (1, 1), (1, n), (n, 1), (int(rng.integers(1, 80)), int(rng.integers(1, 2000))),
              (int(rng.integers(1, 80)), int(rng.integers(1, 600)), int(rng.integers(0, 6))),
              (int(rng.integers(0, 4)), int(rng.integers(1, 60)), int(rng.integers(1, 400)), int(rng.integers(1, 5))),
              (2, 3, 4, 5, 3), (n,), (), (1, int(rng.integers(3000, 30000))), (int(rng.integers(2, 6)), 9000, 3)]
    shape = shapes[rng.integers(len(shapes))]
    size = int(np.prod(shape)) if shape else 1
    if dt.kind in "iub":
        info = np.iinfo(dt) if dt.kind != "b" else None
        if info is None:
            a = rng.integers(0, 2, size).astype(bool)
        else:
            a = rng.integers(info.min, info.max, size, dtype=np.int64 if dt.itemsize < 8 or dt.kind == "i"
                             else np.uint64, endpoint=False).astype(dt)
    elif dt.kind in "fc":
        a = rng.normal(0.5, 2.0, size).astype(dt)
        if size and rng.random() < 0.4:
            a[rng.integers(0, size, max(1, size // 50))] = [np.nan, np.inf, -np.inf][rng.integers(3)]
    elif dt.kind == "U":
        a = np.array(["ab"] * size, dtype=dt)
    elif dt.kind == "M":
        a = np.zeros(size, dtype=dt)
    else:
        a = np.empty(size, dtype=object)
        a[:] = [None] * size
    a = a.reshape(shape)
    if a.ndim >= 2 and rng.random() < 0.2:
        a = a[::-1, ::2]  # non-contiguous views
    if a.ndim == 3 and rng.random() < 0.1:
        a = np.asfortranarray(a)
    return a


def _random_pil(rng: np.random.Generator) -> Any:
    from PIL import Image

    modes = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16", "I;16B", "LA", "PA",
             "RGBX", "La"]
    mode = modes[rng.integers(len(modes))]
    w, h = int(rng.integers(0, 400)), int(rng.integers(0, 60))
    try:
        img = Image.new(mode, (w, h))
    except Exception:
        img = Image.new("RGB", (w, h))
    if w and h and rng.random() < 0.5:
        try:
            img = Image.frombytes(img.mode, (w, h), rng.bytes(len(img.tobytes())))
        except Exception:
            pass
    return img


def _corrupt_bytes(rng: np.random.Generator, pool: Pool) -> bytes:
    """Random bytes, a truncated or bit-flipped real encoding, text, or nothing."""
    r = rng.random()
    key = list(pool.encoded)[rng.integers(len(pool.encoded))]
    data = pool.encoded[key]
    if r < 0.15:
        return rng.bytes(int(rng.integers(1, 5000)))
    if r < 0.45:
        return data[: int(rng.integers(0, len(data)))]
    if r < 0.7:
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 30))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return bytes(b)
    if r < 0.78:
        magic = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP",
                 b"%PDF-1.4\n", b"GIF89a", b"P6\n30000 30000\n255\n", b"P5\n1 1\n255\n"][rng.integers(9)]
        return magic + rng.bytes(int(rng.integers(0, 3000)))
    if r < 0.85:
        return b"this is a text file, not an image\n" * int(rng.integers(1, 20))
    if r < 0.9:
        return b""
    return data  # a good encoding now and then, so the mix stays realistic


def _name(rng: np.random.Generator, suffix: str) -> bytes:
    stems = [b"line", b"with space", b"caf\xc3\xa9", b"\xff\xfebad-utf8", b"\xe6\x96\x87\xe5\xad\x97", b"-dash",
             b"new\nline", b"a" * 200, b"quote'\"", b"..dots"]
    return stems[rng.integers(len(stems))] + b"-" + str(int(rng.integers(1 << 30))).encode() + suffix.encode()


def _write(folder: bytes, name: bytes, data: bytes) -> bytes:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


SINGLE_SPECIALS = ["loop", "broken-link", "fifo", "through-file", "nul", "too-long", "chmod000", "dev-zero",
                   "self-link-folder", "proc", "empty-folder"]  # each gives exactly one item
SPECIALS = [*SINGLE_SPECIALS, "dir-named-png", "deep-folder", "folder-loop"]


def _special(rng: np.random.Generator, folder: bytes, pool: Pool, kinds: list[str] = SPECIALS
             ) -> tuple[str, bytes]:
    """A path that is not a plain image file: links, loops, FIFOs, folders, NULs, long and unreadable names."""
    folder = os.path.join(folder, b"special-" + str(int(rng.integers(1 << 40))).encode())  # one each, no clashes
    os.mkdir(folder)
    kind = kinds[rng.integers(len(kinds))]
    p = os.path.join(folder, b"x-" + str(int(rng.integers(1 << 30))).encode() + b".png")
    if kind == "loop":
        q = p + b".other.png"
        os.symlink(q, p)
        os.symlink(p, q)
    elif kind == "broken-link":
        os.symlink(os.path.join(folder, b"missing.png"), p)
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir-named-png":
        os.mkdir(p)
        if rng.random() < 0.5:
            _write(p, b"inner.png", pool.encoded[("Hello World", ".png")])
    elif kind == "through-file":
        _write(folder, b"plain.png", b"x")
        p = os.path.join(folder, b"plain.png", b"inside.png")
    elif kind == "nul":
        p = os.path.join(folder, b"nul\x00byte.png")
    elif kind == "too-long":
        p = os.path.join(folder, b"n" * 5000 + b".png")
    elif kind == "chmod000":
        _write(folder, os.path.basename(p), pool.encoded[("ABC-123", ".png")])
        os.chmod(p, 0)  # root still reads it: then it must simply work
    elif kind == "dev-zero":
        os.symlink(b"/dev/zero", p)
    elif kind == "deep-folder":
        p = os.path.join(folder, b"deep")
        d = p
        for _ in range(int(rng.integers(200, 1300))):
            d = os.path.join(d, b"d")
            try:
                os.mkdir(d) if os.path.isdir(os.path.dirname(d)) else os.makedirs(d)
            except OSError:  # PATH_MAX reached: deep enough
                break
        try:
            _write(os.path.dirname(d), b"leaf.png", pool.encoded[("ABC-123", ".png")])
        except OSError:
            pass
    elif kind == "folder-loop":
        p = os.path.join(folder, b"loopdir")
        os.makedirs(os.path.join(p, b"sub"))
        os.symlink(p, os.path.join(p, b"sub", b"back"))
        os.symlink(os.path.join(p, b"sub"), os.path.join(p, b"sub", b"again"))
        _write(p, b"a.png", pool.encoded[("Hello World", ".png")])
    elif kind == "empty-folder":
        p = os.path.join(folder, b"empty")
        os.mkdir(p)
    elif kind == "self-link-folder":
        p = os.path.join(folder, b"self")
        os.symlink(p, p)
    elif kind == "proc":
        os.symlink(b"/proc/self/status", p)
    return kind, p


def _folder(rng: np.random.Generator, folder: bytes, pool: Pool) -> bytes:
    d = os.path.join(folder, b"folder-" + str(int(rng.integers(1 << 30))).encode())
    os.mkdir(d)
    for _ in range(int(rng.integers(1, 6))):
        suffix = SUFFIXES[rng.integers(len(SUFFIXES))]
        _write(d, _name(rng, suffix), _corrupt_bytes(rng, pool))
    if rng.random() < 0.3:
        _special(rng, d, pool)
    if rng.random() < 0.3:
        os.symlink(d, os.path.join(d, b"loop"))
    return d


def _url(rng: np.random.Generator) -> str:
    urls = ["ftp://example.com/a.png", "file:///etc/passwd", "http://127.0.0.1:1/a.png", "http://[::1/a.png",
            "https://", "http://", "javascript:alert(1)", "data:image/png;base64,AAAA", "HTTP://127.0.0.1:9/x",
            "gopher://127.0.0.1/", "http://127.0.0.1:1/" + "a" * 3000]
    return urls[rng.integers(len(urls))]


HOSTILE = ["url-drip", "url-continue", "url-short", "url-credentials", "sparse-png", "rgba16-bomb",
           "pdf-million-pages", "tiff-orientation", "png-pdf-magic", "float-overshoot", "control-char-name",
           "raising-iterator", "random-onnx", "onnx-outside", "camera-fifo"]
HOSTILE_SHARE = 0.08


def _hostile(kind: str, rng: np.random.Generator, folder: bytes, pool: Pool) -> Case:
    """One case of issue 15's classes (see the module docstring)."""
    text = GOOD_TEXTS[rng.integers(len(GOOD_TEXTS))]
    if kind.startswith("url-") and kind != "url-credentials":
        return Case(f"hostile:{kind}", f"{pool.server().base}/{kind[4:]}/a.png", api="iter")
    if kind == "url-credentials":
        case = Case(f"hostile:{kind}", [f"http://fuzz:s3cr3t-{rng.integers(1 << 30)}@"
                                        f"{pool.server().base[7:]}/good.png"])
        case.secret = case.inputs[0].split(":")[2].split("@")[0]
        case.good = {0: "Hello World|.png"}
        return case
    if kind == "sparse-png":
        path = os.path.join(folder, b"sparse.png")
        with open(path, "wb") as f:
            f.truncate(3 * 2**30)  # 3 GB claimed, nothing on disk
        return Case(f"hostile:{kind}", [os.fsdecode(path)])
    if kind == "rgba16-bomb":
        return Case(f"hostile:{kind}", [pool.rgba16_bomb()])
    if kind == "pdf-million-pages":
        return Case(f"hostile:{kind}", [os.fsdecode(_write(folder, b"million.pdf", _million_page_pdf()))])
    if kind in ("tiff-orientation", "png-pdf-magic", "control-char-name"):
        if kind == "tiff-orientation":
            data, name = _oriented_tiff(pool.images[text], int(rng.choice([3, 6, 8]))), b"oriented.tif"
        elif kind == "png-pdf-magic":
            data, name = _png_with_pdf_magic(pool.encoded[(text, ".png")]), b"meta.png"
        else:
            data = pool.encoded[(text, ".png")]
            name = [b"new\nline.png", b"tab\tFORGED\t1.0\n.png", b"esc\x1b[2J.png", b"cr\rx.png"][rng.integers(4)]
        path = _write(folder, name, data)
        case = Case(f"hostile:{kind}", [os.fsdecode(path)])
        case.good, case.paths = {0: f"{text}|.png"}, [path]
        return case
    if kind == "float-overshoot":
        img = pool.images[text].astype(np.float32) / 255.0
        img[img >= 1.0] = np.float32(1.0001)  # what a resize's overshoot leaves in a 0..1 image
        case = Case(f"hostile:{kind}", [img])
        case.good = {0: f"{text}|float"}
        return case
    if kind == "raising-iterator":
        def items():
            yield pool.images[text].copy()
            raise RuntimeError("the producer failed")

        case = Case(f"hostile:{kind}", items())
        case.good = {0: f"{text}|array"}
        return case
    if kind == "random-onnx":
        model = os.path.join(folder, b"random")
        os.mkdir(model)
        _write(model, b"inference.onnx", rng.bytes(int(rng.integers(1, 20000))))
        _write(model, b"ppocr_keys.txt", b"a\nb\n")
        case = Case(f"hostile:{kind}", os.fsdecode(os.path.join(model, b"inference.onnx")), api="model-dir")
    elif kind == "onnx-outside":
        case = Case(f"hostile:{kind}", os.fsdecode(_onnx_outside(folder)), api="model-dir")
    else:  # camera-fifo
        path = os.path.join(folder, b"camera.fifo")
        os.mkfifo(path)
        case = Case(f"hostile:{kind}", os.fsdecode(path), api="camera")
    return case


def build_case(seed: int, index: int, workdir: Path, pool: Pool) -> Case:
    """The case numbered ``index``: deterministic for (seed, index), its files under ``workdir``/<index>."""
    rng = np.random.default_rng([seed, index])
    folder = os.fsencode(workdir / str(index))
    os.makedirs(folder, exist_ok=True)
    hrng = np.random.default_rng([seed, index, 15])  # a stream of its own: the other cases keep their numbers
    if hrng.random() < HOSTILE_SHARE:
        return _hostile(HOSTILE[hrng.integers(len(HOSTILE))], hrng, folder, pool)
    r = rng.random()
    if r < 0.005:  # huge images: refused, or decoded within bounded time and memory
        which = int(rng.integers(4))
        if which == 0:
            return Case("huge-file", [os.fsdecode(_write(folder, b"huge.png", pool.huge_png(20000, 20000)))])
        if which == 1:
            return Case("huge-array", np.zeros((20000, 20000), np.uint8))  # lazily zeroed: cheap to make
        if which == 2:
            return Case("huge-file-under-limit", [os.fsdecode(_write(folder, b"big.png", pool.huge_png(7900, 7900)))])
        return Case("huge-long-line", np.full((1, 200000, 3), 255, np.uint8))
    if r < 0.25:
        case = Case("array", _random_array(rng))
    elif r < 0.30:
        case = Case("pil", _random_pil(rng))
    elif r < 0.40:
        case = Case("bytes", _corrupt_bytes(rng, pool))
    elif r < 0.68:
        suffix = SUFFIXES[rng.integers(len(SUFFIXES))]
        path = _write(folder, _name(rng, suffix), _corrupt_bytes(rng, pool))
        case = Case("file", os.fsdecode(path))
        case.paths = [path]
    elif r < 0.78:
        kind, path = _special(rng, folder, pool)
        case = Case(f"special:{kind}", os.fsdecode(path))
        case.paths = [path]
    elif r < 0.84:
        path = _folder(rng, folder, pool)
        case = Case("folder", os.fsdecode(path))
        case.paths = [path]
    elif r < 0.87:
        url = _url(rng)
        case = Case("url", url)
        case.paths = [url.encode()]
    else:  # a list mixing good and bad items; the good ones must keep their text
        items: list[Any] = []
        good: dict[int, str] = {}
        flat = 0  # flattened item count so far: a 4-D array is one item per frame (one error if it has none)
        paths: list[bytes] = []
        pathy = rng.random() < 0.5
        for _ in range(int(rng.integers(2, 7))):
            if rng.random() < 0.45:
                text = GOOD_TEXTS[rng.integers(len(GOOD_TEXTS))]
                fmt = [".png", ".jpg", ".bmp", "array", "gray"][rng.integers(5)]
                if pathy and fmt not in ("array", "gray"):
                    p = _write(folder, _name(rng, fmt), pool.encoded[(text, fmt)])
                    items.append(os.fsdecode(p))
                    paths.append(p)
                elif fmt == "array":
                    items.append(pool.images[text].copy())
                elif fmt == "gray":
                    items.append(pool.images[text].mean(axis=2).astype(np.uint8))
                else:
                    items.append(pool.encoded[(text, fmt)])
                good[flat] = f"{text}|{fmt}"
                flat += 1
                continue
            if pathy and rng.random() < 0.25:
                p = _special(rng, folder, pool, SINGLE_SPECIALS)[1]
                items.append(os.fsdecode(p))
                paths.append(p)
            elif pathy:
                suffix = SUFFIXES[rng.integers(len(SUFFIXES))]
                p = _write(folder, _name(rng, suffix), _corrupt_bytes(rng, pool))
                items.append(os.fsdecode(p))
                paths.append(p)
            else:
                pick = rng.integers(3)
                items.append(_random_array(rng) if pick == 0 else _random_pil(rng) if pick == 1
                             else _corrupt_bytes(rng, pool))
            last = items[-1]
            flat += max(1, last.shape[0]) if isinstance(last, np.ndarray) and last.ndim == 4 else 1
        case = Case("mixed", items)
        case.good = good
        if pathy and all(isinstance(x, str) for x in items):
            case.paths = paths
    if not isinstance(case.inputs, list) and rng.random() < 0.3:
        case.api = "recognize"
    case.batch_size = int([1, 1, 4, 8][rng.integers(4)])
    return case


# ------------------------------------------------------------------------------------------ the worker


def _reset_peak_rss() -> None:
    """Reset this process's VmHWM (Linux: ``5`` to /proc/self/clear_refs), so the peak after a case is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc."""
    cur = peak = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, peak


def _good_reference(model: Any, pool: Pool) -> dict[str, str]:
    """The text each good variant gives on its own: what it must still give inside a mixed call."""
    ref = {}
    for text in GOOD_TEXTS:
        img = pool.images[text]
        for fmt in (".png", ".jpg", ".bmp"):
            res = next(iter(model.predict(pool.encoded[(text, fmt)])))
            ref[f"{text}|{fmt}"] = res["rec_text"]
        ref[f"{text}|array"] = next(iter(model.predict(img)))["rec_text"]
        ref[f"{text}|gray"] = next(iter(model.predict(img.mean(axis=2).astype(np.uint8))))["rec_text"]
        ref[f"{text}|float"] = next(iter(model.predict(img.astype(np.float32) / 255.0)))["rec_text"]
    return ref


def _names_its_input(res: Any) -> bool:
    err = str(res.error)
    path = res["input_path"]
    if path is not None:
        return any(name in err for name in (path, repr(path), os.path.dirname(path)))
    return "#" in err or "<" in err


def run_case(model: Any, case: Case, ref: dict[str, str], save_dir: Path | None = None) -> tuple[str, str]:
    """(outcome, detail) of one case, never raising. With ``save_dir``, results are also printed and saved."""
    from edgerec.errors import EdgeRecError
    from edgerec.results import TextRecResult

    try:
        if case.api in ("iter", "model-dir", "camera"):
            return _run_other(case)
        if case.api == "recognize":
            res = model.recognize(case.inputs)
            results = [res]
        else:
            results = list(model.predict(case.inputs, batch_size=case.batch_size))
    except EdgeRecError as exc:
        return "edgerec-error", f"{type(exc).__name__}: {str(exc)[:160]}"
    except Exception as exc:
        return "crash", "".join(traceback.format_exception(exc))[-1500:]
    if case.secret:
        shown = [f"{r}\n{json.dumps(r.json, ensure_ascii=False)}\n{r.error}" for r in results]
        if any(case.secret in s for s in shown):
            return "wrong", "the URL's password shows in a result"
    outcome, detail = "ok", ""
    for i, res in enumerate(results):
        if not isinstance(res, TextRecResult):
            return "crash", f"result {i} is a {type(res).__name__}"
        if res.error:
            if not _names_its_input(res):
                return "unnamed-error", f"item {i}: {res.error}"
            outcome, detail = "edgerec-error", str(res.error)[:160]
        if i in case.good:
            want = ref[case.good[i]]
            if res.error or res["rec_text"] != want:
                return "wrong", f"good item {i} ({case.good[i]}) gave {res['rec_text']!r} / {res.error!r}, " \
                                f"alone it gives {want!r}"
        elif not res.error and not isinstance(res["rec_text"], str):
            return "crash", f"item {i}: rec_text is {type(res['rec_text']).__name__}"
        if save_dir is not None and i < SAVE_AT_MOST:
            try:
                str(res)
                json.dumps(res.json)
                res.save_to_json(save_dir)
                img = res.input_img
                if img is None or img.shape[0] * img.shape[1] <= 16_000_000:  # PNG-encoding a 60 MP view takes
                    res.save_to_img(save_dir)  # seconds: it is bounded, but not what the time limit measures
            except Exception as exc:
                return "crash", f"saving item {i}: " + "".join(traceback.format_exception(exc))[-1200:]
    if case.good and len(results) < max(case.good) + 1:
        return "wrong", f"only {len(results)} results for {len(case.inputs)} inputs"
    return outcome, detail


def _run_other(case: Case) -> tuple[str, str]:
    """The cases that are not a predict call: a URL through iter_inputs with a short deadline, a model folder
    through create_model, a camera source through CameraReader; each must end in an error naming its input."""
    from edgerec.errors import EdgeRecError

    if case.api == "iter":
        from edgerec.io.inputs import iter_inputs

        items = list(iter_inputs(case.inputs, url_timeout=2.0))
        bad = [it for it in items if it.error is None or case.inputs.split("//")[1].split("/")[0] not in
               str(it.error)]
        return ("unnamed-error", f"{bad[0].error!r}") if bad else ("edgerec-error", str(items[0].error)[:160])
    try:
        if case.api == "model-dir":
            from edgerec import create_model

            create_model(model_dir=case.inputs, progress=False)
        else:
            import cv2

            from edgerec.camera import CameraReader

            try:
                CameraReader(case.inputs, open_timeout_s=1.0).open().close()
            finally:  # hangs (a "hang" outcome) if the given-up open kept OpenCV's video I/O lock
                cv2.VideoWriter(case.inputs + ".avi", cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 16)).release()
    except EdgeRecError as exc:
        named = case.inputs in str(exc) or os.path.dirname(case.inputs) in str(exc)
        return ("edgerec-error" if named else "unnamed-error"), f"{type(exc).__name__}: {str(exc)[:160]}"
    return "wrong", f"{case.inputs}: accepted, but it must be refused"


def worker(conn: Any, model_name: str, seed: int, workdir: str) -> None:
    import logging

    logging.disable(logging.WARNING)
    from edgerec import create_model

    model = create_model(model_name, progress=False)
    pool = Pool()
    ref = _good_reference(model, pool)
    conn.send(("ready", _rss_mb()))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        index = msg
        try:
            case = build_case(seed, index, Path(workdir), pool)
        except Exception:
            conn.send((index, "builder-failed", traceback.format_exc()[-800:], "?", _rss_mb(), 0.0))
            continue
        _reset_peak_rss()
        t = time.perf_counter()
        save = Path(workdir) / str(index) / "_saved" if index % 5 == 0 else None
        outcome, detail = run_case(model, case, ref, save)
        conn.send((index, outcome, detail, case.kind, _rss_mb(), time.perf_counter() - t))
        del case
        _cleanup(Path(workdir) / str(index))


def _cleanup(folder: Path | bytes) -> None:
    """Remove a case's files, without recursion (deep folders) and without following links (loops)."""
    top = os.fsencode(folder)
    if not os.path.lexists(top):
        return
    stack, dirs = [top], []
    while stack:
        d = stack.pop()
        try:
            if not os.path.islink(d):
                os.chmod(d, stat.S_IRWXU)
            entries = list(os.scandir(d)) if os.path.isdir(d) and not os.path.islink(d) else []
        except OSError:
            entries = []
        dirs.append(d)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                try:
                    os.unlink(e.path)
                except OSError:
                    pass
    for d in reversed(dirs):
        try:
            os.unlink(d) if os.path.islink(d) or not os.path.isdir(d) else os.rmdir(d)
        except OSError:
            pass


class Runner:
    """Keeps one worker process alive, restarting it after a hang or a crash."""

    def __init__(self, model: str, seed: int, workdir: Path, timeout: float) -> None:
        self.args = (model, seed, str(workdir))
        self.timeout = timeout
        self.proc: Any = None
        self.conn: Any = None
        self.ready_rss = (0.0, 0.0)

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, *self.args), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        if not parent.poll(600):
            raise SystemExit("fuzz: the worker did not load the model within 600 s")
        tag, rss = parent.recv()
        self.ready_rss = rss

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def run(self, index: int) -> tuple:
        if self.proc is None:
            self.start()
        try:
            self.conn.send(index)
            if not self.conn.poll(self.timeout):
                self.stop(kill=True)
                return index, "hang", f"no answer in {self.timeout:g} s", "?", (0.0, 0.0), self.timeout
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self.proc.exitcode if self.proc is not None else None
            self.stop(kill=True)
            return index, "crash", f"worker died (exit code {code})", "?", (0.0, 0.0), 0.0


# ------------------------------------------------------------------------------------------ the CLI


def run_cli(groups: list[list[tuple[int, list[bytes]]]], model: str, timeout: float, env: dict) -> collections.Counter:
    """``edgerec predict`` on groups of path cases: rc 0/1 and one 'edgerec: error:' line per bad input."""
    counts: collections.Counter = collections.Counter()
    for group in groups:
        args = [p for _, paths in group for p in paths]
        if not args:
            continue
        outcome = _cli_once(args, model, timeout + 60, env)
        if outcome[0] in ("crash", "hang") and len(group) > 1:
            for index, paths in group:  # find the culprit
                single = _cli_once(paths, model, timeout + 60, env)
                counts[single[0]] += 1
                if single[0] in BAD_OUTCOMES:
                    print(f"  CLI case {index}: {single[0]}: {single[1]}", file=sys.stderr)
            continue
        for _index, _paths in group:
            counts[outcome[0]] += 1
        if outcome[0] in BAD_OUTCOMES:
            print(f"  CLI group {[i for i, _ in group]}: {outcome[0]}: {outcome[1]}", file=sys.stderr)
    return counts


def _cli_once(args: list[bytes], model: str, timeout: float, env: dict) -> tuple[str, str]:
    out = tempfile.mkdtemp(prefix="edgerec-fuzz-cli-")
    cmd = [sys.executable.encode(), b"-m", b"edgerec.cli", b"predict", *args, b"--model", model.encode(),
           b"--json", b"--quiet", b"--save-dir", out.encode()]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return "hang", f"no exit within {timeout:g} s"
    finally:
        _cleanup(Path(out))
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode not in (0, 1) or "Traceback" in err:
        return "crash", f"exit {proc.returncode}: {err[-1200:]}"
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            json.loads(line)
        except ValueError:
            return "crash", f"stdout line is not JSON: {line[:200]!r}"
    if proc.returncode == 1 and not any(ln.startswith("edgerec: error: ") for ln in err.splitlines()):
        return "unnamed-error", f"exit 1 without an 'edgerec: error:' line: {err[-600:]}"
    return ("edgerec-error" if proc.returncode == 1 else "ok"), ""


def cli_battery(model: str, workdir: Path, pool: Pool, env: dict) -> collections.Counter:
    """Issue 15's CLI classes, once each: (name, outcome) counted as ok or the bad outcome, details printed."""
    counts: collections.Counter = collections.Counter()
    folder = workdir / "cli-battery"
    lines = folder / "lines"
    lines.mkdir(parents=True)
    for i in range(12):
        (lines / f"l{i:02d}.png").write_bytes(pool.encoded[(GOOD_TEXTS[i % 3], ".png")])
    base = [sys.executable, "-m", "edgerec.cli"]

    def check(name: str, ok: bool, detail: str, bad: str = "wrong") -> None:
        counts["ok" if ok else bad] += 1
        if not ok:
            print(f"  CLI battery {name}: {bad}: {detail[-800:]}", file=sys.stderr)

    def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)

    # `predict dir | head -1`: quiet, 141 (1800 lines: more than a pipe holds, so the writer meets the closed end)
    proc = subprocess.Popen([*base, "predict", *[str(lines)] * 150, "--model", model, "--quiet"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8", "replace")
    code = proc.wait(timeout=300)
    check("closed-pipe", code == 141 and not err, f"exit {code}: {err}", "crash" if "Traceback" in err else "wrong")
    # plain output of names with control characters: one line per input
    odd = folder / "odd"
    odd.mkdir()
    for name in ("new\nline.png", "tab\tFORGED\t1.0.png", "esc\x1b[2J.png"):
        (odd / name).write_bytes(pool.encoded[("ABC-123", ".png")])
    res = cli("predict", str(odd), "--model", model, "--quiet")
    out = res.stdout.splitlines()
    check("control-char-names", res.returncode == 0 and len(out) == 3 and all(x.count("\t") == 2 for x in out)
          and "\x1b" not in res.stdout, f"exit {res.returncode}: {out!r} {res.stderr}")
    # one result that cannot be saved: an error for that input, the others saved
    save = folder / "save"
    (save / "l03_res.json").mkdir(parents=True)
    res = cli("predict", str(lines), "--model", model, "--quiet", "--save-dir", str(save))
    errors = [x for x in res.stderr.splitlines() if x.startswith("edgerec: error:")]
    saved = [p for p in save.glob("*_res.json") if p.is_file()]
    check("unsaveable-result", res.returncode == 1 and len(errors) == 1 and len(saved) == 11,
          f"exit {res.returncode}, {len(saved)} saved: {res.stderr}")
    # export / predict of a random-bytes .onnx
    bad = folder / "random.onnx"
    bad.write_bytes(np.random.default_rng(1).bytes(3000))
    for args in (["export", "--model-dir", str(bad), "--output", str(folder / "ir")],
                 ["predict", str(lines), "--model-dir", str(bad)]):
        res = cli(*args)
        check(f"random-onnx {args[0]}", res.returncode == 1 and f"edgerec: error: {bad}" in res.stderr
              and "Traceback" not in res.stderr, res.stderr, "crash" if "Traceback" in res.stderr else "wrong")
    # --device NPU: not a GPU driver problem
    res = cli("predict", str(lines), "--model", model, "--device", "NPU")
    check("device-npu", res.returncode == 1 and "driver" not in res.stderr and "NPU" in res.stderr, res.stderr)
    return counts


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="number of cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-per-input", type=float, default=10.0)
    ap.add_argument("--model", default="PP-OCRv4_mobile_rec")
    ap.add_argument("--cli-fraction", type=float, default=0.05, help="share of path cases also run via the CLI")
    ap.add_argument("--cli-group", type=int, default=25, help="path cases per CLI invocation")
    ap.add_argument("--only", type=int, nargs="*", help="run just these case numbers (to reproduce one)")
    ap.add_argument("--no-cli-battery", action="store_true", help="skip the fixed CLI checks of issue 15")
    ap.add_argument("--show", type=int, default=3, help="print this many details per bad outcome")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="edgerec-fuzz-"))
    runner = Runner(args.model, args.seed, workdir, args.timeout_per_input)
    counts: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    shown: collections.Counter = collections.Counter()
    peak = (0.0, "")
    peak_by_kind: dict[str, float] = {}  # the worker's peak RSS during one case, reset before each (Linux)
    slowest = (0.0, "")
    t0 = time.perf_counter()
    indices = args.only if args.only else range(args.n)
    try:
        runner.start()
        print(f"fuzz: worker ready, RSS {runner.ready_rss[0]:.0f} MB; {len(indices)} cases, seed {args.seed}, "
              f"{args.timeout_per_input:g} s per case", flush=True)
        for k, index in enumerate(indices):
            _, outcome, detail, kind, (rss, hwm), took = runner.run(index)
            counts[outcome] += 1
            by_kind[kind if kind.startswith("hostile:") else kind.split(":")[0]][outcome] += 1
            if hwm > peak[0]:
                peak = (hwm, f"case {index} ({kind})")
            group = kind if kind.startswith("hostile:") else kind.split(":")[0]
            peak_by_kind[group] = max(peak_by_kind.get(group, 0.0), hwm)
            if took > slowest[0]:
                slowest = (took, f"case {index} ({kind})")
            if outcome in BAD_OUTCOMES + ("builder-failed",) and shown[outcome] < args.show:
                shown[outcome] += 1
                print(f"  case {index} [{kind}]: {outcome}: {detail}", flush=True)
            if (k + 1) % 1000 == 0:
                print(f"  {k + 1} cases, {time.perf_counter() - t0:.0f} s: {dict(counts)}", flush=True)
    except BaseException:
        _cleanup(workdir)
        raise
    finally:
        runner.stop()

    # the CLI, on a sample of the path cases (rebuilt here: the builder needs no model)
    cli_counts: collections.Counter = collections.Counter()
    if args.cli_fraction > 0:
        rng = np.random.default_rng(args.seed + 1)
        pool = Pool()
        chosen: list[tuple[int, list[bytes]]] = []
        for index in indices:
            if rng.random() >= args.cli_fraction:
                continue
            case = build_case(args.seed, index, workdir, pool)
            if case.paths and not any(b"\0" in p for p in case.paths):  # argv cannot carry a NUL
                chosen.append((index, case.paths))
            else:
                _cleanup(workdir / str(index))
        groups = [chosen[i:i + args.cli_group] for i in range(0, len(chosen), args.cli_group)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        cli_counts = run_cli(groups, args.model, args.timeout_per_input * args.cli_group, env)
    battery: collections.Counter = collections.Counter()
    if not args.no_cli_battery and not args.only:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        battery = cli_battery(args.model, workdir, Pool(), env)
    _cleanup(workdir)

    total = time.perf_counter() - t0
    print(f"\npredict()/recognize(): {sum(counts.values())} cases in {total:.0f} s")
    for outcome in ("ok", "edgerec-error", "unnamed-error", "wrong", "crash", "hang", "builder-failed"):
        print(f"  {outcome:14s} {counts.get(outcome, 0)}")
    print("  by kind: " + "; ".join(f"{k} {dict(v)}" for k, v in sorted(by_kind.items())))
    print(f"  worker peak RSS {peak[0]:.0f} MB at {peak[1]}; slowest case {slowest[0]:.1f} s at {slowest[1]}")
    print("  peak RSS MB by kind: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(peak_by_kind.items())))
    if cli_counts:
        print(f"edgerec predict (CLI): {sum(cli_counts.values())} path cases")
        for outcome in ("ok", "edgerec-error", "crash", "hang"):
            print(f"  {outcome:14s} {cli_counts.get(outcome, 0)}")
    if battery:
        print(f"CLI battery (issue 15): {dict(battery)}")
    bad = sum(counts.get(o, 0) + cli_counts.get(o, 0) + battery.get(o, 0) for o in BAD_OUTCOMES)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
