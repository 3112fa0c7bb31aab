#!/usr/bin/env python
"""Where the time of one line goes: OpenVINO's per-layer counters for fp32 / bf16 / int8, and what is outside them.

    PYTHONPATH=. python scripts/profile_layers.py [--model PP-OCRv4_mobile_rec] [--width 320] [--threads N]
                                                   [--iters 200] [--json out.json]

For each installed precision of the model (fp32 IR compiled as f32 and, where the CPU has native bf16, as bf16;
the int8 IR that `edgerec quantize` installed) it compiles the IR with PERF_COUNT on, runs one 1x3x48xW input
``--iters`` times at batch 1 (LATENCY hint, the same thread count for all), and prints:
- ms per call measured around ``infer()`` (median), the sum of the executed layers' counters, and the difference
  (what is outside the kernels: input copy, output fetch, the plugin's per-call work, Python);
- per layer type: ms and the kernel implementations that ran (e.g. ``brgconv_avx512_core_vnni_I8`` vs
  ``jit_avx512_dw_FP32``), so a layer that stayed in float or a kernel that gains nothing shows by name.
Then two settings: ``CPU_DENORMALS_OPTIMIZATION`` on, and the model reshaped to the static input shape (versus the
shipped dynamic width). Last, the cost of a new input width (document lines rarely share one): the median time of
the first call at each of 16 widths never seen before, against the median of repeated calls at one such width,
which is what every call costs when a folder's widths vary more than the shape cache holds. The numbers are from
this process alone; run it on a quiet machine. It prints the CPU and ISA first; it does not quantize or export
(run `edgerec export` / `edgerec quantize` first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _compile(core, model, threads: int, precision_hint: str, extra: dict | None = None):
    cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True,
           "INFERENCE_PRECISION_HINT": precision_hint, **(extra or {})}
    return core.compile_model(model, "CPU", cfg)


def profile(compiled, x: np.ndarray, iters: int) -> dict:
    """Median ms per infer() call, and per layer type the summed counters (median over calls) and kernels."""
    req = compiled.create_infer_request()
    for _ in range(20):
        req.infer({0: x})
    calls, per_type = [], defaultdict(list)
    kernels: dict[str, set] = defaultdict(set)
    for _ in range(iters):
        t0 = time.perf_counter()
        req.infer({0: x})
        calls.append(time.perf_counter() - t0)
        sums: dict[str, float] = defaultdict(float)
        for info in req.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            sums[info.node_type] += info.real_time.total_seconds()
            kernels[info.node_type].add(info.exec_type)
        for k, v in sums.items():
            per_type[k].append(v)
    types = {k: 1000 * statistics.median(v) for k, v in per_type.items()}
    call_ms = 1000 * statistics.median(calls)
    layers_ms = sum(types.values())
    return {"call_ms": call_ms, "layers_ms": layers_ms, "outside_ms": call_ms - layers_ms,
            "types": dict(sorted(types.items(), key=lambda kv: -kv[1])),
            "kernels": {k: sorted(v) for k, v in kernels.items()}}


def new_widths(core, model, threads: int, hint: str, height: int, keep: int) -> dict:
    """Median ms of the first call at 16 new widths (640..1240 px), then of repeated calls at the last one."""
    from edgerec.engines.openvino import KERNELS_PER_SHAPE

    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                 "INFERENCE_PRECISION_HINT": hint,
                                                 "CPU_RUNTIME_CACHE_CAPACITY": keep * KERNELS_PER_SHAPE})
    req = compiled.create_infer_request()
    rng = np.random.default_rng(1)
    first = []
    for w in range(640, 1280, 40):
        x = rng.uniform(-1, 1, (1, 3, height, w)).astype(np.float32)
        t0 = time.perf_counter()
        req.infer({0: x})
        first.append(time.perf_counter() - t0)
    again = []
    for _ in range(20):
        t0 = time.perf_counter()
        req.infer({0: x})
        again.append(time.perf_counter() - t0)
    return {"new_width_ms": 1000 * statistics.median(first), "same_width_ms": 1000 * statistics.median(again)}


def main(argv: list[str] | None = None) -> int:
    import openvino as ov

    from edgerec.utils.cpu import has_native_bf16, isa_summary
    from edgerec.zoo import home as homes
    from edgerec.zoo.export import read_info

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="PP-OCRv4_mobile_rec")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--threads", type=int, default=None, help="default: every usable core")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = ap.parse_args(argv)

    import os

    threads = args.threads or len(os.sched_getaffinity(0))
    print(f"cpu: {isa_summary()}; threads {threads}; {args.model} 1x3x48x{args.width}, {args.iters} calls")
    core = ov.Core()
    runs: list[tuple[str, Path, str, dict | None, bool]] = []
    fp32 = homes.ir_dir(args.model, "fp32") / "model.xml"
    int8 = homes.ir_dir(args.model, "int8") / "model.xml"
    if not fp32.is_file():
        print(f"profile: no fp32 IR at {fp32}: run `edgerec export {args.model}` first", file=sys.stderr)
        return 1
    runs.append(("fp32", fp32, "f32", None, False))
    if has_native_bf16():
        runs.append(("bf16", fp32, "bf16", None, False))
    if int8.is_file():
        runs.append(("int8", int8, "f32", None, False))
    else:
        print(f"profile: no int8 IR at {int8} (`edgerec quantize {args.model}` makes one); int8 left out")
    for name, xml, hint, _, _ in list(runs):
        runs.append((f"{name} denormals-opt", xml, hint, {"CPU_DENORMALS_OPTIMIZATION": True}, False))
        runs.append((f"{name} static shape", xml, hint, None, True))
    height = read_info(fp32).input_height
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, height, args.width)).astype(np.float32)
    out = {}
    for name, xml, hint, extra, static in runs:
        model = core.read_model(str(xml))
        if static:
            model.reshape({model.inputs[0]: ov.PartialShape([1, 3, height, args.width])})
        out[name] = profile(_compile(core, model, threads, hint, extra), x, args.iters)
    base = out["fp32"]["call_ms"]
    print("\n| config | ms/call | x fp32 | layers ms | outside kernels ms |")
    print("|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['call_ms']:.3f} | {base / r['call_ms']:.2f} | {r['layers_ms']:.3f} | "
              f"{r['outside_ms']:.3f} |")
    main_runs = [n for n in ("fp32", "bf16", "int8") if n in out]
    types = sorted({t for n in main_runs for t in out[n]["types"]}, key=lambda t: -out["fp32"]["types"].get(t, 0))
    print("\n| layer type | " + " | ".join(f"{n} ms" for n in main_runs) + " | kernels (" + " / ".join(main_runs)
          + ") |")
    print("|---|" + "---|" * len(main_runs) + "---|")
    for t in types:
        ms = [out[n]["types"].get(t) for n in main_runs]
        if max(m or 0 for m in ms) < 0.005:
            continue
        kern = " / ".join(",".join(out[n]["kernels"].get(t, ["-"])) for n in main_runs)
        print(f"| {t} | " + " | ".join(f"{m:.3f}" if m is not None else "-" for m in ms) + f" | {kern} |")
    shapes = {}
    print("\n| config | first call at a new width, ms (median of 16, 640-1240 px) | repeated call, ms | "
          "new / repeated |")
    print("|---|---|---|---|")
    for name, xml, hint, extra, static in runs:
        if extra or static:
            continue
        r = shapes[name] = new_widths(core, core.read_model(str(xml)), threads, hint, height, 2)
        print(f"| {name} | {r['new_width_ms']:.2f} | {r['same_width_ms']:.2f} | "
              f"{r['new_width_ms'] / r['same_width_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": isa_summary(), "threads": threads, "width": args.width,
                                         "model": args.model, "runs": out, "new_widths": shapes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
