"""Latency from separate processes: one child per configuration and round, interleaved A B C A B C over rounds.

Why: engines sharing one process share its cores with each other's idle threads (ONNX Runtime's spin after each
run), which made OpenVINO look twice as slow as it is on 2 cores. A child that loads only one configuration runs
on the cores alone; running the configurations in turn, round after round, spreads a busy machine's slow minutes
over all of them, so the per-round ratios hold even where the milliseconds drift. The child is
``edgerec.bench.child`` (its ``timing`` mode); what it measures is said there.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from edgerec.bench.configs import PADDLEX, PEER_ENGINES, Config
from edgerec.errors import EdgeRecError

T = TypeVar("T")
# the configuration every ratio is taken against, per model: edgerec's f32 on OpenVINO
BASELINE = ("fp32", "openvino")


def child_env() -> dict[str, str]:
    """The environment of a child process: this checkout's edgerec first on PYTHONPATH (so that another
    interpreter, PaddleX's virtualenv, imports ``edgerec.bench.child`` from here too)."""
    import edgerec

    root = str(Path(edgerec.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def child_command(spec: dict) -> list[str]:
    """The command of a configuration's child: this interpreter, or for a peer the one its configuration names
    (PaddleX always, RapidOCR when it has a virtualenv of its own; see edgerec.bench.peer_process)."""
    python = sys.executable
    named = (spec.get("engine_options") or {}).get("python")
    if spec.get("engine") == PADDLEX and not named:
        raise EdgeRecError("the PaddleX peer's configuration names no interpreter")
    if named and spec.get("engine") in PEER_ENGINES:
        python = named
    return [str(python), "-m", "edgerec.bench.child"]


def run_child(spec: dict, label: str, timeout: float = 600) -> dict:
    """Run ``python -m edgerec.bench.child`` on ``spec`` (this checkout's edgerec first on the path); its JSON."""
    proc = subprocess.run(child_command(spec), input=json.dumps(spec), capture_output=True, text=True,
                          env=child_env(), timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeRecError(f"child process for {label} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def interleave(items: Sequence[T], rounds: int) -> list[tuple[int, T]]:
    """(round, item) in the order they run: every item once per round, in the same order (A B C A B C)."""
    return [(r, x) for r in range(rounds) for x in items]


def timing_spec(cfg: Config, lines: list[str], threads: int, chunk: int, batch_size: int, repeats: int,
                tesseract_exe: str | None = None) -> dict:
    """The child's JSON spec for timing ``cfg`` on ``lines`` (image paths)."""
    spec = {"mode": "timing", "model": cfg.model, "precision": cfg.precision, "engine": cfg.engine,
            "engine_options": dict(cfg.options), "threads": threads, "lines": lines, "chunk": chunk,
            "batch_size": batch_size, "repeats": repeats}
    if cfg.engine == "tesseract":
        spec["exe"] = tesseract_exe
    return spec


def time_in_processes(configs: list[Config], lines: list[str], threads: int, chunk: int, batch_size: int,
                      rounds: int, repeats: int, tesseract_exe: str | None = None,
                      on_error: Callable[[Config, str], None] | None = None, desc: str = "timing"
                      ) -> dict[Config, list[dict]]:
    """Each configuration's child results, one per round, run interleaved; a configuration whose child fails is
    reported to ``on_error`` once and not run again (the others keep their rounds)."""
    from tqdm import tqdm

    results: dict[Config, list[dict]] = {c: [] for c in configs}
    failed: set[Config] = set()
    for rnd, cfg in tqdm(interleave(configs, rounds), desc=desc, unit="run", file=sys.stderr, leave=False):
        if cfg in failed:
            continue
        try:
            res = run_child(timing_spec(cfg, lines, threads, chunk, batch_size, repeats, tesseract_exe), cfg.label)
        except (EdgeRecError, subprocess.SubprocessError, ValueError) as exc:
            failed.add(cfg)
            if on_error is not None:
                on_error(cfg, f"timing child failed in round {rnd + 1}: {exc}")
            continue
        res["round"] = rnd
        results[cfg].append(res)
    return {c: rs for c, rs in results.items() if c not in failed and rs}


# ------------------------------------------------------------------------------------------------ arithmetic

def round_ratios(these: Sequence[float], base: Sequence[float]) -> list[float]:
    """Per round, this configuration's time over the baseline's time in the same round."""
    if len(these) != len(base):
        raise ValueError(f"ratios need the same rounds on both sides ({len(these)} vs {len(base)})")
    return [a / b for a, b in zip(these, base) if b > 0]


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """Median, min and max (None for no value)."""
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _b1_time(res: dict) -> float:
    """One round's batch-1 seconds for the whole set: the median over its repeats."""
    return statistics.median(res["b1_total_s"])


def summarize(results: dict[Config, list[dict]]) -> dict[Config, dict]:
    """The row fields of each configuration from its rounds: latencies as the median over rounds (with min and max),
    and per-round ratios against the same model's OpenVINO fp32 and ONNX Runtime fp32 (as shipped)."""
    out = {}
    for cfg, rs in results.items():
        n = len(rs[0]["line_ms"])
        p50 = [float(np.percentile(r["line_ms"], 50)) for r in rs]
        p95 = [float(np.percentile(r["line_ms"], 95)) for r in rs]
        b1 = [_b1_time(r) for r in rs]
        s50 = spread(p50)
        row = {"timing": "process", "timing_rounds": len(rs), "timing_repeats": rs[0]["repeats"],
               "timing_pids": [r["pid"] for r in rs], "p50_ms": s50["median"], "p50_ms_min": s50["min"],
               "p50_ms_max": s50["max"], "p50_ms_rounds": p50, "p95_ms": statistics.median(p95),
               "mean_ms": 1000 * statistics.median(b1) / n, "b1_lines_per_s": n / statistics.median(b1),
               "child_precision": rs[0]["precision"]}
        row.update({k: statistics.median(v) if (v := [r["stages1"][k] for r in rs if r["stages1"][k] is not None])
                    else None for k in ("pre_ms", "infer_ms", "decode_ms")})
        b8 = [statistics.median(r["b8_total_s"]) for r in rs if r["b8_total_s"]]
        if b8:
            row.update({"b8_lines_per_s": n / statistics.median(b8), "b8_ms_per_line": 1000 * statistics.median(b8) / n,
                        "b8_avg_batch": rs[0]["b8_avg_batch"]})
            row.update({f"b8_{k}": statistics.median(v) if (v := [r["stages8"][k] for r in rs
                                                                   if r["stages8"][k] is not None]) else None
                        for k in ("pre_ms", "infer_ms", "decode_ms")})
        for key, ref in (("ratio_vs_ov_fp32", Config(cfg.model, *BASELINE)),
                         ("ratio_vs_ort", Config(cfg.model, "fp32", "onnxruntime"))):
            base = results.get(ref)
            ratios = [] if base is None or cfg.engine == "tesseract" else _paired(rs, base)
            s = spread(ratios)
            row.update({key: s["median"], f"{key}_min": s["min"], f"{key}_max": s["max"], f"{key}_rounds": ratios})
        out[cfg] = row
    return out


def _paired(these: list[dict], base: list[dict]) -> list[float]:
    """Ratios over the rounds both configurations ran."""
    by_round = {r["round"]: _b1_time(r) for r in base}
    mine = [r for r in these if r["round"] in by_round]
    return round_ratios([_b1_time(r) for r in mine], [by_round[r["round"]] for r in mine])
