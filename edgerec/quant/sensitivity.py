"""Which layers to keep in float: a fast sensitivity search on the int8 model (minutes, not NNCF's quarter hour).

NNCF's accuracy-controlled search re-evaluates the whole eval set for every layer it gives back. This search
instead ranks every quantized layer (Convolution, GroupConvolution, MatMul) once by how much computing that layer
alone in float lowers the divergence of the CTC output distribution from fp32's, on ~100 lines, then keeps the
top few in float. A variant is the PTQ model with that layer's input FakeQuantizes bypassed and its int8 weights
replaced by the fp32 model's (the same op names, NNCF keeps them), so a variant costs one compile and a few
batched inferences, not a new quantization. The lines are padded into a few width buckets for the search only
(fp32 and every variant see the same tensors), so the CPU plugin compiles few shapes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from edgerec.runtime.preprocess import preprocess_batch, target_width

log = logging.getLogger(__name__)

QUANTIZABLE = ("Convolution", "GroupConvolution", "MatMul")
_LAYOUT = ("Reshape", "Transpose", "Squeeze", "Unsqueeze")  # a FakeQuantize may sit behind these
BUCKET = 160  # search tensors are right-padded to a multiple of this many pixels


@dataclass
class Sensitivity:
    """One layer's rank: the divergence with it alone in float, and how much that is below the int8 model's."""

    name: str
    kind: str
    divergence: float
    gain: float
    mac_share: float = 0.0  # the layer's share of the quantizable layers' multiply-adds at 48x320


def layer_mac_share(fp32_model, height: int, width: int = 320) -> dict[str, float]:
    """Each Convolution / GroupConvolution / MatMul's share of their multiply-adds for one line at height x width:
    what keeping it in float costs, roughly (depthwise convolutions are a few per cent and gain little from int8)."""
    model = fp32_model.clone()
    model.reshape({model.input(0): [1, 3, height, width]})
    macs = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in QUANTIZABLE:
            continue
        out = int(np.prod([d for d in op.get_output_shape(0)]))
        w = [int(d) for d in op.get_input_shape(1)]
        if kind == "Convolution":
            macs[op.get_friendly_name()] = out * int(np.prod(w[1:]))
        elif kind == "GroupConvolution":
            macs[op.get_friendly_name()] = out * int(np.prod(w[2:]))
        else:
            transpose_b = bool(op.get_attributes().get("transpose_b", False))
            macs[op.get_friendly_name()] = out * (w[-1] if transpose_b else w[-2] if len(w) > 1 else w[0])
    total = sum(macs.values()) or 1
    return {name: m / total for name, m in macs.items()}


def search_tensors(images: list[np.ndarray], height: int, max_batch: int = 16) -> list[np.ndarray]:
    """The search's input batches: each line at its own width, right-padded to the next BUCKET multiple, grouped by
    that padded width into batches of at most ``max_batch``."""
    groups: dict[int, list[np.ndarray]] = {}
    for img in images:
        w = target_width(*img.shape[:2], img_h=height)
        groups.setdefault(int(math.ceil(w / BUCKET) * BUCKET), []).append(img)
    batches = []
    for width, imgs in sorted(groups.items()):
        for i in range(0, len(imgs), max_batch):
            batches.append(preprocess_batch(imgs[i:i + max_batch], width, height))
    return batches


def _probs(compiled, batches: list[np.ndarray]) -> list[np.ndarray]:
    request = compiled.create_infer_request()
    return [np.array(request.infer({0: b})[compiled.output(0)], dtype=np.float64) for b in batches]


def divergence(reference: list[np.ndarray], probs: list[np.ndarray]) -> float:
    """Mean per-timestep KL(fp32 || variant) of the CTC softmax outputs (nats)."""
    total, count = 0.0, 0
    for p, q in zip(reference, probs):
        p = np.clip(p, 1e-9, 1.0)
        q = np.clip(q, 1e-9, 1.0)
        kl = (p * (np.log(p) - np.log(q))).sum(axis=-1)
        total += float(kl.sum())
        count += kl.size
    return total / max(1, count)


def quantized_layers(q_model) -> list[tuple[str, str]]:
    """(name, type) of every op of ``QUANTIZABLE`` type with an int8 weight or a FakeQuantize on an input."""
    found = []
    for op in q_model.get_ordered_ops():
        if op.get_type_name() in QUANTIZABLE and any(
                _input_fq(op.input(i)) is not None or _int8_weight(op.input_value(i))
                for i in range(op.get_input_size())):
            found.append((op.get_friendly_name(), op.get_type_name()))
    return found


def _input_fq(inp):
    """The FakeQuantize feeding this input directly or through layout ops that only it feeds, else None."""
    node = inp.get_source_output().get_node()
    while node.get_type_name() in _LAYOUT and len(node.output(0).get_target_inputs()) == 1:
        node = node.input_value(0).get_node()
    return node if node.get_type_name() == "FakeQuantize" else None


def _int8_weight(out) -> bool:
    """NNCF's compressed weight: Multiply(Convert(Constant int8/uint8)[ - zero point], scale)."""
    node = out.get_node()
    if node.get_type_name() != "Multiply":
        return False
    src = node.input_value(0).get_node()
    if src.get_type_name() == "Subtract":
        src = src.input_value(0).get_node()
    if src.get_type_name() != "Convert":
        return False
    const = src.input_value(0).get_node()
    return const.get_type_name() == "Constant" and const.get_output_element_type(0).get_type_name() in ("i8", "u8")


