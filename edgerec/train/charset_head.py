"""Fine-tuning with a dataset's own charset: the CTC head grown (or cut) to the new dict, and written back.

PaddleX trains with the dataset's ``dict.txt`` when there is one (PaddleOCR then skips the pretrained head, whose
shape no longer fits, and starts it from random). edgerec keeps what the model already knows: the final
classifier (MatMul+Add, Gemm or a 1x1 Conv producing the class dimension) is replaced by one with the new class
count, whose rows for characters the old charset had (blank and the space row included, matched by character)
are the old rows; a new character's row (weights and bias) starts at the mean of the old character rows: its
logit is the average character's, far below the winner's at every step, so it fires for nothing until training
pulls it toward its glyphs' features (the lowest old bias instead learned no faster in the test's budget).
The written ONNX gets the new head shapes, the new class dimension in its output / value_info and the new
charset in its ``character`` metadata (which edgerec's charset finder prefers to any dict file), so ``edgerec
export``, ``create_model(model_dir=...)`` and ``edgerec quantize`` read the new characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerec.errors import EdgeRecError
from edgerec.train import TrainError, require_torch

# ops between the classifier and the Softmax that keep the class dimension as the last one
_PASS_THROUGH = ("Transpose", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Identity", "Cast")
NEW_DICT_NAME = "dict.txt"  # the dict file name in the model folders of a model trained with a new charset


@dataclass
class HeadChange:
    """What grow_head changed: written into the ONNX by :func:`patch_onnx` (called by ``write_back``)."""

    old_classes: int
    new_classes: int
    shapes: dict[str, tuple[int, ...]]     # ONNX initializer name -> its new shape
    tensors: list[str]                     # tensor names from the classifier's output to the graph output
    character: str                         # the new dict entries, as the ONNX 'character' metadata holds them
    copied: int = 0                        # rows copied from the old head (blank and space included)
    new_chars: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def dataset_dict(dataset: str | Path, dict_path: str | Path | None) -> Path | None:
    """The dict to train with: ``dict_path`` (which must exist), else the dataset's ``dict.txt``, else None."""
    if dict_path is not None:
        path = Path(dict_path).expanduser()
        if not path.is_file():
            raise TrainError(f"--dict {dict_path}: no such file")
        return path
    path = Path(dataset) / "dict.txt"
    if path.exists() and not path.is_file():  # a folder of that name: not silently the model's charset
        raise TrainError(f"{path}: not a regular file")
    return path if path.is_file() else None


def read_new_dict(path: Path) -> list[str]:
    """The entries of a dataset dict, checked: not empty, no line break inside an entry."""
    from edgerec.runtime.charset import read_dict_file

    try:
        entries = read_dict_file(path)
    except EdgeRecError as exc:
        raise TrainError(str(exc)) from None
    if not any(entries):
        raise TrainError(f"{path}: the character dict is empty")
    return entries


def dict_warnings(entries: list[str], path: Path) -> list[str]:
    """What in a training dict no label can use. Labels are encoded one character at a time (as PaddleOCR's),
    so an entry of several characters (PP-OCRv5's dict has flag emojis) or an empty one is never a target, and
    of a character listed twice only the first class trains. PaddleOCR accepts such dicts, so these are
    warnings for train.log, not errors."""
    out = []
    lines: dict[str, list[int]] = {}
    for n, entry in enumerate(entries, 1):
        lines.setdefault(entry, []).append(n)
    dups = [(e, ns) for e, ns in lines.items() if len(ns) > 1]
    if dups:
        shown = "; ".join(f"{e!r} on lines {', '.join(map(str, ns[:4]))}" for e, ns in dups[:5])
        out.append(f"{path}: {len(dups)} entries are listed more than once (only the first one's class trains): "
                   f"{shown}{' ...' if len(dups) > 5 else ''}")
    odd = [(n, e) for n, e in enumerate(entries, 1) if len(e) != 1]
    if odd:
        shown = "; ".join(f"line {n} {e!r}" for n, e in odd[:5])
        out.append(f"{path}: {len(odd)} entries are not one character (labels are read one character at a time, "
                   f"so no label trains them): {shown}{' ...' if len(odd) > 5 else ''}")
    return out


