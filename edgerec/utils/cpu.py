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


def cpu_info() -> dict:
    """CPU model, ISA feature map, logical and usable core counts."""
    name, flags = _proc_cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"model": name, "isa": {k: k in flags for k in ISA_FLAGS}, "cores": os.cpu_count(), "usable_cores": usable}


def isa_summary() -> str:
    """One line for headers and reports, e.g. ``AMD EPYC, 2 cores, avx2 avx512_vnni avx_vnni avx512_bf16``."""
    info = cpu_info()
    feats = " ".join(k for k in HEADLINE if info["isa"][k]) or "no avx2"
    return f"{info['model']}, {info['usable_cores']} cores, {feats}"


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
    """Whether this CPU runs bf16 natively: OpenVINO's CPU plugin lists "BF16" in OPTIMIZATION_CAPABILITIES and
    /proc/cpuinfo has avx512_bf16 or amx_bf16. Both must agree: OpenVINO would also run bf16 emulated (slower
    than f32), and a flag alone does not say the installed plugin has the kernels. The one bf16 decision."""
    flags = _proc_cpuinfo()[1]
    return any(f in flags for f in BF16_FLAGS) and "BF16" in _openvino_cpu_capabilities()


def require_native_bf16(device: str = "CPU") -> None:
    """Refuse bf16 compute where it is not native: on a device other than the CPU, or a CPU without bf16."""
    if device.upper() != "CPU":
        raise DeviceError(f"precision 'bf16' runs on the CPU only (OpenVINO's CPU plugin), not on device "
                          f"{device!r}: use fp32 or fp16 there")
    if not has_native_bf16():
        name = _proc_cpuinfo()[0]
        raise DeviceError(f"precision 'bf16': this CPU ({name}) has no native bf16 ({' or '.join(BF16_FLAGS)} "
                          "in /proc/cpuinfo and BF16 in OpenVINO's CPU OPTIMIZATION_CAPABILITIES); it would be "
                          "emulated, slower than fp32. Use precision fp32 (exact) or int8 (`edgerec quantize`)")
