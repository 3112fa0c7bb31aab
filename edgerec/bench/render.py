"""Writing the report: markdown tables and the three files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from edgerec.bench.plot import plot_acc_vs_latency
from edgerec.errors import EdgeRecError
from edgerec.utils.fs import atomic_write_bytes, atomic_write_text, output_problem

# ------------------------------------------------------------------------------------------------ writing

def _f(v, fmt: str, scale: float = 1.0) -> str:
    return "–" if v is None else format(v * scale, fmt)


def dataset_table(ds: dict, rows: list[dict], batch_size: int = 8) -> list[str]:
    """The markdown table of one data set (one row per configuration, Pareto-front rows marked)."""
    alnum = ds["scene_text"]
    head = ["config", "acc %", "norm_edit_dis"] + (["alnum acc %"] if alnum else []) + [
        "agree fp32 %", "Δ acc vs fp32 pt (95 %)", "runs in", "p50 ms", "p50 min–max", "p95 ms",
        "× OV fp32 (min–max)", "× ORT",
        f"b{batch_size} lines/s", "mean pre / infer / dec ms", "size MB", "peak RSS MB", "cold start s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        split = ("–" if r.get("infer_ms") is None else
                 f"{r['pre_ms']:.2f} / {r['infer_ms']:.2f} / {r['decode_ms']:.2f}")
        cells = [r["label"] + (" ★" if r.get("pareto") else ""), _f(r["acc"], ".2f", 100),
                 _f(r["norm_edit_dis"], ".4f")] + ([_f(r["alnum_acc"], ".2f", 100)] if alnum else []) + [
            _f(r["agree_fp32"], ".1f", 100), _delta(r, "d_acc_fp32"), r.get("compute_precision") or "–",
            _f(r["p50_ms"], ".2f"),
            _range(r, "p50_ms"), _f(r["p95_ms"], ".2f"),
            _f(r.get("ratio_vs_ov_fp32"), ".2f") + (f" ({_range(r, 'ratio_vs_ov_fp32')})"
                                                   if r.get("ratio_vs_ov_fp32_min") is not None else ""),
            _f(r["ratio_vs_ort"], ".2f"), _f(r["b8_lines_per_s"], ".1f"), split, _f(r["size_mb"], ".2f"),
            _f(r["peak_rss_mb"], ".0f"), _f(r["cold_start_s"], ".2f")]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _delta(r: dict, key: str) -> str:
    """A paired difference in points with its 95 % interval: "-0.47 ±0.31"."""
    d, half = r.get(key), r.get(f"{key}_ci95")
    return "–" if d is None else f"{100 * d:+.2f}" + ("" if half is None else f" ±{100 * half:.2f}")


def _range(r: dict, key: str) -> str:
    lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
    return "–" if lo is None or hi is None else f"{lo:.2f}–{hi:.2f}"


def timing_line(report: dict) -> str:
    """How the milliseconds were taken, said where they are read."""
    st, env = report["settings"], report["environment"]
    if st.get("timing", "in-process (biased)") != "process":
        return (f"Latency: **in-process (biased)**: every configuration in one process, alternating chunk by chunk, "
                f"{env['threads']} threads each; engines share the cores with each other's threads.")
    return (f"Latency: a separate process per configuration, rounds: {st['rounds']}, interleaved (A B C A B C); "
            f"repeats per process: {st['repeats']}; {env['threads']} threads for every engine (ONNX Runtime "
            "intra-op alike; also with spinning off: `no-spin`); medians over rounds, ratios per round.")


def summary_table(report: dict) -> list[str]:
    """One row per configuration, per data set its plotted accuracy and batch-1 p50: the table `make bench` prints."""
    dss = report["datasets"]
    configs = list(dict.fromkeys(r["label"] for r in report["results"]))
    head = ["config", "runs in", "size MB"]
    for d in dss:
        head += [f"{d['name']} {'alnum' if d['scene_text'] else 'acc'} %", f"{d['name']} p50 ms"]
    head += ["× OV fp32 (median)", "× ORT (median)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in configs:
        rs = {r["dataset"]: r for r in report["results"] if r["label"] == label}
        size = next((r["size_mb"] for r in rs.values() if r.get("size_mb")), None)
        ran = ",".join(dict.fromkeys(r.get("compute_precision") or "–" for r in rs.values()))
        cells = [label, ran, _f(size, ".2f")]
        for d in dss:
            r = rs.get(d["name"])
            cells += [_f(r["score"], ".2f", 100) if r else "–", _f(r["p50_ms"], ".2f") if r else "–"]
        for key in ("ratio_vs_ov_fp32", "ratio_vs_ort"):
            ratios = [r[key] for r in rs.values() if r.get(key) is not None]
            cells.append(_f(statistics.median(ratios), ".2f") if ratios else "–")
        out.append("| " + " | ".join(cells) + " |")
    return out


_HOW_TO_READ = """\
- **acc** and **norm_edit_dis**: PaddleOCR's RecMetric (spaces removed, exact match; 1 - mean normalized
  edit distance). **alnum acc** (scene-text sets): case-insensitive, digits and ASCII letters only.
  **agree fp32**: lines whose text equals the same model's OpenVINO fp32 text. **Δ acc vs fp32**: this
  configuration's acc minus the same model's OpenVINO fp32 acc, in points, ± the half-width of its 95 % interval
  (paired over the lines: both read the same ones); a difference inside its interval is not a measured loss.
  report.json also holds the NED difference (`d_ned_fp32`, `d_ned_fp32_ci95`).
