"""What CPU this is: its model name and the ISA features that decide int8 and bf16 speed and accuracy.

One definition, read by the pytest header, every benchmark and the bf16 check: the machines that build and
measure edgerec are not all alike (an AVX2 EPYC without VNNI one day, a Zen 5 with AVX-512 VNNI and BF16 the next).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

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
