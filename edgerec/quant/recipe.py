"""The INT8 recipe: what ``nncf.quantize`` is told (:class:`QuantizationConfig`), which layers it keeps in float,
found by their input size on the IR, and the model card's part in it (``with_card_recipe``).

Why the defaults are what they are is said field by field below and in :mod:`edgerec.quant.quantize`; the QAT
simulation reads the same float layers (``QuantizationConfig.float_layers``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from edgerec.quant.qat import FloatLayers, QATConfig
from edgerec.runtime.preprocess import MIN_W, check_min_width, check_width_bucket, input_width

log = logging.getLogger(__name__)

SEARCHES = ("sensitivity", "accuracy_control", "none")
OVERFLOW_FIXES = ("first_layer", "enable", "disable")


@dataclass
class QuantizationConfig:
    """Drives ``nncf.quantize``; the defaults are edgerec's measured recipe for PP-OCR recognizers."""

    preset: str = "mixed"                 # mixed | performance
    subset_size: int = 300
    fast_bias_correction: bool = False
    ignore_first_conv: bool = True
    ignore_last_conv: bool = True
    # squeeze-excitation gates: convolutions on a pooled (1x1) input. Their compute is nil, and their rounding
    # scales whole channels of the block they gate: keeping them in float took PP-OCRv4's int8 from -0.83 to +0.07
    # pt on iiit5k and PP-OCRv6_tiny's from -3.60 to -0.80 (docs/measurements/2026-12-06-int8-routes.md)
    ignore_pooled_convs: bool = True
    # the stem and first stage (convolutions on inputs of at least half the line's height, 4-7 % of the multiply-
    # adds): in int8 they cost PP-OCRv5 mobile 1.2-5.7 pt on 4 of 5 sets, in float its acc is within the intervals;
    # on the other models it moves nothing outside them (v6 tiny: both ways), and int8 ran 8 % (v4) to 12 % (v5)
    # slower.
    # None: the model card's `int8.float_stem`, resolved by quantize_model (with_card_recipe); nncf_kwargs reads
    # an unresolved None as off (docs/measurements/2026-12-06-int8-stem.md)
    ignore_stem: bool | None = None
    model_type: str | None = None         # None | transformer
    max_drop: float = 0.005               # absolute, on acc and on norm_edit_dis
    # on a miss: "none" (the default: refuse, so that the command stays within a few minutes), "sensitivity" (rank
    # layers once, keep the top few in float; 3-8 more minutes on 2 cores) or "accuracy_control" (NNCF's search,
    # re-evaluates the eval set per layer; a quarter of an hour on 2 cores)
    search: str = "none"
    search_lines: int = 64                # calibration crops the sensitivity ranking runs on (no labels needed)
    keep_float: tuple[int, ...] = (2, 4, 8)  # top-ranked layers kept in float, tried in this order until one holds
    search_seconds: float = 600.0         # no new try starts after this long in the search
    accuracy_control_iterations: int = 8  # bounds NNCF's search (each iteration evaluates the eval set)
    ignored_names: list[str] = field(default_factory=list)
    # quantization-aware fine-tuning before PTQ (``--qat``; needs the train extra): None = plain PTQ
    qat: QATConfig | None = None
    # the widths calibration and the guard read lines at: those int8 will run with (create_model's min_width and
    # width_bucket). None: PaddleX's, every line at its own width from 320. Padding changes some texts (5-28 % of
    # document lines with 160-px buckets), so a guard at exact widths says little about a bucketed int8. QAT's
    # training batches and the sensitivity ranking's probe lines keep PaddleX's widths: they compare fp32 with
    # int8 on the same tensors, and the guard then reads the result at these widths.
    min_width: int | None = None
    width_bucket: int | None = None
    # NNCF's overflow fix: weights of the convolutions it names quantized to half the int8 range, so that a CPU
    # without VNNI (AVX2, AVX-512 without VNNI: u8 x s8 pairs summed into int16 with saturation) cannot saturate.
    # "first_layer" (NNCF's default) is the first quantized convolution, "enable" every convolution and MatMul
    # (7-bit weights on every CPU), "disable" none
    overflow_fix: str = "first_layer"
    # read the guard's eval lines once more as a CPU without VNNI does (a child process under a oneDNN ISA cap;
    # CPUs with VNNI and AVX-512 only): the report then says whether int8 holds the bound there too
    check_without_vnni: bool = True

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}, not {self.search!r}")
        if self.overflow_fix not in OVERFLOW_FIXES:
            raise ValueError(f"overflow_fix must be one of {', '.join(OVERFLOW_FIXES)}, not {self.overflow_fix!r}")
        if self.min_width is not None:
            self.min_width = check_min_width(self.min_width)
        self.width_bucket = check_width_bucket(self.width_bucket)

    def float_layers(self) -> FloatLayers:
        """The convolutions this recipe keeps in float by rule (not ``ignored_names``), for QAT to leave alone."""
        return FloatLayers(first=self.ignore_first_conv, last=self.ignore_last_conv, pooled=self.ignore_pooled_convs,
                           stem=bool(self.ignore_stem))

    def reading(self) -> dict:
        """RecPredictor's width options: how the guard reads the eval lines."""
        return {"min_width": MIN_W if self.min_width is None else self.min_width, "width_bucket": self.width_bucket}

    def width_of(self, image: np.ndarray, height: int) -> int:
        """The width one line is fed at with ``reading()`` (RecPredictor.width_of's): calibration sees those."""
        r = self.reading()
        return input_width(*image.shape[:2], height, r["min_width"], bucket=r["width_bucket"])

    def nncf_kwargs(self, model) -> dict:
        import nncf

        names = list(self.ignored_names)
        convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
        if convs and self.ignore_first_conv:
            names.append(convs[0])
        if convs and self.ignore_last_conv and convs[-1] not in names:
            names.append(convs[-1])
        if self.ignore_pooled_convs or self.ignore_stem:
            gates, stem = _conv_groups(model)  # one static reshape for both
            chosen = (gates if self.ignore_pooled_convs else []) + (stem if self.ignore_stem else [])
            names += [n for n in chosen if n not in names]
        kwargs = {
            "preset": nncf.QuantizationPreset.MIXED if self.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
            "target_device": nncf.TargetDevice.CPU,
            "subset_size": self.subset_size,
            "fast_bias_correction": self.fast_bias_correction,
        }
        if names:
            kwargs["ignored_scope"] = nncf.IgnoredScope(names=names, validate=False)
        if self.model_type == "transformer":
            kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        if self.overflow_fix != "first_layer":
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

            kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
                overflow_fix=nncf.OverflowFix(self.overflow_fix))
        return kwargs