- **runs in**: the precision the engine really computes in, as it reads it back (OpenVINO's
  INFERENCE_PRECISION_HINT: f32, bf16, f16; ONNX Runtime f32).
- **p50 / p95 ms**: per-line wall time of `RecPredictor.recognize([line], 1)` (preprocess + inference + CTC
  decode; decoded images in memory, every input shape warmed up first). With process timing (see the line at
  the top): each configuration in its own child process per round, rounds interleaved; per line the median
  over the repeats in a process, then p50 / p95 over the lines, then the median over rounds (**p50 min–max**:
  over rounds). **× OV fp32** / **× ORT**: the median over rounds of this configuration's batch-1 time for the
  set divided by the same model's OpenVINO fp32 / ONNX Runtime fp32 (as shipped) time in the same round (in
  parentheses: min–max over rounds). A busy machine moves milliseconds more than ratios.
- **b8 lines/s**: the set fed 64 lines at a time with batch size 8; the runtime batches only lines of equal
  input width, so the mean batch (report.json `b8_avg_batch`) is often below 8. **pre / infer / dec**: mean
  ms per line of each stage at batch 1 (lines so long that the runtime reads them in windows are in p50/p95
  but not in this split).
- **size MB**: what the engine loads from disk (IR xml+bin, the .onnx, Paddle program+params, traineddata).
- **peak RSS** and **cold start**: a fresh Python process that loads only this configuration. Cold start =
  spawn -> `import edgerec` -> `create_model` -> first text of the set's first line, with the compiled-model
  cache and the disk cache warm. Peak RSS = that process's VmHWM after it also ran every input shape of the
  measurement once (interpreter, NumPy, OpenCV and the engine included). Tesseract: one process per line;
  peak RSS is the largest of those processes, cold start one call.
- **paddlex** rows: PaddleX itself (`create_model(...).predict` on the same lines, in its own interpreter),
  batch 8 being 8 lines in a row padded to the widest; no stage split, cold start or peak RSS.
