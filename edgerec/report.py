"""The accuracy-versus-latency report: every model x precision x engine on every labelled line set.

Why it is built this way:

* **Alternation.** All configurations of a data set are loaded into one process and run chunk by chunk
  (64 lines, the window ``TextRecognizer.predict`` uses), in forward order on even chunks and reverse order on
  odd ones. A busy shared machine then slows every configuration alike, so the ratios hold even when the
  milliseconds do not. ``ratio_vs_ort`` is the median over chunks of (this configuration's batch-1 time /
  the same model's ONNX Runtime fp32 time on the same lines).
* **Warm shapes.** Before timing, every input shape the run will use (each width at batch 1, each batch shape
  at batch 8) runs once, untimed: OpenVINO builds kernels per shape on first sight (50-70 ms), which would
  otherwise decide p95. Steady state is what is timed; cold start is measured on its own.
* **Fresh processes for what one process cannot measure.** Peak RSS and cold start come from a new Python
  process per configuration and data set that loads only that configuration (import -> create_model -> first
  text on the set's first line, compiled-model cache warm), then runs every input shape of the measurement
  once; its peak RSS is the kernel's high-water mark (VmHWM) of that process, interpreter and libraries
  included. ru_maxrss deltas in the shared process would be meaningless, as the peak only ever rises.
* **Stage split.** ``RecPredictor.on_timing`` reports preprocessing, inference and CTC decoding per batch.

Accuracy follows PaddleOCR's RecMetric (edgerec.data.metrics.rec_metrics); English scene-text sets (IIIT5K,
SVT, ...) also get the field's case-insensitive alphanumeric accuracy, which is what the plot shows for them.
"""

from __future__ import annotations

import gc
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from edgerec import __version__
from edgerec.data.dataset import find_list_file, read_labelled
from edgerec.data.metrics import rec_metrics
from edgerec.errors import EdgeRecError, InputError
from edgerec.utils.cpu import cpu_info
from edgerec.utils.fs import atomic_write_bytes, atomic_write_text

ENGINES = ("openvino", "onnxruntime", "paddle")
PRECISIONS = ("fp32", "fp16", "int8")
SCENE_TEXT_RE = re.compile(r"iiit5k|svt|icdar|ic1[35]|cute", re.IGNORECASE)
_CJK_RE = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
Progress = Callable[[str], None]
MIN_COVERAGE = 0.5  # a model whose charset holds less of a set's label characters is not run on it


