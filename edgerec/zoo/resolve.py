"""The one place that turns a card name or a local model into something an engine can run.

``resolve_model(name, model_dir, precision, source_format)`` decides load-or-export once, for everyone (the API,
``edgerec export``, ``edgerec quantize``, check-dataset's charset, training's base model):

- a card name: its fetched source (fetched first when none is cached), and for ``source_format="ir"`` the IR
  of that precision in the model home, exported again when it is missing, broken or of other weights;
- ``model_dir``: an exported IR (file or folder, as it is), or a local Paddle folder / tar / .onnx, whose IRs
  live under the home's ``local-ir/``.

What a model needs beyond its weights (name, input height, space char, class count) is ``ExportSpec``'s rule;
every folder is ``edgerec.zoo.home``'s.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from edgerec.errors import EdgeRecError, ModelError, ModelNotFoundError, OtherPrecisionError
from edgerec.zoo import home as homes
from edgerec.zoo.cards import ModelCard, get_card
from edgerec.zoo.export import (
    IR_NAME,
    ExportSpec,
    ModelInfo,
    check_card,
    check_earlier_ir,
    export,
    read_info,
    source_files_sha256,
    verify_source_files,
)
from edgerec.zoo.fetch import ModelSource, _name_from_yml, cached_source, fetch, open_local

log = logging.getLogger(__name__)

SOURCE_FORMATS = ("ir", "onnx", "paddle")


@dataclass
class ResolvedModel:
    """A model ready for an engine: ``path`` is what the engine loads (model.xml, the .onnx or the Paddle folder).

    ``info`` is the IR's own metadata, read once; for a source run directly (onnx, paddle) it is None until
    :meth:`complete` is given the class count the model outputs.
    """

    name: str
    path: Path
    source_format: str
    precision: str
    spec: ExportSpec | None = None
    source: ModelSource | None = None
    card: ModelCard | None = None
    info: ModelInfo | None = None

    def complete(self, num_classes: int) -> ModelInfo:
        """The ModelInfo of a source run directly, for a model that outputs ``num_classes`` classes."""
        if self.info is None:
            if self.source is None or self.spec is None:
                raise ModelError(f"{self.path}: no source to read the charset from")
            self.info = self.spec.info(self.source, num_classes)
        return self.info

    @property
    def input_height(self) -> int:
        return self.info.input_height if self.info is not None else self.spec.input_height  # type: ignore[union-attr]


def _card_or_none(name: str | None) -> ModelCard | None:
    if not name:
        return None
    try:
        return get_card(name)
    except EdgeRecError:
        return None  # a local model may carry any name


def _ir_in(path: Path, precision: str | None, asked: str | None = None) -> Path | None:
    """The IR that ``model_dir`` names, of ``precision`` (None: the one it names, whatever its precision), or None
    when ``path`` holds no IR (a source model, or nothing).

    Layouts: the .xml itself; a folder holding model.xml (``edgerec quantize --model-dir`` puts its int8 in
    ``<folder>/int8``); a folder of precisions (``<path>/<precision>/model.xml``, the model home's layout; with
    precision None its fp32, or the one precision it holds), also when given as one of its precision folders
    (and ``<folder>/int8`` finds the fp32 in ``<folder>``).
    Every IR found is read: one of another precision than asked for, with none of that one where it would be, is
    an OtherPrecisionError that says which there are (``asked``: the precision named in it, e.g. bf16 for fp32).
    Never run silently as something else."""
    label = asked or precision
    if path.is_file() and path.suffix == ".xml":
        xml = path
    elif path.is_dir() and (path / IR_NAME).is_file():
        xml = path / IR_NAME
    elif path.is_dir():
        present = [p for p in homes.PRECISIONS if (path / p / IR_NAME).is_file()]
        if not present:
            return None
        want = precision or ("fp32" if "fp32" in present else present[0] if len(present) == 1 else None)
        if want is None:
            raise OtherPrecisionError(f"{path}: holds IRs of {', '.join(present)}; ask for one of them")
        if want not in present:
            raise OtherPrecisionError(f"{path}: holds IRs of {', '.join(present)}, not {label}")
        xml = path / want / IR_NAME
        _require_precision(xml, want, label)
        return xml
    else:
        return None
    if precision is None:
        return xml
    have = read_info(xml).precision
    if have == precision:
        return xml
    beside = [xml.parent / precision / IR_NAME]
    if xml.parent.name in homes.PRECISIONS:  # a model home's layout (fp32/, int8/), or quantize --model-dir's
        beside += [xml.parent.parent / precision / IR_NAME, xml.parent.parent / IR_NAME]  # (IR/ and IR/int8/)
    for other in beside:
        if other.is_file():
            _require_precision(other, precision, label)
            return other
    make = (f"; `edgerec quantize --model-dir {path}` makes an int8 one" if precision == "int8" else "")
    what = f"{label} one" if label == precision else f"{precision} IR that {label} runs"
    raise OtherPrecisionError(f"{path}: holds an {have} IR, not the {what} asked for (precision {have!r} runs it)"
                              f"{make}")


def _require_precision(xml: Path, precision: str, label: str) -> None:
    """An IR found in a precision's folder must be of that precision (a folder named fp32 may hold a copied int8)."""
    have = read_info(xml).precision
    if have != precision:
        raise OtherPrecisionError(f"{xml}: an {have} IR in the {xml.parent.name} folder, not the {label} asked for")


