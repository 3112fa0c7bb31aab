"""Export a recognizer to OpenVINO IR whose rt_info makes it self-describing.

Routes: ONNX -> ``openvino.convert_model`` -> IR; Paddle ``inference.pdmodel`` -> OpenVINO's Paddle frontend
-> IR (no paddle install needed), or -> paddle2onnx -> ONNX -> IR; Paddle 3 ``inference.json`` (PIR), which
OpenVINO cannot read, always goes through paddle2onnx (needs the ``paddle`` extra).

The IR's ``rt_info["model_info"]`` holds model_name, charset (JSON list of class characters, blank first),
input_height, precision, source_sha256, source_id, so an IR folder alone is enough to run.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from edgerec._version import __version__
from edgerec.errors import ChecksumError, EngineUnavailableError, ExportError, ModelError, reason
from edgerec.runtime.charset import build_classes, read_dict_file, read_dict_lines
from edgerec.utils.fs import atomic_dir, check_replaceable, sha256_file, utf8
from edgerec.zoo.fetch import ModelSource
from edgerec.zoo.inference_yml import read_yml
from edgerec.zoo.onnx_files import load_onnx, source_files_sha256  # noqa: F401 (also imported from here)

log = logging.getLogger(__name__)

IR_NAME = "model.xml"
IR_FILES = (IR_NAME, "model.bin")  # what an export writes in its folder
RT_KEY = "model_info"
EXPORT_PRECISIONS = ("fp32", "fp16")
DEFAULT_HEIGHT = 48  # PP-OCR's recognizers' input height, when neither the model nor a card says
_WEIGHTS_REF = re.compile(rb'offset="(\d+)"\s+size="(\d+)"')  # where each constant sits in model.bin


@dataclass
class ModelInfo:
    """What an exported IR says about itself."""

    model_name: str
    classes: list[str]
    input_height: int
    precision: str
    source_sha256: str
    source_id: str = "local"
    extra: dict | None = None
    charset_sha256: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class ExportSpec:
    """What running a source needs beyond its weights: name, input height, space char, expected class count.

    The one rule, whatever runs the model (an exported IR, ONNX Runtime, Paddle Inference, training): the height
    is the source's own ``inference.yml`` image_shape when it has one, else its card's, else 48; the space char
    and the class count are the card's (True and "whatever the model outputs" without a card).
    """

    model_name: str
    input_height: int = DEFAULT_HEIGHT
    use_space_char: bool = True
    num_classes: int | None = None

    @classmethod
    def of(cls, src: ModelSource, card=None) -> ExportSpec:
        """The spec of ``src``, loaded for ``card`` (a ModelCard) or as a local model (``card`` None)."""
        return cls(model_name=card.name if card else src.name,
                   input_height=_input_height(src, card.input_height if card else DEFAULT_HEIGHT),
                   use_space_char=card.use_space_char if card else True,
                   num_classes=card.num_classes if card else None)

    def classes(self, src: ModelSource, num_classes: int | None) -> list[str]:
        """The class list (blank, dict, space) of ``src`` for a model that outputs ``num_classes``."""
        if self.num_classes and num_classes and num_classes != self.num_classes and not _own_charset(
                src, num_classes, self.use_space_char):
            raise ModelError(f"{src.model_file}: the model outputs {num_classes} classes but its card says "
                             f"{self.num_classes}: wrong file for {self.model_name}")
        return build_classes(read_charset_entries(src), num_classes, self.use_space_char,
                             source=f"{src.name} ({src.charset})")

    def info(self, src: ModelSource, num_classes: int | None, precision: str = "fp32") -> ModelInfo:
        """What an IR of ``src`` would say about itself (for engines that run the source directly)."""
        return ModelInfo(model_name=self.model_name, classes=self.classes(src, num_classes),
                         input_height=self.input_height, precision=precision, source_sha256=src.weights_sha256,
                         source_id=src.source_id, charset_sha256=src.charset_sha256)


def _own_charset(src: ModelSource, num_classes: int, use_space_char: bool) -> bool:
    """A local model (e.g. fine-tuned with a new dict.txt) whose own charset fits its output: it is the card's
    model with another charset, so the card's class count does not apply (a fetched source must match its card)."""
    if src.source_id != "local":
        return False
    return len(read_charset_entries(src)) + 1 + int(use_space_char) == num_classes


