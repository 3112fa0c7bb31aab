"""Scale benchmark: `edgerec predict DIR --output` over a tree of N crops, against the FLOP floor.

    python scripts/scale_bench.py --n 100000 [--model PP-OCRv4_mobile_rec] [--precision int8] [--pool 300]
                                  [--crops ../shared/evalsets/iiit5k_3000/images] [--ray] [--workdir DIR]

Makes a tree of N crops by hard links to a pool of rendered lines (or real crops with --crops DIR), so a million
costs little disk; runs `edgerec predict TREE --output results.jsonl` in a child process, sampling its RSS; times
the first result of `edgerec predict TREE --json`; with --ray, runs the same through Ray Data on a local cluster
of this machine's cores. Prints lines/s, lines/s per core, peak RSS at 10k/100k/1M results, time to first result,
and the FLOP floor: the model's convolution and matmul FLOPs per line (counted from the IR at each pool crop's own
input width, averaged the way the tree repeats the pool) over the cores' peak (cores x GHz x FLOPs/cycle of the
ISA: 64 for AVX-512, 32 for AVX2, fp32 FMA; an upper bound). int8 is set against the same fp32 floor (VNNI's int8
peak is 4x that): a ratio above 100 % there means int8 beats what fp32 could ever do.
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


def model_gflops_at(xml: Path, widths: list[int]) -> dict[int, float]:
    """FLOPs (2 x MACs) of the IR's convolutions and matmuls for one 48 x w line, at each w of ``widths``."""
    import numpy as np
    import openvino as ov

    model = ov.Core().read_model(xml)
    out = {}
    for width in widths:
        model.reshape({model.inputs[0].any_name: [1, 3, 48, width]})
        out[width] = _count_gflops(model, np)
    return out


def pool_gflops(xml: Path, pool: list[Path], n: int) -> tuple[float, dict[int, int]]:
    """Mean FLOPs per line of a tree that repeats ``pool`` up to ``n`` crops, each at its own input width."""
    import cv2

    from edgerec.runtime.preprocess import target_width

    uses: dict[int, int] = {}
    for k, path in enumerate(pool[: min(n, len(pool))]):
        img = cv2.imread(str(path))
        w = target_width(*img.shape[:2]) if img is not None else 320
        uses[w] = uses.get(w, 0) + len(range(k, n, len(pool)))
    per_width = model_gflops_at(xml, sorted(uses))
    return sum(per_width[w] * c for w, c in uses.items()) / sum(uses.values()), uses