def _check_name(xml: Path, info: ModelInfo, model_name: str | None) -> None:
    """A model_name given with an IR model_dir must be the IR's (PaddleX: "Model name mismatch")."""
    card = _card_or_none(model_name)  # a card's other spellings (case, file name) name the same model
    if model_name and info.model_name not in (model_name, card.name if card is not None else None):
        raise ModelError(f"{xml}: this IR is {info.model_name}, not {model_name}; give the IR's name or leave "
                         "model_name out")


def _check_yml_name(folder: Path, model_name: str | None) -> None:
    """A model_name given with a Paddle model folder must be the one its inference.yml names (PaddleX raises
    "Model name mismatch" there too)."""
    named = _name_from_yml(folder) if model_name else None
    card = _card_or_none(model_name)
    if named and named not in (model_name, card.name if card is not None else None):
        raise ModelError(f"{folder}: Model name mismatch: its inference.yml names {named}, not {model_name}; give "
                         "that name or leave model_name out")


def resolve_model(model_name: str | None = None, model_dir: str | Path | None = None,
                  precision: str | None = "fp32", *, source_format: str = "ir", source: str | None = None,
                  progress: bool = True) -> ResolvedModel:
    """Find (or fetch and export) what an engine of ``source_format`` needs for a card name or local model.

    ``precision`` bf16 resolves the fp32 IR (the engine compiles it with a bf16 hint); None: the model's own,
    i.e. an IR given as ``model_dir`` as it is, fp32 for everything else."""
    if source_format not in SOURCE_FORMATS:
        raise ValueError(f"source_format must be one of {SOURCE_FORMATS}, not {source_format!r}")
    if model_name is not None and not isinstance(model_name, str):
        raise ModelNotFoundError(f"model_name must be a model's name (a string), not {model_name!r}")
    if model_dir is not None and not isinstance(model_dir, (str, Path)):
        raise ModelError(f"model_dir must be a path (str or pathlib.Path), not {model_dir!r}")
    asked = precision
    precision = precision or "fp32"
    if precision not in homes.RUN_PRECISIONS:
        raise ModelError(f"precision {precision!r}: use one of {', '.join(homes.RUN_PRECISIONS)}")
    if source_format != "ir" and precision != "fp32":
        raise ModelError(f"precision {precision!r}: a {source_format} model runs as it is (fp32); fp16 and int8 "
                         "are OpenVINO IRs, bf16 an OpenVINO CPU compute hint")
    precision = homes.ir_precision(precision)  # bf16 is a compute hint on the fp32 IR
    if model_dir is None and not model_name:
        raise ModelError("give a model name (see `edgerec models list`) or model_dir")
    if model_dir is not None:
        path = Path(model_dir).expanduser()
        xml = _ir_in(path, asked and precision, asked) if source_format == "ir" else None
        if xml is not None:  # an IR is loaded as it is; a truncated or half-copied one is refused with what to do
            info = read_info(xml)
            _check_name(xml, info, model_name)
            return ResolvedModel(info.model_name, xml, "ir", info.precision, info=info)
        src = open_local(path, name=model_name)
        _check_yml_name(src.folder, model_name)
        card = _card_or_none(model_name)
        if source_format != "ir":
            return _direct(src, card, source_format)
        key = homes.local_key(src.name, src.weights_sha256)
        xml, info = ensure_ir(src, homes.local_ir_dir(key, precision), precision, card=card, lock_name=f"local-{key}",
                              label=str(path), fix=f"export it yourself: `edgerec export --model-dir {path} --output "
                              "IR_DIR`, then give IR_DIR as the model folder")
        return ResolvedModel(info.model_name, xml, "ir", precision, ExportSpec.of(src, card), src, card, info)
    card = get_card(model_name)  # type: ignore[arg-type]
    if source_format != "ir":
        return _direct(_card_source(card, source_format, source, progress), card, source_format)
    xml = homes.ir_dir(card.name, precision) / IR_NAME
    if precision == "int8" and not xml.is_file():  # refused before anything is fetched: only quantize makes one
        raise _no_int8(card.name, xml.parent.parent)
    src = None
    if source is None and xml.is_file():
        # keep using the source the existing IR came from, so alternating sources does not re-export each time
        try:
            src = cached_source(card.name, read_info(xml).source_id)
        except EdgeRecError:
            src = None
    src = src or cached_source(card.name, source)
    if src is None:
        if xml.is_file() and source is None:
            info = check_card(read_info(xml), card, xml)  # nothing to re-export from: a broken IR is refused
            _require_precision(xml, precision, asked or precision)  # as is one of another precision (a copy)
            return ResolvedModel(card.name, xml, "ir", precision, card=card, info=info)  # its source was removed
        src = fetch(card.name, source=source, progress=progress)
    xml, info = ensure_ir(src, homes.ir_dir(card.name, precision), precision, card=card, lock_name=card.name)
    return ResolvedModel(card.name, xml, "ir", precision, ExportSpec.of(src, card), src, card, info)


