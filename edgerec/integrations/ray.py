"""Ray Data: the same recognizer on every core of a cluster.

    ds = ray.data.from_items([{"path": p} for p in paths])          # actors read each file by path
    out = ds.map_batches(TextRecognizerUDF, fn_constructor_kwargs={"model_name": "PP-OCRv4_mobile_rec"},
                         concurrency=4, num_cpus=2, batch_size=64, batch_format="numpy")

Each actor loads the model once, from the model home (fetched and exported by :func:`prepare` on the driver, or
a shared ``model_dir``), with OpenVINO threads = the CPUs Ray gave the actor. A batch of ``path`` rows is read by
edgerec's own loader on the actor (every page of a PDF or multi-page TIFF, any file name); a batch of ``bytes``
(``read_binary_files``) or ``image`` (``read_images``) columns is decoded as it is. The output columns are
``path``, ``page_index`` (the page of a PDF or multi-page TIFF, 0-based, as ``predict``'s; null otherwise),
``rec_text``, ``rec_score`` and ``error`` (``''`` when none); a bad file is a row with its error, never a failed
task. :func:`recognize_folder` (``edgerec predict --ray``) lists the inputs on the driver with the walk
the one-box path uses (sorted, symlink loops cut, every name), so both read the same files.
``ray`` is an optional extra: ``pip install 'edgerec[ray]'``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from edgerec.errors import EdgeRecError, EngineUnavailableError, InputError, redact
from edgerec.integrations.ray_cluster import _bound_the_join, _join, _node_cpus, check_actors, check_address, ray_error
from edgerec.io.inputs import URL_RE, cannot_load
from edgerec.runtime.predictor import RECHECK_BELOW
from edgerec.zoo.cards import DEFAULT_MODEL

log = logging.getLogger(__name__)



def require_ray() -> Any:
    """Import ray, or say how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineUnavailableError("Ray is not installed: pip install 'edgerec[ray]' (ray[data])") from None
    return ray


def _ray_if_running() -> Any:
    """The ray module when this process is connected to Ray (a driver after ray.init, or an actor), else None.

    Never imports nor starts Ray: ``ray.get_runtime_context()`` alone would start a local cluster."""
    ray = sys.modules.get("ray")
    try:
        return ray if ray is not None and ray.is_initialized() else None
    except Exception:  # a half-imported or stubbed ray
        return None


def _actor_cpus() -> int | None:
    """The CPUs Ray assigned to this actor (its num_cpus), so OpenVINO does not oversubscribe the node; None
    outside Ray (the engine's default)."""
    ray = _ray_if_running()
    if ray is None:
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        return max(1, int(cpus)) if cpus else None
    except Exception:  # a driver, not an actor: the engine's default
        return None


def _rgb_to_bgr(image: np.ndarray, source: str) -> np.ndarray:
    """An RGB(A) or gray array (Ray's read_images) as edgerec's BGR."""
    from edgerec.io.inputs import to_bgr

    if image is None:
        raise InputError(source, "the 'image' column holds no array (None)")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., [2, 1, 0, *range(3, arr.shape[2])]]
    return to_bgr(arr, source)


