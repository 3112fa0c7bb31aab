"""What the few word crops wider than the minimum width cost: per-line time at 320 px against the others, and
the first call at a new input width against a repeated one (docs/measurements/2026-12-07-width-tail.md).

    PYTHONPATH=. python scripts/width_tail.py words MODEL PRECISION [--set DIR] [--n 300]
    PYTHONPATH=. python scripts/width_tail.py new-width MODEL PRECISION [--widths 30]

``words`` reads a set's first N crops one at a time through ``create_model`` (batch 1, 2 threads, the static
320 copy and the runtime cache off, as users run it) and splits the time per stage and by input width.
``new-width`` compiles the IR as a dynamic-width model with the plugin's runtime cache off and times, after a
warm-up at 320, the first call at each of ``--widths`` new widths (328, 336, ...), a repeat at that width, and
the steady 320 call. Run one configuration per process (the machine alone) and compare ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVALSETS = ROOT.parent / "shared" / "evalsets"


def words(model_name: str, precision: str, folder: Path, n: int) -> None:
    import cv2

    from edgerec import create_model
    from edgerec.data.dataset import read_labelled

    if not folder.is_dir():
        sys.exit(f"{folder}: not found (the evaluation sets live in ../shared/evalsets)")
    model = create_model(model_name, precision=precision, threads=2, progress=False)
    pred = model.predictor
    images = [cv2.imread(str(p)) for p, _ in read_labelled(folder, "any")[:n]]
    stages: list[tuple[float, float, float]] = []
    pred.on_timing = lambda lines, pre, inf, dec: stages.append((pre, inf, dec))
    for _ in range(2):  # the first pass prepares the 320 copy's kernels; the second is timed
        stages.clear()
        t0 = time.perf_counter()
        for img in images:
            pred.recognize([img])
        total = (time.perf_counter() - t0) / len(images) * 1e3
    ms = np.array(stages) * 1e3
    widths = np.array([pred.width_of(img) for img in images])
    print(f"{model_name} {precision}: {total:.3f} ms per line over {len(images)} lines; stage means: preprocess "
          f"{ms[:, 0].mean():.3f}, inference {ms[:, 1].mean():.3f}, decode {ms[:, 2].mean():.3f} ms")
    for label, sel in (("at the minimum width", widths == pred.min_width), ("wider", widths != pred.min_width)):
        if sel.any():
            inf = ms[sel, 1]
            print(f"  {label}: {int(sel.sum())} lines ({len(set(widths[sel]))} widths), inference median "
                  f"{np.median(inf):.3f} ms, mean {inf.mean():.3f}, {inf.sum() / ms[:, 1].sum():.1%} of the time")


def new_width(model_name: str, precision: str, count: int) -> None:
    import openvino as ov

    from edgerec.zoo import home

    xml = home.ir_dir(model_name, precision) / "model.xml"
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY",
           "CPU_RUNTIME_CACHE_CAPACITY": 0}
    req = ov.Core().compile_model(str(xml), "CPU", cfg).create_infer_request()
    rng = np.random.default_rng(0)
    x320 = rng.random((1, 3, 48, 320), dtype=np.float32)
    for _ in range(20):
        req.infer([x320])
    t0 = time.perf_counter()
    for _ in range(100):
        req.infer([x320])
    steady = (time.perf_counter() - t0) * 10
    first, again = [], []
    for w in range(328, 328 + 8 * count, 8):
        x = rng.random((1, 3, 48, w), dtype=np.float32)
        t0 = time.perf_counter()
        req.infer([x])
        t1 = time.perf_counter()
        req.infer([x])
        first.append((t1 - t0) * 1e3)
        again.append((time.perf_counter() - t1) * 1e3)
    print(f"{model_name} {precision} (ONEDNN_PRIMITIVE_CACHE_CAPACITY="
          f"{os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'default')}): steady 320 {steady:.2f} ms; "
          f"first call at a new width median {statistics.median(first):.2f} ms, repeated "
          f"{statistics.median(again):.2f} ms ({statistics.median(first) / steady:.1f}x the 320 call)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("words", "new-width"))
    ap.add_argument("model")
    ap.add_argument("precision", choices=("fp32", "int8", "bf16"))
    ap.add_argument("--set", type=Path, default=EVALSETS / "iiit5k_3000")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--widths", type=int, default=30)
    args = ap.parse_args()
    if args.what == "words":
        words(args.model, args.precision, args.set, args.n)
    else:
        if args.precision == "bf16":
            sys.exit("new-width times the IRs themselves: fp32 or int8")
        new_width(args.model, args.precision, args.widths)


if __name__ == "__main__":
    main()
