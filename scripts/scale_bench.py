"""Scale benchmark: `edgerec predict DIR --output` over a tree of N crops, against the FLOP floor.

    python scripts/scale_bench.py --n 100000 [--model PP-OCRv4_mobile_rec] [--pool 300] [--ray] [--keep]

Makes a tree of N crops by hard links to a pool of rendered lines (or real crops with --crops DIR), so a million
costs little disk; runs `edgerec predict TREE --output results.jsonl` in a child process, sampling its RSS; times
the first result of `edgerec predict TREE --json`; with --ray, runs the same through Ray Data on a local cluster
of this machine's cores. Prints lines/s, lines/s per core, peak RSS at 10k/100k/1M results, time to first result,
and the FLOP floor: the model's convolution and matmul FLOPs per 48x320 line (counted from the IR) over the cores'
peak (cores x GHz x FLOPs/cycle of the ISA: 64 for AVX-512, 32 for AVX2, fp32 FMA; an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgerec.utils.cpu import cpu_info, isa_summary  # noqa: E402


def model_gflops(xml: Path, width: int = 320) -> float:
    """FLOPs (2 x MACs) of the IR's convolutions and matmuls for one 48 x ``width`` line."""
    import numpy as np
    import openvino as ov

    model = ov.Core().read_model(xml)
    model.reshape({model.inputs[0].any_name: [1, 3, 48, width]})
    macs = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Convolution", "GroupConvolution"):
            w = op.input(1).get_partial_shape().to_shape()
            out = op.output(0).get_partial_shape().to_shape()
            per_out = int(np.prod(w[-3:])) if kind == "Convolution" else int(np.prod(w[-3:]))
            macs += int(np.prod(out)) * per_out
        elif kind == "MatMul":
            a = op.input(0).get_partial_shape().to_shape()
            out = op.output(0).get_partial_shape().to_shape()
            macs += int(np.prod(out)) * int(a[-1] if not op.get_transpose_a() else a[-2])
    return 2 * macs / 1e9


def peak_gflops() -> tuple[float, str]:
    info = cpu_info()
    mhz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = max(mhz, float(line.split(":")[1]))
    except OSError:
        pass
    per_cycle = 64 if info["isa"]["avx512f"] else 32 if info["isa"]["avx2"] else 16
    cores = info["usable_cores"]
    return cores * mhz / 1000 * per_cycle, f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle"


def make_tree(root: Path, n: int, pool: list[Path]) -> None:
    per_dir = 1000
    for k in range(n):
        d = root / f"{k // per_dir:05d}"
        if k % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        os.link(pool[k % len(pool)], d / f"{k:08d}{pool[k % len(pool)].suffix}")