def _count_gflops(model, np) -> float:
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
    last_size, last_growth = -1, 0  # samples after the file's last growth are the exit, not the run
    while child.poll() is None:
        time.sleep(0.5)
        r = rss_mb(child.pid)
        peak = max(peak, r)
        now = time.monotonic() - t0
        if now - last_count >= 5.0 and out.exists():  # exact line count every 5 s
            with open(out, "rb") as fh:
                lines_seen = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
            last_count = now
        size = out.stat().st_size if out.exists() else 0
        if size != last_size:
            last_size, last_growth = size, len(samples) + 1
        if r > 0:  # 0: the child has just exited
            samples.append((now, lines_seen, r))
        for mark in (10_000, 100_000, 1_000_000):
            if mark <= n and mark not in marks and lines_seen >= mark:
                marks[mark] = r
    wall = time.monotonic() - t0
    lines = sum(1 for _ in open(out, "rb")) if out.exists() else 0
    samples = samples[:last_growth] or samples
    for mark in (10_000, 100_000, 1_000_000):  # a mark reached between the last count and the end
        if mark <= lines and mark not in marks:
            marks[mark] = samples[-1][2] if samples else 0.0
    return {"wall_s": wall, "lines": lines, "lines_per_s": lines / wall, "peak_rss_mb": peak,
            "peak_rss_at": marks, "rc": child.returncode, **rss_after_warmup(samples, lines),
            "rss_samples": samples[:: max(1, len(samples) // 200)]}


def rss_after_warmup(samples: list[tuple[float, int, float]], lines: int) -> dict:
    """RSS once warm (after the first 10 % of the results): its band (max - min) and its drift (the mean of the
    last tenth of those samples minus the mean of the first tenth), the two numbers "flat" is judged by."""
    warm = [rss for _, seen, rss in samples if seen >= 0.1 * lines and rss > 0] or [0.0]
    tenth = max(1, len(warm) // 10)
    return {"rss_after_warmup_mb": warm[0], "rss_end_mb": warm[-1], "rss_band_after_warmup_mb": max(warm) - min(warm),
            "rss_drift_after_warmup_mb": sum(warm[-tenth:]) / tenth - sum(warm[:tenth]) / tenth,
            "rss_growth_after_warmup_mb": max(warm) - warm[0]}


def first_result_s(tree: Path, model: str, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "edgerec.cli", "predict", str(tree), "--model", model, "--json", "--quiet", *extra]
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
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    ap.add_argument("--shape-cache", type=int, default=None, help="passed to predict (default: edgerec's)")
    ap.add_argument("--pool", type=int, default=300)
    ap.add_argument("--crops", type=Path, help="use the images of this folder as the pool instead of rendering")
    ap.add_argument("--workdir", type=Path, help="where the tree goes (default: a temporary folder)")
    ap.add_argument("--ray", action="store_true", help="also run through Ray Data on a local cluster")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ray-n", type=int, default=None, help="with --ray: run Ray on the first N inputs only")
    args = ap.parse_args()

    from edgerec.api import create_model

    model = create_model(args.model, precision=args.precision, warmup=False, hint="THROUGHPUT")  # as predict --output
    fp32_xml = create_model(args.model, warmup=False).model_path  # the floor counts the fp32 graph's FLOPs
    peak, peak_how = peak_gflops()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="edgerec-scale-"))
    tree = work / "tree"
    pool_dir = work / "pool"
    if args.crops:
        pool = sorted(p for p in args.crops.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    elif tree.exists():
        pool = sorted(pool_dir.glob("*.png"))
    else:
        pool_dir.mkdir(parents=True, exist_ok=True)
        pool = render_pool(pool_dir, args.pool)
    if not pool:
        sys.exit(f"no crops in {args.crops or pool_dir}")
    if not tree.exists():
        make_tree(tree, args.n, pool)
    gflops, widths = pool_gflops(fp32_xml, pool, args.n)
    props = model.properties()
    print(f"cpu: {isa_summary()}; model {args.model} {args.precision}, ran as: {props.get('precision')} precision, "
          f"{props.get('hint')} hint, {props.get('streams')} streams x {props.get('threads')} threads; "
          f"{args.n} inputs under {tree}; pool {len(pool)} crops, {len(widths)} input widths "
          f"(share at 320: {widths.get(320, 0) / max(1, sum(widths.values())):.1%})")
    extra = ["--batch-size", str(args.batch_size), "--precision", args.precision]
    if args.shape_cache is not None:
        extra += ["--shape-cache", str(args.shape_cache)]
    first = first_result_s(tree, args.model, ["--precision", args.precision])
    res = run_predict(tree, work / "results.jsonl", args.model, args.n, extra)
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
                make_tree(ray_tree, args.ray_n, sorted(p for p in tree.rglob("*") if p.is_file())[: args.ray_n])
        ray_out = work / "ray-out"
        shutil.rmtree(ray_out, ignore_errors=True)  # our own output of an earlier run: counted afresh
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "edgerec.cli", "predict", str(ray_tree), "--model", args.model, "--ray",
                        "--precision", args.precision, "--output", str(ray_out), "--quiet", "--overwrite"],
                       check=False)
        wall = time.monotonic() - t0
        n_ray = sum(sum(1 for _ in open(p, "rb")) for p in ray_out.glob("*.json"))
        rows.append(("ray local", {"wall_s": wall, "lines": n_ray, "lines_per_s": n_ray / wall,
                                   "peak_rss_mb": float("nan"), "peak_rss_at": {}, "rc": 0}))
    print(f"\nFLOP floor: {gflops:.2f} fp32 GFLOP per line (mean over the tree's input widths); "
          f"peak {peak:.0f} GFLOP/s ({peak_how}) -> at most {floor:.0f} lines/s")
    print(f"time to first result: {first:.2f} s\n")
    print(f"RSS (single process): {res['rss_after_warmup_mb']:.0f} MB after warm-up (the first 10 % of the results), "
          f"{res['rss_end_mb']:.0f} MB at the end; after warm-up: band (max - min) "
          f"{res['rss_band_after_warmup_mb']:.1f} MB, drift (last tenth - first tenth) "
          f"{res['rss_drift_after_warmup_mb']:+.1f} MB, largest growth {res['rss_growth_after_warmup_mb']:.1f} MB")
    print("| run | lines | wall s | lines/s | lines/s per core | % of floor | peak RSS MB | RSS at 10k/100k/1M |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        at = " / ".join(f"{r['peak_rss_at'].get(m, float('nan')):.0f}" for m in (10_000, 100_000, 1_000_000))
        print(f"| {name} | {r['lines']} | {r['wall_s']:.1f} | {r['lines_per_s']:.1f} | "
              f"{r['lines_per_s'] / cores:.1f} | {100 * r['lines_per_s'] / floor:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{at} |")
    (work / "scale_bench.json").write_text(json.dumps({"cpu": isa_summary(), "first_result_s": first,
                                                       "gflops_per_line": gflops, "precision": args.precision,
                                                       "widths": widths, "rows": dict(rows)}, indent=1))


if __name__ == "__main__":
    main()
