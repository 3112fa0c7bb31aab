#!/usr/bin/env python
"""An experiment, not a shipped route: `edgerec quantize --qat`'s simulated int8 deployed exactly as trained.

    PYTHONPATH=. python scripts/qat_deployed.py MODEL [--steps 200] [--calibration DIR] [--lines 300]
        [--output /tmp/int8-variants/MODEL/qat-deployed] && \
    PYTHONPATH=. python scripts/int8_variants.py MODEL qat-deployed \
        --xml /tmp/int8-variants/MODEL/qat-deployed/model.xml

Why: NNCF's int8 of the QAT-tuned weights came out further from fp32 than plain PTQ, which could be NNCF
re-deriving ranges and bias corrections the training never saw. This takes that out: it fine-tunes as
``--qat`` does (``edgerec.quant.qat.train_simulated``; ``--steps 0`` skips training), then builds the int8 graph
by hand from the model's fp32 IR with the simulation's own quantizers: every simulated convolution gets a
FakeQuantize on its input with the training's range (asymmetric u8) and int8 weights with per-output-channel
symmetric scales (taken on the IR's weights, which may have a BatchNorm folded in: per-channel symmetric rounding
does not change under a per-channel scale, so this is the rounding the training saw). Nothing else is quantized
and no bias is corrected. Result (docs/measurements/2026-12-06-int8-routes.md): no better than plain PTQ, so it
is not in the package. That run simulated the squeeze-excitation gates too; since 2026-12-07 the simulation, and so
this script, leaves them in float as the recipe does (``FloatLayers()``: the card's float stem is not applied here).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def deploy(model, rec, convs: list, ranges: dict) -> int:
    """Insert the simulation's quantizers into ``model`` (an ov.Model of the same ONNX); returns how many convs."""
    import openvino as ov
    import openvino.opset13 as ops
    import torch

    from edgerec.quant.qat import _act_params

    modules = [m for m in rec.module.modules() if isinstance(m, torch.nn.Conv2d)]
    nodes = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    if len(nodes) != len(modules):
        raise SystemExit(f"{len(nodes)} convolutions in the IR, {len(modules)} in the torch module: cannot pair them")
    simulated = {id(c) for c in convs}
    done = 0
    for module, node in zip(modules, nodes):  # both in the ONNX graph's topological order
        wshape = tuple(node.input_value(1).get_partial_shape().to_shape())
        if int(np.prod(wshape)) != module.weight.numel():
            raise SystemExit(f"{node.get_friendly_name()}: weights {wshape} do not pair with "
                             f"{tuple(module.weight.shape)}")
        if id(module) not in simulated:
            continue
        const = node.input_value(1).get_node()
        if const.get_type_name() != "Constant":
            raise SystemExit(f"{node.get_friendly_name()}: weights come from {const.get_type_name()}, not a Constant")
        w = const.get_data().astype(np.float32).reshape(module.weight.shape)
        scale, zero = _act_params(*ranges[id(module)])
        lo, hi = ops.constant(np.float32(-zero * scale)), ops.constant(np.float32((255 - zero) * scale))
        fq = ops.fake_quantize(node.input_value(0), lo, hi, lo, hi, 256)
        node.input(0).replace_source_output(fq.output(0))
        s = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(1), 1e-8) / 127.0
        q = np.clip(np.round(w / s.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8).reshape(wshape)
        s_shape = (w.shape[0],) + (1,) * (len(wshape) - 1)
        scales = ops.constant(s.astype(np.float32).reshape(s_shape))
        wq = ops.multiply(ops.convert(ops.constant(q), ov.Type.f32), scales)
        node.input(1).replace_source_output(wq.output(0))
        done += 1
    model.validate_nodes_and_infer_types()
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--calibration", type=Path, default=None, help="a labelled folder (labels unused)")
    ap.add_argument("--lines", type=int, default=300)
    ap.add_argument("--output", type=Path, default=None)
    a = ap.parse_args(argv)

    import openvino as ov
    import torch

    from edgerec.bench.datasets import load_dataset
    from edgerec.quant.calibration import render_lines
    from edgerec.quant.qat import (
        QATConfig,
        activation_ranges,
        calibration_batches,
        simulated_convs,
        train_simulated,
        training_onnx,
    )
    from edgerec.train.onnx_torch import load_for_training
    from edgerec.zoo.export import read_info
    from edgerec.zoo.resolve import resolve_model

    fp32_xml = resolve_model(a.model, None, "fp32", progress=False).path
    info = read_info(fp32_xml)
    height = info.input_height
    if a.calibration:
        calib = load_dataset(a.calibration).images[:a.lines]
    else:
        calib = [img for img, _ in render_lines(info.classes, a.lines, seed=0)]
    out = a.output or Path("/tmp/int8-variants") / a.model / ("qat-deployed" if a.steps else "sim-deployed")
    with tempfile.TemporaryDirectory() as scratch:
        src = training_onnx(a.model, None, info.source_id, Path(scratch))
        if a.steps:
            rec, convs, ranges, report = train_simulated(src, calib, height, QATConfig(steps=a.steps))
            print({k: report[k] for k in ("divergence_before", "divergence_after", "seconds")})
        else:
            torch.manual_seed(0)
            rec = load_for_training(src, height)
            convs = simulated_convs(torch, rec.module, height)
            rec.module.eval()
            ranges = activation_ranges(torch, rec.module, convs, calibration_batches(torch, calib, height, 8))
    model = ov.Core().read_model(str(fp32_xml))  # keeps the fp32 IR's metadata (charset, height)
    done = deploy(model, rec, convs, ranges)
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
    print(f"{done} convolutions with the simulation's quantizers -> {out / 'model.xml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