def render_pool(folder: Path, count: int) -> list[Path]:
    import cv2

    from edgerec.io.fonts import render_line

    words = "parcel ticket total price station kiosk archive invoice number order amount date".split()
    out = []
    for k in range(count):
        text = " ".join(words[(k + j) % len(words)] for j in range(1 + k % 6)) + f" {k}"
        p = folder / f"pool{k:04d}.png"
        cv2.imwrite(str(p), render_line(text, height=48, font_kind="latin"))
        out.append(p)
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_predict(tree: Path, out: Path, model: str, n: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "edgerec.cli", "predict", str(tree), "--model", model, "--output", str(out),
           "--quiet", "--overwrite", *extra]
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    marks, peak, samples = {}, 0.0, []
    lines_seen, last_count = 0, 0.0
    while child.poll() is None:
        time.sleep(0.5)
        r = rss_mb(child.pid)
        peak = max(peak, r)
        now = time.monotonic() - t0
        if now - last_count >= 5.0 and out.exists():  # exact line count every 5 s
            with open(out, "rb") as fh:
                lines_seen = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
            last_count = now
        samples.append((now, lines_seen, r))
        for mark in (10_000, 100_000, 1_000_000):
            if mark <= n and mark not in marks and lines_seen >= mark:
                marks[mark] = r
    wall = time.monotonic() - t0
    lines = sum(1 for _ in open(out, "rb")) if out.exists() else 0
    # RSS after warm-up (the first 10 % of the run) against its end: "flat" means this growth is a few MB
    warm = [rss for t, _, rss in samples if t >= 0.1 * wall] or [0.0]
    return {"wall_s": wall, "lines": lines, "lines_per_s": lines / wall, "peak_rss_mb": peak,
            "peak_rss_at": marks, "rc": child.returncode, "rss_after_warmup_mb": warm[0],
            "rss_end_mb": warm[-1], "rss_growth_after_warmup_mb": max(warm) - warm[0],
            "rss_samples": samples[:: max(1, len(samples) // 200)]}


def first_result_s(tree: Path, model: str) -> float:
    cmd = [sys.executable, "-m", "edgerec.cli", "predict", str(tree), "--model", model, "--json", "--quiet"]
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    child.stdout.readline()
    t = time.monotonic() - t0
    child.kill()
    child.wait()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--model", default="PP-OCRv4_mobile_rec")
    ap.add_argument("--pool", type=int, default=300)
    ap.add_argument("--crops", type=Path, help="use the images of this folder as the pool instead of rendering")
    ap.add_argument("--workdir", type=Path, help="where the tree goes (default: a temporary folder)")
    ap.add_argument("--ray", action="store_true", help="also run through Ray Data on a local cluster")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ray-n", type=int, default=None, help="with --ray: run Ray on the first N inputs only")
    args = ap.parse_args()

    from edgerec.api import create_model

    model = create_model(args.model, warmup=False, hint="THROUGHPUT")  # what predict --output runs
    gflops = model_gflops(model.model_path)
    peak, peak_how = peak_gflops()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="edgerec-scale-"))
    tree = work / "tree"
    if not tree.exists():
        pool_dir = work / "pool"
        pool_dir.mkdir(parents=True, exist_ok=True)
        pool = sorted(args.crops.glob("*.png")) + sorted(args.crops.glob("*.jpg")) if args.crops else \
            render_pool(pool_dir, args.pool)
        make_tree(tree, args.n, pool)
    props = model.properties()
    print(f"cpu: {isa_summary()}; model {args.model} fp32, ran as: {props.get('precision')} precision, "
          f"{props.get('hint')} hint, {props.get('streams')} streams x {props.get('threads')} threads; "
          f"{args.n} inputs under {tree}")
    first = first_result_s(tree, args.model)
    res = run_predict(tree, work / "results.jsonl", args.model, args.n, ["--batch-size", str(args.batch_size)])
    cores = cpu_info()["usable_cores"]
    floor = peak / gflops
    rows = [("single process", res)]
    print(f"single process: {res['lines']} lines in {res['wall_s']:.1f} s = {res['lines_per_s']:.1f} lines/s; "
          f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    (work / "scale_bench_single.json").write_text(json.dumps(res, indent=1))
    if args.ray:
        ray_tree = tree
        if args.ray_n and args.ray_n < args.n:  # Ray on the first ray_n inputs (its own tree of hard links)
            ray_tree = work / f"tree-{args.ray_n}"
            if not ray_tree.exists():
                make_tree(ray_tree, args.ray_n, sorted(tree.rglob("*.png"))[: args.ray_n])
        ray_out = work / "ray-out"
        shutil.rmtree(ray_out, ignore_errors=True)  # our own output of an earlier run: counted afresh
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "edgerec.cli", "predict", str(ray_tree), "--model", args.model, "--ray",
                        "--output", str(ray_out), "--quiet", "--overwrite"], check=False)
        wall = time.monotonic() - t0
        n_ray = sum(sum(1 for _ in open(p, "rb")) for p in ray_out.glob("*.json"))
        rows.append(("ray local", {"wall_s": wall, "lines": n_ray, "lines_per_s": n_ray / wall,
                                   "peak_rss_mb": float("nan"), "peak_rss_at": {}, "rc": 0}))
    print(f"\nFLOP floor: {gflops:.2f} GFLOP per 48x320 line; peak {peak:.0f} GFLOP/s ({peak_how}) "
          f"-> at most {floor:.0f} lines/s")
    print(f"time to first result: {first:.2f} s\n")
    print(f"RSS (single process): {res['rss_after_warmup_mb']:.0f} MB after warm-up (10 % of the run), "
          f"{res['rss_end_mb']:.0f} MB at the end, largest growth after warm-up {res['rss_growth_after_warmup_mb']:.1f}"
          " MB")
    print("| run | lines | wall s | lines/s | lines/s per core | % of floor | peak RSS MB | RSS at 10k/100k/1M |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        at = " / ".join(f"{r['peak_rss_at'].get(m, float('nan')):.0f}" for m in (10_000, 100_000, 1_000_000))
        print(f"| {name} | {r['lines']} | {r['wall_s']:.1f} | {r['lines_per_s']:.1f} | "
              f"{r['lines_per_s'] / cores:.1f} | {100 * r['lines_per_s'] / floor:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{at} |")
    (work / "scale_bench.json").write_text(json.dumps({"cpu": isa_summary(), "first_result_s": first,
                                                       "gflops_per_line": gflops, "rows": dict(rows)}, indent=1))


if __name__ == "__main__":
    main()