def read_charset_entries(src: ModelSource) -> list[str]:
    """The dict entries (without blank and space) of a model source."""
    kind = src.charset
    if kind in (None, ""):
        raise ModelError(f"{src.folder}: no character dict found (expected a *dict*.txt / *keys*.txt file, "
                         "inference.yml with PostProcess.character_dict, or an ONNX with 'character' metadata)")
    if kind == "onnx-metadata":
        model = load_onnx(src.model_file)
        props = {p.key: p.value for p in model.metadata_props}
        if "character" not in props:
            raise ModelError(f"{src.model_file}: no 'character' metadata and no dict file beside it")
        return read_dict_lines(props["character"])
    if kind == "inference.yml":
        path = src.folder / "inference.yml"
        chars = ((read_yml(src.folder) or {}).get("PostProcess") or {}).get("character_dict")
        if chars is None:
            raise ModelError(f"{path}: no PostProcess.character_dict")
        if not isinstance(chars, list) or not all(c is None or isinstance(c, (str, int, float)) for c in chars):
            raise ModelError(f"{path}: PostProcess.character_dict is not a list of characters")
        return ["" if c is None else str(c) for c in chars]
    path = src.folder / kind
    if not path.is_file():
        raise ModelError(f"{src.folder}: the charset file {kind} is missing")
    return read_dict_file(path)


def _input_height(src: ModelSource, default: int) -> int:
    """The height in the folder's inference.yml (RecResizeImg.image_shape [3, H, W]), else ``default``."""
    ops = ((read_yml(src.folder) or {}).get("PreProcess") or {}).get("transform_ops") or []
    for op in ops if isinstance(ops, list) else []:
        shape = (op.get("RecResizeImg") or {}).get("image_shape") if isinstance(op, dict) else None
        if shape:
            try:
                return int(shape[1])
            except (TypeError, ValueError, IndexError, KeyError):
                raise ModelError(f"{src.folder / 'inference.yml'}: RecResizeImg.image_shape {shape!r} is not "
                                 "[3, height, width]") from None
    return default


def paddle_to_onnx(src: ModelSource, out: Path, opset: int = 14) -> Path:
    """Run paddle2onnx in a child process, in a scratch folder, so its temp files and memory go away with it."""
    try:
        import paddle  # noqa: F401
        import paddle2onnx  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(
            f"{src.model_file}: converting a Paddle model through ONNX needs paddlepaddle and paddle2onnx "
            "(pip install 'edgerec[paddle]')") from exc
    code = ("import sys, paddle2onnx; paddle2onnx.export(sys.argv[1], sys.argv[2], sys.argv[3], "
            "opset_version=int(sys.argv[4]), enable_onnx_checker=True)")
    env = dict(os.environ, POLYGRAPHY_AUTOINSTALL_DEPS="0")
    with tempfile.TemporaryDirectory(prefix="edgerec-p2o-") as scratch:
        proc = subprocess.run([sys.executable, "-c", code, str(src.model_file.resolve()),
                               str(src.params_file.resolve()), str(out.resolve()), str(opset)],
                              cwd=scratch, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        said = [ln.strip() for ln in f"{proc.stdout}\n{proc.stderr}".splitlines() if ln.strip()]
        # paddle2onnx prints its own error on stdout, and Paddle's import warnings on stderr
        errors = [ln for ln in said if "[ERROR]" in ln or "Error" in ln.split(":")[0]]
        tail = " / ".join((errors or said)[-3:]) or f"exit status {proc.returncode}"
        raise ExportError(f"{src.model_file}: paddle2onnx failed: {tail[-600:]}")
    return out


def convert(src: ModelSource, *, via: str = "auto", input_height: int = 48, scratch: Path | None = None):
    """Convert a source to an ``openvino.Model`` with input [-1, 3, H, -1]."""
    import openvino as ov

    path = src.model_file
    if via == "paddle2onnx" and src.format != "paddle":
        raise ExportError(f"{path}: --via paddle2onnx converts Paddle models, and this is an {src.format} model")
    if src.format == "paddle" and (via == "paddle2onnx" or path.suffix == ".json"):
        if scratch is None:
            raise ExportError("internal: paddle2onnx needs a scratch folder")
        path = paddle_to_onnx(src, scratch / "paddle2onnx.onnx")
    elif via not in ("auto", "direct", "paddle2onnx"):
        raise ExportError(f"unknown export route {via!r} (use auto, direct or paddle2onnx)")
    elif src.format == "onnx":
        load_onnx(path)  # a clear error before OpenVINO tries every frontend on it
    try:
        model = ov.convert_model(str(path))
    except Exception as exc:
        raise ExportError(f"{path}: OpenVINO cannot convert it: {reason(exc)}") from exc
    if len(model.inputs) != 1 or len(model.outputs) < 1:
        raise ExportError(f"{path}: expected one input, got {len(model.inputs)}: not a text recognizer")
    shape = model.inputs[0].partial_shape
    if shape.rank.is_static and shape.rank.get_length() != 4:
        raise ExportError(f"{path}: input rank {shape.rank} is not N x 3 x H x W: not a text recognizer")
    try:
        model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, input_height, -1])})
    except Exception as exc:  # e.g. a pooling kernel larger than the feature map at this height
        raise ExportError(f"{path}: the model does not take input height {input_height} "
                          f"({reason(exc)}); check its inference.yml / card") from exc
    return model


