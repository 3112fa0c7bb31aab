"""Width buckets that keep each line's own text: a copy of the model that ignores the right-padding.

Padding a line beyond its own width (``width_bucket``) changes text in a plain model for two reasons: past the
line's right edge every layer's bias makes the padded columns non-zero, and the next convolution with a kernel
wider than one column carries them into the line's last columns (where, at the line's own width, it read zero
padding); and ops over the whole width (the squeeze-excitation means, attention) average or attend over the
padding too. :func:`mask_padding` rewrites an ``ov.Model`` so that neither happens. It adds an input,
``valid_width`` (i64, one value per line: the width the line has without the bucket's padding), and

- sets the padded columns of the input of every convolution or pooling whose kernel is wider than one column
  to what that layer's own padding holds (0; -inf for a MaxPool), at that layer's resolution (before the
  layer's FakeQuantize in an int8 IR, so int8 convolutions keep their quantized input);
- rescales every mean over the width (ReduceMean) from the padded width to the valid one;
- gives every ScaledDotProductAttention an additive mask (-inf) over padded keys.

A MaxPool's padded outputs are set back to 0 (they may be -inf). Columns at and past the valid width then hold
whatever they hold, but no valid column ever reads them, so the
first ``steps(valid_width)`` time steps of the output are what the model computes for the line at its own width
(equal up to float summation order: on en_uw3_70's 70 document lines every CTC path was the same in fp32). The
decoder reads only those steps.

The valid width of a layer is ``(W + c) // D`` for the model's input width W: every convolution or pooling maps
a width x to ``(x + pad - kernel_extent + stride) // stride``, and such maps compose into one of the same form.
:func:`analyse` derives (c, D) per tensor from the layers' attributes and checks it against the model's shapes at
three widths, and with the batch at axis 0 where a mask is applied. Only ops known to keep columns apart (or
handled here) may touch a tensor along the width: any other op (Interpolate, an LSTM, a Slice along the width,
SAME padding with a stride along the width, a MatMul over the width other than attention, a width axis merged
with another, ...) raises :class:`Unsupported`, and the engine then pads as before, with a warning. Attention
written out op by op (MatMul, Softmax, MatMul) gets -inf scores for padded keys where the scores are made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONVS = ("Convolution", "GroupConvolution")
POOLS = ("AvgPool", "MaxPool")
# ops that mix columns and that this module cannot mask: a model holding one over the width is refused
# ops that may carry the width through: each output column from the same input column (elementwise, layout,
# per-position normalisation), or dealt with below (convolutions, poolings, means, softmax, attention); any other
# op that touches a tensor along the width makes the model Unsupported
ALLOWED = {
    "Add", "Multiply", "Subtract", "Divide", "Maximum", "Minimum", "Power", "SquaredDifference", "Relu", "Gelu",
    "HSwish", "Swish", "HSigmoid", "HardSigmoid", "Sigmoid", "Tanh", "Exp", "Erf", "Sqrt", "Clamp", "PRelu",
    "Mish", "SoftPlus", "Elu", "Abs", "Negative", "Convert", "FakeQuantize", "Reshape", "Squeeze", "Unsqueeze",
    "Transpose", "ShapeOf", "Result", "Concat", "Split", "VariadicSplit", "Slice", "Gather", "MVN", "ReduceMean",
    "Softmax", "MatMul", *CONVS, *POOLS, "ScaledDotProductAttention",
}
# widths that are multiples of nothing in particular (a formula that is off by a step shows at one of them)
PROBE_WIDTHS = (331, 457, 389)
INPUT_NAME = "valid_width"


class Unsupported(Exception):
    """The model has a layer over the width that the masks cannot make padding-blind."""


@dataclass(frozen=True)
class Width:
    """A tensor's width axis and its size ``(W + c) // d`` for input width W. ``pair``: attention scores over
    (queries, keys), both along the width; ``axis`` is then the keys' (the last), and the tensor is "logits"
    until a Softmax over the keys makes it "weights"."""

    axis: int
    c: int
    d: int
    pair: str = ""
    batched: bool = True  # axis 0 is the batch (a mask [N, ...] lines up with it)

    def at(self, width: int) -> int:
        return (width + self.c) // self.d


def _shapes(model, height: int, width: int, batch: int = 1) -> list[list[list[int]]]:
    """Every op's output shapes for a batch x C x height x width input, in ``get_ordered_ops`` order (a clone's
    auto-named ops do not keep their names). Shape inference only: reshape() would also run transformations
    that fold ops away."""
    import openvino as ov

    m = model.clone()
    param = m.get_parameters()[0]
    channels = param.get_partial_shape()[1]
    param.set_partial_shape(ov.PartialShape([batch, channels, height, width]))
    m.validate_nodes_and_infer_types()
    out = []
    for op in m.get_ordered_ops():
        shapes = []
        for i in range(op.get_output_size()):
            ps = op.output(i).get_partial_shape()
            if not ps.is_static:
                raise Unsupported(f"{op.get_friendly_name()}: its shape is not known from the input's")
            shapes.append(list(ps.to_shape()))
        out.append(shapes)
    return out


def _kernel_w(op) -> tuple[int, int, int]:
    """(kernel extent along the width, dilation included; stride along the width; padding added to the width) of
    a convolution or pooling. SAME padding only with stride 1 along the width: with a longer stride its split
    between the two ends depends on the width, so a padded input would shift the columns."""
    a = op.get_attributes()
    name = op.get_friendly_name()
    if op.get_type_name() in CONVS:
        k = op.input(1).get_partial_shape()[-1].get_length()
        extent = (k - 1) * a["dilations"][-1] + 1
    else:
        if a.get("rounding_type", "floor") != "floor":
            raise Unsupported(f"{name}: rounding {a['rounding_type']}")
        extent = (a["kernel"][-1] - 1) * a.get("dilations", [1])[-1] + 1
        if op.get_type_name() == "AvgPool" and a.get("exclude-pad") and (
                a["pads_end"][-1] > 0 or a.get("auto_pad", "explicit") not in ("explicit", "notset", "valid")):
            raise Unsupported(f"{name}: an average that leaves out its padding at the right end")
    stride, auto = a["strides"][-1], a.get("auto_pad", "explicit")
    if auto in ("explicit", "notset"):
        pad = a["pads_begin"][-1] + a["pads_end"][-1]
    elif auto == "valid":
        pad = 0
    elif auto in ("same_upper", "same_lower") and stride == 1:
        pad = extent - 1
    else:
        raise Unsupported(f"{name}: auto_pad {auto} with stride {stride} along the width")
    return extent, stride, pad


def analyse(model, height: int) -> dict[str, list[Width | None]]:
    """Per op (friendly name), per output: its width axis and size formula, or None when it has no width."""
    ordered = model.get_ordered_ops()
    names = [op.get_friendly_name() for op in ordered]
    if len(set(names)) != len(names):
        raise Unsupported("layer names are not unique")
    if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.get_length() != 4:
        raise Unsupported("not one N x C x H x W input")
    probes = [(w, _shapes(model, height, w)) for w in PROBE_WIDTHS]
    (w1, s1), (w2, s2) = probes[:2]
    two = _shapes(model, height, w1, batch=2)
    info: dict[str, list[Width | None]] = {}
    for k, op in enumerate(ordered):
        name, kind = op.get_friendly_name(), op.get_type_name()
        if kind == "Parameter":
            info[name] = [Width(3, 0, 1)]
            continue
        ins = [info[p.get_node().get_friendly_name()][p.get_index()] for p in op.input_values()]
        src = next((f for f in ins if f is not None), None)
        if src is not None and not src.pair and kind not in ALLOWED:
            raise Unsupported(f"{name}: {kind} on a tensor along the width")
        if src is not None and kind in ("Slice", "Gather"):
            _check_off_width(op, kind, src)
        outs: list[Width | None] = []
        for i in range(op.get_output_size()):
            axes = [a for a, (x, y) in enumerate(zip(s1[k][i], s2[k][i])) if x != y]
            if not axes:
                outs.append(None)
                continue
            batched = s1[k][i][:1] == [1] and two[k][i][:1] == [2]
            pair = _attention(op, kind, src, ins, len(s1[k][i]))
            if pair is not None:
                outs.append(Width(pair.axis, pair.c, pair.d, pair.pair, batched))
                continue
            if len(axes) > 1 or src is None:
                raise Unsupported(f"{name} ({kind}): its output's width is not one axis that follows the input's")
            c, d = src.c, src.d
            if kind in CONVS or kind in POOLS:
                if src.axis != len(s1[k][i]) - 1 or axes[0] != src.axis:
                    raise Unsupported(f"{name}: a {kind} whose width is not the last axis")
                extent, stride, pad = _kernel_w(op)
                e = pad - extent + stride
                c, d = c + e * d, d * stride
            outs.append(Width(axes[0], c, d, "", batched))
        info[name] = outs
    for k, op in enumerate(ordered):  # every formula against the shapes at every probe width
        for i, f in enumerate(info[op.get_friendly_name()]):
            if f is not None and any(f.at(w) != s[k][i][f.axis] for w, s in probes):
                raise Unsupported(f"{op.get_friendly_name()}: its width is not (W + {f.c}) // {f.d}")
    return info


def _check_off_width(op, kind: str, src: Width) -> None:
    """A Slice or Gather may touch other axes (v4 splits q, k, v on axis 0), never the width."""
    rank = op.input_value(0).get_partial_shape().rank.get_length()
    axes_in = op.input_value(4 if kind == "Slice" else 2) if op.get_input_size() > (4 if kind == "Slice" else 2) \
        else None
    node = axes_in.get_node() if axes_in is not None else None
    if node is None or node.get_type_name() != "Constant":
        raise Unsupported(f"{op.get_friendly_name()}: a {kind} whose axes are not given")
    if src.axis in {int(a) % rank for a in np.atleast_1d(node.get_data())}:
        raise Unsupported(f"{op.get_friendly_name()}: a {kind} along the width")


# what may be done to attention scores before the softmax, and to its weights after (only what keeps 0 at 0)
PAIR_PASS = {"logits": ("Reshape", "Multiply", "Add", "Divide", "Subtract", "Convert"),
             "weights": ("Reshape", "Multiply", "Divide", "Convert")}


def _zero_stays_zero(fq) -> bool:
    """Whether a FakeQuantize maps 0 to exactly 0: its input and output ranges start at 0 (softmax weights)."""
    lows = [fq.input_value(k).get_node() for k in (1, 3)]
    return all(n.get_type_name() == "Constant" and np.all(n.get_data() == 0) for n in lows)


def _attention(op, kind: str, src: Width | None, ins: list[Width | None], rank: int) -> Width | None:
    """The Width of an output on the attention path written out op by op (ScaledDotProductAttention is masked
    as one op): scores = MatMul(q, k^T) -> [scaled, reshaped] -> Softmax over keys -> MatMul(weights, v).
    None: not on that path. Anything else done with scores is Unsupported."""
    name = op.get_friendly_name()
    if src is not None and src.pair:
        if kind in PAIR_PASS[src.pair]:
            return Width(rank - 1, src.c, src.d, src.pair)
        if kind == "Softmax" and op.get_attributes()["axis"] % rank == rank - 1:
            return Width(rank - 1, src.c, src.d, "weights")
        if kind == "FakeQuantize" and src.pair == "weights" and _zero_stays_zero(op):  # int8 weights: 0 is kept
            return src
        if kind == "MatMul" and src.pair == "weights" and ins[0] is src and ins[1] is not None \
                and not ins[1].pair and not op.get_attributes()["transpose_a"] \
                and not op.get_attributes()["transpose_b"]:
            vrank = op.input_value(1).get_partial_shape().rank.get_length()
            if ins[1].axis == vrank - 2 and (ins[1].c, ins[1].d) == (src.c, src.d):
                return Width(rank - 2, ins[1].c, ins[1].d)  # weighted sum over keys: one row per query
        raise Unsupported(f"{name} ({kind}): attention scores used otherwise than softmax and a weighted sum")
    if kind == "MatMul" and ins[0] is not None and ins[1] is not None:
        a = op.get_attributes()
        ra = op.input_value(0).get_partial_shape().rank.get_length()
        rb = op.input_value(1).get_partial_shape().rank.get_length()
        q, k = ins
        if a["transpose_b"] and not a["transpose_a"] and not q.pair and not k.pair and q.axis == ra - 2 \
                and k.axis == rb - 2 and (q.c, q.d) == (k.c, k.d):
            return Width(rank - 1, k.c, k.d, "logits")
        raise Unsupported(f"{name}: MatMul of two tensors along the width that is not q x k^T")
    return None


def mask_padding(model, height: int):
    """(a padding-blind copy of ``model``, the output's :class:`Width`); raises :class:`Unsupported`."""
    import openvino as ov
    from openvino import opset13 as ops

    out = model.clone()
    info = analyse(out, height)
    i64 = np.int64

    def const(values) -> ov.Node:
        return ops.constant(np.array(values, i64))

    valid_in = ops.parameter([-1], i64, name=INPUT_NAME)
    valid_in.output(0).get_tensor().set_names({INPUT_NAME})

    def valid_at(f: Width):  # [N, 1]: each line's valid size of this tensor's width
        v = ops.divide(ops.add(valid_in, const([f.c])), const([f.d]))  # integer Divide floors (pythondiv)
        return ops.unsqueeze(v, const([1]))

    def columns(tensor, f: Width):  # [1, Wk]: 0 .. padded width - 1
        padded = ops.gather(ops.shape_of(tensor, "i64"), const([f.axis]), ops.constant(i64(0)))
        r = ops.range(ops.constant(i64(0)), ops.squeeze(padded, const([0])), ops.constant(i64(1)), "i64")
        return ops.unsqueeze(r, const([0])), padded

    def keep(tensor, f: Width):  # bool [N, Wk]
        cols, padded = columns(tensor, f)
        return ops.less(cols, valid_at(f)), padded

    def spread(mask, rank: int, axis: int):  # [N, Wk] -> rank dims, N at 0 and Wk at ``axis``
        other = [k for k in range(1, rank) if k != axis]
        return ops.unsqueeze(mask, const(other)) if other else mask

    plan = []
    for op in out.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Parameter", "Constant", "Result"):
            continue
        ins = [(j, p, info[p.get_node().get_friendly_name()][p.get_index()]) for j, p in enumerate(op.input_values())]
        if any(f is not None for _, _, f in ins):
            plan.append((op, kind, ins))
    masked = 0
    for op, kind, ins in plan:
        name = op.get_friendly_name()
        j, src, f = next(x for x in ins if x[2] is not None)
        rank = src.get_partial_shape().rank.get_length()
        mine = info[name][0] if op.get_output_size() else None
        if mine is not None and mine.pair == "logits" and kind == "MatMul":
            # scores over padded keys: -inf, so the softmax gives them weight 0
            if not (mine.batched and ins[1][2].batched):
                raise Unsupported(f"{name}: attention with the batch merged into another axis")
            k_out = ins[1][1]
            m, _ = keep(k_out, ins[1][2])
            add = ops.select(m, ops.constant(np.float32(0)), ops.constant(np.float32(-np.inf)))
            orank = op.output(0).get_partial_shape().rank.get_length()
            add = ops.convert(ops.unsqueeze(add, const(list(range(1, orank - 1)))), op.output(0).get_element_type())
            users = list(op.output(0).get_target_inputs())
            scored = ops.add(op.output(0), add)
            for u in users:
                u.replace_source_output(scored.output(0))
            masked += 1
            continue
        if f.pair or (mine is not None and mine.pair):
            continue  # on the attention path: the scores were masked where they were made
        if kind in CONVS or kind in POOLS:
            if f.axis != rank - 1 or not f.batched:
                raise Unsupported(f"{name}: the width is not the last axis or the batch not the first")
            if kind == "MaxPool" and op.get_output_size() > 1 and op.output(1).get_target_inputs():
                raise Unsupported(f"{name}: a MaxPool whose indices are used")
            extent, _, _ = _kernel_w(op)
            if extent > 1:  # one column per output column: padded columns would reach only padded outputs
                # what the layer's own padding holds: -inf for a max, 0 otherwise (select, not multiply: -inf x 0
                # is NaN). int8: the select goes before the layer's own FakeQuantize, copied for this layer (a
                # FakeQuantize may feed a max and a convolution, which need different fills)
                producer = src.get_node()
                fq = producer if producer.get_type_name() == "FakeQuantize" else None
                data = fq.input_value(0) if fq is not None else src
                m, _ = keep(data, f)
                fill = ops.convert(ops.constant(np.float32(-np.inf if kind == "MaxPool" else 0.0)),
                                   data.get_element_type())
                new = ops.select(spread(m, rank, f.axis), data, fill)
                if fq is not None:
                    a = fq.get_attributes()
                    new = ops.fake_quantize(new, *fq.input_values()[1:], a["levels"], a.get("auto_broadcast", "numpy"))
                op.input(j).replace_source_output(new.output(0))
                masked += 1
            if kind == "MaxPool":  # its padded outputs may be -inf: back to 0 before anything else reads them
                mo = info[name][0]
                users = list(op.output(0).get_target_inputs())
                m, _ = keep(op.output(0), mo)
                zero = ops.convert(ops.constant(np.float32(0)), op.output(0).get_element_type())
                cleared = ops.select(spread(m, rank, mo.axis), op.output(0), zero)
                for u in users:
                    u.replace_source_output(cleared.output(0))
        elif kind == "ReduceMean":
            axes_node = op.input_value(1).get_node()
            if axes_node.get_type_name() != "Constant":
                raise Unsupported(f"{name}: ReduceMean over axes computed at run time")
            axes = {int(a) % rank for a in np.atleast_1d(axes_node.get_data())}
            if f.axis not in axes:
                continue
            if 0 in axes or not op.get_attributes().get("keep_dims", False) or not f.batched:
                raise Unsupported(f"{name}: ReduceMean over the batch or without keep_dims")
            m, padded = keep(src, f)
            zero = ops.convert(ops.constant(np.float32(0)), src.get_element_type())
            op.input(0).replace_source_output(ops.select(spread(m, rank, f.axis), src, zero).output(0))
            # the mean over the padded width times padded / valid is the mean over the valid width
            scale = ops.divide(ops.convert(padded, "f32"), ops.convert(valid_at(f), "f32"))  # [N, 1]
            scale = ops.convert(ops.reshape(scale, const([-1] + [1] * (rank - 1)), False), src.get_element_type())
            users = list(op.output(0).get_target_inputs())
            rescaled = ops.multiply(op.output(0), scale)
            for u in users:
                u.replace_source_output(rescaled.output(0))
            masked += 1
        elif kind == "ScaledDotProductAttention":
            kf = ins[1][2]
            krank = ins[1][1].get_partial_shape().rank.get_length()
            if kf is None or kf.axis != krank - 2 or op.get_attributes().get("causal", False) or not kf.batched:
                raise Unsupported(f"{name}: attention whose keys are not along the width")
            if op.get_input_size() < 4:
                raise Unsupported(f"{name}: attention without a mask input")
            old = op.input_value(3).get_node()
            while old.get_type_name() == "Convert":  # an fp16 IR keeps the zero mask as Convert(Constant)
                old = old.input_value(0).get_node()
            if old.get_type_name() != "Constant" or np.any(old.get_data() != 0):
                raise Unsupported(f"{name}: attention with a mask of its own")
            m, _ = keep(ins[1][1], kf)
            add = ops.select(m, ops.constant(np.float32(0)), ops.constant(np.float32(-np.inf)))
            add = ops.unsqueeze(add, const(list(range(1, krank - 1))))  # [N, 1, .., Tk]
            op.input(3).replace_source_output(ops.convert(add, ins[0][1].get_element_type()).output(0))
            masked += 1
        elif kind == "Softmax" and f.axis == op.get_attributes()["axis"] % rank:
            raise Unsupported(f"{name}: Softmax over the width")
        elif kind == "MVN":
            axes = {int(a) % rank for a in np.atleast_1d(op.input_value(1).get_node().get_data())}
            if f.axis in axes:
                raise Unsupported(f"{name}: MVN over the width")
        elif kind == "MatMul":
            a = op.get_attributes()
            widths = [x[2] for x in ins[:2]]
            if all(w is not None for w in widths):
                continue  # attention, dealt with above (analyse refuses any other)
            ra = ins[0][1].get_partial_shape().rank.get_length()
            rb = ins[1][1].get_partial_shape().rank.get_length()
            if widths[0] is not None and widths[0].axis == (ra - 2 if a["transpose_a"] else ra - 1):
                raise Unsupported(f"{name}: MatMul that sums over the width")
            if widths[1] is not None and widths[1].axis == (rb - 1 if a["transpose_b"] else rb - 2):
                raise Unsupported(f"{name}: MatMul that sums over the width")
    if not masked:
        raise Unsupported("no layer reads across columns: nothing to mask")
    result = model.get_results()[0].input_value(0)
    out_width = info[result.get_node().get_friendly_name()][result.get_index()]
    if out_width is None or out_width.axis != 1:
        raise Unsupported("the output's time steps are not its second axis")
    out.add_parameters([valid_in])
    out.validate_nodes_and_infer_types()
    return out, out_width