def _find_classifier(model, num_classes: int, where: Path) -> tuple[str, str, str | None, list[str]]:
    """(kind, weight initializer, bias initializer or None, tensors from its output to the Softmax's input)."""
    nodes = list(model.graph.node)
    by_output = {o: n for n in nodes for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    softmax = by_output.get(model.graph.output[0].name)
    if softmax is None or softmax.op_type != "Softmax":
        raise TrainError(f"{where}: the output is not a Softmax: cannot find the CTC head")
    name, path = softmax.input[0], [softmax.output[0]]

    def shape(init_name: str) -> tuple[int, ...]:
        return tuple(inits[init_name].dims)

    for _ in range(16):
        node = by_output.get(name)
        if node is None:
            break
        path.append(name)
        ins = list(node.input)
        if node.op_type == "Add" and len(ins) == 2:
            bias = next((i for i in ins if i in inits and shape(i)[-1:] == (num_classes,)), None)
            other = next((i for i in ins if i != bias), None)
            prev = by_output.get(other) if bias else None
            if prev is not None and prev.op_type == "MatMul" and len(prev.input) == 2 and prev.input[1] in inits \
                    and shape(prev.input[1])[-1:] == (num_classes,):
                path.append(other)
                return "matmul", prev.input[1], bias, path
        if node.op_type == "MatMul" and ins[1] in inits and shape(ins[1])[-1:] == (num_classes,):
            return "matmul", ins[1], None, path
        if node.op_type == "Gemm" and ins[1] in inits:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            if shape(ins[1])[0 if trans_b else 1] == num_classes:
                return ("gemm_t" if trans_b else "matmul"), ins[1], (ins[2] if len(ins) > 2 and ins[2] else None), path
        if node.op_type == "Conv" and ins[1] in inits and shape(ins[1])[0] == num_classes:
            return "conv", ins[1], (ins[2] if len(ins) > 2 and ins[2] else None), path
        if node.op_type not in _PASS_THROUGH or (node.op_type == "Reshape" and _fixes_classes(inits, ins, num_classes)):
            break  # a Reshape to a fixed class count would not follow the new head
        name = ins[0]
    raise TrainError(f"{where}: cannot find the final classifier (a MatMul+Add, Gemm or Conv with {num_classes} "
                     "outputs before the Softmax): edgerec cannot give this model a new charset")


def _fixes_classes(inits: dict, ins: list[str], num_classes: int) -> bool:
    from onnx import numpy_helper

    return len(ins) > 1 and ins[1] in inits and num_classes in numpy_helper.to_array(inits[ins[1]]).tolist()


def row_map(old_classes: list[str], new_classes: list[str]) -> list[int | None]:
    """For each new class, the old class row to copy (blank to blank, characters by character), or None."""
    from edgerec.train.data import char_index

    old = char_index(old_classes)
    return [0 if j == 0 else old.get(c) for j, c in enumerate(new_classes)]


def _new_rows(old: np.ndarray, rows: list[int | None], axis: int) -> np.ndarray:
    """The new tensor along ``axis``: copied rows, and for new ones the mean of the old character rows (the
    blank left out)."""
    moved = np.moveaxis(old, axis, 0)
    chars = moved[1:]
    fill = chars.mean(axis=0)
    out = np.stack([moved[r] if r is not None else fill for r in rows]).astype(old.dtype)
    return np.moveaxis(out, 0, axis)


def grow_head(rec, old_classes: list[str], new_classes: list[str], entries: list[str]) -> HeadChange:
    """Replace ``rec``'s classifier by one over ``new_classes`` (in place); returns what changed."""
    import onnx

    from edgerec.train.onnx_torch import hoist_constants

    torch = require_torch()
    if len(old_classes) != rec.num_classes:
        raise TrainError(f"{rec.source}: {len(old_classes)} classes in the charset, {rec.num_classes} in the model")
    model = hoist_constants(onnx.load(str(rec.source)))
    kind, w_name, b_name, tensors = _find_classifier(model, rec.num_classes, rec.source)
    rows = row_map(old_classes, new_classes)
    gm = rec.module
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.no_grad():
        if kind == "conv":
            path = next((p for p, names in rec.conv_inits.items() if names and names[0] == w_name), None)
            if path is None:
                raise TrainError(f"{rec.source}: the classifier Conv {w_name!r} is not a trainable module")
            conv = gm.get_submodule(path)
            conv.weight = torch.nn.Parameter(_tensor(torch, conv.weight, rows, 0))
            shapes[w_name] = tuple(conv.weight.shape)
            if conv.bias is not None and b_name:
                conv.bias = torch.nn.Parameter(_tensor(torch, conv.bias, rows, 0))
                shapes[b_name] = tuple(conv.bias.shape)
            conv.out_channels = len(new_classes)
        else:
            for name, axis in ((w_name, 0 if kind == "gemm_t" else -1), (b_name, -1)):
                if name is None:
                    continue
                bnames = [b for b, i in rec.buffer_to_init.items() if i == name]
                old = getattr(gm.initializers, bnames[0]) if bnames else None
                if not isinstance(old, torch.nn.Parameter):
                    raise TrainError(f"{rec.source}: the classifier tensor {name!r} is not trainable in torch")
                param = torch.nn.Parameter(_tensor(torch, old, rows, axis))
                for b in bnames:  # one Parameter for every use, as load_for_training ties them
                    delattr(gm.initializers, b)
                    gm.initializers.register_parameter(b, param)
                shapes[name] = tuple(param.shape)
    old_chars = set(old_classes[1:])
    change = HeadChange(old_classes=rec.num_classes, new_classes=len(new_classes), shapes=shapes, tensors=tensors,
                        character="\n".join(entries), copied=sum(r is not None for r in rows),
                        new_chars=[c for j, c in enumerate(new_classes) if rows[j] is None],
                        dropped=sorted(old_chars - set(new_classes[1:])))
    rec.num_classes = len(new_classes)
    rec.head_change = change
    return change


def _tensor(torch, old, rows, axis: int):
    arr = _new_rows(old.detach().cpu().numpy(), rows, axis)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(old.device)


def patch_onnx(model, change: HeadChange) -> None:
    """Fix an ONNX whose classifier initializers now have the new shapes: the class dimension of the tensors
    after the classifier (graph output, value_info) and the 'character' metadata."""
    wanted = set(change.tensors)
    for vi in list(model.graph.output) + list(model.graph.value_info):
        if vi.name not in wanted:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[-1].dim_value == change.old_classes:
            dims[-1].dim_value = change.new_classes
    props = {p.key: p for p in model.metadata_props}
    if "character" in props:
        props["character"].value = change.character
    else:
        model.metadata_props.add(key="character", value=change.character)


def apply_dataset_dict(rec, base, classes: list[str], path: Path, logf) -> tuple[object, list[str]]:
    """Train with the dict at ``path``: grow the head when it differs from the model's charset.

    Returns (base with the new entries and dict name, the new class list); unchanged when the dict is the model's.
    """
    import dataclasses

    from edgerec.runtime.charset import build_classes

    entries = read_new_dict(path)
    for line in dict_warnings(entries, path):
        logf(line)
    if entries == list(base.entries):
        logf(f"{path}: the model's own charset ({len(entries)} entries); the CTC head is kept")
        return base, classes
    new_classes = build_classes(entries, None, base.use_space_char, source=str(path))
    change = grow_head(rec, classes, new_classes, entries)
    shown = " ".join(change.new_chars[:20]) + (" ..." if len(change.new_chars) > 20 else "")
    logf(f"{path}: {len(entries)} entries; CTC head {change.old_classes} -> {change.new_classes} classes: "
         f"{change.copied} rows copied from the pretrained head, {len(change.new_chars)} new "
         f"(mean of the old rows): {shown or '-'}"
         + (f"; {len(change.dropped)} of the model's characters are not in the dict (dropped)"
            if change.dropped else ""))
    return dataclasses.replace(base, entries=entries, dict_name=NEW_DICT_NAME), new_classes