- ★ marks the Pareto front (no other configuration is both faster at p50 and more accurate).
"""


def render_markdown(report: dict) -> str:
    env, st = report["environment"], report["settings"]
    cpu = env["cpu"]
    isa = ", ".join(k for k, v in cpu["isa"].items() if v) or "none found"
    lines = [MD_TITLE, "",
             f"{env['date']} · {cpu['model']} ({cpu['cores']} cores, {cpu['usable_cores']} usable) · "
             f"threads {env['threads']} · load average {_load(env.get('load_avg_start'))} at the start, "
             f"{_load(env.get('load_avg_end'))} at the end", "",
             f"CPU and ISA: {env.get('isa') or cpu['model']}", "", timing_line(report), "",
             "![accuracy vs latency](acc_vs_latency.png)", "", "## Summary", "",
             "Accuracy plotted (alnum acc for scene-text sets, acc otherwise) and batch-1 p50 ms/line.", ""]
    lines += summary_table(report)
    for ds in report["datasets"]:
        rows = [r for r in report["results"] if r["dataset"] == ds["name"]]
        cut = st["limit"] is not None and ds.get("listed", 0) > st["limit"]
        notes = [f"{ds['lines']} lines from `{ds['list_file']}` ({ds['kind']}"
                 + (f"; the first {st['limit']} of {ds['listed']})" if cut else ")"),
                 f"{ds['distinct_widths'] or '?'} distinct input widths"]
        if ds.get("timed_lines", ds["lines"]) < ds["lines"]:
            notes.append(f"latency timed on the first {ds['timed_lines']} of them")
        if ds["scene_text"]:
            notes.append("scene text: alnum acc plotted")
        if ds["unreadable"]:
            notes.append(f"{len(ds['unreadable'])} unreadable images left out")
        lines += ["", f"## {ds['name']}", "", "; ".join(notes) + ".", ""]
        lines += dataset_table(ds, rows, st["batch_size"]) if rows else ["No configuration ran on this set."]
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        for s in report["skipped"]:
            where = f" on {s['dataset']}" if s.get("dataset") else ""
            lines.append(f"- {s['label']}{where}: {s['reason']}")
    lines += ["", "## How the numbers were taken", "", _HOW_TO_READ, "## Environment", ""]
    lines.append(f"- CPU: {cpu['model']}; ISA: {isa}")
    lines.append(f"- cores: {cpu['cores']} ({cpu['usable_cores']} usable); threads: {env['threads']}; "
                 f"OpenVINO hint: {env['openvino_hint']}")
    lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v))
    lines.append(f"- OS: {env['os']}")
    engine_cfgs = {}
    for r in report["results"]:
        engine_cfgs.setdefault(r["label"], r.get("engine_config"))
    for label, cfg in engine_cfgs.items():
        lines.append(f"- {label}: " + ", ".join(f"{k}={v}" for k, v in (cfg or {}).items()))
    return "\n".join(lines) + "\n"


def _load(v) -> str:
    return "?" if not v else " / ".join(f"{x:.2f}" for x in v)


REPORT_FILES = ("report.json", "acc_vs_latency.png", "report.md")


MD_TITLE = "# edgerec accuracy vs latency"


def _ours(folder: Path) -> bool:
    """Whether the report files in ``folder`` are an earlier ``edgerec report``'s: its report.json and report.md
    (the picture goes with them)."""
    try:
        data = json.loads((folder / "report.json").read_text("utf-8"))
        md = (folder / "report.md").read_text("utf-8").splitlines()[:1]
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"environment", "settings", "results"} <= set(data) and md == [MD_TITLE]


def check_report_output(output: Path) -> None:
    """The output folder can take the report's files (``utils.fs.output_problem``), and the report files already
    there are an earlier report's (replaced) or none (a user's report.md is never overwritten); else an
    EdgeRecError."""
    problem = output_problem(output, REPORT_FILES)
    if problem is not None:
        raise EdgeRecError(f"{problem[0]}: {problem[1]}")
    there = [n for n in REPORT_FILES if (output / n).exists()]
    if there and not _ours(output):
        raise EdgeRecError(f"{output}: holds {', '.join(there)}, not an earlier edgerec report's; give a new or "
                           "empty --output folder (or move those files)")


def write_report(report: dict, output: Path) -> None:
    """report.json, report.md and acc_vs_latency.png, each written atomically; a failed write is one line."""
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        # ensure_ascii: a dataset path that is not UTF-8 (surrogate escapes) is written as \udcXX, not a crash
        atomic_write_text(output / "report.json", json.dumps(report, indent=2, ensure_ascii=True) + "\n")
        atomic_write_bytes(output / "acc_vs_latency.png", plot_acc_vs_latency(report["datasets"],
                                                                              report["results"]))
        atomic_write_text(output / "report.md", render_markdown(report))
    except OSError as exc:
        raise EdgeRecError(f"{output}: cannot write the report there ({exc.strerror or exc})") from None
