"""The accuracy-versus-latency report: every model x precision x engine on every labelled line set.

Why it is built this way:

* **Latency from separate processes** (edgerec.bench.timing). Each configuration is timed in its own child
  process, one per configuration and round, interleaved A B C A B C over ``rounds``, with the same thread count
  for every engine (``threads``, default: every usable core; ONNX Runtime's intra-op threads alike). ONNX
  Runtime runs both as it ships (its threads spin after each run) and with spinning off. ms/line are medians
  over rounds (min and max kept); ``ratio_vs_ov_fp32`` and ``ratio_vs_ort`` are medians of per-round ratios
  against the same model's OpenVINO fp32 and ONNX Runtime fp32 (as shipped) in the same round.
  ``rounds=0`` times in this process instead, alternating the configurations chunk by chunk: quick, and
  marked "in-process (biased)", because engines sharing one process share its cores with each other's threads.
* **Accuracy in this process.** All configurations of a set are loaded here and read it (batch 1 and batch 8);
  texts do not depend on timing. Each row records the precision the engine really computes in, as it reads it
  back (``compute_precision``: OpenVINO's INFERENCE_PRECISION_HINT, f32 or bf16 ...).
* **Warm shapes.** Before timing, every input shape the run will use (each width at batch 1, each batch shape
  at batch 8) runs once, untimed: OpenVINO builds kernels per shape on first sight (50-70 ms), which would
  otherwise decide p95. Steady state is what is timed; cold start is measured on its own.
* **Fresh processes for cold start and RSS.** Peak RSS and cold start come from a new Python process per
  configuration and data set that loads only that configuration (import -> create_model -> first text on the
  set's first line, compiled-model cache warm), then runs every input shape of the measurement once; its peak
  RSS is the kernel's high-water mark (VmHWM) of that process, interpreter and libraries included.
* **Stage split.** ``RecPredictor.on_timing`` reports preprocessing, inference and CTC decoding per batch.

Accuracy follows PaddleOCR's RecMetric (edgerec.data.metrics.rec_metrics); English scene-text sets (IIIT5K,
SVT, ...) also get the field's case-insensitive alphanumeric accuracy, which is what the plot shows for them.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from edgerec import __version__
from edgerec.bench.configs import ENGINES, PADDLEX, Config, plan_configs
from edgerec.bench.datasets import MIN_COVERAGE, Dataset, _say, load_dataset
from edgerec.bench.measure import _measure_dataset, _rows_for, fresh_process, shape_plan
from edgerec.bench.paddlex_peer import PaddleXProcess, coverage, model_folder, paddlex_config, probe
from edgerec.bench.plot import pareto_front
from edgerec.bench.render import check_report_output, write_report
from edgerec.bench.runners import ModelRunner, RapidOCRProcess, RapidOCRRunner, Runner, TesseractRunner, rapidocr_config
from edgerec.bench.timing import summarize, time_in_processes
from edgerec.data.dataset import read_lines
from edgerec.errors import EdgeRecError
from edgerec.utils.cpu import cpu_info, isa_summary

Progress = Callable[[str], None]

# ------------------------------------------------------------------------------------------------ environment

def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def resolve_threads(threads: int | None) -> int:
    """The thread count every engine gets: the one asked for, else every usable core (engines' own defaults
    differ: ONNX Runtime takes the physical cores, OpenVINO all of them)."""
    return int(threads) if threads else int(cpu_info()["usable_cores"] or 1)


def environment(threads: int | None) -> dict:
    """The machine and packages behind the numbers: machines that measure edgerec are not alike."""
    try:
        import cv2

        opencv = cv2.__version__
    except ImportError:
        opencv = None
    packages = {"edgerec": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "openvino": _version("openvino"), "onnxruntime": _version("onnxruntime"),
                "paddlepaddle": _version("paddlepaddle"), "nncf": _version("nncf"),
                "opencv": opencv}
    return {"cpu": cpu_info(), "isa": isa_summary(), "threads": resolve_threads(threads),
            "openvino_hint": "LATENCY (create_model default; per configuration below)",
            "os": f"{platform.system()} {platform.release()}", "packages": packages,
            "load_avg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


# ------------------------------------------------------------------------------------------------ the report

@dataclass
class ReportOptions:
    models: list[str]
    datasets: list[Path]
    output: Path
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    engines: list[str] = field(default_factory=lambda: ["openvino"])
    limit: int | None = None
    threads: int | None = None
    chunk: int = 64
    batch_size: int = 8
    scene_text: list[str] = field(default_factory=list)   # data set folder names forced to scene-text scoring
    tesseract: bool = True
    tesseract_lang: str = "eng"
    rapidocr: bool = True   # RapidOCR's OpenVINO engine as a peer, where rapidocr-openvino is installed
    rapidocr_python: str | None = None       # or the interpreter of a virtualenv that has it (it pins old OpenVINO)
    paddlex: bool = True    # PaddleX itself as a peer, where paddlex_python names an interpreter that imports it
    paddlex_python: str | None = None        # that interpreter (a virtualenv with paddlex[ocr-core] + paddlepaddle)
    paddlex_models: list[str] | None = None  # the models PaddleX reads (default: every model that runs)
    fresh_process: bool = True
    configs: list[Config] | None = None   # an explicit list instead of models x precisions x engines
    rounds: int = 3      # timing rounds, one child process per configuration each; 0: in-process (biased)
    repeats: int = 3     # passes over the set inside each timing child (per line: the median)
    # timing children read only the first N lines of each set (accuracy still reads every line): a full set timed
    # rounds x repeats times at two batch sizes per configuration takes hours on 2 cores
    timing_lines: int | None = None

    def __post_init__(self) -> None:
        if self.timing_lines is not None and (isinstance(self.timing_lines, bool) or self.timing_lines < 1):
            raise EdgeRecError(f"timing_lines={self.timing_lines!r}: use an integer >= 1 (or None for every line)")
        for name in ("rounds", "repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "rounds" else 1):
                raise EdgeRecError(f"{name}={v!r}: use an integer >= {0 if name == 'rounds' else 1}")
        for name in ("limit", "threads"):  # None: every line, every core
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise EdgeRecError(f"{name}={v!r}: use an integer >= 1 (or leave it out)")


class _Skips:
    """The skipped configurations with their reasons, said once as they happen and kept for the report."""

    def __init__(self, say: Progress):
        self.items: list[dict] = []
        self.say = say

    def add(self, cfg: Config, reason: str, dataset: str | None = None) -> None:
        self.items.append({**cfg.as_dict(), **({"dataset": dataset} if dataset else {}), "reason": reason})
        self.say(f"skip {cfg.label}{f' on {dataset}' if dataset else ''}: {reason}")


def _paddlex_configs(configs: list[Config], opts: ReportOptions, skips: _Skips) -> tuple[list[Config], str | None]:
    """The PaddleX peer's configurations (one per model it reads, its model folder made) and PaddleX's version;
    without an interpreter that imports PaddleX, each is skipped with how to add it."""
    if not opts.paddlex:
        return [], None
    from edgerec.zoo.cards import get_card

    models = list(dict.fromkeys(c.model for c in configs))
    if opts.paddlex_models is not None:
        wanted = {get_card(m).name for m in opts.paddlex_models}
        models = [m for m in models if m in wanted]
    if not models:
        return [], None
    if opts.paddlex_python:  # importing paddle takes a while; a wrong interpreter may hang until the timeout
        skips.say(f"checking the PaddleX peer at {opts.paddlex_python} (imports paddlex; up to 300 s) ...")
    try:
        version = probe(opts.paddlex_python)
    except EdgeRecError as exc:
        for m in models:
            skips.add(Config(m, "fp32", PADDLEX), str(exc))
        return [], None
    out = []
    for m in models:
        try:
            out.append(paddlex_config(m, str(opts.paddlex_python), model_folder(m)))
        except (EdgeRecError, OSError) as exc:
            skips.add(Config(m, "fp32", PADDLEX), f"no PaddleX model folder: {exc}")
    return out, version


def _open_runners(ds: Dataset, configs: list[Config], opts: ReportOptions, tess_exe: str | None,
                  broken: set[Config], skips: _Skips, paddlex: Sequence[Config] = ()) -> list[Runner]:
    """Load every configuration for this set; what cannot load is skipped once, with the reason."""
    runners: list[Runner] = []
    for cfg in configs:
        if cfg in broken:
            continue
        try:
            runner = ModelRunner(cfg, resolve_threads(opts.threads))
        except (EdgeRecError, RuntimeError, OSError) as exc:
            broken.add(cfg)
            skips.add(cfg, str(exc))
            continue
        cov = runner.coverage(ds.labels)
        if cov < MIN_COVERAGE:
            skips.add(cfg, f"its charset holds only {100 * cov:.0f}% of the label characters; the set is not in its "
                      "language", ds.name)
            runner.close()
            continue
        runners.append(runner)
    tcfg = Config("tesseract", opts.tesseract_lang, "tesseract")
    if tess_exe and tcfg not in broken:
        if ds.has_cjk and opts.tesseract_lang == "eng":
            skips.add(tcfg, "labels are CJK and tesseract runs with -l eng (set --tesseract-lang)", ds.name)
        else:
            try:
                runners.append(TesseractRunner(tess_exe, opts.tesseract_lang, resolve_threads(opts.threads)))
            except (EdgeRecError, OSError, subprocess.SubprocessError) as exc:
                broken.add(tcfg)
                skips.add(tcfg, str(exc))
    rcfg = rapidocr_config(opts.rapidocr_python)
    if opts.rapidocr and rcfg not in broken:
        try:
            if opts.rapidocr_python:  # its own interpreter: texts from a serving child, like PaddleX's
                runners.append(RapidOCRProcess(rcfg, resolve_threads(opts.threads)))
            else:
                runners.append(RapidOCRRunner(resolve_threads(opts.threads), rcfg))
        except (EdgeRecError, ImportError, RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            broken.add(rcfg)
            skips.add(rcfg, str(exc))
    for cfg in paddlex:
        if cfg in broken:
            continue
        from edgerec.zoo.resolve import model_charset

        try:
            cov = coverage(set(model_charset(cfg.model)) | {" "}, ds.labels)
            if cov < MIN_COVERAGE:
                skips.add(cfg, f"its charset holds only {100 * cov:.0f}% of the label characters; the set is not in "
                          "its language", ds.name)
                continue
            runners.append(PaddleXProcess(cfg, resolve_threads(opts.threads)))
        except (EdgeRecError, OSError, ValueError, subprocess.SubprocessError) as exc:
            broken.add(cfg)
            skips.add(cfg, str(exc))
    return runners


def _fresh_process_numbers(ds: Dataset, rows: list[dict], plans: dict[Config, list[tuple[list[int], int]]],
                           threads: int | None, say: Progress) -> None:
    """Add cold start and peak RSS, each from a new process per configuration (see the module docstring)."""
    from tqdm import tqdm

    todo = [r for r in rows if r["engine"] in ENGINES]  # the peers have no create_model to start cold
    for row in tqdm(todo, desc=f"{ds.name}: cold start + peak RSS", unit="config", file=sys.stderr, leave=False):
        cfg = Config.of(row)
        groups = [([str(ds.paths[i]) for i in idxs], w) for idxs, w in plans[cfg]]
        try:
            fp = fresh_process(cfg, threads, ds.paths[0], groups)
        except (EdgeRecError, subprocess.SubprocessError, ValueError) as exc:
            row["fresh_process_error"] = str(exc)
            say(f"{cfg.label} on {ds.name}: {exc}")
            continue
        row.update({"cold_start_s": fp["cold_start_s"], "peak_rss_mb": fp["peak_rss_mb"],
                    "rss_after_import_mb": fp["rss_after_import_mb"], "rss_after_load_mb": fp["rss_after_load_mb"],
                    "cold_start": {k: fp[k] for k in ("interpreter_s", "import_s", "create_model_s", "first_text_s")},
                    "fresh_process_shapes": len(plans[cfg])})


def _process_timing(ds: Dataset, rows: list[dict], opts: ReportOptions, tess_exe: str | None,
                    skips: _Skips) -> list[dict]:
    """Replace the rows' in-process timings with those of separate processes (see the module docstring); a
    configuration whose timing child fails is skipped with the reason."""
    configs = [Config.of(r) for r in rows]
    timed = [str(p) for p in ds.paths[:opts.timing_lines]]
    results = time_in_processes(configs, timed, resolve_threads(opts.threads), opts.chunk, opts.batch_size,
                                opts.rounds, opts.repeats, tess_exe,
                                on_error=lambda cfg, why: skips.add(cfg, why, ds.name), desc=f"{ds.name}: timing")
    summary = summarize(results)
    out = []
    for row, cfg in zip(rows, configs):
        if cfg in summary:
            row.update(summary[cfg])
            out.append(row)
    return out


def _run_dataset(ds: Dataset, configs: list[Config], opts: ReportOptions, tess_exe: str | None,
                 broken: set[Config], skips: _Skips, paddlex: Sequence[Config] = ()) -> tuple[list[dict], int | None]:
    """All measurements of one set: rows (one per configuration that ran) and its distinct input widths."""
    runners = _open_runners(ds, configs, opts, tess_exe, broken, skips, paddlex)
    plans: dict[Config, list[tuple[list[int], int]]] = {}
    widths: list[int] = []
    for r in runners:
        if isinstance(r, ModelRunner):
            own = [r.width_of(im) for im in ds.images]
            plans[r.cfg] = shape_plan(own, opts.chunk, opts.batch_size)
            if r.predictor.width_bucket is None or not widths:  # the set's own widths, not a bucketed row's
                widths = own
            if not opts.rounds:  # timed here: warm first (timing children warm themselves)
                r.warm(plans[r.cfg], ds.images)
        elif isinstance(r, PaddleXProcess) and not opts.rounds:
            r.warm(shape_plan([r.width_of(im) for im in ds.images], opts.chunk, opts.batch_size), ds.images)
    ms = _measure_dataset(ds, runners, opts.chunk, opts.batch_size, desc=ds.name)
    for m in ms:
        if m.error:
            skips.add(m.runner.cfg, m.error, ds.name)
    rows = _rows_for(ds, ms, opts.batch_size)
    for m in ms:
        if isinstance(m.runner, TesseractRunner) and not m.error:
            row = next(r for r in rows if r["engine"] == "tesseract")
            row["peak_rss_mb"] = m.runner.max_rss_kb / 1024 or None
            t0 = time.perf_counter()
            m.runner.one(ds.images[0])
            row["cold_start_s"] = time.perf_counter() - t0
        m.runner.close()
    del ms, runners
    gc.collect()  # release this set's models (and their per-shape caches) before the child processes
    if opts.rounds:
        rows = _process_timing(ds, rows, opts, tess_exe, skips)
    if opts.fresh_process:
        _fresh_process_numbers(ds, rows, plans, resolve_threads(opts.threads), skips.say)
    for row in rows:
        for key in ("cold_start_s", "peak_rss_mb", "rss_after_import_mb", "rss_after_load_mb"):
            row.setdefault(key, None)
    front = pareto_front([(r["p50_ms"], r["score"]) for r in rows])
    for i, r in enumerate(rows):
        r["pareto"] = i in front
    return rows, len(set(widths)) if widths else None


def run_report(opts: ReportOptions, say: Progress = _say) -> dict:
    """Measure everything, write report.md, report.json and acc_vs_latency.png into ``opts.output``."""
    seen: set[Path] = set()
    for folder in opts.datasets:  # fail before measuring anything, not after the first set
        read_lines(folder, "any")  # every line well formed (the reader's own error names file:line)
        if Path(folder).resolve() in seen:
            raise EdgeRecError(f"--dataset {folder}: given twice")
        seen.add(Path(folder).resolve())
    made = _missing_folders(Path(opts.output))
    try:
        Path(opts.output).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeRecError(f"{opts.output}: cannot create the output folder ({exc.strerror})") from exc
    try:
        return _measure_and_write(opts, say)
    except BaseException:
        for folder in made:  # a run that wrote nothing leaves no empty folders it made behind
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        raise


def _missing_folders(path: Path) -> list[Path]:
    """The folders of ``path`` that do not exist yet, deepest first: those ``mkdir(parents=True)`` makes."""
    missing = []
    for folder in (path.absolute(), *path.absolute().parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def _measure_and_write(opts: ReportOptions, say: Progress) -> dict:
    check_report_output(Path(opts.output))  # before the measurement, not after it
    configs, planned_skips = plan_configs(opts.models, opts.precisions, opts.engines, opts.configs)
    skips = _Skips(say)
    for s in planned_skips:
        skips.add(Config(s["model"], s["precision"], s["engine"]), s["reason"])
    tess_exe = shutil.which("tesseract") if opts.tesseract else None
    if opts.tesseract and not tess_exe:
        skips.add(Config("tesseract", opts.tesseract_lang, "tesseract"),
                  "tesseract is not on PATH (apt-get install tesseract-ocr to add it as a peer)")
    env = environment(opts.threads)
    paddlex, paddlex_version = _paddlex_configs(configs, opts, skips)
    if paddlex_version:
        env["packages"]["paddlex"] = f"{paddlex_version}, own interpreter"
    out_datasets, rows = [], []
    broken: set[Config] = set()
    names: set[str] = set()
    for folder in opts.datasets:
        ds = load_dataset(folder, opts.limit, True if Path(folder).resolve().name in opts.scene_text else None)
        if ds.name in names:  # two folders of one name (a/set, b/set): the tables key sets by name
            ds.name = f"{ds.name} ({ds.path.parent.name})"
            k = 2
            while ds.name in names:
                ds.name, k = f"{ds.name.rsplit(' #', 1)[0]} #{k}", k + 1
        names.add(ds.name)
        say(f"{ds.name}: {len(ds.images)} lines from {ds.list_file.name} ({ds.kind})"
            f"{', scene text: alnum acc' if ds.scene_text else ''}"
            f"{f', {len(ds.unreadable)} unreadable left out' if ds.unreadable else ''}")
        ds_rows, distinct = _run_dataset(ds, configs, opts, tess_exe, broken, skips, paddlex)
        rows.extend(ds_rows)
        out_datasets.append({"name": ds.name, "path": str(ds.path), "list_file": ds.list_file.name, "kind": ds.kind,
                             "lines": len(ds.images), "listed": ds.listed, "limit": opts.limit,
                             "timed_lines": min(len(ds.images), opts.timing_lines or len(ds.images))
                             if opts.rounds else len(ds.images),
                             "scene_text": ds.scene_text, "metric_plotted": "alnum_acc" if ds.scene_text else "acc",
                             "distinct_widths": distinct, "unreadable": ds.unreadable})
    env["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {"environment": env,
              "settings": {"models": opts.models, "precisions": opts.precisions, "engines": opts.engines,
                           "limit": opts.limit, "threads": opts.threads, "chunk": opts.chunk,
                           "batch_size": opts.batch_size, "tesseract": bool(tess_exe), "rapidocr": opts.rapidocr,
                           "rapidocr_python": opts.rapidocr_python,
                           "paddlex": bool(paddlex), "paddlex_python": opts.paddlex_python if paddlex else None,
                           "fresh_process": opts.fresh_process, "configs": [c.as_dict() for c in configs],
                           "timing": ("process" if opts.rounds else "in-process (biased)"),
                           "rounds": opts.rounds, "repeats": opts.repeats, "timing_lines": opts.timing_lines},
              "datasets": out_datasets, "results": [_rounded(r) for r in rows], "skipped": skips.items}
    if not rows:  # an earlier report in the folder stays as it was
        raise EdgeRecError("nothing was measured: every configuration was skipped (the reasons are above); "
                           f"{opts.output} is left as it was")
    write_report(report, opts.output)
    return report


def _rounded(row: dict) -> dict:
    def rnd(k: str, v):
        if isinstance(v, list):
            return [rnd(k, x) for x in v]
        if not isinstance(v, float):
            return {kk: rnd(kk, vv) for kk, vv in v.items()} if isinstance(v, dict) else v
        return round(v, 6 if k in ("acc", "norm_edit_dis", "alnum_acc", "score", "agree_fp32", "b8_same_text")
                     or k.startswith(("d_acc", "d_ned"))
                     else 4)
    return {k: rnd(k, v) for k, v in row.items()}
