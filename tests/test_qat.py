"""``edgerec quantize --qat``: fine-tuning the real PP-OCRv4 weights with simulated int8 against the fp32 teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import V4

pytest.importorskip("torch", reason="--qat needs the train extra (PyTorch); make test installs it")


@pytest.fixture(scope="module")
def qat_run(v4, rendered, tmp_path_factory):
    """A tiny QAT + PTQ run: 16 rendered calibration lines, 12 steps (kept small for CI)."""
    from edgerec.quant.calibration import render_lines
    from edgerec.quant.qat import QATConfig, training_onnx
    from edgerec.quant.quantize import EvalSet, QuantizationConfig, quantize_ir

    root = tmp_path_factory.mktemp("qat")
    calib = [img for img, _ in render_lines(v4.info.classes, 16, seed=0)]
    eval_set = EvalSet([img for _, img in rendered], [t for t, _ in rendered], "rendered test lines")
    src = training_onnx(V4, None, v4.info.source_id, root)
    cfg = QuantizationConfig(subset_size=16, max_drop=0.2, search="none", check_without_vnni=False,
                             qat=QATConfig(steps=12, batch_size=4, learning_rate=1e-4, seed=0))
    report = quantize_ir(v4.model_path, calib, eval_set, root / "int8", config=cfg, qat_source=src,
                         progress=False)
    return root / "int8", report


def test_qat_lowers_the_divergence_of_simulated_int8(qat_run):
    _, report = qat_run
    qat = report["qat"]
    assert qat["steps"] == 12 and qat["simulated_convs"] > 10
    assert qat["float_convs"] > 2  # the first and last convolution and the squeeze-excitation gates
    assert qat["divergence_after"] < qat["divergence_before"], qat
    assert report["method"] == "qat+ptq" and report["installed"]


def test_qat_model_keeps_dynamic_width_and_reads_like_fp32(qat_run, v4, rendered):
    import openvino as ov

    from edgerec import create_model

    out, report = qat_run
    xml = out / "model.xml"
    model = ov.Core().read_model(str(xml))
    shape = model.inputs[0].get_partial_shape()
    assert shape[2].get_length() == 48 and shape[3].is_dynamic, shape
    meta = json.loads(model.get_rt_info(["model_info", "quantization"]).astype(str))
    assert meta["method"] == "qat+ptq" and meta["qat"]["steps"] == 12
    int8 = create_model(model_dir=out, progress=False)
    assert int8.precision == "int8"
    imgs = [img for _, img in rendered]
    fp32_texts = [r["rec_text"] for r in v4.predict(imgs)]
    int8_texts = [r["rec_text"] for r in int8.predict(imgs)]
    assert sum(a == b for a, b in zip(fp32_texts, int8_texts)) >= len(imgs) - 1, (fp32_texts, int8_texts)


def test_simulated_int8_is_exact_on_the_grid():
    """The weight rounding QAT trains against is NNCF's weight grid: symmetric, per output channel, ±127."""
    import torch

    from edgerec.quant.qat import _fake_weight

    w = torch.tensor(np.random.default_rng(0).normal(size=(4, 3, 3, 3)), dtype=torch.float32)
    q = _fake_weight(torch, w)
    scale = w.abs().amax(dim=(1, 2, 3)) / 127.0
    steps = q / scale[:, None, None, None]
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert torch.allclose(q.abs().amax(dim=(1, 2, 3)), w.abs().amax(dim=(1, 2, 3)), atol=1e-6)


def test_qat_leaves_the_recipes_float_convolutions_unsimulated(v4, tmp_path):
    """QAT simulates int8 exactly on the convolutions PTQ quantizes: the recipe's float ones (first and last plain
    convolution, squeeze-excitation gates, the stem where asked) are found in torch as the recipe finds them in
    the IR, so training never bends weights for a rounding deployment does not apply."""
    import openvino as ov
    import torch

    from edgerec.quant.qat import FloatLayers, simulated_convs, training_onnx
    from edgerec.quant.recipe import QuantizationConfig, _conv_groups
    from edgerec.train.onnx_torch import load_for_training

    module = load_for_training(training_onnx(V4, None, v4.info.source_id, tmp_path), 48).module
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    ir = ov.Core().read_model(str(v4.model_path))
    nodes = [op for op in ir.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    # both in the ONNX graph's order: pair them, checking that each pair has the same number of weights
    assert len(nodes) == len(convs)
    for conv, node in zip(convs, nodes):
        assert conv.weight.numel() == int(np.prod(node.input_value(1).get_partial_shape().to_shape()))
    names = [n.get_friendly_name() for n in nodes]
    plain = [n.get_friendly_name() for n in nodes if n.get_type_name() == "Convolution"]
    pooled, stem = _conv_groups(ir)
    assert pooled and stem
    for cfg in (QuantizationConfig(), QuantizationConfig(ignore_stem=True), QuantizationConfig(
            ignore_pooled_convs=False, ignore_first_conv=False)):
        keep = cfg.float_layers()
        in_float = set(pooled if keep.pooled else []) | set(stem if keep.stem else [])
        in_float |= ({plain[0]} if keep.first else set()) | ({plain[-1]} if keep.last else set())
        simulated = {id(c) for c in simulated_convs(torch, module, 48, keep)}
        assert {names[i] for i, c in enumerate(convs) if id(c) not in simulated} == in_float, keep
    assert len(simulated_convs(torch, module, 48, FloatLayers(False, False, False, False))) == len(convs)
    for training in (False, True):  # the size probe runs in eval mode and leaves the module's mode as it was
        module.train(training)
        simulated_convs(torch, module, 48)
        assert module.training is training


def test_qat_without_an_onnx_source_is_a_clear_error(v4, rendered, tmp_path):
    from edgerec.quant.qat import QATConfig
    from edgerec.quant.quantize import EvalSet, QuantizationConfig, QuantizationError, quantize_ir

    eval_set = EvalSet([rendered[0][1]], [rendered[0][0]], "one line")
    with pytest.raises(QuantizationError, match="QAT needs the ONNX source"):
        quantize_ir(v4.model_path, [rendered[0][1]] * 2, eval_set, tmp_path / "q",
                    config=QuantizationConfig(subset_size=2, search="none", qat=QATConfig(steps=1),
                                            check_without_vnni=False))
    assert not (tmp_path / "q").exists()


def test_cli_qat_without_torch_says_how_to_install(monkeypatch, tmp_path):
    """--qat on an install without the train extra: one line naming the extra, exit 1, nothing installed."""
    from click.testing import CliRunner

    from edgerec import train
    from edgerec.cli import main
    from edgerec.errors import EdgeRecError

    def no_torch():
        raise EdgeRecError("PyTorch is not installed: pip install 'edgerec[train]'")

    monkeypatch.setattr(train, "require_torch", no_torch)
    res = CliRunner().invoke(main, ["quantize", V4, "--qat", "--qat-steps", "1", "--subset-size", "4",
                                    "--eval-size", "2", "--output", str(tmp_path / "q")])
    assert res.exit_code == 1, res.output
    assert "--qat" in res.output and "edgerec[train]" in res.output
    assert not (tmp_path / "q").exists()
