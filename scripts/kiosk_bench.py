"""What a kiosk that embeds edgerec for weeks cares about, measured on this machine.

    python scripts/kiosk_bench.py [overhead|threads|coldstart|rss|capacity|all] [--model NAME] [--n 10000]
                                  [--json OUT]

overhead   ``model.recognize(ndarray)`` vs the raw engine ``infer`` on the same, already preprocessed tensor,
           call by call; and ``recognize`` with an engine that answers at once, which is edgerec's own cost.
threads    lines/s and per-call p50 when 1, 2, 4, 8 threads call one predictor (LATENCY and THROUGHPUT hints).
coldstart  fresh processes: process start -> first text, without the compiled-model cache, with an empty
           cache (first start writes it), with a warm cache, and with a warm cache loading the IR folder.
rss        a fresh process per configuration: RSS after warm-up, then every 1000 predictions up to --n, on
           rendered crops of varying widths and heights; OpenVINO as edgerec sets it up, on one crop size (a
           fixed ROI), OpenVINO with about its own cache defaults (openvino-stock), and ONNX Runtime.
capacity   the speed of other shape-cache sizes (shape_cache; 50 is about OpenVINO's default) next to edgerec's
           default, interleaved in one process.

Uses the model home in EDGEREC_HOME (default ~/.cache/edgerec); the model must be fetched already.
The numbers depend on the machine and its load: compare numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ["Gate", "12", "closed", "出口", "Total", "$3.50", "北京", "Ticket", "No.", "0042", "欢迎", "A-7", "Platform",
         "departs", "14:05", "请", "排队", "Exit", "€2,99", "SALE", "营业时间", "Open", "Mon-Fri", "发票"]


def crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """Rendered lines like a kiosk's crops: 1-8 words, 24-72 px high, so input widths vary from 320 to ~2000."""
    from edgerec.io.fonts import render_line

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 9))))
        fg = tuple(int(v) for v in rng.integers(0, 90, 3))
        bg = tuple(int(v) for v in rng.integers(170, 256, 3))
        out.append(render_line(text, height=int(rng.integers(24, 73)), font_kind="cjk", fg=fg, bg=bg,
                               pad=int(rng.integers(2, 16))))
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# ------------------------------------------------------------------------------------------------------ overhead
def bench_overhead(model_name: str, calls: int) -> dict:
    from edgerec import create_model
    from edgerec.runtime.decode import ctc_greedy_decode
    from edgerec.runtime.preprocess import preprocess_batch

    model = create_model(model_name, progress=False)
    pred = model.predictor
    lines = crops(24, seed=1)
    tensors = [preprocess_batch([c], pred.width_of(c), pred.input_height) for c in lines]
    for c, t in zip(lines, tensors):  # every width once, so no call below pays for a first-time shape
        model.recognize(c)
        pred.engine.infer(t)
    api, raw, diff, pre, dec = [], [], [], [], []
    for k in range(calls):
        i = k % len(lines)
        t0 = time.perf_counter()
        model.recognize(lines[i])
        t1 = time.perf_counter()
        probs = pred.engine.infer(tensors[i])
        t2 = time.perf_counter()
        preprocess_batch([lines[i]], pred.width_of(lines[i]), pred.input_height)
        t3 = time.perf_counter()
        ctc_greedy_decode(probs, pred.classes)
        t4 = time.perf_counter()
        api.append(t1 - t0)
        raw.append(t2 - t1)
        diff.append((t1 - t0) - (t2 - t1))
        pre.append(t3 - t2)
        dec.append(t4 - t3)
    # edgerec's own cost, isolated: the same calls with an engine that hands back the stored output at once
    outputs = {t.shape: pred.engine.infer(t) for t in tensors}

    class Instant:
        def infer(self, batch: np.ndarray) -> np.ndarray:
            return outputs[batch.shape].copy()

    real, pred.engine = pred.engine, Instant()
    stub = []
    try:
        for k in range(calls):
            t0 = time.perf_counter()
            model.recognize(lines[k % len(lines)])
            stub.append(time.perf_counter() - t0)
    finally:
        pred.engine = real
    med = statistics.median
    res = {"recognize_ms": med(api) * 1e3, "engine_infer_ms": med(raw) * 1e3, "paired_diff_ms": med(diff) * 1e3,
           "overhead_ms": med(stub) * 1e3, "preprocess_ms": med(pre) * 1e3, "decode_ms": med(dec) * 1e3,
           "calls": calls, "load_avg": os.getloadavg()[0]}
    print(f"per-call overhead ({calls} calls over {len(lines)} crops; medians; load average {os.getloadavg()[0]:.1f})")
    print(f"  model.recognize(ndarray)            {ms(med(api))}")
    print(f"  engine.infer(same tensor)           {ms(med(raw))}   (paired difference {ms(med(diff))})")
    print(f"  recognize with an instant engine    {ms(med(stub))} = edgerec's overhead, "
          f"{100 * med(stub) / med(raw):.1f}% of inference")
    print(f"    of which preprocess {ms(med(pre))}, CTC decode {ms(med(dec))}")
    return res


