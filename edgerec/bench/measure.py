"""Measuring in this process: input-shape plans, texts for accuracy, the cold-start child, and (biased; only with
``rounds=0``) the timed alternation. Honest latency comes from separate processes: edgerec.bench.timing."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerec.bench.configs import Config
from edgerec.bench.datasets import Dataset
from edgerec.bench.runners import Runner
from edgerec.bench.timing import BASELINE, run_child

# ------------------------------------------------------------------------------------------------ shapes

def batch_groups(widths: Sequence[int], chunk: int, batch_size: int) -> list[list[int]]:
    """The index batches ``RecPredictor.recognize`` forms when fed the set ``chunk`` lines at a time."""
    out = []
    for start in range(0, len(widths), chunk):
        by_width: dict[int, list[int]] = {}
        for i in range(start, min(start + chunk, len(widths))):
            by_width.setdefault(widths[i], []).append(i)
        for idxs in by_width.values():
            out.extend(idxs[s:s + batch_size] for s in range(0, len(idxs), batch_size))
    return out


def shape_plan(widths: Sequence[int], chunk: int, batch_size: int) -> list[tuple[list[int], int]]:
    """One (line indices, width) batch per distinct input shape the measurement uses, at batch 1 and batch_size."""
    seen: set[tuple[int, int]] = set()
    plan = []
    for i, w in enumerate(widths):
        if (1, w) not in seen:
            seen.add((1, w))
            plan.append(([i], w))
    for idxs in batch_groups(widths, chunk, batch_size):
        key = (len(idxs), widths[idxs[0]])
        if key not in seen:
            seen.add(key)
            plan.append((idxs, widths[idxs[0]]))
    return plan


def fresh_process(cfg: Config, threads: int | None, first: Path, groups: list[tuple[list[str], int]],
                  timeout: float = 600) -> dict:
    """Cold start and peak RSS of a new process running only ``cfg`` (see edgerec.bench.report)."""
    spec = {"model": cfg.model, "precision": cfg.precision, "engine": cfg.engine, "threads": threads,
            "engine_options": dict(cfg.options), "first": str(first), "groups": groups}
    w_spawn = time.time()
    res = run_child(spec, cfg.label, timeout)
    res["interpreter_s"] = res.pop("w_start") - w_spawn
    res["cold_start_s"] = res.pop("w_first") - w_spawn
    return res


# ------------------------------------------------------------------------------------------------ measuring

@dataclass
class _Measure:
    runner: Runner
    texts: dict[int, list[str | None]]
    lat1: list[float] = field(default_factory=list)
    chunk1: list[float] = field(default_factory=list)   # batch-1 seconds per chunk, for alternation ratios
    total: dict[int, float] = field(default_factory=lambda: {1: 0.0, 8: 0.0})
    error: str | None = None


def _measure_dataset(ds: Dataset, runners: list[Runner], chunk: int, batch_size: int,
                     desc: str) -> list[_Measure]:
    from tqdm import tqdm

    n = len(ds.images)
    ms = [_Measure(r, {b: [None] * n for b in r.batch_sizes}) for r in runners]
    starts = list(range(0, n, chunk))
    for step, start in enumerate(tqdm(starts, desc=desc, unit="chunk", file=sys.stderr, leave=False)):
        idx = list(range(start, min(start + chunk, n)))
        imgs = [ds.images[i] for i in idx]
        units = [(m, b) for m in ms for b in m.runner.batch_sizes]
        for m, b in (units if step % 2 == 0 else units[::-1]):
            if m.error:
                continue
            r = m.runner
            r.phase = 1 if b == 1 else 8
            try:
                if b == 1:
                    spent = 0.0
                    for i, img in zip(idx, imgs):
                        t0 = time.perf_counter()
                        text = r.recognize([img], 1)[0]
                        dt = time.perf_counter() - t0
                        m.lat1.append(dt)
                        spent += dt
                        m.texts[1][i] = text
                    m.chunk1.append(spent)
                    m.total[1] += spent
                else:
                    t0 = time.perf_counter()
                    texts = r.recognize(imgs, batch_size)
                    m.total[8] += time.perf_counter() - t0
                    for i, text in zip(idx, texts):
                        m.texts[8][i] = text
            except Exception as exc:  # one broken configuration must not cost the others their numbers
                m.error = f"failed while measuring: {type(exc).__name__}: {exc}"
            finally:
                r.phase = None
    return ms


def _rows_for(ds: Dataset, ms: list[_Measure], batch_size: int) -> list[dict]:
    # here: the children (PaddleX's venv too) import this module
    from edgerec.data.metrics import paired_difference, rec_metrics, same_text_share

    rows = []
    by_cfg = {m.runner.cfg: m for m in ms if not m.error}
    for m in ms:
        if m.error:
            continue
        cfg, r = m.runner.cfg, m.runner
        texts = [t or "" for t in m.texts[1]]
        met = rec_metrics(texts, ds.labels)
        n = len(texts)
        lat = np.array(m.lat1) * 1000
        row = {"dataset": ds.name, **cfg.as_dict(), "num": n, "acc": met["acc"],
               "norm_edit_dis": met["norm_edit_dis"], "alnum_acc": met["alnum_acc"],
               "score": met["alnum_acc"] if ds.scene_text else met["acc"],
               "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
               "mean_ms": float(lat.mean()), "b1_lines_per_s": n / m.total[1]}
        row.update(r.stages[1].per_line_ms())
        if 8 in r.batch_sizes and m.total[8] > 0:
            st8 = r.stages[8]
            row.update({"batch_size": batch_size, "b8_lines_per_s": n / m.total[8],
                        "b8_ms_per_line": 1000 * m.total[8] / n,
                        "b8_avg_batch": st8.lines / st8.calls if st8.calls else None,
                        "b8_same_text": same_text_share(m.texts[1], m.texts[8]),
                        **{f"b8_{k}": v for k, v in st8.per_line_ms().items()}})
        else:
            row.update({"batch_size": None, "b8_lines_per_s": None, "b8_ms_per_line": None, "b8_avg_batch": None,
                        "b8_same_text": None, "b8_pre_ms": None, "b8_infer_ms": None, "b8_decode_ms": None})
        ref = by_cfg.get(Config(cfg.model, *BASELINE))
        row["agree_fp32"] = (None if ref is None or ref is m else
                             same_text_share(m.texts[1], ref.texts[1]))
        paired = (None if ref is None or ref is m else
                  paired_difference([t or "" for t in ref.texts[1]], texts, ds.labels))
        for key, metric in (("d_acc_fp32", "acc"), ("d_ned_fp32", "norm_edit_dis")):
            row[key] = paired[metric]["delta"] if paired else None
            row[f"{key}_ci95"] = paired[metric]["ci95"] if paired else None
        for key, other in (("ratio_vs_ov_fp32", ref), ("ratio_vs_ort",
                                                         by_cfg.get(Config(cfg.model, "fp32", "onnxruntime")))):
            ratios = ([a / b for a, b in zip(m.chunk1, other.chunk1) if b > 0]
                      if other and cfg.engine != "tesseract" else [])
            row[key] = statistics.median(ratios) if ratios else None
        row["timing"] = "in-process (biased)"
        row["compute_precision"] = r.compute_precision()
        row["charset_coverage"] = r.coverage(ds.labels) if hasattr(r, "coverage") else None
        size = r.size_bytes()
        row["size_mb"] = size / 2**20 if size else None
        row["engine_config"] = r.engine_config()
        rows.append(row)
    return rows
