"""The model a run starts from (:class:`BaseModel`: its ONNX, charset and input rules) and the model folders a
run writes (``best_accuracy/``, ``latest/``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgerec.errors import EdgeRecError
from edgerec.train import TrainError
from edgerec.train.log import TrainLog
from edgerec.utils.fs import atomic_dir, atomic_write_text


@dataclass
class BaseModel:
    name: str                 # the model name written into inference.yml
    onnx: Path
    origin: Path              # the file training started from (the ONNX, or the Paddle model it came from)
    entries: list[str]        # dict entries (no blank, no space)
    dict_name: str            # the dict file name in the model folders
    input_height: int
    use_space_char: bool
    source_sha256: str


def resolve_base(model: str, source: str | None, scratch: Path, log_: TrainLog) -> BaseModel:
    """The ONNX to start from, with its charset: a card's source (ONNX preferred) or a local model, found by the
    one resolver (edgerec.zoo.resolve), with its input-height and space-char rule."""
    from edgerec.zoo.export import load_onnx, read_charset_entries
    from edgerec.zoo.resolve import resolve_source

    try:
        src, spec = resolve_source(model, source=source)
    except EdgeRecError as exc:
        raise TrainError(str(exc)) from None
    entries = read_charset_entries(src)
    if src.format == "onnx":
        load_onnx(src.model_file)  # random bytes, external data outside its folder: a ModelError naming it
    onnx_path = src.model_file
    if src.format == "paddle":
        from edgerec.zoo.export import paddle_to_onnx

        log_(f"{src.name}: Paddle model; converting it to ONNX with paddle2onnx ...")
        onnx_path = paddle_to_onnx(src, scratch / "source.onnx")
    dict_name = src.charset if src.charset and src.charset.endswith(".txt") else "dict.txt"
    return BaseModel(name=spec.model_name, onnx=onnx_path, origin=src.model_file.resolve(), entries=entries,
                 dict_name=dict_name, input_height=spec.input_height, use_space_char=spec.use_space_char,
                 source_sha256=src.weights_sha256)


# what save_model_folder writes into a model folder, by pattern (the dict's name is the base model's own)
MODEL_FILES = ("inference.onnx", "inference.yml", "train_info.json", "*dict*.txt", "*keys*.txt")


def save_model_folder(rec, base: BaseModel, classes: list[str], folder: Path, info: dict) -> Path:
    """Write a model folder (inference.onnx with the current weights, the dict, inference.yml), atomically."""
    import yaml

    from edgerec.train.onnx_torch import write_back

    owned = ("inference.onnx", base.dict_name, "inference.yml", "train_info.json")
    with atomic_dir(folder, owned=owned, what="edgerec train") as tmp:  # a user's files there are never replaced
        write_back(rec, tmp / "inference.onnx")
        atomic_write_text(tmp / base.dict_name, "".join(f"{e}\n" for e in base.entries))
        yml = {
            "Global": {"model_name": base.name},
            "PreProcess": {"transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"RecResizeImg": {"image_shape": [3, base.input_height, 320]}},
                {"KeepKeys": {"keep_keys": ["image"]}},
            ]},
            "PostProcess": {"name": "CTCLabelDecode", "character_dict": list(base.entries)},
        }
        atomic_write_text(tmp / "inference.yml", yaml.safe_dump(yml, allow_unicode=True, sort_keys=False))
        atomic_write_text(tmp / "train_info.json", json.dumps(
            {**info, "base_model": base.name, "base_sha256": base.source_sha256, "classes": len(classes)},
            indent=2, ensure_ascii=False))
    return folder
