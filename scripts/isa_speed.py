#!/usr/bin/env python
"""ms per word crop of fp32 / bf16 / int8, with int8 also as a CPU without VNNI computes it (oneDNN capped at
AVX512_CORE), each configuration in its own process, interleaved over rounds.

    PYTHONPATH=. python scripts/isa_speed.py [--models PP-OCRv4_mobile_rec,PP-OCRv6_tiny_rec] [--rounds 5]
        [--lines 300] [--set ../shared/evalsets/iiit5k_3000] [--threads 2] [--no-cap]
        [--caps fp32@AVX512_CORE_FP16,bf16@AVX512_CORE_FP16,int8@AVX512_CORE_FP16]

Each child runs ``create_model(MODEL, precision=P, threads=N, hint="LATENCY")`` over the set's first ``--lines``
crops at batch 1 through ``recognize_batch`` (preprocess, inference, decode) after one warm-up pass, and prints
its median ms per line. The table gives per model and configuration the median over rounds and the median of the
per-round ratios to fp32. The capped rows run the same int8 IR with the arithmetic of a CPU without VNNI on this
CPU's AVX-512 units: a proxy for such CPUs' int8 / fp32 ratio, not for an AVX2 CPU's milliseconds. Measured with it:
docs/measurements/2026-12-07-int8-without-vnni.md.
``--caps PRECISION@CAP,...`` adds rows run under other oneDNN caps (on an AMX Xeon, ``AVX512_CORE_FP16`` is the
same CPU without AMX); each such row also gets its ratio to fp32 under the same cap where that row is run too.
A model the capped plugin cannot run (OpenVINO 2026.4.1 segfaults on PP-OCRv4 under ``AVX2``) gets no row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (("fp32", ""), ("bf16", ""), ("int8", ""), ("int8", "AVX512_CORE"))


def child(model: str, precision: str, images: Path, lines: int, threads: int) -> None:
    import time

    from edgerec import create_model
    from edgerec.bench.datasets import load_dataset

    crops = load_dataset(images).images[:lines]
    m = create_model(model, precision=precision, threads=threads, hint="LATENCY", progress=False)
    m.predictor.recognize(crops)  # every width prepared
    times = []
    for img in crops:
        t = time.perf_counter()
        m.predictor.recognize([img])
        times.append(time.perf_counter() - t)
    print(json.dumps({"ms": statistics.median(times) * 1e3}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="PP-OCRv4_mobile_rec,PP-OCRv6_tiny_rec")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lines", type=int, default=300)
    ap.add_argument("--set", type=Path, default=ROOT.parent / "shared" / "evalsets" / "iiit5k_3000")
    ap.add_argument("--threads", type=int, default=2, help="inference threads of every configuration")
    ap.add_argument("--no-cap", action="store_true", help="leave out the rows without VNNI")
    ap.add_argument("--caps", default="", help="more rows, PRECISION@ONEDNN_CAP, comma-separated")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], a.set, a.lines, a.threads)
        return 0
    from edgerec.utils.cpu import has_native_bf16, isa_summary

    configs = [c for c in CONFIGS if (c[0] != "bf16" or has_native_bf16()) and not (a.no_cap and c[1])]
    configs += [tuple(c.split("@", 1)) for c in a.caps.split(",") if c]
    print(f"cpu: {isa_summary()}; {a.lines} crops of {a.set.name}, batch 1, {a.threads} threads, {a.rounds} rounds")
    ms: dict = {}
    for _ in range(a.rounds):
        for model in a.models.split(","):
            for precision, cap in configs:
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                env.pop("ONEDNN_MAX_CPU_ISA", None)
                if cap:
                    env["ONEDNN_MAX_CPU_ISA"] = cap
                out = subprocess.run([sys.executable, __file__, "--child", model, precision, "--set", str(a.set),
                                      "--lines", str(a.lines), "--threads", str(a.threads)],
                                     env=env, capture_output=True, text=True)
                value = json.loads(out.stdout.strip().splitlines()[-1])["ms"] if out.returncode == 0 else math.nan
                ms.setdefault((model, precision, cap), []).append(value)
    print("| model | config | ms/line (median of rounds) | x fp32 (median of per-round ratios) | x fp32 under the "
          "same cap | ms/line per round |")
    print("|---|---|---|---|---|---|")
    for (model, precision, cap), values in ms.items():
        if any(math.isnan(v) for v in values):
            print(f"| {model} | {precision} under {cap or 'no cap'} | failed (exit status != 0) | | | |")
            continue
        base = ms[(model, "fp32", "")]
        ratio = statistics.median(b / v for b, v in zip(base, values))
        same = ms.get((model, "fp32", cap)) if cap else None
        same_ratio = (f"{statistics.median(b / v for b, v in zip(same, values)):.2f}x"
                      if same and not any(math.isnan(v) for v in same) else "")
        label = precision + ((" without VNNI" if cap == "AVX512_CORE" else "") + f" ({cap})" if cap else "")
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"| {model} | {label} | {statistics.median(values):.2f} | {ratio:.2f}x | {same_ratio} | {rounds} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
