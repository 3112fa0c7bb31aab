"""http(s) downloads with a size cap and one deadline per URL, from connect to the last byte.

Built on http.client, not requests: requests' timeouts are per socket read, so a server that drips header bytes or
sends ``100 Continue`` again and again holds a download without limit. Here a watchdog shuts the socket down when
the deadline passes, wherever the download is (connect, TLS, status line, headers, body).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse

from edgerec.errors import InputError, redact, typed_password, without_credentials
from edgerec.utils.deadline import call_within

_MAX_REDIRECTS = 10
_UNSAFE = frozenset('"<>`{}|\\^')  # sent raw, these make strict servers answer 400
_CHUNK = 1 << 16


class _Watchdog:
    """Shuts a connection's socket down at the deadline, so any blocked read returns at once."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self.conn = conn
        self.fired = False
        self.timer = threading.Timer(max(0.0, seconds), self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self.timer.cancel()


def _connection(parts: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    host = parts.hostname or ""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=ssl.create_default_context())
    return http.client.HTTPConnection(host, parts.port, timeout=timeout)


def requote(url: str) -> str:
    """``url`` as it goes on the wire: a non-ASCII host in IDNA; non-ASCII characters, spaces, control characters
    and the ASCII that browsers and requests encode (``"<>`{}|\\^``) percent-encoded (UTF-8). Everything else is
    sent as written (a signed query must reach the server byte for byte)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        try:
            host = (parts.hostname or "").encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"the host name {parts.hostname!r} is not a valid internationalised name") from None
        netloc = host + (f":{parts.port}" if parts.port is not None else "")

    def enc(text: str) -> str:
        return "".join(urllib.parse.quote(c, safe="") if not c.isascii() or c.isspace() or not c.isprintable()
                       or c in _UNSAFE else c for c in text)

    return urllib.parse.urlunsplit((parts.scheme, netloc, enc(parts.path), enc(parts.query), ""))


def _connect(conn: http.client.HTTPConnection, seconds: float) -> None:
    """Name lookup, connect and TLS within ``seconds`` in all: the watchdog has no socket to shut before connect
    returns, and http.client gives each of a host's addresses the whole timeout. A connect that finishes after
    we gave up is closed by the thread that made it."""
    def connect() -> http.client.HTTPConnection:
        conn.connect()
        return conn

    try:
        call_within(connect, seconds, discard=lambda late: late.close(), name="edgerec-url-connect")
    except TimeoutError:
        raise TimeoutError from None


def _get(url: str, deadline: float, timeout: float, max_bytes: int) -> tuple[bytes | None, str | None]:
    """One request: (body, None), or (None, redirect target)."""
    if typed_password(url):  # RFC 3986 would send it to another host than the one typed
        raise InputError(url, "its password holds an unescaped ? or # (or @ and one of them): percent-encode them "
                              "(%3F, %23, %40)")
    bare = without_credentials(url)
    try:
        urllib.parse.urlsplit(bare).port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        raise InputError(url, "its port is not a number from 0 to 65535") from None
    parts = urllib.parse.urlsplit(requote(bare))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    conn = _connection(parts, remaining)
    dog = _Watchdog(conn, remaining)
    try:
        _connect(conn, remaining)
        # credentials in the URL are not sent (nor shown): a URL names an image, it does not log in
        conn.request("GET", path, headers={"Host": parts.netloc, "Accept-Encoding": "identity",
                                           "User-Agent": "edgerec"})
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308):
            target = resp.getheader("Location")
            if not target:
                raise InputError(url, f"download failed: HTTP {resp.status} redirect without a Location")
            return None, urllib.parse.urljoin(url, target)
        if resp.status >= 400:
            raise InputError(url, f"download failed: HTTP {resp.status} {resp.reason or ''}".rstrip())
        length = resp.getheader("Content-Length")
        expected = int(length) if length and length.strip().isdigit() and len(length.strip()) < 20 else None
        if length and length.strip().isdigit() and (expected is None or expected > max_bytes):
            shown = f"{expected} bytes" if expected is not None else "a Content-Length of over 19 digits"
            raise InputError(url, f"download is too large ({shown}; the limit is {max_bytes})")
        encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", ""):
            raise InputError(url, f"the server sent the body compressed (Content-Encoding: {encoding[:40]}) although "
                                  "asked for none; edgerec does not decompress downloads")
        html = (resp.getheader("Content-Type") or "").lower().startswith("text/html")
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
            except http.client.IncompleteRead as exc:
                if dog.fired:  # the watchdog shut the socket: the deadline, not the server, cut the body
                    raise TimeoutError from None
                got = total + len(exc.partial)
                raise InputError(url, f"download is incomplete ({_of(got, expected)}: the server closed "
                                      "the connection early)") from None
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise InputError(url, f"download is too large (over {max_bytes} bytes)")
            if time.monotonic() > deadline:
                raise TimeoutError
            chunks.append(chunk)
        if dog.fired:
            raise TimeoutError
        if expected is not None and total < expected:
            raise InputError(url, f"download is incomplete ({_of(total, expected)}: the server closed the "
                                  "connection early)")
        body = b"".join(chunks)
        if html and body.lstrip()[:1] == b"<":
            raise InputError(url, f"the server sent a web page (Content-Type text/html, HTTP {resp.status}), not "
                                  "an image")
        return body, None
    except (OSError, http.client.HTTPException):
        if dog.fired:
            raise TimeoutError from None
        raise
    finally:
        dog.cancel()
        conn.close()


def _of(got: int, expected: int | None) -> str:
    return f"{got} of {expected} bytes" if expected is not None else f"{got} bytes"


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET an http(s) URL with a size cap and one deadline (``timeout`` seconds) for everything, redirects included.

    Redirects stay on http(s). Errors are InputErrors naming the URL as given.
    """
    deadline = time.monotonic() + timeout
    current = url
    try:
        for _ in range(_MAX_REDIRECTS + 1):
            scheme = urllib.parse.urlsplit(current).scheme.lower()
            if scheme not in ("http", "https"):
                raise InputError(url, f"download failed: redirect to an unsupported URL scheme '{scheme}'")
            data, target = _get(current, deadline, timeout, max_bytes)
            if target is None:
                break
            current = target
        else:
            raise InputError(url, f"download failed: more than {_MAX_REDIRECTS} redirects")
    except InputError as exc:
        if exc.source != redact(url):
            raise InputError(url, exc.reason) from None
        raise
    except TimeoutError:
        raise InputError(url, f"download timed out after {timeout:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InputError(url, f"download failed ({type(exc).__name__}: {detail})") from None
    if not data:
        raise InputError(url, "download is empty (0 bytes)")
    return data
