"""Ray Data: the same recognizer on every core of a cluster.

    ds = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0)
    out = ds.map_batches(TextRecognizerUDF, fn_constructor_kwargs={"model_name": "PP-OCRv4_mobile_rec"},
                         concurrency=4, num_cpus=2, batch_size=64, batch_format="numpy")

Each actor loads the model once, from the model home (fetched and exported by :func:`prepare` on the driver, or
a shared ``model_dir``), with OpenVINO threads = the CPUs Ray gave the actor. A batch gives columns ``path``,
``rec_text``, ``rec_score`` and ``error`` (``''`` when none); an undecodable file is a row with its error, never
a failed task. Reading is given no CPU (``num_cpus=0`` on the read): when the actors hold every CPU
(concurrency x num_cpus = the cluster's), reads that need one can never be scheduled and the job hangs.
``ray`` is an optional extra: ``pip install 'edgerec[ray]'``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from edgerec.errors import EdgeRecError, EngineUnavailableError
from edgerec.zoo.cards import DEFAULT_MODEL


def require_ray() -> Any:
    """Import ray, or say how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineUnavailableError("Ray is not installed: pip install 'edgerec[ray]' (ray[data])") from None
    return ray


def _actor_cpus() -> int | None:
    """The CPUs Ray assigned to this actor (its num_cpus), so OpenVINO does not oversubscribe the node."""
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        return max(1, int(cpus)) if cpus else None
    except Exception:  # outside an actor (a plain call in tests): the engine's default
        return None


def _rgb_to_bgr(image: np.ndarray, source: str) -> np.ndarray:
    """An RGB(A) or gray array (Ray's read_images) as edgerec's BGR."""
    from edgerec.io.inputs import to_bgr

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., [2, 1, 0, *range(3, arr.shape[2])]]
    return to_bgr(arr, source)


# what Ray Data's write_json puts in an output folder (its --overwrite replaces only a folder of these)
RAY_OUTPUT_FILES = ("*.json",)


class TextRecognizerUDF:
    """A callable class for ``Dataset.map_batches``: bytes or images in, text columns out."""

    def __init__(self, model_name: str | None = None, model_dir: str | None = None,
                 precision: str | None = None, device: str = "cpu", threads: int | None = None, batch_size: int = 8,
                 home: str | None = None, min_width: int | None = None, width_bucket: int | None = None):
        if home:
            os.environ["EDGEREC_HOME"] = home
        from edgerec.api import create_model

        self.batch_size = batch_size
        if model_name is None and model_dir is None:
            model_name = DEFAULT_MODEL
        self.model = create_model(model_name, model_dir=model_dir, precision=precision, device=device,
                                  threads=threads or _actor_cpus(), batch_size=batch_size, progress=False,
                                  min_width=min_width, width_bucket=width_bucket)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from edgerec.io.inputs import load_image

        paths = [str(p) for p in batch.get("path", [])]
        if "bytes" in batch:
            raw, decode = batch["bytes"], load_image
        elif "image" in batch:  # ray.data.read_images gives RGB arrays; edgerec's images are BGR
            raw, decode = batch["image"], _rgb_to_bgr
        else:
            raise ValueError(f"TextRecognizerUDF: a batch needs a 'bytes' or an 'image' column, got {sorted(batch)}")
        n = len(raw)
        paths = paths or [f"row_{k}" for k in range(n)]
        images: list[np.ndarray] = []
        where: list[int] = []
        errors = [""] * n
        for k in range(n):
            try:
                images.append(decode(raw[k] if decode is _rgb_to_bgr else bytes(raw[k]), paths[k]))
                where.append(k)
            except Exception as exc:  # noqa: BLE001 - one bad file is a row with its error, not a failed task
                errors[k] = str(exc)
        texts, scores = [""] * n, [0.0] * n
        for k, (text, score) in zip(where, self.model.recognize_batch(images, batch_size=self.batch_size)):
            texts[k], scores[k] = text, score
        return {"path": np.array(paths, dtype=object), "rec_text": np.array(texts, dtype=object),
                "rec_score": np.array(scores, dtype=np.float64), "error": np.array(errors, dtype=object)}


def prepare(model_name: str, precision: str | None = None) -> None:
    """Fetch and export the model on the driver, so actors on this node load it from the model home."""
    from edgerec.api import create_model

    create_model(model_name, precision=precision, warmup=False)


def recognize_folder(inputs: list[str], output: str, *, model_name: str | None = None,
                     model_dir: str | None = None, precision: str | None = None, address: str | None = None,
                     concurrency: int | None = None, num_cpus: int = 1, batch_size: int = 64,
                     overwrite: bool = False, min_width: int | None = None,
                     width_bucket: int | None = None) -> tuple[int, int]:
    """Recognize every image under ``inputs`` with Ray Data and write JSON files to ``output``; returns (rows,
    rows with an error). ``overwrite`` replaces what the folder held (Ray's SaveMode.OVERWRITE); ``min_width`` and
    ``width_bucket`` reach every actor's create_model."""
    from edgerec.io.inputs import IMAGE_SUFFIXES
    from edgerec.runtime.preprocess import check_min_width, check_width_bucket
    from edgerec.utils.fs import check_replaceable

    if overwrite:  # Ray replaces the folder's contents: only an earlier run's JSON files, never a user's files
        check_replaceable(output, RAY_OUTPUT_FILES, "edgerec predict --ray")
    if min_width is not None:  # on the driver, before Ray starts: not once per actor
        check_min_width(min_width)
    check_width_bucket(width_bucket)
    ray = require_ray()

    if not ray.is_initialized():
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except Exception as exc:  # no cluster at that address, a bad ray:// URL
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgeRecError(f"--address {address or '(local)'}: cannot start or join Ray ({first})") from None
    if model_dir is None:
        model_name = model_name or DEFAULT_MODEL
        prepare(model_name, precision)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    concurrency = concurrency or max(1, cpus // num_cpus)
    exts = sorted(s.lstrip(".") for s in IMAGE_SUFFIXES)
    ds = ray.data.read_binary_files(inputs, include_paths=True, file_extensions=exts + [e.upper() for e in exts],
                                    num_cpus=0)  # reads must not wait for a CPU the actors hold
    out = ds.map_batches(TextRecognizerUDF, fn_constructor_kwargs={
        "model_name": model_name, "model_dir": model_dir, "precision": precision, "threads": num_cpus,
        "min_width": min_width, "width_bucket": width_bucket},
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus, batch_size=batch_size,
        batch_format="numpy")
    out = out.materialize()  # run once; written and counted from the same rows, not by re-reading the folder
    out.write_json(output, mode=ray.data.SaveMode.OVERWRITE if overwrite else ray.data.SaveMode.APPEND)
    rows, errors = out.count(), 0
    for batch in out.select_columns(["error"]).iter_batches(batch_format="numpy"):
        errors += int(sum(bool(e) for e in batch["error"]))
    return rows, errors