def _say(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ data sets

@dataclass
class Dataset:
    """One labelled line set, images decoded once and shared by every configuration."""

    name: str
    path: Path
    list_file: Path
    kind: str                     # "evalset" (label.txt) or "MSTextRecDataset" (val.txt / train.txt)
    paths: list[Path]
    labels: list[str]
    images: list[np.ndarray]
    scene_text: bool
    unreadable: list[str] = field(default_factory=list)
    listed: int = 0               # lines in the list file, before --limit

    @property
    def has_cjk(self) -> bool:
        return any(_CJK_RE.search(t) for t in self.labels)


def load_dataset(folder: str | Path, limit: int | None = None, scene_text: bool | None = None) -> Dataset:
    """Read an evalset (label.txt) or a PaddleX MSTextRecDataset (val.txt first); the first ``limit`` lines.

    Unreadable images are left out and listed (they say nothing about a model); a folder with no readable
    line raises InputError.
    """
    from edgerec.io.inputs import load_image

    folder = Path(folder).resolve()
    list_file = find_list_file(folder, "any")
    kind = "evalset" if list_file.name == "label.txt" else "MSTextRecDataset"
    paths, labels, images, bad = [], [], [], []
    pairs = read_labelled(folder, "any")
    for path, label in pairs[:limit]:
        try:
            images.append(load_image(path))
        except InputError as exc:
            bad.append(str(exc))
            continue
        paths.append(path)
        labels.append(label)
    if not images:
        raise InputError(folder, f"no readable labelled line in {list_file.name}")
    if scene_text is None:
        scene_text = bool(SCENE_TEXT_RE.search(folder.name))
    return Dataset(folder.name, folder, list_file, kind, paths, labels, images, scene_text, bad, len(pairs))


# ------------------------------------------------------------------------------------------------ configs

@dataclass(frozen=True)
class Config:
    model: str
    precision: str
    engine: str

    @property
    def label(self) -> str:
        """A short name for tables and the plot: 'v4_mobile ov int8'."""
        short = {"openvino": "ov", "onnxruntime": "ort", "paddle": "paddle", "tesseract": "tesseract"}
        if self.engine == "tesseract":
            return f"tesseract {self.precision}"
        name = self.model.replace("PP-OCR", "").replace("_rec", "")
        return f"{name} {short.get(self.engine, self.engine)} {self.precision}"

    def as_dict(self) -> dict:
        return {"model": self.model, "precision": self.precision, "engine": self.engine, "label": self.label}


def plan_configs(models: Sequence[str], precisions: Sequence[str], engines: Sequence[str],
                 explicit: Sequence[Config] | None = None) -> tuple[list[Config], list[dict]]:
    """Every model x engine x precision (or the ``explicit`` list) to run, and those skipped up front, with why.

    Unknown model names raise (a typo should stop the run); configurations that cannot exist are skipped:
    ONNX Runtime and Paddle run the source model at fp32 only, and int8 needs `edgerec quantize` first.
    """
    from edgerec.zoo import home as homes
    from edgerec.zoo.cards import get_card

    wanted = list(explicit) if explicit is not None else [
        Config(m, p, e) for m in models for e in engines for p in precisions]
    configs, skipped = [], []
    for c in wanted:
        if c.engine not in ENGINES:
            raise EdgeRecError(f"engine {c.engine!r}: use one of {', '.join(ENGINES)}")
        if c.precision not in PRECISIONS:
            raise EdgeRecError(f"precision {c.precision!r}: use one of {', '.join(PRECISIONS)}")
        cfg = Config(get_card(c.model).name, c.precision, c.engine)
        if cfg.engine != "openvino" and cfg.precision != "fp32":
            skipped.append({**cfg.as_dict(), "reason": f"{cfg.engine} runs the source model at fp32 only"})
        elif cfg.precision == "int8" and not (homes.ir_dir(cfg.model, "int8") / "model.xml").is_file():
            skipped.append({**cfg.as_dict(), "reason": (f"no int8 model in {homes.ir_dir(cfg.model, 'int8')}; "
                                                        f"make one with `edgerec quantize {cfg.model}`")})
        elif cfg not in configs:
            configs.append(cfg)
    return configs, skipped


# ------------------------------------------------------------------------------------------------ runners

class _Stages:
    """Per-stage seconds and line counts, for one batch size."""

    def __init__(self) -> None:
        self.lines = 0
        self.calls = 0
        self.pre = self.infer = self.decode = 0.0

    def per_line_ms(self) -> dict[str, float | None]:
        if not self.lines:
            return {"pre_ms": None, "infer_ms": None, "decode_ms": None}
        k = 1000.0 / self.lines
        return {"pre_ms": self.pre * k, "infer_ms": self.infer * k, "decode_ms": self.decode * k}


class ModelRunner:
    """An edgerec configuration: create_model + its RecPredictor with the timing hook attached."""

    def __init__(self, cfg: Config, threads: int | None):
        from edgerec.api import create_model

        self.cfg = cfg
        self.model = create_model(cfg.model, precision=cfg.precision, engine=cfg.engine, threads=threads,
                                  progress=False)
        self.predictor = self.model.predictor
        self.stages = {1: _Stages(), 8: _Stages()}
        self.phase: int | None = None
        self.predictor.on_timing = self._tick
        self.batch_sizes = (1, 8)

    def _tick(self, n: int, pre: float, infer: float, decode: float) -> None:
        st = self.stages.get(self.phase) if self.phase is not None else None
        if st is not None:
            st.lines += n
            st.calls += 1
            st.pre += pre
            st.infer += infer
            st.decode += decode

    def width_of(self, image: np.ndarray) -> int:
        return self.predictor.width_of(image)

    def coverage(self, labels: Sequence[str]) -> float:
        """Share of the labels' characters (spaces aside) that this model can output at all."""
        chars = set(self.predictor.classes)
        text = "".join(labels).replace(" ", "")
        return sum(c in chars for c in text) / len(text) if text else 1.0

    def recognize(self, images: list[np.ndarray], batch_size: int) -> list[str]:
        return [t for t, _ in self.predictor.recognize(images, batch_size)]

    def warm(self, groups: list[tuple[list[int], int]], images: list[np.ndarray]) -> None:
        for idxs, width in groups:
            self.predictor.run_batch([images[i] for i in idxs], width)

    def size_bytes(self) -> int:
        """Bytes on disk of what this engine loads: IR xml+bin, the .onnx, or the Paddle program+params."""
        p = Path(self.model.model_path)
        if self.cfg.engine == "openvino":
            files = [p, p.with_suffix(".bin")]
        elif self.cfg.engine == "paddle":
            folder = p if p.is_dir() else p.parent
            files = [folder / n for n in ("inference.pdmodel", "inference.json", "inference.pdiparams")]
        else:
            files = [p]
        return sum(f.stat().st_size for f in files if f.is_file())

    def engine_config(self) -> dict:
        """What the engine was really compiled with (OpenVINO properties; thread settings otherwise)."""
        eng = self.predictor.engine
        out: dict = {"device": self.model.device}
        compiled = getattr(eng, "compiled", None)
        if compiled is not None:
            for key in ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
                        "EXECUTION_DEVICES"):
                try:
                    val = compiled.get_property(key)
                except Exception:  # property not exposed by this plugin / version
                    continue
                if hasattr(val, "to_string"):  # openvino.Type, e.g. f32
                    val = val.to_string()
                elif isinstance(val, (list, tuple)):
                    val = ",".join(map(str, val))
                out[key] = val if isinstance(val, (int, float, str, bool)) else str(val)
        session = getattr(eng, "session", None)
        if session is not None:
            out["providers"] = list(session.get_providers())
        return out

    def close(self) -> None:
        self.predictor.on_timing = None
        self.predictor.engine.close()