def num_classes_of(model) -> int:
    dim = model.outputs[0].partial_shape[-1]
    if not dim.is_static:
        raise ExportError("the model's class dimension is dynamic: not a CTC recognizer")
    return dim.get_length()


def export(src: ModelSource, out_dir: str | Path, spec: ExportSpec | None = None, *, precision: str = "fp32",
           via: str = "auto") -> Path:
    """Export ``src`` to ``out_dir/model.xml`` (written atomically) and return the xml path.

    ``spec`` (default: ``ExportSpec.of(src)``, a local model) gives the name, height and charset rule.
    """
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"precision {precision!r}: export writes fp32 or fp16 (int8 comes from `edgerec quantize`)")
    spec = spec or ExportSpec.of(src)
    verify_source_files(src)
    read_charset_entries(src)  # a missing dict fails before the conversion, not after it
    out_dir = Path(out_dir)
    check_replaceable(out_dir, IR_FILES, "edgerec export")  # an earlier export's folder is replaced, nothing else
    need = check_space(src, out_dir)
    try:
        _write_ir(src, out_dir, spec, precision, via)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise ExportError(f"{out_dir}: cannot write the IR there ({exc.strerror or exc}); give --output DIR "
                              "(`export_model(..., output=DIR)`) to write it elsewhere") from None
        raise ExportError(f"no space left on {out_dir.parent} ({exc.strerror}); the export needs about "
                          f"{need >> 20} MB there") from None
    except RuntimeError as exc:  # OpenVINO's save: "basic_ios::clear: iostream error" when a write fails
        if "iostream error" not in str(exc):
            raise
        raise ExportError(f"no space left on {out_dir.parent}? OpenVINO could not write the IR (iostream error); "
                          f"the export needs about {need >> 20} MB there, and the folder must be writable") from None
    return out_dir / IR_NAME


def check_earlier_ir(xml: Path) -> None:
    """A model.xml already there must be an earlier edgerec export (its rt_info): a user's own IR of that name is
    not replaced."""
    if not xml.is_file():
        return
    try:
        head = xml.read_bytes()
    except OSError:
        return  # the export's own write reports what is wrong with the folder
    if f"<{RT_KEY}>".encode() not in head or b"<charset value=" not in head:  # model_info alone: Model API's
        raise ExportError(f"{xml}: an IR edgerec did not export (no edgerec rt_info); export into a new or empty "
                          "folder, or move it")


def check_space(src: ModelSource, out_dir: Path) -> int:
    """Refuse before writing when ``out_dir``'s disk has less free space than the export needs (returned, bytes).

    The need is twice the source's weights (the IR, plus paddle2onnx's ONNX on that route): a full disk would
    otherwise surface half-way as OpenVINO's bare "iostream error".
    """
    need = 2 * sum(p.stat().st_size for p in (src.model_file, src.params_file) if p is not None and p.is_file())
    where = out_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return need  # cannot tell: the write itself will say
    if free < need:
        raise ExportError(f"no space left on {where}: {free >> 20} MB free, the export of {src.model_file.name} "
                          f"needs about {need >> 20} MB")
    return need


