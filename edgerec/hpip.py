"""use_hpip: which installed precision a model runs as on this device, whether an int8 model's accuracy check
holds on this CPU (its quantization report says where and how it was checked), and the width buckets it takes."""

from __future__ import annotations

import logging
from pathlib import Path

from edgerec.engines.base import DeviceSpec, EngineKind
from edgerec.hpip_speed import int8_against_bf16
from edgerec.runtime.preprocess import MIN_W
from edgerec.utils import cpu
from edgerec.zoo.resolve import installed_ir


def hpip_choice(kind: EngineKind, spec: DeviceSpec, model_name, model_dir, precision: str,
                values: dict | None = None) -> tuple[str, dict, str]:
    """use_hpip: the fastest installed configuration for the device -> (precision, engine options, why).

    int8 when installed and its quantization report says it held the accuracy bound (not ``--force``d past it) for
    this CPU's int8 arithmetic (see ``other_arithmetic``), unless the CPU computes bf16 natively and int8 is not
    clearly the faster there (``hpip_speed``: on a Xeon with AMX, bf16 read word crops at 0.97-1.15x int8's
    speed, and it kept more of fp32's texts than int8 on all 25 model x set pairs); else bf16 where the CPU
    computes it natively (issue 12: within the sets' 95 % intervals of fp32, 1.4-1.8x f32 on Zen 5, 1.6-4.2x on
    an AMX Xeon); else the precision asked for. ``values``: the engine options the model will run with (threads,
    hint, cache folder), for the timing."""
    skipped = ""
    bf16_here = ("bf16" in kind.precisions and spec.family == "cpu" and precision in ("fp32", "bf16")
                 and cpu.has_native_bf16())
    if "int8" in kind.precisions:
        int8 = installed_ir(model_name, model_dir, "int8")
        report = int8_report(int8) if int8 is not None else {}
        if report.get("unreadable"):
            skipped = f"{report['unreadable']}, so whether the int8 model held its accuracy bound is unknown; "
        elif report.get("forced"):
            skipped = f"the int8 model in {int8.parent} was forced past its accuracy bound; "
        elif int8 is not None and (other := other_arithmetic(report, spec)):
            skipped = f"the int8 model in {int8.parent} {other}; "
        elif int8 is not None:
            fp32 = installed_ir(model_name, model_dir, "fp32") if bf16_here and kind.fastest is None else None
            verdict = int8_against_bf16(kind, spec, int8, fp32, values or {}) if fp32 is not None else None
            if verdict is not None and not verdict.int8_wins:
                return "bf16", {}, (f"the int8 model in {int8.parent} holds its accuracy bound, but on this CPU "
                                    f"it is not clearly faster than bf16 ({verdict.describe()}), and bf16 reads "
                                    "closer to fp32, so bf16")
            return "int8", {}, (f"int8, the fastest installed, within its accuracy bound ({int8.parent})"
                                + (f"; {verdict.describe()}" if verdict is not None else ""))
    if kind.fastest is not None:
        values, why = kind.fastest(spec)
        return precision, values, why
    no_int8 = skipped.rstrip("; ") or "no int8 model installed (`edgerec quantize` makes one)"
    if bf16_here:
        return "bf16", {}, (f"{no_int8}, and this CPU computes bf16 natively, so bf16 (the fp32 IR with a bf16 "
                            "compute hint: accuracy-neutral within the evaluation sets' resolution, 1.4-4x f32's "
                            "speed)")
    if "int8" in kind.precisions:
        return precision, {}, f"{no_int8}, so {precision}"
    return precision, {}, f"{kind.name} as forced by engine=; nothing to choose"


# the width buckets use_hpip takes on CPU: document lines 1.7-3.7x fp32 at exact widths on an AMX Xeon, where bf16
# alone was 0.8-1.7x (docs/measurements/2026-12-07-amx-doc-lines.md); masked int8 buckets 1.9-2.3x fp32 on Zen 5
# (2026-12-07-exact-buckets.md); words (padded to 320) are untouched
HPIP_WIDTH_BUCKET = 160


def hpip_takes_buckets(kind: EngineKind, spec: DeviceSpec, values: dict) -> bool:
    """Whether use_hpip pads lines wider than the minimum to width buckets: on CPU (measured there), with an engine
    that masks the padding (OpenVINO), unless the caller refused the masks (``mask_padding=False``) or asked for no
    prepared shapes (``shape_cache=0``: buckets would only add padding)."""
    return (spec.family == "cpu" and kind.takes("mask_padding")
            and values.get("mask_padding") is not False and values.get("shape_cache") != 0)