# ------------------------------------------------------------------------------------------------------- threads
def bench_threads(model_name: str, calls: int, counts=(1, 2, 4, 8), rounds: int = 3) -> dict:
    from edgerec import create_model

    lines = crops(16, seed=2)
    table: dict = {}
    for hint in ("LATENCY", "THROUGHPUT"):
        model = create_model(model_name, hint=hint, progress=False)
        for c in lines:
            model.recognize(c)
        for _ in range(rounds):
            for n in counts:
                per_thread = max(1, calls // n)
                lat: list[float] = []
                lock = threading.Lock()
                barrier = threading.Barrier(n + 1)

                def work(k: int, per_thread=per_thread, lat=lat, lock=lock, barrier=barrier, model=model) -> None:
                    mine = []
                    barrier.wait()
                    for j in range(per_thread):
                        t = time.perf_counter()
                        model.recognize(lines[(k + j) % len(lines)])
                        mine.append(time.perf_counter() - t)
                    with lock:
                        lat.extend(mine)

                threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
                for t in threads:
                    t.start()
                barrier.wait()
                t0 = time.perf_counter()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                table.setdefault((hint, n), []).append((per_thread * n / wall, statistics.median(lat) * 1e3))
    print(f"\nthreads calling one predictor ({calls} calls per cell, median of {rounds} rounds; "
          f"{os.cpu_count()} cores)")
    print(f"  {'hint':10} {'threads':>7} {'lines/s':>8} {'p50 ms/call':>11}")
    out = {}
    for (hint, n), vals in table.items():
        tput = statistics.median(v[0] for v in vals)
        p50 = statistics.median(v[1] for v in vals)
        out[f"{hint}/{n}"] = {"lines_per_s": tput, "p50_ms": p50}
        print(f"  {hint:10} {n:>7} {tput:>8.1f} {p50:>11.1f}")
    return out


# ----------------------------------------------------------------------------------------------------- coldstart
CHILD = r"""
import json, os, sys, time
t_import = time.time()
import cv2
from edgerec import create_model
t_loaded = time.time()
if os.environ.get("KB_DIR"):  # the IR folder itself: no model card, no source check
    m = create_model(model_dir=os.environ["KB_DIR"], cache=os.environ["KB_CACHE"] == "1", progress=False)
else:
    m = create_model(os.environ["KB_MODEL"], cache=os.environ["KB_CACHE"] == "1", progress=False)
t_created = time.time()
text = m.recognize(cv2.imread(os.environ["KB_IMAGE"]))["rec_text"]
t_text = time.time()
start = float(os.environ["KB_T0"])
print(json.dumps({"to_first_text_s": t_text - start, "python_start_s": t_import - start,
                  "import_s": t_loaded - t_import, "create_model_s": t_created - t_loaded,
                  "first_recognize_s": t_text - t_created, "text": text}))
"""


def bench_coldstart(model_name: str, runs: int) -> dict:
    import cv2

    from edgerec.zoo import home as homes

    real = homes.home()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "line.png"
        cv2.imwrite(str(image), crops(1, seed=3)[0])
        home = Path(tmp) / "home"  # the real models, an empty compiled-model cache
        home.mkdir()
        (home / "models").symlink_to(real / "models")

        def child(cache: bool, ir_dir: bool = False) -> dict:
            env = dict(os.environ, EDGEREC_HOME=str(home), KB_MODEL=model_name, KB_CACHE="1" if cache else "0",
                       KB_IMAGE=str(image), KB_T0=repr(time.time()), PYTHONPATH=str(ROOT),
                       KB_DIR=str(homes.ir_dir(model_name, "fp32")).replace(str(real), str(home)) if ir_dir else "")
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        results: dict[str, list[dict]] = {"no cache": [], "empty cache (writes it)": [], "warm cache": [],
                                          "warm cache, model_dir=IR": []}
        for _ in range(runs):  # interleaved, so a load change hits every mode alike
            results["no cache"].append(child(False))
            cache_dir = home / "cache"
            if cache_dir.exists():
                import shutil

                shutil.rmtree(cache_dir)
            results["empty cache (writes it)"].append(child(True))
            results["warm cache"].append(child(True))
            results["warm cache, model_dir=IR"].append(child(True, ir_dir=True))
    keys = ("to_first_text_s", "python_start_s", "import_s", "create_model_s", "first_recognize_s")
    print(f"\ncold start: fresh process -> first text (median of {runs}; create_model includes the warm-up line)")
    print(f"  {'mode':26} {'total':>7} {'python':>7} {'import':>7} {'create':>7} {'1st rec':>7}")
    out = {}
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in keys}
        out[mode] = med
        print(f"  {mode:26} " + " ".join(f"{med[k]:>6.2f}s" for k in keys))
    return out