def pooled_convs(model, height: int = 48, width: int = 320) -> list[str]:
    """Names of the (group) convolutions whose input is 1x1 in space for a ``height`` x ``width`` line: the gates of
    squeeze-excitation blocks, behind a global pooling. [] when the model cannot be given that static shape."""
    return _conv_groups(model, height, width)[0]


def stem_convs(model, height: int = 48, width: int = 320) -> list[str]:
    """Names of the (group) convolutions whose input is at least half the line's height: the stem and the first
    stage of the backbone, before its second downsampling. [] when the model cannot be given a static shape."""
    return _conv_groups(model, height, width)[1]


def _conv_groups(model, height: int = 48, width: int = 320) -> tuple[list[str], list[str]]:
    """(pooled convolutions, stem convolutions) by their input size for one line of the model's static shape,
    ``height`` x ``width`` where it is dynamic; ([], []) when the model takes no such shape."""
    port = model.inputs[0]
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        return [], []
    h = shape[2].get_length() if shape[2].is_static else height
    w = shape[3].get_length() if shape[3].is_static else width
    static = model.clone()
    try:
        static.reshape({port.any_name: [1, 3, h, w]})
    except Exception as exc:  # a model that takes no such shape: no names, the rest of the recipe holds
        log.info("no static shape to find convolutions by their input size: %s", exc)
        return [], []
    pooled, stem = [], []
    for op in static.get_ordered_ops():
        dims = op.get_input_partial_shape(0) if op.get_type_name() in ("Convolution", "GroupConvolution") else None
        if dims is None or not dims.is_static or dims.rank.get_length() != 4:
            continue
        if dims[2].get_length() * dims[3].get_length() == 1:
            pooled.append(op.get_friendly_name())
        if 2 * dims[2].get_length() >= h:
            stem.append(op.get_friendly_name())
    return pooled, stem


def with_card_recipe(config: QuantizationConfig, card) -> tuple[QuantizationConfig, str]:
    """(``config`` with its model-dependent choices left at None taken from ``card``'s ``int8:`` mapping, where the
    stem choice came from). No card (a local model) or no key: the choice is off."""
    if config.ignore_stem is not None:
        return config, "set by the caller"
    choice = (getattr(card, "int8", None) or {}).get("float_stem")
    if choice is None:
        return replace(config, ignore_stem=False), "off by default"
    return replace(config, ignore_stem=bool(choice)), f"the model card of {card.name}"
