"""Baseline benchmark: edgerec OpenVINO fp32 vs ONNX Runtime fp32 on the same ONNX, measured alternately.

    python scripts/bench.py [--model PP-OCRv4_mobile_rec] [--dataset ../shared/evalsets/iiit5k_3000]
                            [--limit N] [--threads N] [--output output/bench]

For every configuration (engine x batch size 1 / 8) it reports acc, norm_edit_dis, the case-insensitive
alphanumeric accuracy, ms/line (p50 and p95 of per-line latency at batch 1; mean at batch 8) and lines/s,
and how often OpenVINO's text equals ONNX Runtime's. The configurations run chunk by chunk in alternating
order in one process, so a noisy shared machine slows them alike: read the ratios, not the milliseconds.
Writes bench.json and bench.md to --output. Skips with a message when the data set is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgerec import __version__, create_model
from edgerec.data.metrics import rec_metrics
from edgerec.io.inputs import load_image
from edgerec.utils.fs import atomic_write_text

DEFAULT_SET = Path(__file__).resolve().parents[1].parent / "shared" / "evalsets" / "iiit5k_3000"


def read_labels(folder: Path, limit: int | None) -> tuple[list[Path], list[str]]:
    paths, labels = [], []
    for line in (folder / "label.txt").read_text("utf-8").splitlines():
        if "\t" not in line:
            continue
        rel, label = line.split("\t", 1)
        paths.append(folder / rel)
        labels.append(label)
    return paths[:limit], labels[:limit]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="PP-OCRv4_mobile_rec")
    ap.add_argument("--dataset", type=Path, default=Path(os.environ.get("EDGEREC_BENCH_SET", DEFAULT_SET)))
    ap.add_argument("--limit", type=int, default=None, help="use the first N lines only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=40, help="lines per alternation step")
    ap.add_argument("--output", type=Path, default=Path("output/bench"))
    args = ap.parse_args(argv)

    if not (args.dataset / "label.txt").is_file():
        print(f"bench: skipped: no evaluation set at {args.dataset} (expected ../shared/evalsets/...)")
        return 0
    paths, labels = read_labels(args.dataset, args.limit)
    images = [load_image(p) for p in paths]
    print(f"bench: {args.model} on {args.dataset.name}: {len(images)} lines; threads={args.threads or 'all'}; "
          f"cpu={cpu_name()} ({os.cpu_count()} cores)", flush=True)

    engines = {
        "openvino": create_model(args.model, engine="openvino", threads=args.threads),
        "onnxruntime": create_model(args.model, engine="onnxruntime", threads=args.threads),
    }
    configs = [(e, b) for b in (1, 8) for e in engines]
    preds = {c: [None] * len(images) for c in configs}
    lat1 = {c: [] for c in configs if c[1] == 1}
    total_s = dict.fromkeys(configs, 0.0)
    for model in engines.values():  # warm up every width bucket the set uses would be unfair; warm one
        model.predictor.recognize(images[:8], 8)

    from tqdm import tqdm

    starts = range(0, len(images), args.chunk)
    for step, start in enumerate(tqdm(starts, desc="bench", unit="chunk", file=sys.stderr)):
        idx = list(range(start, min(start + args.chunk, len(images))))
        order = configs if step % 2 == 0 else configs[::-1]
        for cfg in order:
            engine, bs = cfg
            pred = engines[engine].predictor
            chunk = [images[i] for i in idx]
            if bs == 1:
                out = []
                for img in chunk:
                    t0 = time.perf_counter()
                    out.extend(pred.recognize([img], 1))
                    dt = time.perf_counter() - t0
                    lat1[cfg].append(dt)
                    total_s[cfg] += dt
            else:
                t0 = time.perf_counter()
                out = pred.recognize(chunk, bs)
                total_s[cfg] += time.perf_counter() - t0
            for i, (text, _) in zip(idx, out):
                preds[cfg][i] = text

    rows = []
    for cfg in configs:
        engine, bs = cfg
        m = rec_metrics(preds[cfg], labels)
        row = {"engine": engine, "precision": "fp32", "batch": bs, **{k: round(v, 4) for k, v in m.items()},
               "ms_per_line": round(1000 * total_s[cfg] / len(images), 2),
               "lines_per_s": round(len(images) / total_s[cfg], 1)}
        if bs == 1:
            row["p50_ms"] = round(1000 * float(np.percentile(lat1[cfg], 50)), 2)
            row["p95_ms"] = round(1000 * float(np.percentile(lat1[cfg], 95)), 2)
        ref = preds[("onnxruntime", 1)]
        row["same_text_as_ort_b1"] = round(sum(a == b for a, b in zip(preds[cfg], ref)) / len(ref), 4)
        rows.append(row)
    base = {bs: next(r for r in rows if r["engine"] == "onnxruntime" and r["batch"] == bs) for bs in (1, 8)}
    for r in rows:
        r["time_ratio_vs_ort"] = round(r["ms_per_line"] / base[r["batch"]]["ms_per_line"], 3)

    import cv2
    import onnxruntime
    import openvino

    env = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads or "all",
           "python": platform.python_version(), "edgerec": __version__, "openvino": openvino.__version__,
           "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
           "model": args.model, "dataset": str(args.dataset), "lines": len(images),
           "date": time.strftime("%Y-%m-%d %H:%M")}
    header = ("| engine | prec | batch | acc | norm_edit_dis | alnum acc | ms/line | p50 ms | p95 ms | lines/s "
              "| time vs ORT | same text as ORT b1 |")
    lines = [f"# edgerec baseline: {args.model} on {args.dataset.name} ({len(images)} lines)", "",
             "Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), "", header,
             "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['engine']} | fp32 | {r['batch']} | {100 * r['acc']:.2f} | {r['norm_edit_dis']:.4f} | "
                     f"{100 * r['alnum_acc']:.2f} | {r['ms_per_line']:.2f} | {r.get('p50_ms', '-')} | "
                     f"{r.get('p95_ms', '-')} | {r['lines_per_s']} | {r['time_ratio_vs_ort']:.3f} | "
                     f"{100 * r['same_text_as_ort_b1']:.2f} |")
    table = "\n".join(lines)
    print(table)
    atomic_write_text(args.output / "bench.md", table + "\n")
    atomic_write_text(args.output / "bench.json", json.dumps({"env": env, "rows": rows}, indent=2))
    print(f"\nwrote {args.output}/bench.md and bench.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
