"""http(s) downloads with a size cap and one deadline per URL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from edgerec.errors import InputError


def _chunks(resp: Any, size: int) -> Iterator[bytes]:
    """The body as it arrives. ``read1`` returns whatever one socket read brings.

    requests' ``iter_content`` waits for a full chunk instead. A server that drips one byte a second then never
    trips the per-read timeout, and the whole-download deadline is never checked.
    """
    raw = resp.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.3
        yield from resp.iter_content(chunk_size=size)
        return
    while True:
        chunk = raw.read1(size, decode_content=True)  # decodes gzip at most ``size`` bytes at a time
        if not chunk:  # end of the body
            return
        yield chunk


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET an http(s) URL, streamed, with a size cap and a deadline for the whole download (slow-drip servers).

    Redirects stay on http(s) (requests refuses other schemes). The deadline is checked after every socket
    read, so a download ends by ``2 * timeout``.
    """
    import requests

    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, stream=True, timeout=timeout) as resp:
            if resp.status_code >= 400:
                raise InputError(url, f"download failed: HTTP {resp.status_code} {resp.reason or ''}".rstrip())
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise InputError(url, f"download is too large ({int(length)} bytes; the limit is {max_bytes})")
            chunks: list[bytes] = []
            total = 0
            for chunk in _chunks(resp, 1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise InputError(url, f"download is too large (over {max_bytes} bytes)")
                if time.monotonic() > deadline:
                    raise InputError(url, f"download timed out after {timeout:g} s")
                chunks.append(chunk)
    except InputError:
        raise
    except requests.Timeout:
        raise InputError(url, f"download timed out after {timeout:g} s") from None
    except requests.RequestException as exc:
        raise InputError(url, f"download failed ({type(exc).__name__}: {exc})") from None
    data = b"".join(chunks)
    if not data:
        raise InputError(url, "download is empty (0 bytes)")
    return data