class TesseractRunner:
    """Tesseract ``--psm 7`` (one text line) as a peer: one subprocess per line, batch 1 only."""

    def __init__(self, exe: str, lang: str, threads: int | None):
        self.cfg = Config("tesseract", lang, "tesseract")
        self.exe = exe
        self.lang = lang
        self.env = dict(os.environ, OMP_THREAD_LIMIT=str(threads)) if threads else dict(os.environ)
        self.batch_sizes = (1,)
        self.stages = {1: _Stages(), 8: _Stages()}
        self.phase: int | None = None
        self.max_rss_kb = 0
        listing = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=60)
        text = listing.stdout + listing.stderr
        langs = {ln.strip() for ln in text.splitlines()[1:] if ln.strip()}
        if lang not in langs:
            raise EdgeRecError(f"tesseract has no language {lang!r} (it has: {', '.join(sorted(langs)) or 'none'})")
        m = re.search(r'"([^"]+)"', text.splitlines()[0] if text else "")
        self.traineddata = Path(m.group(1)) / f"{lang}.traineddata" if m else None
        ver = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
        self.version = ((ver.stdout or ver.stderr).splitlines() or ["?"])[0].strip()

    def width_of(self, image: np.ndarray) -> int:
        return int(image.shape[1])

    def warm(self, groups: list[tuple[list[int], int]], images: list[np.ndarray]) -> None:
        pass  # every call is a fresh process anyway

    def one(self, image: np.ndarray) -> str:
        import cv2

        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise EdgeRecError("cannot encode a line image to PNG for tesseract")
        proc = subprocess.Popen([self.exe, "stdin", "stdout", "--psm", "7", "-l", self.lang],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        if hasattr(os, "wait4"):  # reap it ourselves to read its own peak RSS
            assert proc.stdin and proc.stdout and proc.stderr
            proc.stdin.write(png.tobytes())
            proc.stdin.close()
            out, err = proc.stdout.read(), proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.max_rss_kb = max(self.max_rss_kb, usage.ru_maxrss)
        else:
            out, err = proc.communicate(png.tobytes())
        if proc.returncode != 0:
            raise EdgeRecError(f"tesseract failed ({proc.returncode}): {err.decode(errors='replace').strip()[:200]}")
        return " ".join(out.decode("utf-8", errors="replace").split())

    def recognize(self, images: list[np.ndarray], batch_size: int) -> list[str]:
        return [self.one(img) for img in images]

    def size_bytes(self) -> int | None:
        return self.traineddata.stat().st_size if self.traineddata and self.traineddata.is_file() else None

    def engine_config(self) -> dict:
        return {"version": self.version, "psm": 7, "lang": self.lang, "OMP_THREAD_LIMIT": self.env.get(
            "OMP_THREAD_LIMIT")}

    def close(self) -> None:
        pass


Runner = ModelRunner | TesseractRunner


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


# ------------------------------------------------------------------------------------------------ fresh process

_CHILD = r"""
import json, sys, time
w0 = time.time(); t0 = time.perf_counter()
spec = json.loads(sys.stdin.read())

def rss():
    cur = peak = None
    try:
        for ln in open("/proc/self/status"):
            if ln.startswith("VmRSS:"):
                cur = int(ln.split()[1]) / 1024
            elif ln.startswith("VmHWM:"):
                peak = int(ln.split()[1]) / 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 2**20)
    return cur, peak

from edgerec import create_model
from edgerec.io.inputs import load_image
t1 = time.perf_counter(); r1 = rss()
model = create_model(spec["model"], precision=spec["precision"], engine=spec["engine"], threads=spec["threads"],
                     progress=False)
t2 = time.perf_counter(); r2 = rss()
first = next(iter(model.predict(spec["first"], batch_size=1)))
t3 = time.perf_counter(); w3 = time.time()
for paths, width in spec["groups"]:
    model.predictor.run_batch([load_image(p) for p in paths], width)
r4 = rss()
print(json.dumps({"w_start": w0, "w_first": w3, "import_s": t1 - t0, "create_model_s": t2 - t1,
                  "first_text_s": t3 - t2, "first_text": first["rec_text"], "rss_after_import_mb": r1[0],
                  "rss_after_load_mb": r2[0], "peak_rss_mb": r4[1]}))
"""


def fresh_process(cfg: Config, threads: int | None, first: Path, groups: list[tuple[list[str], int]],
                  timeout: float = 600) -> dict:
    """Cold start and peak RSS of a new process running only ``cfg`` (see the module docstring)."""
    import edgerec

    root = str(Path(edgerec.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    spec = {"model": cfg.model, "precision": cfg.precision, "engine": cfg.engine, "threads": threads,
            "first": str(first), "groups": groups}
    w_spawn = time.time()
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(spec), capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeRecError(f"fresh process for {cfg.label} failed: {tail}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
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
                        "b8_same_text": sum(a == b for a, b in zip(m.texts[1], m.texts[8])) / n,
                        **{f"b8_{k}": v for k, v in st8.per_line_ms().items()}})
        else:
            row.update({"batch_size": None, "b8_lines_per_s": None, "b8_ms_per_line": None, "b8_avg_batch": None,
                        "b8_same_text": None, "b8_pre_ms": None, "b8_infer_ms": None, "b8_decode_ms": None})
        ref = by_cfg.get(Config(cfg.model, "fp32", "openvino"))
        row["agree_fp32"] = (None if ref is None or ref is m else
                             sum(a == b for a, b in zip(m.texts[1], ref.texts[1])) / n)
        ort = by_cfg.get(Config(cfg.model, "fp32", "onnxruntime"))
        ratios = [a / b for a, b in zip(m.chunk1, ort.chunk1) if b > 0] if ort and cfg.engine != "tesseract" else []
        row["ratio_vs_ort"] = statistics.median(ratios) if ratios else None
        row["charset_coverage"] = r.coverage(ds.labels) if isinstance(r, ModelRunner) else None
        size = r.size_bytes()
        row["size_mb"] = size / 2**20 if size else None
        row["engine_config"] = r.engine_config()
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ Pareto + plot

def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), sorted by x.

    A point is kept when it is strictly more accurate than every faster-or-equal point; of exact duplicates the
    first is kept. Points with a non-finite coordinate are ignored.
    """
    order = sorted((i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)),
                   key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


_MARKERS = {("openvino", "fp32"): "o", ("openvino", "fp16"): "^", ("openvino", "int8"): "*",
            ("onnxruntime", "fp32"): "s", ("paddle", "fp32"): "D"}


def plot_acc_vs_latency(datasets: list[dict], rows: list[dict]) -> bytes:
    """PNG bytes: one subplot per data set, x = batch-1 p50 ms/line, y = acc (alnum acc for scene text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(datasets)
    cols = 1 if n == 1 else 2
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(7.2 * cols, 5.2 * nrows), squeeze=False)
    models = list(dict.fromkeys(r["model"] for r in rows if r["engine"] != "tesseract"))
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    to_label = []
    for k, ds in enumerate(datasets):
        ax = axes[k // cols][k % cols]
        rs = [r for r in rows if r["dataset"] == ds["name"]]
        metric = "alnum acc (case-insensitive) %" if ds["scene_text"] else "acc (PaddleOCR, exact) %"
        ax.set_title(f"{ds['name']} ({ds['lines']} lines)", fontsize=11)
        ax.set_xlabel("ms per line, batch 1, p50 (log)")
        ax.set_ylabel(metric)
        ax.grid(True, which="both", alpha=0.25)
        if not rs:
            ax.text(0.5, 0.5, "no configuration ran", ha="center", va="center", transform=ax.transAxes)
            continue
        xs = [r["p50_ms"] for r in rs]
        ys = [100 * r["score"] for r in rs]
        for r, x, y in zip(rs, xs, ys):
            color = "0.35" if r["engine"] == "tesseract" else colors[r["model"]]
            marker = "X" if r["engine"] == "tesseract" else _MARKERS.get((r["engine"], r["precision"]), "o")
            ax.scatter([x], [y], marker=marker, s=110 if marker == "*" else 55, color=color, zorder=3,
                       edgecolors="black", linewidths=0.5)
        front = pareto_front(list(zip(xs, ys)))
        fx, fy = [xs[i] for i in front], [ys[i] for i in front]
        if fx:
            ax.plot(fx + [max(xs) * 1.15], fy + [fy[-1]], drawstyle="steps-post", color="0.3", ls="--", lw=1.2,
                    zorder=2, label="Pareto front")
        to_label.append((ax, [r["label"] for r in rs], xs, ys, set(front)))
        ax.set_xscale("log")
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.35, hi * 1.6)
        ylo, yhi = min(ys), max(ys)
        pad = max(2.0, 0.12 * (yhi - ylo))
        ax.set_ylim(max(-1.0, ylo - pad), min(100.0, yhi + pad) + (0.5 if yhi + pad >= 100 else 0))
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(loc="lower right", fontsize=8)
    for k in range(n, nrows * cols):
        axes[k // cols][k % cols].axis("off")
    handles = [matplotlib.lines.Line2D([], [], marker=mk, ls="", color="0.6", markeredgecolor="black",
                                       label=f"{e} {p}") for (e, p), mk in _MARKERS.items()
               if any(r["engine"] == e and r["precision"] == p for r in rows)]
    handles += [matplotlib.patches.Patch(color=c, label=m) for m, c in colors.items()]
    if any(r["engine"] == "tesseract" for r in rows):
        handles.append(matplotlib.lines.Line2D([], [], marker="X", ls="", color="0.35", label="tesseract --psm 7"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle("edgerec: accuracy vs latency (up and left is better; dashed: Pareto front)", fontsize=12)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(handles) / 5), 1, 0.97))
    for args in to_label:  # after the layout: labels are placed in final pixel coordinates
        _label_points(*args)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _label_points(ax, labels: list[str], xs: list[float], ys: list[float], front: set[int]) -> None:
    """Annotate each marker, trying positions around it until the label hits no other label or marker."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pix = ax.transData.transform(np.column_stack([xs, ys]))
    occupied = [(px - 6, py - 6, px + 6, py + 6) for px, py in pix]
    spots = [(dx, dy) for dist in (3, 11, 20) for dy in (dist, -dist) for dx in (7, -7)] + [(0, 28), (0, -28)]

    def place(i: int, dx: int, dy: int, leader: bool = False):
        return ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", fontsize=7.5,
                           ha="left" if dx > 0 else "right" if dx < 0 else "center",
                           va="bottom" if dy > 0 else "top", fontweight="bold" if i in front else "normal",
                           arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 0,
                                       "shrinkB": 4} if leader else None)

    def clash(bb) -> bool:
        inside = bb.x0 >= frame.x0 and bb.x1 <= frame.x1 and bb.y0 >= frame.y0 and bb.y1 <= frame.y1
        return not inside or any(bb.x0 < x1 and bb.x1 > x0 and bb.y0 < y1 and bb.y1 > y0 for x0, y0, x1, y1 in occupied)

    for i in sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i])):
        chosen, box = spots[0], None
        for dx, dy in spots:
            ann = place(i, dx, dy)  # measured without a leader line: its extent is the text's alone
            bb = ann.get_window_extent(renderer)
            ann.remove()
            if box is None:
                box = bb
            if not clash(bb):
                chosen, box = (dx, dy), bb
                break
        place(i, *chosen, leader=abs(chosen[1]) > 5)  # a label away from its marker gets a line back to it
        occupied.append((box.x0, box.y0, box.x1, box.y1))


# ------------------------------------------------------------------------------------------------ environment

def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(threads: int | None) -> dict:
    try:
        import cv2

        opencv = cv2.__version__
    except ImportError:
        opencv = None
    packages = {"edgerec": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "openvino": _version("openvino"), "onnxruntime": _version("onnxruntime"),
                "paddlepaddle": _version("paddlepaddle"), "nncf": _version("nncf"),
                "opencv": opencv}
    return {"cpu": cpu_info(), "threads": threads or "all (engine default)",
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
    fresh_process: bool = True
    configs: list[Config] | None = None   # an explicit list instead of models x precisions x engines


class _Skips:
    """The skipped configurations with their reasons, said once as they happen and kept for the report."""

    def __init__(self, say: Progress):
        self.items: list[dict] = []
        self.say = say

    def add(self, cfg: Config, reason: str, dataset: str | None = None) -> None:
        self.items.append({**cfg.as_dict(), **({"dataset": dataset} if dataset else {}), "reason": reason})
        self.say(f"skip {cfg.label}{f' on {dataset}' if dataset else ''}: {reason}")


def _open_runners(ds: Dataset, configs: list[Config], opts: ReportOptions, tess_exe: str | None,
                  broken: set[Config], skips: _Skips) -> list[Runner]:
    """Load every configuration for this set; what cannot load is skipped once, with the reason."""
    runners: list[Runner] = []
    for cfg in configs:
        if cfg in broken:
            continue
        try:
            runner = ModelRunner(cfg, opts.threads)
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
                runners.append(TesseractRunner(tess_exe, opts.tesseract_lang, opts.threads))
            except (EdgeRecError, OSError, subprocess.SubprocessError) as exc:
                broken.add(tcfg)
                skips.add(tcfg, str(exc))
    return runners


def _fresh_process_numbers(ds: Dataset, rows: list[dict], plans: dict[Config, list[tuple[list[int], int]]],
                           threads: int | None, say: Progress) -> None:
    """Add cold start and peak RSS, each from a new process per configuration (see the module docstring)."""
    from tqdm import tqdm

    todo = [r for r in rows if r["engine"] != "tesseract"]
    for row in tqdm(todo, desc=f"{ds.name}: cold start + peak RSS", unit="config", file=sys.stderr, leave=False):
        cfg = Config(row["model"], row["precision"], row["engine"])
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


def _run_dataset(ds: Dataset, configs: list[Config], opts: ReportOptions, tess_exe: str | None,
                 broken: set[Config], skips: _Skips) -> tuple[list[dict], int | None]:
    """All measurements of one set: rows (one per configuration that ran) and its distinct input widths."""
    runners = _open_runners(ds, configs, opts, tess_exe, broken, skips)
    plans: dict[Config, list[tuple[list[int], int]]] = {}
    widths: list[int] = []
    for r in runners:
        if isinstance(r, ModelRunner):
            widths = [r.width_of(im) for im in ds.images]
            plans[r.cfg] = shape_plan(widths, opts.chunk, opts.batch_size)
            r.warm(plans[r.cfg], ds.images)
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
    gc.collect()  # release this set's models (and their per-shape caches) before the fresh processes
    if opts.fresh_process:
        _fresh_process_numbers(ds, rows, plans, opts.threads, skips.say)
    for row in rows:
        for key in ("cold_start_s", "peak_rss_mb", "rss_after_import_mb", "rss_after_load_mb"):
            row.setdefault(key, None)
    front = pareto_front([(r["p50_ms"], r["score"]) for r in rows])
    for i, r in enumerate(rows):
        r["pareto"] = i in front
    return rows, len(set(widths)) if widths else None


def run_report(opts: ReportOptions, say: Progress = _say) -> dict:
    """Measure everything, write report.md, report.json and acc_vs_latency.png into ``opts.output``."""
    for folder in opts.datasets:  # fail before measuring anything, not after the first set
        find_list_file(folder, "any")
    try:
        Path(opts.output).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeRecError(f"{opts.output}: cannot create the output folder ({exc.strerror})") from exc
    configs, planned_skips = plan_configs(opts.models, opts.precisions, opts.engines, opts.configs)
    skips = _Skips(say)
    for s in planned_skips:
        skips.add(Config(s["model"], s["precision"], s["engine"]), s["reason"])
    tess_exe = shutil.which("tesseract") if opts.tesseract else None
    if opts.tesseract and not tess_exe:
        skips.add(Config("tesseract", opts.tesseract_lang, "tesseract"),
                  "tesseract is not on PATH (apt-get install tesseract-ocr to add it as a peer)")
    env = environment(opts.threads)
    out_datasets, rows = [], []
    broken: set[Config] = set()
    for folder in opts.datasets:
        ds = load_dataset(folder, opts.limit, True if Path(folder).resolve().name in opts.scene_text else None)
        say(f"{ds.name}: {len(ds.images)} lines from {ds.list_file.name} ({ds.kind})"
            f"{', scene text: alnum acc' if ds.scene_text else ''}"
            f"{f', {len(ds.unreadable)} unreadable left out' if ds.unreadable else ''}")
        ds_rows, distinct = _run_dataset(ds, configs, opts, tess_exe, broken, skips)
        rows.extend(ds_rows)
        out_datasets.append({"name": ds.name, "path": str(ds.path), "list_file": ds.list_file.name, "kind": ds.kind,
                             "lines": len(ds.images), "listed": ds.listed, "limit": opts.limit,
                             "scene_text": ds.scene_text, "metric_plotted": "alnum_acc" if ds.scene_text else "acc",
                             "distinct_widths": distinct, "unreadable": ds.unreadable})
    env["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {"environment": env,
              "settings": {"models": opts.models, "precisions": opts.precisions, "engines": opts.engines,
                           "limit": opts.limit, "threads": opts.threads, "chunk": opts.chunk,
                           "batch_size": opts.batch_size, "tesseract": bool(tess_exe),
                           "fresh_process": opts.fresh_process, "configs": [c.as_dict() for c in configs]},
              "datasets": out_datasets, "results": [_rounded(r) for r in rows], "skipped": skips.items}
    write_report(report, opts.output)
    return report


def _rounded(row: dict) -> dict:
    def rnd(k: str, v):
        if not isinstance(v, float):
            return {kk: rnd(kk, vv) for kk, vv in v.items()} if isinstance(v, dict) else v
        return round(v, 6 if k in ("acc", "norm_edit_dis", "alnum_acc", "score", "agree_fp32", "b8_same_text")
                     else 4)
    return {k: rnd(k, v) for k, v in row.items()}


# ------------------------------------------------------------------------------------------------ writing

def _f(v, fmt: str, scale: float = 1.0) -> str:
    return "–" if v is None else format(v * scale, fmt)


def dataset_table(ds: dict, rows: list[dict], batch_size: int = 8) -> list[str]:
    """The markdown table of one data set (one row per configuration, Pareto-front rows marked)."""
    alnum = ds["scene_text"]
    head = ["config", "acc %", "norm_edit_dis"] + (["alnum acc %"] if alnum else []) + [
        "agree fp32 %", "p50 ms", "p95 ms", "× ORT", f"b{batch_size} lines/s", "mean pre / infer / dec ms",
        "size MB",
        "peak RSS MB", "cold start s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        split = ("–" if r.get("infer_ms") is None else
                 f"{r['pre_ms']:.2f} / {r['infer_ms']:.2f} / {r['decode_ms']:.2f}")
        cells = [r["label"] + (" ★" if r.get("pareto") else ""), _f(r["acc"], ".2f", 100),
                 _f(r["norm_edit_dis"], ".4f")] + ([_f(r["alnum_acc"], ".2f", 100)] if alnum else []) + [
            _f(r["agree_fp32"], ".1f", 100), _f(r["p50_ms"], ".2f"), _f(r["p95_ms"], ".2f"),
            _f(r["ratio_vs_ort"], ".2f"), _f(r["b8_lines_per_s"], ".1f"), split, _f(r["size_mb"], ".2f"),
            _f(r["peak_rss_mb"], ".0f"), _f(r["cold_start_s"], ".2f")]
        out.append("| " + " | ".join(cells) + " |")
    return out


def summary_table(report: dict) -> list[str]:
    """One row per configuration, per data set its plotted accuracy and batch-1 p50: the table `make bench` prints."""
    dss = report["datasets"]
    configs = list(dict.fromkeys((r["model"], r["engine"], r["precision"], r["label"]) for r in report["results"]))
    head = ["config", "size MB"]
    for d in dss:
        head += [f"{d['name']} {'alnum' if d['scene_text'] else 'acc'} %", f"{d['name']} p50 ms"]
    head.append("× ORT (median)")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, engine, prec, label in configs:
        rs = {r["dataset"]: r for r in report["results"]
              if (r["model"], r["engine"], r["precision"]) == (model, engine, prec)}
        size = next((r["size_mb"] for r in rs.values() if r.get("size_mb")), None)
        cells = [label, _f(size, ".2f")]
        for d in dss:
            r = rs.get(d["name"])
            cells += [_f(r["score"], ".2f", 100) if r else "–", _f(r["p50_ms"], ".2f") if r else "–"]
        ratios = [r["ratio_vs_ort"] for r in rs.values() if r.get("ratio_vs_ort") is not None]
        cells.append(_f(statistics.median(ratios), ".2f") if ratios else "–")
        out.append("| " + " | ".join(cells) + " |")
    return out


_HOW_TO_READ = """\
- **acc** and **norm_edit_dis**: PaddleOCR's RecMetric (spaces removed, exact match; 1 - mean normalized
  edit distance). **alnum acc** (scene-text sets): case-insensitive, digits and ASCII letters only.
  **agree fp32**: lines whose text equals the same model's OpenVINO fp32 text.