def ensure_ir(src: ModelSource, ir_folder: Path, precision: str, *, card: ModelCard | None = None,
              lock_name: str, label: str | None = None, fix: str | None = None) -> tuple[Path, ModelInfo]:
    """Export ``src`` into ``ir_folder`` unless an IR of the same weights is there already; (model.xml, info)."""
    xml = ir_folder / IR_NAME
    spec = ExportSpec.of(src, card)
    info = _current_ir(xml, src, spec, precision, card, quiet=True)
    if info is not None:  # IR folders are swapped in whole: one that is there is read without the lock
        return xml, info  # (and a read-only home serves the models prepared in it)
    with homes.writing(lock_name, label=label, fix=fix):
        info = _current_ir(xml, src, spec, precision, card)
        if info is not None:
            return xml, info
        if precision == "int8":
            raise _no_int8(src.name, ir_folder.parent)
        made = not ir_folder.parent.exists()
        try:
            xml = export(src, ir_folder, spec, precision=precision)
        except BaseException:
            if made:  # a failed export leaves no empty model folder behind
                with contextlib.suppress(OSError):
                    ir_folder.parent.rmdir()
            raise
        return xml, read_info(xml)


def _current_ir(xml: Path, src: ModelSource, spec: ExportSpec, precision: str, card: ModelCard | None, *,
                quiet: bool = False) -> ModelInfo | None:
    """The IR's info when ``xml`` is an IR of ``src``'s weights, charset and input height in ``precision``; None
    when it is missing or stale (said in the log, unless ``quiet``: the locked second look logs it)."""
    if not xml.is_file():
        return None
    try:
        info = read_info(xml)
        recorded = (info.extra or {}).get("files_sha256")  # a local model's every file (IRs since 2026-12-07)
        if (info.source_sha256, info.charset_sha256, info.precision, info.input_height) == (
                src.weights_sha256, src.charset_sha256, precision, spec.input_height) and (
                not recorded or recorded == source_files_sha256(src)):
            if card is not None:
                check_card(info, card, xml)  # rt_info of another model: export again
            return info
        if not quiet:
            log.info("%s: IR is stale (other weights, charset, precision or height); exporting again", xml)
    except ModelError as exc:
        if not quiet:
            log.warning("%s; exporting again", exc)
    return None