def _write_ir(src: ModelSource, out_dir: Path, spec: ExportSpec, precision: str, via: str) -> None:
    """Convert and save into a temporary sibling of ``out_dir`` that replaces it whole (nothing half-written)."""
    import openvino as ov

    with atomic_dir(out_dir, owned=IR_FILES, what="edgerec export") as tmp:
        model = convert(src, via=via, input_height=spec.input_height, scratch=tmp)
        classes = spec.classes(src, num_classes_of(model))
        padded = len(classes) - 1 - len(read_charset_entries(src)) - int(spec.use_space_char)
        info = {
            "model_type": "TextRecognition",
            "model_name": spec.model_name,
            "charset": json.dumps(classes, ensure_ascii=False),
            "input_height": str(spec.input_height),
            "precision": precision,
            "source_sha256": src.weights_sha256,
            "charset_sha256": src.charset_sha256,
            "source_id": src.source_id,
            "source_format": src.format,
            "exported_by": f"edgerec {__version__}",
            **({"charset_padded": str(padded)} if padded > 0 else {}),  # said again at every load (api)
            **({"files_sha256": files} if (files := source_files_sha256(src)) else {}),
        }
        for key, value in info.items():  # a name that is not UTF-8 (a folder's) goes in as \udcXX escapes
            model.set_rt_info(utf8(value).decode("utf-8"), [RT_KEY, key])
        ov.save_model(model, str(tmp / IR_NAME), compress_to_fp16=(precision == "fp16"))
        for leftover in tmp.glob("paddle2onnx.onnx"):
            leftover.unlink()


def verify_source_files(src: ModelSource) -> None:
    """Check a fetched source's files against the SHA-256s recorded when they were fetched (and checked).

    A file that changed on disk since then (disk error, an edit, a partial copy) would otherwise be exported into
    an IR that looks fine and reads garbage.
    """
    for name, expected in src.files.items():
        path = src.folder / name
        if not path.is_file():
            raise ModelError(f"{src.folder}: {name} is missing; fetch the model again: "
                             f"`edgerec models fetch {src.name} --source {src.source_id} --force`")
        got = sha256_file(path, fresh=True)
        if got != expected:
            raise ChecksumError(f"{path}: SHA-256 is {got}, not the {expected} recorded when it was fetched: the "
                                f"file changed or is corrupt. Fetch it again: `edgerec models fetch {src.name} "
                                f"--source {src.source_id} --force`")


def check_ir_files(xml: str | Path) -> Path:
    """Refuse an IR whose model.bin is missing or shorter than model.xml needs, before OpenVINO reads it.

    A kill, a full disk or an interrupted copy leaves such a pair behind. OpenVINO's own message for it
    ("Incorrect weights in bin file") does not say what happened or what to do.
    """
    _checked_xml(Path(xml))
    return Path(xml)


def _checked_xml(xml: Path) -> bytes:
    """``check_ir_files``, returning the xml's bytes (read once)."""
    fix = ("export it again (`edgerec export`; a card model in the model home is re-exported automatically "
           "when its source is cached) or copy the IR folder again")
    try:
        text = xml.read_bytes()
    except OSError as exc:
        raise ModelError(f"{xml}: cannot read it ({exc.strerror or exc}); {fix}") from None
    if not text.rstrip().endswith(b"</net>"):
        raise ModelError(f"{xml}: the file is cut short (no closing </net>); {fix}")
    need = max((int(o) + int(n) for o, n in _WEIGHTS_REF.findall(text)), default=0)
    weights = xml.with_suffix(".bin")
    if need and not weights.is_file():
        raise ModelError(f"{xml}: {weights.name} is missing; {fix}")
    have = weights.stat().st_size if weights.is_file() else 0
    if have < need:
        raise ModelError(f"{weights}: {have} bytes, but {xml.name} needs {need}: the file is truncated; {fix}")
    return text


