"""The PDF render worker: a child process that owns pdfium, so that a page which renders for minutes (a 700-byte
PDF can ask for billions of pattern tiles) can be given up on by killing it, and the parent stays able to take
Ctrl-C. :mod:`edgerec.io.pdf` runs this file as a script (the child loads numpy and pypdfium2, not edgerec) and
imports it for the message framing.

Protocol, both ways: a message is a JSON list and a byte string (its payload, often empty), each sent as an
8-byte little-endian length and then the bytes. No pickle: the helper parses untrusted PDFs, so what it sends back
is data, never code.
Requests: ``["hello"]``, ``["open", doc_id, path]`` or ``["open", doc_id, null]`` with the PDF's bytes as
payload, ``["render", doc_id, page, scale, max_pixels]``, ``["close", doc_id]``. Replies: ``["ok", value]``,
``["page", mode, shape]`` with the pixels as payload, ``["too_large", width_px, height_px]``, ``["err",
message]``. The helper leaves when its input ends, or when its parent is gone (even in the middle of a page).
"""

from __future__ import annotations

import json
import struct
import sys

HEADER = struct.Struct("<Q")


def _read_exact(stream, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def read_message(stream) -> tuple[list, bytes] | None:
    """One message from a binary stream, or None at its end."""
    parts = []
    for _ in range(2):
        head = _read_exact(stream, HEADER.size)
        if head is None:
            return None
        body = _read_exact(stream, HEADER.unpack(head)[0])
        if body is None:
            return None
        parts.append(body)
    return json.loads(parts[0]), parts[1]


def encode(message: list, payload: bytes = b"") -> bytes:
    body = json.dumps(message).encode("utf-8")
    return HEADER.pack(len(body)) + body + HEADER.pack(len(payload)) + payload


def _reason(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".") or type(exc).__name__


def _leave_with_parent() -> None:
    """End this process when the parent does, even while pdfium renders (its calls release the GIL)."""
    import os
    import threading
    import time

    if "--main-thread" in sys.argv:  # PR_SET_PDEATHSIG fires when the creating *thread* ends: main thread only
        try:  # Linux: the kernel sends SIGKILL when the parent dies
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # not Linux: the watchdog below does it
            pass
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(stdin, stdout) -> None:
    import numpy as np
    import pypdfium2 as pdfium

    _leave_with_parent()
    docs: dict[int, object] = {}
    while True:
        message = read_message(stdin)
        if message is None:
            return
        request, payload = message
        kind = request[0]
        out = b""
        try:
            if kind == "hello":
                reply = ["ok", 0]
            elif kind == "open":
                doc = pdfium.PdfDocument(request[2] if request[2] is not None else payload)
                docs[request[1]] = doc
                reply = ["ok", len(doc)]
            elif kind == "render":
                _, doc_id, index, scale, max_pixels = request
                page = docs[doc_id][index]
                try:
                    w_pt, h_pt = page.get_size()
                    w, h = round(w_pt * scale), round(h_pt * scale)
                    if max_pixels is not None and w * h > max_pixels:
                        reply = ["too_large", w, h]
                    else:
                        bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
                        arr = np.ascontiguousarray(bitmap.to_numpy())
                        reply, out = ["page", bitmap.mode, list(arr.shape)], arr.tobytes()
                        bitmap.close()
                finally:
                    page.close()
            elif kind == "close":
                doc = docs.pop(request[1], None)
                if doc is not None:
                    doc.close()
                reply = ["ok", 0]
            else:
                reply = ["err", f"unknown request {kind!r}"]
        except Exception as exc:  # pdfium's reason ("Incorrect password", "Failed to load page") goes back
            reply = ["err", f"{type(exc).__name__}: {_reason(exc)}" if kind == "render" else _reason(exc)]
        stdout.write(encode(reply, out))
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