def arrow_text(text: str) -> str:
    """``text`` as Arrow can hold it (valid UTF-8): a file name's undecodable bytes (held as surrogate escapes,
    ``\\udcff``) are written ``\\xff``, as Python's ``backslashreplace`` does."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _as_path(value: Any) -> str:
    """A ``path`` cell as a str: Arrow's binary cells (a file name that is not UTF-8, ``os.fsencode``d) decoded as
    the file system does, so the file opens by that name."""
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        return os.fsdecode(bytes(value))
    return str(value)


def _renamer(target: str, shown: str) -> Callable[[str], str]:
    """Write ``shown`` for the ``target`` prefix the loader names the input by (an absolute path read for a
    relative one, ``<bytes #0>`` for a bytes cell): rows and errors name the input as the pipeline gave it."""
    def rename(text: str) -> str:
        return shown + text[len(target):] if target and text.startswith(target) else text
    return rename


def _error_text(err: BaseException, rename: Callable[[str], str], source: str) -> str:
    if isinstance(err, InputError):
        return rename(str(err))
    return str(cannot_load(source, err))


# what Ray Data's write_json puts in an output folder (its --overwrite replaces only a folder of these)
RAY_OUTPUT_FILES = ("*.json",)
_HOLD_BYTES = 64 * 2**20  # decoded image bytes an actor holds before it runs them (PDF pages are megabytes)


class TextRecognizerUDF:
    """A callable class for ``Dataset.map_batches``: paths, bytes or images in, text columns out."""

    def __init__(self, model_name: str | None = None, model_dir: str | None = None,
                 precision: str | None = None, device: str = "cpu", threads: int | None = None, batch_size: int = 8,
                 home: str | None = None, min_width: int | None = None, width_bucket: int | None = None,
                 cwd: str | None = None, use_hpip: bool = False, recheck: str | None = None,
                 recheck_below: float = RECHECK_BELOW):
        if home:
            os.environ["EDGEREC_HOME"] = home
        from edgerec.api import create_model

        self.batch_size = batch_size
        self.cwd = cwd  # the folder relative ``path`` rows are relative to (the driver's; default: the actor's)
        if model_name is None and model_dir is None:
            model_name = DEFAULT_MODEL
        self.model = create_model(model_name, model_dir=model_dir, precision=precision, device=device,
                                  use_hpip=use_hpip, threads=threads or _actor_cpus(), batch_size=batch_size,
                                  progress=False,
                                  min_width=min_width, width_bucket=width_bucket, recheck=recheck,
                                  recheck_below=recheck_below)

    def _target(self, path: str) -> str:
        """Where the actor reads ``path``: relative paths against ``cwd`` (not a URL, nor an empty or NUL path,
        which the loader reports as they are)."""
        if not self.cwd or not path or "\0" in path or os.path.isabs(path) or URL_RE.match(path):
            return path
        return os.path.join(self.cwd, path)

    def _items(self, kind: str, cell: Any, path: str) -> Iterator[tuple[str, int | None, np.ndarray | None, str]]:
        """(path shown, page index, image or None, error) for every image of one row: a PDF or multi-page TIFF gives
        one per page, in page order, with its page index, as ``predict`` does."""
        from edgerec.io.inputs import iter_inputs

        if kind == "image":
            try:
                yield path, None, _rgb_to_bgr(cell, path), ""
            except Exception as exc:  # noqa: BLE001 - one bad array is a row with its error, not a failed task
                yield path, None, None, _error_text(exc, lambda s: s, path)
            return
        if kind == "bytes":
            if isinstance(cell, np.ndarray) and cell.dtype == np.uint8:
                cell = cell.tobytes()
            if not isinstance(cell, (bytes, bytearray, memoryview)):
                yield path, None, None, f"{path}: the 'bytes' column holds {type(cell).__name__}, not the file's bytes"
                return
            target, what = "<bytes #0>", bytes(cell)  # iter_inputs names a bytes input <bytes #0>
        else:
            target = what = self._target(path)
        rename = _renamer(target, path)
        try:
            for item in iter_inputs(what):
                shown = rename(item.input_path) if item.input_path is not None else path
                if item.error is not None:
                    yield shown, item.page_index, None, _error_text(item.error, rename, path)
                else:
                    yield shown, item.page_index, item.image, ""
        except Exception as exc:  # noqa: BLE001 - iter_inputs does not raise; a loader bug still costs one row
            yield path, None, None, _error_text(exc, rename, path)

    def _recognize(self, images: list[np.ndarray], sources: list[str]) -> list[tuple[str, float, str]]:
        try:
            return [(t, s, "") for t, s in self.model.recognize_batch(images, batch_size=self.batch_size)]
        except Exception:  # noqa: BLE001 - find the image that fails: the others keep their results
            got = []
            for img, src in zip(images, sources):
                try:
                    (text, score), = self.model.recognize_batch([img], batch_size=1)
                    got.append((text, score, ""))
                except Exception as exc:  # noqa: BLE001
                    got.append(("", 0.0, f"{src}: cannot recognize ({type(exc).__name__}: {exc})"))
            return got

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        kind = next((k for k in ("bytes", "image", "path") if k in batch), None)
        if kind is None:
            raise ValueError("TextRecognizerUDF: a batch needs a 'path', a 'bytes' or an 'image' column, got "
                             f"{sorted(batch)}")
        raw = batch[kind]
        n = len(raw)
        if "path" in batch:
            if len(batch["path"]) != n:
                raise ValueError(f"TextRecognizerUDF: the batch's 'path' column has {len(batch['path'])} values "
                                 f"for {n} '{kind}' values")
            paths = [_as_path(p) for p in batch["path"]]
        else:
            paths = [f"row_{k}" for k in range(n)]
        rows: list[list[Any]] = []  # [path, page, text, score, error], in row order (a row's pages in page order)
        pending: list[tuple[int, np.ndarray]] = []
        held = 0

        def run() -> None:
            nonlocal pending, held
            got = self._recognize([img for _, img in pending], [rows[i][0] for i, _ in pending])
            for (i, _), (text, score, error) in zip(pending, got):
                rows[i][2:] = [text, score, error]
            pending, held = [], 0

        for k in range(n):
            for shown, page, image, error in self._items(kind, raw[k], paths[k]):
                rows.append([shown, page, "", 0.0, error])
                if image is not None:
                    pending.append((len(rows) - 1, image))
                    held += image.nbytes
                    if len(pending) >= 8 * self.batch_size or held >= _HOLD_BYTES:
                        run()
        if pending:
            run()
        return {"path": np.array([arrow_text(r[0]) for r in rows], dtype=object),
                "page_index": np.array([r[1] for r in rows], dtype=object),  # ints and None: Arrow int64 with nulls
                "rec_text": np.array([r[2] for r in rows], dtype=object),
                "rec_score": np.array([r[3] for r in rows], dtype=np.float64),
                "error": np.array([arrow_text(r[4]) for r in rows], dtype=object)}


def prepare(model_name: str | None, precision: str | None = None, model_dir: str | None = None,
            recheck: str | None = None) -> None:
    """Fetch and export the model on the driver, so actors on this node load it from the model home; with
    ``model_dir``, load it once here, so a bad folder is one error on the driver, not one per actor."""
    from edgerec.api import create_model

    if model_name is None and model_dir is None:
        model_name = DEFAULT_MODEL
    create_model(model_name, model_dir=model_dir, precision=precision, warmup=False, recheck=recheck)


def list_inputs(inputs: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The files ``predict --ray`` hands the actors, and the inputs that fail on the driver as (path, error).

    Folders are walked as the one-box path walks them (edgerec.io.walk: sorted, every file name, symlink loops cut,
    PDFs and TIFFs too); other inputs are handed on as given, so the actor's loader reports a missing file, a broken
    link or a named pipe with the one-box path's words. A folder without images, one that cannot be listed, and a
    URL (actors read files by path) are errors here."""
    from edgerec.io.inputs import INPUT_SUFFIXES
    from edgerec.io.walk import walk_files

    files: list[str] = []
    errors: list[tuple[str, str]] = []
    for given in inputs:
        path = os.fsdecode(given) if isinstance(given, bytes) else str(given)
        if URL_RE.match(path):
            shown = redact(path)
            errors.append((shown, f"{shown}: URLs are not read with --ray (actors read files by path): run "
                                  "edgerec predict without --ray for it"))
        elif "\0" not in path and os.path.isdir(path):
            found = False
            for entry in walk_files(path, INPUT_SUFFIXES):
                found = True
                if isinstance(entry, InputError):
                    errors.append((entry.source, str(entry)))
                else:
                    files.append(entry)
            if not found:
                errors.append((path, str(InputError(path, "folder contains no images"))))
        else:
            files.append(path)
    return files, errors


def recognize_folder(inputs: list[str], output: str, *, model_name: str | None = None,
                     model_dir: str | None = None, precision: str | None = None, address: str | None = None,
                     concurrency: int | None = None, num_cpus: int = 1, batch_size: int = 64,
                     overwrite: bool = False, min_width: int | None = None,
                     width_bucket: int | None = None, use_hpip: bool = False, recheck: str | None = None,
                     recheck_below: float = RECHECK_BELOW,
                     on_error: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Recognize every image under ``inputs`` with Ray Data and write JSON files to ``output``; returns (rows,
    rows with an error). Inputs are listed on the driver as the one-box path lists them (:func:`list_inputs`);
    actors read the files by path. ``overwrite`` replaces what the folder held (Ray's SaveMode.OVERWRITE);
    ``min_width``, ``width_bucket``, ``use_hpip`` and ``recheck`` / ``recheck_below`` reach every actor's
    create_model (with ``use_hpip`` each actor picks for the CPU it runs on); ``on_error`` gets each failed row's
    message. A failure of Ray itself (no cluster, an actor that cannot load the model) is one EdgeRecError."""
    from edgerec.recheck import check_recheck
    from edgerec.runtime.preprocess import check_min_width, check_width_bucket
    from edgerec.utils.fs import check_replaceable

    if overwrite:  # Ray replaces the folder's contents: only an earlier run's JSON files, never a user's files
        check_replaceable(output, RAY_OUTPUT_FILES, "edgerec predict --ray")
    if min_width is not None:  # on the driver, before Ray starts: not once per actor
        check_min_width(min_width)
    check_width_bucket(width_bucket)
    check_recheck(recheck, recheck_below)
    if num_cpus < 1:
        raise EdgeRecError(f"num_cpus must be at least 1, not {num_cpus}")
    if not inputs:
        raise EdgeRecError("no inputs given")
    check_address(address)
    _bound_the_join(address)
    ray = require_ray()
    files, failed = list_inputs(inputs)
    if files:  # a bad model is one error here, before Ray starts and any actor loads it (with --model-dir too)
        prepare(model_name, precision, model_dir, None if use_hpip else recheck)  # use_hpip: each actor decides
    _join(ray, address)
    try:
        parts = []
        if files:
            size = check_actors(_node_cpus(ray), num_cpus, concurrency)
            size = min(size, -(-len(files) // batch_size))  # no actor without a batch: each one loads the model
            ds = ray.data.from_items([{"path": os.fsencode(f)} for f in files])  # bytes: every file name
            parts.append(ds.map_batches(TextRecognizerUDF, fn_constructor_kwargs={
                "model_name": model_name, "model_dir": model_dir, "precision": precision, "threads": num_cpus,
                "min_width": min_width, "width_bucket": width_bucket, "use_hpip": use_hpip, "cwd": os.getcwd(),
                "recheck": recheck, "recheck_below": recheck_below},
                compute=ray.data.ActorPoolStrategy(size=size), num_cpus=num_cpus, batch_size=batch_size,
                batch_format="numpy"))
        if failed:
            parts.append(ray.data.from_items([{"path": arrow_text(p), "page_index": None, "rec_text": "",
                                               "rec_score": 0.0, "error": arrow_text(e)} for p, e in failed]))
        out = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
        out = out.materialize()  # run once; written and counted from the same rows, not by re-reading the folder
        out.write_json(output, mode=ray.data.SaveMode.OVERWRITE if overwrite else ray.data.SaveMode.APPEND)
        rows, errors = out.count(), 0
        for batch in out.select_columns(["error"]).iter_batches(batch_format="numpy"):
            for e in batch["error"]:
                if e:
                    errors += 1
                    if on_error is not None:
                        on_error(str(e))
    except EdgeRecError:
        raise
    except Exception as exc:  # Ray's and pyarrow's: an actor that died, a write that failed
        raise EdgeRecError(f"Ray: {ray_error(exc)}") from None
    return rows, errors
