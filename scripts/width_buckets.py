#!/usr/bin/env python
"""Width buckets (``create_model(..., width_bucket=N)``) on full evaluation sets: speed, accuracy, changed texts.

    PYTHONPATH=. python scripts/width_buckets.py run MODEL PRECISION BUCKET [--sets ...] [--threads 2]
        [--engine onnxruntime]
    PYTHONPATH=. python scripts/width_buckets.py all --models M1,M2 --precisions fp32,bf16,int8 --buckets 0,160
        [--rounds 1] [--sets ...] [--engines openvino,onnxruntime]
    PYTHONPATH=. python scripts/width_buckets.py table [--models ...] [--precisions]

``run`` loads one configuration with ``create_model`` (bucket 0 = exact widths, PaddleX's; precision ``hpip``:
``use_hpip=True``, whose choice includes width buckets at bucket 0, compared with fp32 at exact widths; batch 1,
LATENCY,
``--threads`` threads, the shape cache as create_model sets it) and reads every line of each set through
``recognize_batch`` (the path users run), timing each set's whole pass (preprocess, inference, decode) after the
load's warm-up line. Texts, seconds, distinct input widths and peak RSS go to ``OUT/MODEL/PRECISION_bBUCKET.json``
(a later round's seconds are appended; another engine than OpenVINO, ``--engine onnxruntime``, goes to
``ENGINE-PRECISION_bBUCKET.json`` and ``all`` runs it at exact widths only, as the peer the buckets are weighed
against). ``all`` runs ``run`` for every configuration, one fresh process each, configurations of a model
interleaved in every round (so a noisy spell hits all of them), and ``table`` prints,
per model and set: acc / NED, the bucket's difference to the exact widths of the same precision with its 95 %
interval (paired over the lines), the share of lines whose text changed, and seconds per set with the ratio to
the exact widths and to fp32 exact (medians over rounds). Timings need a quiet machine; accuracy does not.
Measurement made with it: docs/measurements/2026-12-07-width-buckets.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = "iiit5k_3000,svt_647,en_uw3_70,en_doc_taigi,zh_plates_1000"
MODELS = "PP-OCRv4_mobile_rec,en_PP-OCRv3_mobile_rec,PP-OCRv5_mobile_rec,PP-OCRv6_tiny_rec,PP-OCRv6_small_rec"


def _run(a) -> None:
    from edgerec import create_model
    from edgerec.bench.datasets import load_dataset

    ov = a.engine == "openvino"
    plain = "plain" if a.plain and a.bucket else ""
    out = a.out / a.model / f"{'' if ov else a.engine + '-'}{a.precision}_b{a.bucket}{plain}.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    hpip = a.precision == "hpip"  # use_hpip's choice: precision and, at bucket 0, its width buckets too
    model = create_model(a.model, precision=None if hpip else a.precision, use_hpip=hpip,
                         width_bucket=a.bucket or None, threads=a.threads,
                         engine=a.engine, hint="LATENCY" if ov else None, batch_size=1, progress=False,
                         engine_options={"mask_padding": False} if plain else None)
    res = {"model": a.model, "precision": a.precision if ov else f"{a.engine}-{a.precision}",
           "bucket": f"{a.bucket}{plain}" if plain else (model.predictor.width_bucket or 0), "engine": a.engine,
           "config": model.config_summary, "sets": old.get("sets", {})}
    for name in a.sets.split(","):
        ds = load_dataset(a.evalsets / name)
        t0 = time.perf_counter()
        texts = [t for t, _ in model.recognize_batch(ds.images, batch_size=1)]
        dt = time.perf_counter() - t0
        prev = res["sets"].get(name, {})
        if prev and prev["texts"] != texts:
            print(f"{name}: texts differ from the previous round's", file=sys.stderr)
        res["sets"][name] = {"texts": texts, "labels": ds.labels, "seconds": prev.get("seconds", []) + [dt],
                             "widths": len({model.predictor.width_of(i) for i in ds.images})}
        print(f"{a.model} {a.engine} {a.precision} b{a.bucket} {name}: {dt:.2f} s", flush=True)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res))
    tmp.replace(out)


def _all(a) -> None:
    for r in range(a.rounds):
        for model in a.models.split(","):
            for engine in a.engines.split(","):
                ov = engine == "openvino"
                for precision in a.precisions.split(",") if ov else ["fp32"]:
                    for bucket in a.buckets.split(",") if ov else ["0"]:
                        cmd = [sys.executable, __file__, "run", model, precision, bucket.removesuffix("plain"),
                               "--sets", a.sets, "--threads", str(a.threads), "--out", str(a.out), "--evalsets",
                               str(a.evalsets), "--engine", engine]
                        if bucket.endswith("plain"):
                            cmd.append("--plain")
                        print(f"round {r + 1}: {' '.join(cmd[2:])}", flush=True)
                        subprocess.run(cmd, check=True)


def _table(a) -> None:
    from edgerec.data.metrics import paired_difference, rec_metrics

    for model in a.models.split(","):
        runs = {p.stem: json.loads(p.read_text()) for p in sorted((a.out / model).glob("*.json"))}
        if not runs:
            continue
        print(f"\n## {model}\n")
        print("| precision | bucket | set | widths | acc / NED % | Δ acc / Δ NED vs exact (pt) | texts changed | "
              "s per set | x exact | x fp32 exact | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for run in runs.values():
            precision = run["precision"]
            base = runs.get("fp32_b0")
            exact = base if precision == "hpip" else runs.get(f"{precision}_b0")  # use_hpip: against fp32's
            for name, s in run["sets"].items():
                m = rec_metrics(s["texts"], s["labels"])
                sec = statistics.median(s["seconds"])
                cells = [precision, str(run["bucket"] or "exact"), name, str(s["widths"]),
                         f"{100 * m['acc']:.2f} / {100 * m['norm_edit_dis']:.2f}"]
                if (run["bucket"] or precision == "hpip") and exact and name in exact["sets"]:
                    e = exact["sets"][name]
                    d = paired_difference(e["texts"], s["texts"], s["labels"])
                    changed = sum(x != y for x, y in zip(e["texts"], s["texts"]))
                    acc, ned = d["acc"], d["norm_edit_dis"]
                    cells += [f"{100 * acc['delta']:+.2f} ±{100 * (acc['ci95'] or 0):.2f} / "
                              f"{100 * ned['delta']:+.2f} ±{100 * (ned['ci95'] or 0):.2f}",
                              f"{changed} ({100 * changed / len(s['texts']):.1f} %)",
                              f"{sec:.2f}", f"{statistics.median(e['seconds']) / sec:.2f}x"]
                else:
                    cells += ["–", "–", f"{sec:.2f}", "–"]
                if base and name in base["sets"]:
                    cells.append(f"{statistics.median(base['sets'][name]['seconds']) / sec:.2f}x")
                else:
                    cells.append("–")
                cells.append(f"{run.get('peak_rss_mb', 0):.0f}")
                print("| " + " | ".join(cells) + " |")


def _precisions(a) -> None:
    """bf16 and int8 against fp32, all at exact widths: the installed models' accuracy cost, on the same runs."""
    from edgerec.data.metrics import paired_difference, rec_metrics

    sets = SETS.split(",")
    print("| model | precision | " + " | ".join(sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for model in a.models.split(","):
        runs = {p.stem: json.loads(p.read_text()) for p in sorted((a.out / model).glob("*_b0.json"))}
        base = runs.get("fp32_b0")
        if not base:
            continue
        for precision in ("fp32", "bf16", "int8"):
            run = runs.get(f"{precision}_b0")
            if not run:
                continue
            cells = []
            for name in sets:
                f, s = base["sets"].get(name), run["sets"].get(name)
                if not (f and s):
                    cells.append("–")
                elif precision == "fp32":
                    m = rec_metrics(f["texts"], f["labels"])
                    cells.append(f"{100 * m['acc']:.2f} / {100 * m['norm_edit_dis']:.2f}")
                else:
                    d = paired_difference(f["texts"], s["texts"], s["labels"])
                    same = sum(x == y for x, y in zip(f["texts"], s["texts"])) / len(s["texts"])
                    acc, ned = d["acc"], d["norm_edit_dis"]
                    cells.append(f"{100 * acc['delta']:+.2f} ±{100 * (acc['ci95'] or 0):.2f} / "
                                 f"{100 * ned['delta']:+.2f} ±{100 * (ned['ci95'] or 0):.2f} ({100 * same:.1f} %)")
            print(f"| {model} | {precision} | " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("model")
    run.add_argument("precision")
    run.add_argument("bucket", type=int, help="0: exact widths")
    every = sub.add_parser("all")
    every.add_argument("--models", default=MODELS)
    every.add_argument("--precisions", default="fp32,int8")
    every.add_argument("--buckets", default="0,160", help="0: exact widths; 160plain: pad without masking")
    every.add_argument("--rounds", type=int, default=1)
    every.add_argument("--engines", default="openvino",
                       help="comma-separated; another engine than openvino runs fp32 at exact widths only")
    run.add_argument("--engine", default="openvino")
    run.add_argument("--plain", action="store_true",
                     help="pad without masking (mask_padding off): the buckets as they were before 2026-12-07")
    table = sub.add_parser("table")
    table.add_argument("--models", default=MODELS)
    table.add_argument("--precisions", action="store_true",
                       help="instead: bf16 and int8 against fp32 at exact widths (acc / NED deltas, same-text share)")
    for p in (run, every, table):
        p.add_argument("--out", type=Path, default=Path("/tmp/width-buckets"))
        p.add_argument("--evalsets", type=Path, default=ROOT.parent / "shared" / "evalsets")
    for p in (run, every):
        p.add_argument("--sets", default=SETS)
        p.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if a.cmd == "table" and a.precisions:
        _precisions(a)
        return
    {"run": _run, "all": _all, "table": _table}[a.cmd](a)


if __name__ == "__main__":
    main()