def _no_int8(name: str, folder: Path) -> ModelError:
    return ModelError(f"{name}: no int8 model in {folder}; make one with `edgerec quantize {name}` (NNCF, "
                      "accuracy-checked), or use fp32 / fp16")


def _card_source(card: ModelCard, fmt: str, source: str | None, progress: bool) -> ModelSource:
    """A cached (else fetched) source of ``card`` in format ``fmt``, in card order."""
    ids = [s.id for s in card.sources if s.format == fmt and (source is None or s.id == source)]
    if not ids:
        raise ModelError(f"{card.name}: no {fmt} source" + (f" {source!r}" if source else "")
                         + f" in its card; an engine that runs {fmt} models needs one")
    src = next((c for c in (cached_source(card.name, i) for i in ids) if c is not None), None)
    return src or fetch(card.name, source=ids[0], progress=progress)


def _direct(src: ModelSource, card: ModelCard | None, fmt: str) -> ResolvedModel:
    """A source run as it is, by an engine of format ``fmt`` (its class count is known once the engine runs)."""
    if src.format != fmt:
        raise ModelError(f"{src.folder}: this engine runs {fmt} models, this is a {src.format} model")
    spec = ExportSpec.of(src, card)
    path = src.model_file if fmt == "onnx" else src.folder
    return ResolvedModel(spec.model_name, Path(path), fmt, "fp32", spec, src, card)


def own_ir_precision(model_dir: str | Path) -> str | None:
    """The precision of the IR ``model_dir`` names as it is, or None when it names no (readable) IR."""
    try:
        xml = _ir_in(Path(model_dir).expanduser(), None)
        return read_info(xml).precision if xml is not None else None
    except EdgeRecError:
        return None


def installed_ir(model_name: str | None, model_dir: str | Path | None, precision: str) -> Path | None:
    """The IR of ``precision`` already made for a card or next to a local model's IR, if there is one."""
    if model_dir is not None:
        path = Path(model_dir).expanduser()
        try:
            xml = _ir_in(path, precision)
            if xml is None:  # a source model: its IRs are in the home's local-ir folders
                src = open_local(path, name=model_name)
                xml = homes.local_ir_dir(homes.local_key(src.name, src.weights_sha256), precision) / IR_NAME
        except EdgeRecError:
            return None
    elif model_name:
        xml = homes.ir_dir(get_card(model_name).name, precision) / IR_NAME
    else:
        return None
    return xml if xml.is_file() else None


def quantize_target(resolved: ResolvedModel, model_dir: str | Path | None) -> Path:
    """Where the int8 IR of a resolved fp32 model goes: the card's home folder; in a folder of precisions (the
    home's layout, a local model's exports included) its ``int8`` folder; else ``int8`` inside the folder that
    holds the IR (a user's IR folder: nothing is written outside it). ``_ir_in`` finds it in each place."""
    if model_dir is None and resolved.card is not None:
        return homes.ir_dir(resolved.card.name, "int8")
    folder = resolved.path.parent
    if folder.name == resolved.precision:
        return folder.parent / "int8"
    return folder / "int8"


