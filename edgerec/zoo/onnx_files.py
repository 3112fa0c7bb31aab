"""The files an ONNX model is read from: the one gate every ONNX passes (``load_onnx``), and the digest of every
file a user's local model is made of (``source_files_sha256``), so an IR made from it knows when it is stale."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgerec.errors import ModelError
from edgerec.utils.fs import sha256_file, utf8
from edgerec.zoo.fetch import ModelSource


def load_onnx(path: str | Path):
    """The ONNX graph of ``path`` (weights left on disk), or a ModelError saying why it is not one.

    The one gate every ONNX we are handed passes before anything parses it further: random bytes would end in a
    protobuf DecodeError traceback, and external data outside the model's folder in OpenVINO's bare
    ``Check 'false' failed``; a model file must not make us read files anywhere else on the disk either.
    """
    import onnx
    from onnx import external_data_helper as ext

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}); is it the right file, "
                         "complete (not cut short by a copy)?") from None
    if not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (no graph inside)")
    folder = path.parent.resolve()
    for tensor in _external_tensors(model):
        info = ext.ExternalDataInfo(tensor)
        where = (folder / info.location).resolve()
        if Path(info.location).is_absolute() or not where.is_relative_to(folder):
            raise ModelError(f"{path}: tensor {tensor.name!r} keeps its data in {info.location!r}, outside the "
                             "model's folder; external data must sit beside the .onnx (refused)")
        if not where.is_file():
            raise ModelError(f"{path}: tensor {tensor.name!r} keeps its data in {info.location!r}, which is "
                             "missing; copy it beside the .onnx")
        end = (info.offset or 0) + (info.length or 0)
        if end > where.stat().st_size:
            raise ModelError(f"{where}: {where.stat().st_size} bytes, but tensor {tensor.name!r} needs {end}: the "
                             "file is truncated")
    return model


def _external_tensors(model) -> list:
    """The tensors of an ONNX graph whose data sits in files beside it."""
    from onnx import external_data_helper as ext

    tensors = getattr(ext, "_get_all_tensors", lambda m: m.graph.initializer)(model)
    return [t for t in tensors if ext.uses_external_data(t)]


def source_files_sha256(src: ModelSource) -> str:
    """For a user's local model: one SHA-256 over every file the model is read from (the Paddle graph and weights;
    the ONNX and its external data), so an IR made from it is made again when any of them changes (the weights
    key alone misses a retrained ONNX whose weights sit in external data). '' for a card's fetched source, whose
    files are checked against their recorded SHA-256s instead."""
    if src.source_id != "local":
        return ""
    from onnx import external_data_helper as ext

    files = [src.model_file] + ([src.params_file] if src.params_file is not None else [])
    if src.format == "onnx":
        found = {ext.ExternalDataInfo(t).location for t in _external_tensors(load_onnx(src.model_file))}
        files += [src.model_file.parent / name for name in sorted(found)]
        if len(files) == 1:  # the weights key is this very file's digest already
            return ""
    digest = hashlib.sha256()
    for path in files:
        digest.update(utf8(path.name) + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()