def _float_constant(out) -> np.ndarray | None:
    node = out.get_node()
    while node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        return None
    return np.asarray(node.get_data(), dtype=np.float32)


def _restore_bias(op, ref: dict) -> None:
    """Bias correction moved the layer's bias to offset its own int8 error: in float it needs fp32's bias back."""
    from openvino import opset13

    for target in op.output(0).get_target_inputs():
        add = target.get_node()
        fp32_add = ref.get(add.get_friendly_name())
        if add.get_type_name() != "Add" or fp32_add is None or fp32_add.get_type_name() != "Add":
            continue
        for i in range(2):
            if add.input_value(i).get_node().get_type_name() == "Constant":
                bias = _float_constant(fp32_add.input_value(i))
                if bias is not None and bias.shape == tuple(add.input_value(i).get_shape()):
                    add.input(i).replace_source_output(opset13.constant(bias).output(0))


def with_float_layers(q_model, fp32_model, names: Iterable[str]):
    """A copy of the int8 model in which the ops ``names`` compute in float: their input FakeQuantizes bypassed,
    their int8 weights and bias-corrected biases replaced by the fp32 model's. Their outputs stay quantized where
    a later op's input is (as NNCF's IgnoredScope does). Later layers keep the bias corrections made for this
    layer's int8 error, so a ranking made this way favours late layers; the search re-quantizes with NNCF."""
    import openvino as ov
    from openvino import opset13

    model = q_model.clone()
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    ref = {op.get_friendly_name(): op for op in fp32_model.get_ordered_ops()}
    for name in names:
        op = ops.get(name)
        if op is None:
            raise KeyError(f"no op named {name!r} in the int8 model")
        for i in range(op.get_input_size()):
            inp = op.input(i)
            fq = _input_fq(inp)
            if fq is not None:
                first = inp.get_source_output().get_node()
                if first is fq:
                    inp.replace_source_output(fq.input_value(0))
                else:  # layout ops between: bypass the FakeQuantize at their start
                    node = first
                    while node.input_value(0).get_node() is not fq:
                        node = node.input_value(0).get_node()
                    node.input(0).replace_source_output(fq.input_value(0))
            elif _int8_weight(inp.get_source_output()) and name in ref:
                weight = _float_constant(ref[name].input_value(i))
                if weight is not None:
                    inp.replace_source_output(opset13.constant(weight).output(0))
        _restore_bias(op, ref)
    model.validate_nodes_and_infer_types()
    assert isinstance(model, ov.Model)
    return model


def rank_layers(q_model, fp32_model, images: list[np.ndarray], height: int, *, threads: int | None = None,
                layers: list[str] | None = None, progress: Callable[[list], Iterable] | None = None
                ) -> tuple[float, list[Sensitivity]]:
    """(int8 divergence, layers ranked by gain, best first) on ``images`` (~64 lines are enough); every quantized
    layer, or only those named in ``layers``."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    batches = search_tensors(images, height)
    reference = _probs(core.compile_model(fp32_model, "CPU", config), batches)
    base = divergence(reference, _probs(core.compile_model(q_model, "CPU", config), batches))
    todo = [(n, k) for n, k in quantized_layers(q_model) if layers is None or n in layers]
    try:
        shares = layer_mac_share(fp32_model, height)
    except Exception as exc:  # a model that cannot be reshaped statically: rank by gain alone
        log.info("no multiply-add shares (%s)", exc)
        shares = {}
    ranked = []
    for name, kind in (progress(todo) if progress else todo):
        variant = with_float_layers(q_model, fp32_model, [name])
        d = divergence(reference, _probs(core.compile_model(variant, "CPU", config), batches))
        ranked.append(Sensitivity(name, kind, d, base - d, shares.get(name, 0.0)))
    ranked.sort(key=lambda s: s.gain, reverse=True)
    log.info("int8 divergence %.5f; most sensitive: %s", base,
             ", ".join(f"{s.name} ({s.kind}, -{s.gain:.5f})" for s in ranked[:5]))
    return base, ranked
