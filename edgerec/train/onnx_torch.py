"""A recognizer's ONNX as a trainable PyTorch module, and the trained weights written back into that ONNX.

Conversion (onnx2torch) needs three fixes for the PP-OCR exports: their weights are ``Constant`` nodes (hoisted
to initializers here, under the same names), v4's input height is ``?`` (set to the model's height, then ORT's
symbolic shape inference, because onnx's own loses the rank after Paddle's Shape->Concat->Reshape chains), and
onnx2torch keeps every initializer that is not a Conv/BatchNorm weight as a frozen buffer (the SVTR neck's
Linear/LayerNorm weights and the CTC head: promoted to Parameters here). The final Softmax is cut off: training
uses ``log_softmax`` of the logits, which has a gradient where the softmax output underflows.

Export is by write-back, not ``torch.onnx.export`` (which bakes the width in): every trained tensor is copied
into the initializer it came from, so the graph, opset, names, dynamic axes, metadata and softmax output stay
those of the shipped file. The mapping is checked value for value when the model is loaded, so a change in
onnx2torch's numbering is an error, never a silently lost weight.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerec.train import TrainError, require_torch

log = logging.getLogger(__name__)

_POOLS = ("AveragePool", "MaxPool")


@contextlib.contextmanager
def _torchvision_stub():
    """Let onnx2torch import without a working torchvision.

    onnx2torch imports torchvision only for its NMS and RoiAlign converters, which no recognizer uses. A CPU
    build of torch has no matching torchvision (the registry's is built for CUDA and fails to import), so unless
    torchvision is already imported a stub stands in while onnx2torch is imported and is removed afterwards.
    """
    if "torchvision" in sys.modules:
        yield
        return

    def unavailable(*_args, **_kwargs):
        raise NotImplementedError("torchvision is not available (edgerec stubs it for onnx2torch)")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable
    tv.ops = ops
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        yield
    finally:
        for name, mod in (("torchvision", tv), ("torchvision.ops", ops)):
            if sys.modules.get(name) is mod:
                del sys.modules[name]


def _onnx2torch_convert():
    require_torch()
    try:
        with _torchvision_stub():
            from onnx2torch import convert
    except ImportError as exc:
        from edgerec.train import INSTALL_HINT

        raise TrainError(f"fine-tuning needs onnx2torch, which is not installed: {INSTALL_HINT} ({exc})") from None
    return convert


def hoist_constants(model):
    """Move tensor-valued Constant nodes into initializers of the same name (in place); returns the model."""
    from onnx import numpy_helper

    keep = []
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            model.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


@dataclass
class TorchRecognizer:
    """A converted recognizer: ``module(x)`` gives logits N x T x C (softmax removed)."""

    module: object                       # torch.fx.GraphModule
    source: Path                         # the ONNX it came from
    input_height: int
    num_classes: int
    buffer_to_init: dict[str, str]       # 'onnx_initializer_k' -> ONNX initializer name
    node_index: dict[str, int]           # ONNX initializer name -> index of the first node that reads it
    backbone_end: int | None             # index of the backbone's last node (its final pooling), if found
    conv_inits: dict[str, tuple[str, ...]] = field(default_factory=dict)  # module path -> its initializer names
    head_change: object = None           # a charset_head.HeadChange once the CTC head has a new charset

    def parameters_by_part(self) -> tuple[list, list]:
        """(backbone parameters, neck + head parameters); raises TrainError if the boundary is unknown."""
        if self.backbone_end is None:
            raise TrainError(f"{self.source}: cannot find where the backbone ends (no pooling before the neck); "
                             "train without --freeze-backbone")
        backbone, rest, seen = [], [], set()
        for name, param in self.module.named_parameters(remove_duplicate=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            init = self._init_of_param(name)
            first = self.node_index.get(init, 10**9) if init else 10**9
            (backbone if first <= self.backbone_end else rest).append(param)
        return backbone, rest

    def _init_of_param(self, name: str) -> str | None:
        path, _, attr = name.rpartition(".")
        if path == "initializers":
            return self.buffer_to_init.get(attr)
        inits = self.conv_inits.get(path)
        return inits[0] if inits else None


def _set_input_height(model, height: int) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) == 4 and not dims[2].dim_value:
        dims[2].ClearField("dim_param")
        dims[2].dim_value = height


def load_for_training(onnx_path: str | Path, input_height: int = 48) -> TorchRecognizer:
    """Convert a recognizer ONNX to a trainable torch module (float32, channels_last, softmax removed)."""
    import onnx
    from onnx import numpy_helper

    torch = require_torch()
    convert = _onnx2torch_convert()
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError as exc:
        from edgerec.train import INSTALL_HINT

        raise TrainError(f"fine-tuning needs onnxruntime for shape inference: {INSTALL_HINT} ({exc})") from None
    onnx_path = Path(onnx_path)
    try:
        model = hoist_constants(onnx.load(str(onnx_path)))
    except Exception as exc:
        raise TrainError(f"{onnx_path}: cannot read the ONNX ({exc})") from exc
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise TrainError(f"{onnx_path}: expected one input and one output: not a CTC text recognizer")
    _set_input_height(model, input_height)
    try:
        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        gm = convert(model, attach_onnx_mapping=True)
    except Exception as exc:
        raise TrainError(f"{onnx_path}: onnx2torch cannot convert this model ({type(exc).__name__}: {exc})") from exc

    nodes = list(model.graph.node)
    by_output = {out: (i, n) for i, n in enumerate(nodes) for out in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    first_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            if name in inits:
                first_use.setdefault(name, i)

    # onnx2torch names initializer buffers onnx_initializer_<k> in the order the nodes' mapped inputs read them
    # (one buffer per use). Replay that order, then check every buffer against its initializer.
    buffer_to_init: dict[str, str] = {}
    conv_inits: dict[str, tuple[str, ...]] = {}
    k = 0
    for fx_node in gm.graph.nodes:
        if fx_node.op != "call_module":
            continue
        mod = gm.get_submodule(fx_node.target)
        mapping = getattr(mod, "onnx_mapping", None)
        if mapping is None:
            continue
        for value in mapping.inputs:
            if value in inits:
                buffer_to_init[f"onnx_initializer_{k}"] = value
                k += 1
        onnx_node = by_output.get(mapping.outputs[0], (None, None))[1] if mapping.outputs else None
        if onnx_node is not None and any(p.requires_grad for p in mod.parameters(recurse=False)):
            conv_inits[fx_node.target] = tuple(n for n in onnx_node.input[1:] if n)
    buffers = dict(gm.initializers.named_buffers(recurse=False))
    if set(buffers) != set(buffer_to_init):
        raise TrainError(f"{onnx_path}: onnx2torch made {len(buffers)} initializer buffers, edgerec mapped "
                         f"{len(buffer_to_init)}: this onnx2torch version numbers them differently")
    for bname, iname in buffer_to_init.items():
        want = numpy_helper.to_array(inits[iname])
        got = buffers[bname].detach().cpu().numpy()
        if want.shape != got.shape or not np.array_equal(want, got):
            raise TrainError(f"{onnx_path}: buffer {bname} does not hold initializer {iname}: this onnx2torch "
                             "version numbers initializers differently; weights could not be written back")

    # promote float tensors (not scalars: hardswish's 3 and 6, eps, the affine blocks' scalars) to Parameters;
    # an initializer read by several nodes gets one shared Parameter, so its uses stay tied
    shared: dict[str, object] = {}
    for bname, iname in buffer_to_init.items():
        buf = buffers[bname]
        if not buf.is_floating_point() or buf.numel() <= 1:
            continue
        param = shared.get(iname)
        if param is None:
            param = shared[iname] = torch.nn.Parameter(buf.detach().clone().float())
        delattr(gm.initializers, bname)
        gm.initializers.register_parameter(bname, param)

    num_classes = _strip_softmax(gm, model, by_output, onnx_path)
    backbone_end = _backbone_end(nodes)
    gm = gm.float().to(memory_format=torch.channels_last)
    return TorchRecognizer(module=gm, source=onnx_path, input_height=input_height, num_classes=num_classes,
                           buffer_to_init=buffer_to_init, node_index=first_use, backbone_end=backbone_end,
                           conv_inits=conv_inits)


def _strip_softmax(gm, model, by_output, onnx_path: Path) -> int:
    out_name = model.graph.output[0].name
    _, node = by_output.get(out_name, (None, None))
    if node is None or node.op_type != "Softmax":
        raise TrainError(f"{onnx_path}: the output {out_name!r} is not a Softmax: not a CTC recognizer edgerec can "
                         "fine-tune")
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
    if axis not in (-1, 2):
        raise TrainError(f"{onnx_path}: the output Softmax is over axis {axis}, not the classes")
    out = next(n for n in gm.graph.nodes if n.op == "output")
    softmax = out.args[0]
    if getattr(softmax, "op", None) != "call_module":
        raise TrainError(f"{onnx_path}: unexpected converted output {softmax}")
    out.args = (softmax.args[0],)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[2].dim_value:
        raise TrainError(f"{onnx_path}: the output is not N x T x classes with a fixed class count")
    return int(dims[2].dim_value)


def _backbone_end(nodes) -> int | None:
    """Index of the backbone's final pooling: the last AveragePool/MaxPool before the neck's first MatMul."""
    first_matmul = next((i for i, n in enumerate(nodes) if n.op_type in ("MatMul", "Gemm")), None)
    if first_matmul is None:
        return None
    pools = [i for i, n in enumerate(nodes[:first_matmul]) if n.op_type in _POOLS]
    return pools[-1] if pools else None


def trained_tensors(rec: TorchRecognizer) -> dict[str, np.ndarray]:
    """ONNX initializer name -> the module's current value, for every tensor that can have changed."""
    torch = require_torch()
    gm = rec.module
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for bname, iname in rec.buffer_to_init.items():
            t = getattr(gm.initializers, bname)
            if isinstance(t, torch.nn.Parameter):
                out[iname] = t.detach().cpu().contiguous().numpy()
        for path, names in rec.conv_inits.items():
            mod = gm.get_submodule(path)
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                tensors = (mod.weight, mod.bias, mod.running_mean, mod.running_var)
            elif isinstance(mod, torch.nn.modules.conv._ConvNd):
                tensors = (mod.weight, mod.bias)
            else:
                raise TrainError(f"{rec.source}: {path} ({type(mod).__name__}) has weights edgerec cannot write "
                                 "back into the ONNX")
            for name, t in zip(names, tensors):
                if t is not None:
                    out[name] = t.detach().cpu().contiguous().numpy()
    return out


def write_back(rec: TorchRecognizer, dst: str | Path) -> Path:
    """Write the trained weights into a copy of the source ONNX (Constants hoisted) at ``dst`` (with the new class
    count and charset when the CTC head was given a new charset)."""
    import onnx
    from onnx import numpy_helper

    model = hoist_constants(onnx.load(str(rec.source)))
    inits = {i.name: i for i in model.graph.initializer}
    resized = rec.head_change.shapes if rec.head_change is not None else {}
    for name, value in trained_tensors(rec).items():
        if name not in inits:
            raise TrainError(f"{rec.source}: no initializer {name!r} to write a trained tensor into")
        old = numpy_helper.to_array(inits[name])
        shape = resized.get(name, old.shape)  # a new CTC head's tensors take their new shape
        if value.size != int(np.prod(shape)):
            raise TrainError(f"{rec.source}: initializer {name!r} has {old.size} values, the trained tensor "
                             f"{value.size}")
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(old.dtype).reshape(shape), name))
    if rec.head_change is not None:
        from edgerec.train.charset_head import patch_onnx

        patch_onnx(model, rec.head_change)
    dst = Path(dst)
    onnx.save(model, str(dst))
    return dst
