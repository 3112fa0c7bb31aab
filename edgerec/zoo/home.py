"""The model home: where fetched sources, exported IRs and the compiled-model cache live.

Layout (``EDGEREC_HOME``, default ``~/.cache/edgerec``)::

    models/<name>/sources/<id>/  the fetched files of one card source + source.json (SHA-256 of each file)
    models/<name>/<precision>/   model.xml + model.bin (fp32, fp16, int8)
    downloads/                   registry wheels and tars, kept so a second fetch needs no network
    cache/openvino/              OpenVINO's compiled-model cache
    locks/                       one lock file per model, so two processes never write the same model
"""

from __future__ import annotations

import os
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")


def home() -> Path:
    return Path(os.environ.get("EDGEREC_HOME") or Path.home() / ".cache" / "edgerec").expanduser()


def model_root(name: str) -> Path:
    return home() / "models" / name


def source_dir(name: str, source_id: str) -> Path:
    return model_root(name) / "sources" / source_id


def ir_dir(name: str, precision: str) -> Path:
    return model_root(name) / precision


def downloads_dir() -> Path:
    return home() / "downloads"


def cache_dir() -> Path:
    return home() / "cache" / "openvino"


def lock_path(name: str) -> Path:
    return home() / "locks" / f"{name}.lock"
