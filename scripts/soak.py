#!/usr/bin/env python
"""Soak test: recognize many lines from several threads in one process; watch memory and compare to serial.

    PYTHONPATH=. EDGEREC_HOME=... python scripts/soak.py --lines 100000 --threads 4 [--model NAME]

A pool of distinct rendered lines (English and Chinese, many widths; ``--long-share`` adds lines over 3200 px,
which are read in windows) is first read serially, one line at a time: that is the reference. Then each
thread reads the whole pool once (warm-up: OpenVINO prepares kernels and buffers per input width, per infer
request, so every thread has then seen every width). Then the threads read
``--lines`` lines drawn from the pool, in chunks of ``--chunk`` per ``predict`` call. The script prints
RSS after warm-up and at the end (and every ``--every`` seconds), throughput, and how many results differ from
the serial reference (text exactly, score to 1e-5). The after-warm-up and end readings are taken at rest, after
``trim_heap`` has handed glibc's free lists back to the OS, so they count memory the process holds. It exits 1
when any result differs or RSS grows more than ``--max-growth-mb`` (default 10).
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from pathlib import Path

import numpy as np

WORDS = ("the kiosk reads labels tickets prices parcels names receipts station morning total price item "
         "order number date time open close north south east west platform gate exit entry ABC-123 2026 "
         "$1,299.00 No.42 OpenVINO PaddleX line text window edge model").split()
ZH = "中华人民共和国文字识别模块北京欢迎你上海火车站出口入口价格总计日期时间"


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def make_pool(n: int, seed: int, long_share: float) -> list[np.ndarray]:
    """``n`` lines like a kiosk's crops: mostly 1 to 3 words, some up to 8, a quarter CJK, heights 24 to 64."""
    from edgerec.io.fonts import render_line

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        if rng.random() < long_share:
            text = " ".join(rng.choice(WORDS, int(rng.integers(60, 90))))
            pool.append(render_line(text, height=48, font_kind="latin"))
            continue
        if rng.random() < 0.25:
            text = "".join(rng.choice(list(ZH), int(rng.integers(2, 12))))
            kind = "cjk"
        else:
            text = " ".join(rng.choice(WORDS, int(rng.integers(1, 4) if rng.random() < 0.7 else rng.integers(4, 9))))
            kind = "latin"
        height = int(rng.choice([24, 32, 48, 48, 48, 64]))
        pool.append(render_line(text, height=height, font_kind=kind))
    return pool


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="PP-OCRv4_mobile_rec")
    ap.add_argument("--pool", type=int, default=300, help="distinct lines to draw from")
    ap.add_argument("--chunk", type=int, default=8, help="lines per predict() call")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--long-share", type=float, default=0.0, help="share of pool lines wider than 3200 px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=float, default=30.0, help="print RSS every this many seconds")
    ap.add_argument("--max-growth-mb", type=float, default=10.0)
    args = ap.parse_args()

    from edgerec import create_model
    from edgerec.utils.memory import trim_heap

    t0 = time.perf_counter()
    model = create_model(args.model, progress=False)
    pool = make_pool(args.pool, args.seed, args.long_share)
    widths = {model.predictor.width_of(img) for img in pool}
    print(f"soak: {args.model}, {model.config_summary}; pool of {len(pool)} lines, {len(widths)} distinct input "
          f"widths; loaded in {time.perf_counter() - t0:.1f} s, RSS {rss_mb():.0f} MB", flush=True)

    # serial reference: one line per call, one thread
    t = time.perf_counter()
    reference = [(r["rec_text"], r["rec_score"]) for r in (model.recognize(img) for img in pool)]
    print(f"serial reference: {len(pool)} lines in {time.perf_counter() - t:.1f} s "
          f"({len(pool) / (time.perf_counter() - t):.1f} lines/s)", flush=True)

    lock = threading.Lock()
    state = {"next": 0, "done": 0, "diffs": 0, "errors": 0}
    examples: list[str] = []

    def work(total: int, order: np.ndarray) -> None:
        while True:
            with lock:
                start = state["next"]
                if start >= total:
                    return
                state["next"] = start + args.chunk
            idx = [int(order[k % len(order)]) for k in range(start, min(start + args.chunk, total))]
            try:
                results = list(model.predict([pool[i] for i in idx], batch_size=args.batch_size))
            except Exception as exc:  # count it, keep soaking
                with lock:
                    state["errors"] += len(idx)
                    if len(examples) < 5:
                        examples.append(f"{type(exc).__name__}: {exc}")
                continue
            bad = [(i, r) for i, r in zip(idx, results)
                   if r["rec_text"] != reference[i][0] or abs(r["rec_score"] - reference[i][1]) > 1e-5]
            with lock:
                state["done"] += len(idx)
                state["diffs"] += len(bad)
                for i, r in bad[: max(0, 5 - len(examples))]:
                    examples.append(f"line {i}: {r['rec_text']!r} {r['rec_score']:.6f} vs serial "
                                    f"{reference[i][0]!r} {reference[i][1]:.6f}")

    def run(total: int, order: np.ndarray, label: str) -> float:
        state.update(next=0, done=0)
        threads = [threading.Thread(target=work, args=(total, order), daemon=True) for _ in range(args.threads)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        last = t
        while any(th.is_alive() for th in threads):
            for th in threads:
                th.join(0.5)
            if time.perf_counter() - last >= args.every:
                last = time.perf_counter()
                print(f"  {label}: {state['done']}/{total} lines, {state['done'] / (last - t):.1f} lines/s, "
                      f"RSS {rss_mb():.0f} MB", flush=True)
        return time.perf_counter() - t

    # warm-up: every thread reads the whole pool once, since each thread's infer request keeps per-width state
    def warm_one(seed: int) -> None:
        perm = np.random.default_rng(seed).permutation(len(pool))
        for s in range(0, len(perm), args.chunk):
            list(model.predict([pool[i] for i in perm[s:s + args.chunk]], batch_size=args.batch_size))

    t = time.perf_counter()
    warmers = [threading.Thread(target=warm_one, args=(args.seed + 10 + k,)) for k in range(args.threads)]
    for th in warmers:
        th.start()
    for th in warmers:
        th.join()
    gc.collect()
    trim_heap()
    rss_warm = rss_mb()
    print(f"warm-up: each of {args.threads} threads read the whole pool in {time.perf_counter() - t:.1f} s; "
          f"RSS after warm-up {rss_warm:.0f} MB", flush=True)
    rng = np.random.default_rng(args.seed + 1)

    order = rng.integers(0, len(pool), args.lines)
    took = run(args.lines, order, "soak")
    gc.collect()
    rss_running = rss_mb()
    trim_heap()
    rss_end = rss_mb()
    growth = rss_end - rss_warm
    print(f"\nsoak: {args.lines} lines on {args.threads} threads (chunks of {args.chunk}, batch size "
          f"{args.batch_size}) in {took:.0f} s: {args.lines / took:.1f} lines/s")
    print(f"RSS after warm-up {rss_warm:.0f} MB, at the end {rss_end:.0f} MB: growth {growth:+.1f} MB "
          f"(before the final trim_heap: {rss_running:.0f} MB)")
    print(f"results that differ from the serial reference: {state['diffs']}; failed calls: {state['errors']}")
    for e in examples:
        print("  " + e)
    return 1 if state["diffs"] or state["errors"] or growth > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