- **p50 / p95 ms**: per-line wall time of `RecPredictor.recognize([line], 1)` (preprocess + inference + CTC
  decode; decoded images in memory, every input shape warmed up first). **× ORT**: median over chunks of this
  configuration's batch-1 time divided by the same model's ONNX Runtime fp32 time on the same lines, which
  ran next to it. The machine is shared and noisy: read ratios, not absolute milliseconds.
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
- ★ marks the Pareto front (no other configuration is both faster at p50 and more accurate).
"""


def render_markdown(report: dict) -> str:
    env, st = report["environment"], report["settings"]
    cpu = env["cpu"]
    isa = ", ".join(k for k, v in cpu["isa"].items() if v) or "none found"
    lines = ["# edgerec accuracy vs latency", "",
             f"{env['date']} · {cpu['model']} ({cpu['cores']} cores, {cpu['usable_cores']} usable) · "
             f"threads {env['threads']} · load average {_load(env.get('load_avg_start'))} at the start, "
             f"{_load(env.get('load_avg_end'))} at the end", "",
             "![accuracy vs latency](acc_vs_latency.png)", "", "## Summary", "",
             "Accuracy plotted (alnum acc for scene-text sets, acc otherwise) and batch-1 p50 ms/line.", ""]
    lines += summary_table(report)
    for ds in report["datasets"]:
        rows = [r for r in report["results"] if r["dataset"] == ds["name"]]
        cut = st["limit"] is not None and ds.get("listed", 0) > st["limit"]
        notes = [f"{ds['lines']} lines from `{ds['list_file']}` ({ds['kind']}"
                 + (f"; the first {st['limit']} of {ds['listed']})" if cut else ")"),
                 f"{ds['distinct_widths'] or '?'} distinct input widths"]
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


def write_report(report: dict, output: Path) -> None:
    """report.json, report.md and acc_vs_latency.png, each written atomically."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_bytes(output / "acc_vs_latency.png", plot_acc_vs_latency(report["datasets"], report["results"]))
    atomic_write_text(output / "report.md", render_markdown(report))
