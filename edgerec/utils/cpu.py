"""What CPU this is: its model name and the ISA features that decide int8 and bf16 speed and accuracy.

One definition, read by the pytest header, every benchmark and the bf16 check: the machines that build and
measure edgerec are not all alike (an AVX2 EPYC without VNNI one day, a Zen 5 with AVX-512 VNNI and BF16 the next).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from edgerec.errors import DeviceError

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "amx_tile", "amx_int8", "amx_bf16")
# the short list a figure is quoted with, most capable first after avx2
HEADLINE = ("avx2", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> tuple[str, frozenset[str]]:
    name, flags = "", frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return name or platform.processor() or "unknown", flags


# oneDNN's ISA cap: with ONEDNN_MAX_CPU_ISA (or the older DNNL_MAX_CPU_ISA) set, OpenVINO's CPU plugin JITs no
# instruction above it. AVX512_CORE is how a VNNI machine runs int8 as a CPU without VNNI does (u8 x s8 pairs summed
# into int16 with saturation, as on AVX2; docs/measurements/2026-12-07-int8-without-vnni.md). The caps below run
# int8 without VNNI and bf16 emulated; OpenVINO's OPTIMIZATION_CAPABILITIES does not see the cap.
ISA_CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
CAPS_WITHOUT_VNNI = frozenset({"SSE41", "AVX", "AVX2", "AVX512_CORE"})
CAPS_WITHOUT_BF16 = CAPS_WITHOUT_VNNI | {"AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE_VNNI"}
# /proc/cpuinfo flags of an int8 dot-product instruction (u8 x s8 summed in int32, no saturation)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def isa_cap() -> str | None:
    """The oneDNN ISA cap this process runs under (e.g. ``AVX512_CORE``), or None. The first of ISA_CAP_VARS that
    is set decides, as in oneDNN (DEFAULT or ALL: no cap)."""
    for var in ISA_CAP_VARS:
        value = os.environ.get(var, "").strip().upper()
        if value:
            return None if value in ("DEFAULT", "ALL") else value
    return None


def is_x86() -> bool:
    """Whether this is an x86 CPU, the only kind whose int8 arithmetic depends on VNNI here."""
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def int8_vnni() -> bool | None:
    """has_int8_vnni() where it can be told (an x86 CPU whose /proc/cpuinfo flags are readable), else None."""
    return has_int8_vnni() if is_x86() and _proc_cpuinfo()[1] else None


def has_int8_vnni() -> bool:
    """Whether OpenVINO's int8 kernels use a dot-product instruction here: a VNNI flag and no cap below it.

    Without VNNI, int8 results differ (saturating pair sums), so an int8 model's accuracy guard is only exact for
    CPUs on the same side of this line. A cap at AVX2_VNNI keeps only the 256-bit AVX-VNNI (Alder Lake and later),
    so there the avx_vnni flag decides."""
    flags, cap = _proc_cpuinfo()[1], isa_cap()
    if cap in ("AVX2_VNNI", "AVX2_VNNI_2"):
        return "avx_vnni" in flags
    return any(f in flags for f in VNNI_FLAGS) and cap not in CAPS_WITHOUT_VNNI


def cpu_info() -> dict:
    """CPU model, ISA feature map, logical and usable core counts, oneDNN's ISA cap and whether int8 uses VNNI."""
    name, flags = _proc_cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"model": name, "isa": {k: k in flags for k in ISA_FLAGS}, "cores": os.cpu_count(), "usable_cores": usable,
            "isa_cap": isa_cap(), "int8_vnni": int8_vnni()}


def compile_facts() -> dict:
    """What a compiled model, or a timing of one, depends on on this machine besides the model and its settings:
    the CPU's name and ISA flags (a virtual machine may name several CPU generations alike), oneDNN's ISA cap and
    OpenVINO's version. Keys the compiled-model cache's folders and use_hpip's kept timings."""
    info = cpu_info()
    try:
        from openvino import __version__ as version
    except ImportError:  # no openvino: nothing compiled by it to tell apart
        version = ""
    return {"cpu": info["model"], "isa": info["isa"], "isa_cap": info["isa_cap"], "openvino": version}


def isa_summary() -> str:
    """One line for headers and reports, e.g. ``AMD EPYC, 2 cores, avx2 avx512_vnni avx_vnni avx512_bf16``, with
    `` (oneDNN capped at AVX512_CORE)`` appended under a cap."""
    info = cpu_info()
    feats = " ".join(k for k in HEADLINE if info["isa"][k]) or "no avx2"
    cap = f" (oneDNN capped at {info['isa_cap']})" if info["isa_cap"] else ""
    return f"{info['model']}, {info['usable_cores']} cores, {feats}{cap}"


# /proc/cpuinfo flags that mean the CPU computes bf16 dot products in hardware (AVX-512 BF16 on Zen 4/5 and
# Cooper Lake or later Xeons, AMX on Sapphire Rapids and later)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def _openvino_cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's CPU plugin's OPTIMIZATION_CAPABILITIES (empty when OpenVINO cannot say)."""
    try:
        import openvino as ov

        return tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # no openvino, or a plugin that does not expose it: no bf16 claimed
        return ()


def has_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively: OpenVINO's CPU plugin lists "BF16" in OPTIMIZATION_CAPABILITIES,
    /proc/cpuinfo has avx512_bf16 or amx_bf16, and no oneDNN ISA cap is below bf16. All must agree: OpenVINO would
    also run bf16 emulated (under a cap of AVX512_CORE on Zen 5: 10x native bf16's time, ~6x f32's), and a flag
    alone does not say the installed plugin has the kernels. The one bf16 decision."""
    flags = _proc_cpuinfo()[1]
    return (any(f in flags for f in BF16_FLAGS) and isa_cap() not in CAPS_WITHOUT_BF16
            and "BF16" in _openvino_cpu_capabilities())


def require_native_bf16(device: str = "CPU") -> None:
    """Refuse bf16 compute where it is not native: on a device other than the CPU, or a CPU without bf16."""
    if device.upper() != "CPU":
        raise DeviceError(f"precision 'bf16' runs on the CPU only (OpenVINO's CPU plugin), not on device "
                          f"{device!r}: use fp32 or fp16 there")
    if not has_native_bf16():
        name = _proc_cpuinfo()[0]
        if isa_cap() in CAPS_WITHOUT_BF16 and any(f in _proc_cpuinfo()[1] for f in BF16_FLAGS):
            raise DeviceError(f"precision 'bf16': this CPU ({name}) has bf16, but oneDNN is capped at {isa_cap()} "
                              f"({' or '.join(ISA_CAP_VARS)} in the environment), so bf16 would be emulated, "
                              "slower than fp32. Unset the cap, or use precision fp32 or int8")
        raise DeviceError(f"precision 'bf16': this CPU ({name}) has no native bf16 ({' or '.join(BF16_FLAGS)} "
                          "in /proc/cpuinfo and BF16 in OpenVINO's CPU OPTIMIZATION_CAPABILITIES); it would be "
                          "emulated, slower than fp32. Use precision fp32 (exact) or int8 (`edgerec quantize`)")