# ----------------------------------------------------------------------------------------------------------- rss
RSS_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["KB_ROOT"])
import cv2
import numpy as np
from scripts.kiosk_bench import rss_mb
n, kind = int(os.environ["KB_N"]), os.environ["KB_KIND"]
# the parent rendered the pool to PNG files (rendering here would leave ~180 MB of font and heap behind);
# kept encoded, so the pool does not dwarf the model's memory
folder = os.environ["KB_POOL_DIR"] + ("-fixedroi" if kind.endswith("-fixedroi") else "")
pool = [np.fromfile(os.path.join(folder, f), np.uint8) for f in sorted(os.listdir(folder))]
from edgerec import create_model
base = rss_mb()
engine = kind.split("-")[0]
cap = int(kind.split("-cap-")[1].split("-")[0]) if "-cap-" in kind else None
if kind.startswith("openvino-stock"):  # about OpenVINO's own defaults: 5000 kernels, oneDNN's 1024 primitives
    cap = 50
model = create_model(os.environ["KB_MODEL"], engine=engine, progress=False, shape_cache=cap)
one = cv2.imdecode(pool[0], cv2.IMREAD_COLOR)
for _ in range(5):
    model.recognize(one)
after_warmup = rss_mb()
t = time.perf_counter()
for _ in range(100):
    model.recognize(one)
fixed_ms = (time.perf_counter() - t) * 10
curve, widths, t0, t_last = [], set(), time.perf_counter(), None
for i in range(n):
    if i == n - len(pool):
        t_last = time.perf_counter()
    img = cv2.imdecode(pool[i % len(pool)], cv2.IMREAD_COLOR)
    widths.add(model.predictor.width_of(img))
    model.recognize(img)
    if (i + 1) % 1000 == 0 or i + 1 == n:
        curve.append((i + 1, round(rss_mb(), 1), len(widths)))
end = time.perf_counter()
last = min(n, len(pool))
print(json.dumps({"kind": kind, "before_model_mb": base, "after_warmup_mb": after_warmup, "curve": curve,
                  "lines_per_s": n / (end - t0), "fixed_width_ms": fixed_ms,
                  "last_pass_ms": (end - (t_last or t0)) * 1000 / last}))
