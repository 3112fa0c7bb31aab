"""Exception types. Every error names the input or model it is about, so a caller can act on it."""

from __future__ import annotations

import re

_SCHEME = r"(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*://)"  # (a lookbehind, not \b: linear on long texts)
# user:pass@ in free text: up to an @ before the path, query or fragment
_CREDENTIALS_RE = re.compile(rf"(?i){_SCHEME}[^/@\s?#]*@")
_AUTHORITY_RE = re.compile(r"(?i)^([a-z][a-z0-9+.\-]*://)([^/?#]*)")
_LENIENT_RE = re.compile(r"(?i)^([a-z][a-z0-9+.\-]*://)([^/]*)@")


def without_credentials(url: str, mark: str = "") -> str:
    """``url`` with the ``user:pass@`` of its authority (up to the first / ? or #, as RFC 3986 and urlsplit read
    it) replaced by ``mark``: the host that is contacted is always the one urlsplit sees."""
    m = _AUTHORITY_RE.match(url)
    if not m or "@" not in m.group(2):
        return url
    return m.group(1) + mark + m.group(2).rpartition("@")[2] + url[m.end():]


def typed_password(url: str) -> bool:
    """A URL whose password holds an unescaped ? or # (``http://user:pa?ss@host/``): RFC 3986 reads the host as
    ``user`` and the rest as a query, so it is refused, never fetched, and hidden whole when shown. Told apart
    from a query holding an @ (``http://host:8080?mail=a@b``) by what precedes the ? or #: ``name:`` and a
    password that is not all digits (a port), or an @ before the ? as well. ``user:1234?x@host`` cannot be told
    from ``host:1234?q=x@y``."""
    m = _LENIENT_RE.match(url)
    if not m:
        return False
    head = re.split(r"[?#]", m.group(2), maxsplit=1)
    if len(head) < 2 or head[0].startswith("["):
        return False
    if "@" in head[0]:  # user:p@ss?w#rd@host: an @ on both sides of the ? (with no path: rare either way)
        return True
    name, colon, secret = head[0].partition(":")
    return bool(colon) and not secret.isdigit()


def redact(text: str) -> str:
    """Drop ``user:pass@`` from every URL in ``text``: the one place credentials are removed before anything
    (results, error lines, saved JSON, CLI output) shows a URL. A typed password holding @ ? # or a space (see
    ``typed_password``) is hidden whole too."""
    if "@" not in text:
        return text
    if typed_password(text):
        text = _LENIENT_RE.sub(r"\1***@", text, count=1)
    text = without_credentials(text, "***@")
    return _CREDENTIALS_RE.sub(r"\1***@", text)


# the lines of an OpenVINO / oneDNN / Paddle message that say where, not what
_WHERE_LINE = re.compile(r"^(Exception from \S+|Check '.*' failed at \S+|\S+\.(cpp|hpp|h|cc):\d+:?|FrontEnd API failed "
                         r"with \w+:?|\[ ?\w+ ?\]|-+|Traceback.*|C\+\+ Traceback.*|Error Message Summary:?)$")


def reason(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message that says what went wrong, not where in C++ it was noticed
    (OpenVINO's messages start with one or two lines of file names and run to pages)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    said = next((ln for ln in lines if not _WHERE_LINE.match(ln)), lines[0] if lines else type(exc).__name__)
    return said if len(said) <= limit else said[:limit - 3] + "..."


class EdgeRecError(Exception):
    """Base class of every error edgerec raises on purpose."""


class InputError(EdgeRecError, ValueError):
    """An input (file, array, URL, PDF page) cannot be turned into an image."""

    def __init__(self, source: object, reason: str):
        self.source = redact(str(source))
        self.reason = redact(reason)
        super().__init__(f"{self.source}: {reason}")


class InputNotFoundError(InputError, FileNotFoundError):
    """An input file that does not exist: also a FileNotFoundError, which PaddleX raises there."""


class ModelNotFoundError(EdgeRecError, KeyError, ValueError):
    """No model card or model folder by that name (also a ValueError, which PaddleX raises for an unknown name)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FetchError(EdgeRecError):
    """A model source could not be downloaded, read or unpacked."""


class ChecksumError(FetchError):
    """A fetched file's SHA-256 differs from the one the model card pins."""


class UnsafeArchiveError(FetchError):
    """A tar member would land outside the folder it is unpacked into."""


class ExportError(EdgeRecError):
    """A model could not be converted to OpenVINO IR."""


class ModelError(EdgeRecError, ValueError):
    """A model folder is incomplete, corrupt or disagrees with its card (a ValueError, as PaddleX's "Model name
    mismatch")."""


class ModelFileNotFoundError(ModelError, FileNotFoundError):
    """A model_dir that does not exist or holds no model files (PaddleX: FileNotFoundError, no inference.yml)."""


class OtherPrecisionError(ModelError):
    """A model folder holds an IR of another precision than the one asked for, and none of that one."""


class DeviceError(EdgeRecError, ValueError):
    """The requested device or engine is not available on this machine (a ValueError, as PaddleX's device
    errors)."""


class EngineUnavailableError(EdgeRecError, ImportError):
    """An optional engine's package is not installed."""


class OutputError(EdgeRecError):
    """An output cannot be written where it was asked for (read-only, full, not a folder)."""


class OutputExistsError(OutputError, FileExistsError):
    """An output folder holds files edgerec did not write there; replacing the folder would delete them."""
