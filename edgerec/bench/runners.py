"""Runners: one configuration (an edgerec model, or a peer) that turns lines into texts with stage timings."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgerec.bench.configs import PADDLEX, Config, create_kwargs
from edgerec.bench.peer_process import PeerProcess
from edgerec.errors import EdgeRecError

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
                                  progress=False, **create_kwargs(dict(cfg.options)))
        self.predictor = self.model.predictor
        self.stages = {1: _Stages(), 8: _Stages()}
        self.phase: int | None = None
        self._tick_lock = threading.Lock()
        self.predictor.on_timing = self._tick
        self.batch_sizes = (1, 8)

    def _tick(self, n: int, pre: float, infer: float, decode: float) -> None:
        st = self.stages.get(self.phase) if self.phase is not None else None
        if st is not None:
            with self._tick_lock:  # parallel infer requests call this from several threads
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

    def compute_precision(self) -> str | None:
        """The precision the engine really computes in, as it reads it back (OpenVINO: f32 / bf16 / f16)."""
        return self.model.properties().get("precision")

    def size_bytes(self) -> int:
        """Bytes on disk of what this engine loads (the engine's own list: IR xml+bin, .onnx, Paddle files)."""
        return sum(f.stat().st_size for f in self.model.files() if Path(f).is_file())

    def engine_config(self) -> dict:
        """What the engine was really compiled with, as it reads it back (``properties()["config"]``)."""
        props = self.model.properties()
        out: dict = {"device": self.model.device, **(props.get("config") or {})}
        if props.get("providers"):
            out["providers"] = props["providers"]
        return out

    def close(self) -> None:
        self.predictor.on_timing = None
        self.predictor.engine.close()
        if self.predictor.recheck is not None:
            self.predictor.recheck.engine.close()


def _read_vm_hwm(pid: int, peaks: list[int]) -> bool:
    """Append process ``pid``'s VmHWM (its peak RSS, kB) from /proc; False when there is none to read (the process
    has gone, is a zombie, or the system has no /proc: not Linux)."""
    from edgerec.utils.memory import proc_status_kb

    hwm = (proc_status_kb(pid, ("VmHWM",)) or {}).get("VmHWM")
    if hwm is not None:
        peaks.append(hwm)
    return hwm is not None


def _sample_vm_hwm(pid: int, stop: threading.Event, peaks: list[int], every_s: float = 0.01) -> None:
    """:func:`_read_vm_hwm` every ``every_s`` until ``stop`` or the process's end. VmHWM is the kernel's own
    high-water mark, so a sparse poll misses only growth in the last interval, and costs the timed run little."""
    while _read_vm_hwm(pid, peaks) and not stop.wait(every_s):
        pass


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
        # its own peak RSS, sampled from /proc while it runs: its ru_maxrss from wait4 cannot serve, since Linux
        # carries the forking process's RSS (this Python's, GBs in a report) across the exec into the child's
        peaks: list[int] = []
        stop = threading.Event()
        _read_vm_hwm(proc.pid, peaks)  # once now: it waits for its image on stdin, so it is alive
        sampler = threading.Thread(target=_sample_vm_hwm, args=(proc.pid, stop, peaks), daemon=True)
        sampler.start()
        try:
            out, err = proc.communicate(png.tobytes())
        finally:
            stop.set()
            sampler.join()
        if peaks:
            self.max_rss_kb = max(self.max_rss_kb, max(peaks))
        if proc.returncode != 0:
            raise EdgeRecError(f"tesseract failed ({proc.returncode}): {err.decode(errors='replace').strip()[:200]}")
        return " ".join(out.decode("utf-8", errors="replace").split())

    def recognize(self, images: list[np.ndarray], batch_size: int) -> list[str]:
        return [self.one(img) for img in images]

    def compute_precision(self) -> str | None:
        return None  # tesseract's LSTM says nothing of it

    def size_bytes(self) -> int | None:
        return self.traineddata.stat().st_size if self.traineddata and self.traineddata.is_file() else None

    def engine_config(self) -> dict:
        return {"version": self.version, "psm": 7, "lang": self.lang, "OMP_THREAD_LIMIT": self.env.get(
            "OMP_THREAD_LIMIT")}

    def close(self) -> None:
        pass


RAPIDOCR = Config("rapidocr-openvino", "fp32", "rapidocr")
RAPIDOCR_HOW_TO = ("pip install rapidocr-openvino here, or in a virtualenv of its own: python3 -m venv ~/rapidvenv && "
                   "~/rapidvenv/bin/pip install rapidocr-openvino==1.4.4, then --rapidocr-python "
                   "~/rapidvenv/bin/python or EDGEREC_RAPIDOCR_PYTHON")


def rapidocr_config(python: str | None) -> Config:
    """RapidOCR's configuration: in this interpreter, or (``python``) in its own."""
    return Config(RAPIDOCR.model, RAPIDOCR.precision, RAPIDOCR.engine, (("python", str(python)),) if python else ())


class _RapidOCRLines:
    """What both RapidOCR runners share: RapidOCR sizes each line itself, and warming reads one line per group."""

    def width_of(self, image: np.ndarray) -> int:
        return int(image.shape[1])

    def warm(self, groups: list[tuple[list[int], int]], images: list[np.ndarray]) -> None:
        for idxs, _ in groups:
            self.recognize([images[idxs[0]]], 1)  # type: ignore[attr-defined]


class RapidOCRRunner(_RapidOCRLines):
    """RapidOCR's OpenVINO engine (``rapidocr-openvino``) as a peer: its own bundled recognizer, recognition only
    (no detection, no angle classifier), one line per call, with ``threads`` inference threads (RapidOCR's
    ``inference_num_threads``). rapidocr-openvino 1.4 pins opencv-python and OpenVINO <= 2024.0, which clash with
    edgerec's: it runs in this interpreter when installed here, else from its own (``--rapidocr-python``)."""

    def __init__(self, threads: int | None = None, cfg: Config = RAPIDOCR):
        try:
            from rapidocr_openvino import RapidOCR
        except ImportError as exc:
            raise EdgeRecError("rapidocr-openvino is not installed (" + RAPIDOCR_HOW_TO + ")") from exc
        from importlib import metadata

        self.cfg = cfg
        self.threads = threads
        self.engine = RapidOCR(inference_num_threads=int(threads)) if threads else RapidOCR()
        self.batch_sizes = (1,)
        self.stages = {1: _Stages(), 8: _Stages()}
        self.phase: int | None = None
        try:
            self.version = metadata.version("rapidocr_openvino")
        except metadata.PackageNotFoundError:
            self.version = "?"

    def one(self, image: np.ndarray) -> str:
        out = self.engine(image, use_det=False, use_cls=False, use_rec=True)
        result = out[0] if isinstance(out, tuple) else out  # 1.x: (result, elapse); 2.x+: an output object
        txts = getattr(result, "txts", None)
        if txts is not None:
            return str(txts[0]) if len(txts) else ""
        if not result:
            return ""
        first = result[0]
        return str(first[0]) if isinstance(first, (list, tuple)) else str(first)

    def recognize(self, images: list[np.ndarray], batch_size: int) -> list[str]:
        return [self.one(img) for img in images]

    def compute_precision(self) -> str | None:
        """What OpenVINO computes RapidOCR's recognizer in (its own default: bf16 on CPUs with native bf16)."""
        try:  # rapidocr-openvino 1.4: TextRecognizer.session (OpenVINOInferSession).session (an InferRequest)
            compiled = self.engine.text_rec.session.session.get_compiled_model()
            got = compiled.get_property("INFERENCE_PRECISION_HINT")
        except Exception:
            return None
        return got.to_string() if hasattr(got, "to_string") else str(got)  # an openvino.Type, e.g. bf16

    def size_bytes(self) -> int | None:
        return None

    def engine_config(self) -> dict:
        import sys

        out = {"version": self.version, "use_det": False, "use_cls": False,
               "threads": self.threads or "rapidocr default", "python": sys.executable}
        try:
            import openvino

            out["openvino"] = openvino.__version__
        except Exception:
            pass
        return out

    def close(self) -> None:
        pass


class RapidOCRProcess(_RapidOCRLines, PeerProcess):
    """RapidOCR from its own interpreter (``--rapidocr-python``): its texts from a serving child of it
    (edgerec.bench.peer_process), its widths and warm-up as RapidOCRRunner's."""

    def __init__(self, cfg: Config, threads: int | None):
        PeerProcess.__init__(self, cfg, threads, name="RapidOCR", how_to=RAPIDOCR_HOW_TO)


Runner = ModelRunner | TesseractRunner | RapidOCRRunner  # and edgerec.bench.paddlex_peer's two


def open_runner(cfg: Config, threads: int | None, tesseract_exe: str | None = None) -> Runner:
    """The runner of a configuration: an edgerec engine, or a peer (Tesseract, RapidOCR, PaddleX in its own
    interpreter)."""
    if cfg.engine == PADDLEX:
        from edgerec.bench.paddlex_peer import PaddleXRunner

        return PaddleXRunner(cfg, threads)  # type: ignore[return-value]
    if cfg.engine == "tesseract":
        if not tesseract_exe:
            raise EdgeRecError("tesseract: no executable given")
        return TesseractRunner(tesseract_exe, cfg.precision, threads)
    if cfg.engine == RAPIDOCR.engine:
        return RapidOCRRunner(threads, cfg)
    return ModelRunner(cfg, threads)