def check_card(info: ModelInfo, card, xml: str | Path) -> ModelInfo:
    """Refuse an IR whose rt_info says it is another model than the card it is loaded for."""
    fix = f"remove {Path(xml).parent} and run `edgerec export {card.name} --precision {info.precision}`"
    if info.model_name != card.name:
        raise ModelError(f"{xml}: its rt_info says it is {info.model_name}, not {card.name}; {fix}")
    if card.num_classes and info.num_classes != card.num_classes and info.source_id != "local":  # own charset
        raise ModelError(f"{xml}: it has {info.num_classes} classes, but the {card.name} card says "
                         f"{card.num_classes}; {fix}")
    return info


def read_info(xml: str | Path) -> ModelInfo:
    """Read the rt_info an edgerec export wrote; a foreign or broken IR gives a ModelError that says how to fix it.

    It parses model.xml itself (after checking model.bin's size) instead of asking OpenVINO to read the model:
    the engine reads it once, to compile it, and nothing else does.
    """
    xml = Path(xml)
    try:
        root = ET.fromstring(_checked_xml(xml))
    except ET.ParseError as exc:
        raise ModelError(f"{xml}: not a readable OpenVINO IR ({exc}); re-export it with `edgerec export`") from None
    meta = {el.tag: el.get("value") for el in root.findall(f"rt_info/{RT_KEY}/*") if el.get("value") is not None}
    if "charset" not in meta:
        raise ModelError(f"{xml}: no edgerec metadata (rt_info model_info.charset); export it with "
                         "`edgerec export` so the IR carries its charset")
    try:
        classes = json.loads(meta["charset"])
    except ValueError as exc:
        raise ModelError(f"{xml}: corrupt charset in rt_info ({exc}); re-export it") from exc
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ModelError(f"{xml}: corrupt charset in rt_info (not a list of strings); re-export it")
    n = _ir_num_classes(root, xml)
    if n != len(classes):
        raise ModelError(f"{xml}: the IR outputs {n} classes but its rt_info charset has {len(classes)}; "
                         "re-export it")
    extra = {k: meta[k] for k in ("source_format", "exported_by", "quantization", "files_sha256", "charset_padded")
             if k in meta}
    try:
        height = int(meta.get("input_height", DEFAULT_HEIGHT))
    except ValueError:
        height = 0
    own = _ir_input_height(root)
    if not 1 <= height <= MAX_INPUT_HEIGHT or (own is not None and own != height):
        raise ModelError(f"{xml}: corrupt input_height in rt_info ({meta.get('input_height')!r}"
                         + (f"; the model's input is {own} high" if own is not None else "") + "); re-export it")
    return ModelInfo(model_name=meta.get("model_name", xml.parent.name), classes=classes, input_height=height,
                     precision=meta.get("precision", "fp32"), source_sha256=meta.get("source_sha256", ""),
                     source_id=meta.get("source_id", "local"), extra=extra,
                     charset_sha256=meta.get("charset_sha256", ""))


MAX_INPUT_HEIGHT = 1024  # a text-line recognizer's input height; PP-OCR's are 32 or 48


def _ir_input_height(root: ET.Element) -> int | None:
    """The static height (third dimension) of the IR's first input, or None when it is dynamic or not found."""
    for layer in root.iterfind("layers/layer"):
        if layer.get("type") == "Parameter":
            dims = layer.findall("output/port/dim")
            try:
                h = int((dims[2].text or "").strip()) if len(dims) == 4 else -1
            except ValueError:
                return None
            return h if h > 0 else None
    return None


def _ir_num_classes(root: ET.Element, xml: Path) -> int:
    """The last dimension of the IR's first output (the Result layer's input port)."""
    for layer in root.iterfind("layers/layer"):
        if layer.get("type") == "Result":
            dims = layer.findall("input/port/dim")
            if not dims:
                break
            try:
                n = int((dims[-1].text or "").strip())
            except ValueError:
                break
            if n < 0:
                raise ModelError(f"{xml}: the model's class dimension is dynamic: not a CTC recognizer")
            return n
    raise ModelError(f"{xml}: no output with a class dimension: not a text recognizer IR")