"""


def bench_rss(model_name: str, n: int, kinds: list[str], pool: int) -> dict:
    import cv2

    out = {}
    tmp = tempfile.TemporaryDirectory()
    pool_dir = Path(tmp.name) / "pool"
    (pool_dir.parent / "pool-fixedroi").mkdir(parents=True)
    pool_dir.mkdir()
    for i, c in enumerate(crops(pool, seed=4)):
        cv2.imwrite(str(pool_dir / f"{i:05d}.png"), c)
        # a kiosk's fixed ROI: every crop has the same size, so one input width
        cv2.imwrite(str(pool_dir.parent / "pool-fixedroi" / f"{i:05d}.png"), cv2.resize(c, (560, 64)))
    print(f"\nRSS over {n} predictions cycling {pool} rendered crops of varying size (fresh process per row);")
    print("ms/call: one crop repeated (one width) and the last pass over the pool (every width seen before)")
    for kind in kinds:
        env = dict(os.environ, KB_ROOT=str(ROOT), KB_N=str(n), KB_KIND=kind, KB_POOL_DIR=str(pool_dir),
                   KB_MODEL=model_name, PYTHONPATH=str(ROOT))
        if kind.startswith("openvino-stock"):
            env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "1024"
        proc = subprocess.run([sys.executable, "-c", RSS_CHILD], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {kind}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out[kind] = res
        curve = ", ".join(f"{k / 1000:g}k:{mb:.0f}" for k, mb, _ in res["curve"])
        print(f"  {kind:22} after warm-up {res['after_warmup_mb']:.0f} MB -> after {n}: {res['curve'][-1][1]:.0f} MB "
              f"({res['curve'][-1][2]} distinct widths); {res['lines_per_s']:.1f} lines/s overall, "
              f"{res['fixed_width_ms']:.1f} ms/call one width, {res['last_pass_ms']:.1f} ms/call last pass")
        print(f"  {'':22} RSS MB after k lines: {curve}", flush=True)
    tmp.cleanup()
    return out


def bench_capacity(model_name: str, caps: list[int], pool: int, chunk: int = 50, rounds: int = 6) -> dict:
    """Speed cost of a bounded CPU_RUNTIME_CACHE_CAPACITY, interleaved in one process (RSS: see ``rss``)."""
    from edgerec import create_model
    from edgerec.engines.openvino import OpenVINOEngine
    from edgerec.runtime.predictor import RecPredictor
    from edgerec.zoo import home as homes

    ref = create_model(model_name, progress=False)
    lines = crops(pool, seed=4)
    preds = {"default": ref.predictor}
    for cap in caps:
        eng = OpenVINOEngine(ref.model_path, cache_dir=homes.cache_dir(), shape_cache=cap)
        preds[f"cap {cap}"] = RecPredictor(eng, ref.predictor.classes)
    for p in preds.values():  # every width once: what the default cache would keep is in it now
        for c in lines:
            p.recognize([c])
    one = lines[0]
    times: dict[str, dict[str, list[float]]] = {k: {"varying": [], "one width": []} for k in preds}
    pos = 0
    for r in range(rounds):
        order = list(preds) if r % 2 == 0 else list(reversed(preds))
        for name in order:
            t0 = time.perf_counter()
            for j in range(chunk):
                preds[name].recognize([lines[(pos + j) % len(lines)]])
            times[name]["varying"].append((time.perf_counter() - t0) / chunk)
            t0 = time.perf_counter()
            for _ in range(chunk):
                preds[name].recognize([one])
            times[name]["one width"].append((time.perf_counter() - t0) / chunk)
        pos += chunk
    print(f"\nshape_cache: ms/call, interleaved chunks of {chunk} ({rounds} rounds, {pool} crops, "
          f"{len({ref.predictor.width_of(c) for c in lines})} widths)")
    out = {}
    for name, t in times.items():
        out[name] = {k: statistics.median(v) * 1e3 for k, v in t.items()}
        ratio = statistics.median(a / b for a, b in zip(t["varying"], times["default"]["varying"]))
        print(f"  {name:10} varying widths {out[name]['varying']:.1f} ms (x{ratio:.2f} of default), "
              f"one width {out[name]['one width']:.1f} ms")
        out[name]["varying_ratio"] = ratio
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="all",
                    choices=["overhead", "threads", "coldstart", "rss", "capacity", "all"])
    ap.add_argument("--model", default="PP-OCRv4_mobile_rec")
    ap.add_argument("--calls", type=int, default=400, help="calls for overhead and per threads cell")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per cold-start mode")
    ap.add_argument("--n", type=int, default=10000, help="predictions per RSS run")
    ap.add_argument("--pool", type=int, default=1000, help="distinct crops the RSS runs cycle through")
    ap.add_argument("--rss-kinds", default="openvino,openvino-fixedroi,openvino-stock,onnxruntime",
                    help="openvino (edgerec's default shape cache), onnxruntime, openvino-cap-N (shape_cache=N), "
                         "openvino-stock (about OpenVINO's own cache defaults), *-fixedroi")
    ap.add_argument("--json", dest="json_out", help="also write the numbers here")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    res: dict = {"cpu_count": os.cpu_count()}
    if args.what in ("overhead", "all"):
        res["overhead"] = bench_overhead(args.model, args.calls)
    if args.what in ("threads", "all"):
        res["threads"] = bench_threads(args.model, args.calls)
    if args.what in ("coldstart", "all"):
        res["coldstart"] = bench_coldstart(args.model, args.runs)
    if args.what in ("rss", "all"):
        res["rss"] = bench_rss(args.model, args.n, args.rss_kinds.split(","), args.pool)
    if args.what in ("capacity", "all"):
        res["capacity"] = bench_capacity(args.model, [1, 16, 50], min(args.pool, 300))
    if args.json_out:
        from edgerec.utils.fs import atomic_write_text

        atomic_write_text(args.json_out, json.dumps(res, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
