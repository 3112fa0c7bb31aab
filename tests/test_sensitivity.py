"""The int8 sensitivity search: layers ranked by the divergence a float layer saves, the top ones kept in float."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def models(v4):
    """The real v4 fp32 IR and a quick PTQ of it (8 rendered lines, fast bias correction: small for CI)."""
    import nncf
    import openvino as ov

    from edgerec.quant.calibration import render_lines
    from edgerec.quant.quantize import QuantizationConfig
    from edgerec.runtime.preprocess import preprocess_batch, target_width

    fp32 = ov.Core().read_model(str(v4.model_path))
    calib = [img for img, _ in render_lines(v4.info.classes, 8, seed=0)]
    tensors = [preprocess_batch([i], target_width(*i.shape[:2], img_h=48), 48) for i in calib]
    kwargs = QuantizationConfig(subset_size=8, fast_bias_correction=True).nncf_kwargs(fp32)
    return fp32, nncf.quantize(fp32, nncf.Dataset(tensors), **kwargs), calib


def _op(model, name):
    return next(op for op in model.get_ordered_ops() if op.get_friendly_name() == name)


def test_a_float_layer_loses_its_fake_quantize_and_int8_weight(models):
    from edgerec.quant.sensitivity import (
        _float_constant,
        _input_fq,
        _int8_weight,
        quantized_layers,
        with_float_layers,
    )

    fp32, q, _ = models
    layers = quantized_layers(q)
    kinds = {k for _, k in layers}
    assert {"Convolution", "GroupConvolution", "MatMul"} <= kinds
    name = next(n for n, k in layers if k == "Convolution")
    op = _op(q, name)
    assert any(_input_fq(op.input(i)) is not None for i in range(op.get_input_size()))
    variant = with_float_layers(q, fp32, [name])
    vop = _op(variant, name)
    assert all(_input_fq(vop.input(i)) is None for i in range(vop.get_input_size()))
    assert not any(_int8_weight(vop.input_value(i)) for i in range(vop.get_input_size()))
    weight = _float_constant(vop.input_value(1))
    assert np.array_equal(weight, _float_constant(_op(fp32, name).input_value(1)))  # fp32's own weight
    assert len(quantized_layers(variant)) == len(layers) - 1  # the others are untouched
    assert len(quantized_layers(q)) == len(layers)  # and the int8 model itself is not changed
    with pytest.raises(KeyError, match="no op named"):
        with_float_layers(q, fp32, ["no-such-op"])


def test_ranking_covers_every_quantized_layer_best_first(models):
    from edgerec.quant.sensitivity import divergence, layer_mac_share, quantized_layers, rank_layers

    fp32, q, calib = models
    some = [n for n, _ in quantized_layers(q)][::9]  # a few layers of each kind keep the test short
    base, ranked = rank_layers(q, fp32, calib[:3], 48, layers=some)
    assert base > 0  # int8 is not fp32
    assert sorted(s.name for s in ranked) == sorted(some) and len(some) >= 4
    gains = [s.gain for s in ranked]
    assert gains == sorted(gains, reverse=True)
    assert all(s.gain == pytest.approx(base - s.divergence) for s in ranked)
    shares = layer_mac_share(fp32, 48)
    assert sum(shares.values()) == pytest.approx(1.0) and all(v > 0 for v in shares.values())
    assert all(s.mac_share == shares[s.name] for s in ranked)
    p = [np.full((1, 2, 3), 1 / 3)]
    assert divergence(p, p) == pytest.approx(0.0)
    assert divergence(p, [np.array([[[0.98, 0.01, 0.01]] * 2])]) > 0.5


def test_the_search_keeps_the_layers_it_ranks_in_float(v4, rendered, tmp_path, monkeypatch):
    """A miss (simulated: the plain PTQ scored 1 pt lower) sends quantize into the search: the installed model's ignored
    scope is the recipe's two convolutions plus the top-ranked layers, and those ops have no FakeQuantize."""
    import openvino as ov

    from edgerec.quant import quantize as q
    from edgerec.quant.calibration import render_lines
    from edgerec.quant.sensitivity import _input_fq

    real_evaluate, calls = q.evaluate, []

    def worse_int8(model, classes, eval_set, height=48, **kw):
        metrics, texts = real_evaluate(model, classes, eval_set, height, **kw)
        calls.append(1)
        return (dict(metrics, acc=metrics["acc"] - 0.01) if len(calls) == 2 else metrics), texts

    monkeypatch.setattr(q, "evaluate", worse_int8)
    calib = [img for img, _ in render_lines(v4.info.classes, 8, seed=0)]
    eval_set = q.EvalSet([img for _, img in rendered[:3]], [t for t, _ in rendered[:3]], "tiny")
    cfg = q.QuantizationConfig(subset_size=8, fast_bias_correction=True, max_drop=0.0, search="sensitivity",
                               search_lines=3, keep_float=(2,), check_without_vnni=False)
    report = q.quantize_ir(v4.model_path, calib, eval_set, tmp_path / "int8", config=cfg, force=True)
    search = report["search"]
    assert report["method"] == "sensitivity" and search["kept_float"] == 2 and len(search["tries"]) == 1
    top = [r["name"] for r in search["ranked"] if r["gain"] > 0][:2]
    assert len(top) == 2
    assert report["ignored_scope"] == search["ignored_scope"]
    fixed = list(cfg.nncf_kwargs(ov.Core().read_model(str(v4.model_path)))["ignored_scope"].names)  # the recipe's
    assert report["ignored_scope"] == fixed + top and len(fixed) == 6  # first, last, 4 SE gates; then the top 2
    installed = ov.Core().read_model(str(tmp_path / "int8" / "model.xml"))
    for name in top:
        op = _op(installed, name)
        assert all(_input_fq(op.input(i)) is None for i in range(op.get_input_size())), name


def test_search_names_are_checked():
    from edgerec.quant.quantize import QuantizationConfig

    with pytest.raises(ValueError, match="search must be one of"):
        QuantizationConfig(search="fast")