def hpip_bucket_for(model_path, precision: str, min_width: int) -> tuple[int | None, str]:
    """(the width bucket use_hpip runs ``model_path`` with, why): HPIP_WIDTH_BUCKET where the padding can be masked
    (fp32 texts as at exact widths), else None (exact widths: plain padding would change texts). An int8 model
    whose accuracy check read other widths is still bucketed (its accuracy moved within the intervals in every
    measurement), and the note says how to check it as it runs."""
    from edgerec.engines.openvino import unmaskable

    if why := unmaskable(model_path):
        return None, f"exact widths (width buckets cannot mask this model's padding: {why})"
    note = (f"width buckets of {HPIP_WIDTH_BUCKET} px, padding masked (document lines of many widths run on a few "
            "prepared shapes; fp32 reads them as at exact widths, bf16 and int8 a few lines differently; "
            "width_bucket=0 for exact widths)")
    if precision == "int8":
        report = int8_report(Path(model_path))
        config = report.get("config") or {}
        checked, floor = config.get("width_bucket"), config.get("min_width") or MIN_W
        if not report or report.get("unreadable"):
            note += "; the int8 model has no readable quantization report, so how its accuracy was checked is unknown"
        elif checked != HPIP_WIDTH_BUCKET or floor != min_width:
            where = (f"in {checked}-px buckets" if checked else "at exact widths") + (
                f" from a {floor}-px minimum" if floor != min_width else "")
            note += (f"; the int8 model's accuracy check read its lines {where}: `edgerec quantize` with "
                     f"`--width-bucket {HPIP_WIDTH_BUCKET}` (and the --min-width you run) checks it as use_hpip "
                     "runs it")
    return HPIP_WIDTH_BUCKET, note


def int8_report(int8_xml) -> dict:
    """The int8 model's quantization_report.json (``forced``: installed past its bound; ``int8_vnni``: the CPU its
    guard ran on), or {} for an int8 IR made elsewhere: no report to go by."""
    import json

    from edgerec.quant.quantize import REPORT_NAME

    path = int8_xml.parent / REPORT_NAME
    if not path.exists():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"unreadable": f"{path} cannot be read ({exc})"}
    if not isinstance(report, dict):
        return {"unreadable": f"{path} is not a quantization report (not a JSON object)"}
    bad = [k for k in ("without_vnni", "config") if not isinstance(report.get(k) or {}, dict)]
    drop = {} if bad else (report.get("without_vnni") or {}).get("drop") or {}
    if not isinstance(drop, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             for v in drop.values()):
        bad.append("without_vnni.drop")
    if bad:
        return {"unreadable": f"{path} is not a quantization report ({', '.join(bad)} malformed)"}
    return report


def warn_int8_check(int8_xml: Path, model_name: str, spec: DeviceSpec, log: logging.Logger) -> None:
    """An int8 asked for by name runs whatever its report says; say (on ``log``) when nothing vouches for it, when
    it was installed past its bound, or when its check was for another int8 arithmetic than this CPU's."""
    report = int8_report(int8_xml)
    if report.get("unreadable"):
        log.warning("%s int8: %s; its accuracy check is unknown", model_name, report["unreadable"])
    elif report.get("forced"):
        log.info("%s int8: the model in %s was installed with --force past its accuracy bound", model_name,
                 Path(int8_xml).parent)
    elif report and (other := other_arithmetic(report, spec)):
        log.warning("%s int8: the model in %s %s", model_name, Path(int8_xml).parent, other)


def other_arithmetic(report: dict, spec: DeviceSpec) -> str:
    """Why the int8 guard's verdict does not hold on this CPU, or ''.

    Without VNNI, int8 kernels sum u8 x s8 pairs into int16 with saturation, so a model whose guard ran on a CPU
    with VNNI reads differently on one without (PP-OCRv6_tiny: -0.8 pt on iiit5k with VNNI, -6.9 pt without).
    ``edgerec quantize`` on a CPU with VNNI and AVX-512 also reads its eval lines as without VNNI
    (``without_vnni`` in the report), which decides; without that reading, a model quantized with NNCF's overflow
    fix on every layer (``--overflow-fix enable``: nothing can saturate) is trusted. The other way round (checked
    without VNNI, run with it) int8 computes without saturation, as NNCF simulated it. A report from before the CPU
    was recorded is taken at its word. Only x86 CPUs whose flags can be read are concerned."""
    if spec.family != "cpu" or report.get("int8_vnni") is not True or cpu.int8_vnni() is not False:
        return ""
    other = report.get("without_vnni") or {}
    if other.get("checked"):
        if other.get("within_bound"):
            return ""
        drop = other.get("drop") or {}
        return (f"holds its accuracy bound with int8 VNNI but not without it, as on this CPU (acc drop "
                f"{drop.get('acc', float('nan')):+.4f}, NED {drop.get('norm_edit_dis', float('nan')):+.4f} there; "
                "int8 sums saturate without VNNI): quantize with `--overflow-fix enable`")
    if (report.get("config") or {}).get("overflow_fix") == "enable":
        return ""
    return ("was checked on a CPU with int8 VNNI and this one has none (int8 sums saturate without it: "
            "PP-OCRv6_tiny lost 6.9 pt that way), and it was quantized without `--overflow-fix enable`, so its "
            "accuracy check does not hold here")