def export_model(model_name: str | None, model_dir: str | Path | None, precision: str = "fp32", *,
                 source: str | None = None, via: str = "auto", output: str | Path | None = None) -> Path:
    """``edgerec export``: export (always anew) into ``output`` or the model home; returns model.xml."""
    card = get_card(model_name) if model_name and model_dir is None else None
    if model_dir is not None:
        src = open_local(model_dir, name=model_name)
        card = _card_or_none(model_name)
    else:
        if card is None:
            raise ModelError("give a model name (see `edgerec models list`) or model_dir")
        if via != "auto" and source is None:  # a route for Paddle models: the card's Paddle source
            paddle = [s.id for s in card.sources if s.format == "paddle"]
            if not paddle:
                raise ModelError(f"{card.name}: --via {via} converts a Paddle model, and its card has no Paddle "
                                 "source")
            source = paddle[0]
        src = fetch(card.name, source=source)
    if output is not None:  # a user's folder: a model.xml there must be an earlier export
        out = Path(output)
        check_earlier_ir(out / IR_NAME)
    elif model_dir is None:
        out = homes.ir_dir(card.name, precision)  # type: ignore[union-attr]
    else:
        out = homes.local_ir_dir(homes.local_key(src.name, src.weights_sha256), precision)
    log.info("exporting %s (%s) to %s in %s", src.name, src.format, precision, out)
    return export(src, out, ExportSpec.of(src, card), precision=precision, via=via)


def model_charset(model_name: str | None, model_dir: str | Path | None = None, progress: bool = False) -> list[str]:
    """The characters a model can output (its classes without the CTC blank), without loading or exporting it.

    A card model is read from its fetched source (fetched first when neither a source nor an IR is there);
    ``model_dir`` may be an exported IR folder or a local Paddle / ONNX model.
    """
    if model_dir is not None:
        path = Path(model_dir).expanduser()
        xml = (path / IR_NAME if path.is_dir() and (path / IR_NAME).is_file() else path if path.suffix == ".xml"
               else next((path / p / IR_NAME for p in homes.PRECISIONS if (path / p / IR_NAME).is_file()), None))
        if xml is not None and xml.is_file():  # every precision of a model has its charset
            return read_info(xml).classes[1:]
        src = open_local(path, name=model_name)
        return ExportSpec.of(src, _card_or_none(model_name)).classes(src, None)[1:]
    card = get_card(model_name)  # type: ignore[arg-type]
    try:
        src = cached_source(card.name)
    except EdgeRecError:
        src = None
    if src is None:
        for precision in homes.PRECISIONS:
            xml = homes.ir_dir(card.name, precision) / IR_NAME
            if xml.is_file():
                try:
                    return read_info(xml).classes[1:]
                except EdgeRecError:
                    pass
        src = fetch(card.name, progress=progress)
    # the card's class count is not asked for here: the charset alone, as the model's dict gives it
    return ExportSpec.of(src, card).classes(src, None)[1:]


def resolve_source(model: str | Path, *, source: str | None = None, formats: tuple[str, ...] = ("onnx", "paddle"),
                   progress: bool = True) -> tuple[ModelSource, ExportSpec]:
    """A model's source files and spec, for code that runs the weights itself (training starts from these).

    ``model`` is a local model path (when it exists) or a card name; a card's sources are tried in ``formats``
    order (cached first, then fetched), and the files are checked against the SHA-256s recorded at fetch time.
    """
    path = Path(model).expanduser()
    if path.exists():
        src = open_local(path)
        return src, ExportSpec.of(src)
    card = get_card(str(model))
    wanted = [s for s in card.sources if source is None or s.id == source]
    if not wanted:
        raise ModelError(f"{card.name}: no source {source!r} in its card")
    errors: list[str] = []
    src = None
    for fmt in formats:
        ids = [s.id for s in wanted if s.format == fmt]
        src = next((c for c in (cached_source(card.name, i) for i in ids) if c is not None), None)
        for sid in ids if src is None else ():
            try:
                src = fetch(card.name, source=sid, progress=progress)
                break
            except EdgeRecError as exc:
                errors.append(f"{sid}: {exc}")
        if src is not None:
            break
    if src is None:
        raise ModelError(f"{card.name}: no {' or '.join(formats)} source could be had"
                         + (f" ({'; '.join(errors)})" if errors else ""))
    verify_source_files(src)
    return src, ExportSpec.of(src, card)
