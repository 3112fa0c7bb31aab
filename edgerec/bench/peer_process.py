"""A peer that runs from an interpreter of its own (PaddleX, RapidOCR): its texts come from a long-lived child.

Some peers cannot share edgerec's virtualenv: PaddleX brings opencv-contrib-python, rapidocr-openvino pins
opencv-python and an older OpenVINO, and either clashes with edgerec's own. Such a peer's configuration names its
interpreter (the ``python`` option). Its latency comes from the timing children (edgerec.bench.timing), started
with that interpreter; its texts come from ``PeerProcess`` here: one child of that interpreter that opens the
peer's runner (``serve``, through ``edgerec.bench.runners.open_runner``) and answers one line of texts per line of
decoded images sent over a pipe.

What the child imports here: the standard library, NumPy, edgerec.bench.configs and edgerec.errors (and the
runner's own modules): no OpenVINO, NNCF or rapidfuzz of edgerec's, which the peer's virtualenv may lack.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import threading
from typing import IO

import numpy as np

from edgerec.bench.configs import Config
from edgerec.errors import EdgeRecError


def _encode(img: np.ndarray) -> dict:
    img = np.ascontiguousarray(img)
    return {"shape": list(img.shape), "dtype": str(img.dtype), "data": base64.b64encode(img.tobytes()).decode()}


def _decode(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["data"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


# ------------------------------------------------------------------------------------------------ in the peer's venv

def serve(spec: dict, requests: IO[str], out: IO[str]) -> None:
    """The child side of PeerProcess: open the configuration's runner, say so, then one answer line per request
    line (``{"batch_size": b, "images": [...]}`` -> ``{"texts": [...]}`` or ``{"error": ...}``) until stdin closes."""
    from edgerec.bench.runners import open_runner

    def send(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        runner = open_runner(Config.of(spec), spec.get("threads"))
    except Exception as exc:  # anything the peer raises while loading: said to the parent, which skips the peer
        send({"error": f"{type(exc).__name__}: {exc}"})
        return
    send({"ready": True, "engine_config": runner.engine_config(), "size_bytes": runner.size_bytes(),
          "precision": runner.compute_precision()})
    for line in requests:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            send({"texts": runner.recognize([_decode(d) for d in req["images"]], int(req["batch_size"]))})
        except Exception as exc:  # one bad batch is the parent's to report
            send({"error": f"{type(exc).__name__}: {exc}"})
    runner.close()


# ------------------------------------------------------------------------------------------------ in edgerec's process

# how long a peer's child may take to import its package and load its model before the report gives up on it
# (every peer here is ready in seconds; one that hangs, e.g. retrying a model download offline, would hold the
# report for the whole per-batch timeout otherwise)
START_TIMEOUT_S = 180


class PeerProcess:
    """A peer as this process sees it: a runner whose lines are read by a long-lived child of the peer's
    interpreter (``serve``). Used for texts; with ``rounds=0`` its in-process times include the pipe.
    Subclasses give the peer's ``width_of`` and ``warm``."""

    def __init__(self, cfg: Config, threads: int | None, *, name: str, how_to: str,
                 batch_sizes: tuple[int, ...] = (1,), timeout: float = 600, start_timeout: float = START_TIMEOUT_S):
        from edgerec.bench.runners import _Stages
        from edgerec.bench.timing import child_command, child_env

        self.cfg = cfg
        self.name = name
        self.how_to = how_to
        self.timeout = timeout
        self.batch_sizes = batch_sizes
        self.stages = {1: _Stages(), 8: _Stages()}
        self.phase: int | None = None
        spec = {"mode": "serve", "model": cfg.model, "precision": cfg.precision, "engine": cfg.engine,
                "engine_options": dict(cfg.options), "threads": threads}
        self._err = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        try:
            self.proc = subprocess.Popen(child_command(spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._err, text=True, encoding="utf-8", env=child_env())
        except OSError as exc:
            self._err.close()
            raise EdgeRecError(f"cannot start {name}'s interpreter: {exc}; {how_to}") from exc
        try:
            ready = self._ask(spec, start_timeout, "to start (load its model)")
        except EdgeRecError:
            self.close()
            raise
        self._engine_config = ready.get("engine_config") or {}
        self._size = ready.get("size_bytes")
        self._precision = ready.get("precision")

    def _ask(self, obj: dict, timeout: float | None = None, what: str = "to answer") -> dict:
        """Send one line, read one answer (the child is killed when it takes longer than ``timeout``, default
        ``self.timeout``, and the error then says so)."""
        assert self.proc.stdin and self.proc.stdout
        limit = self.timeout if timeout is None else timeout
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            self.proc.kill()

        timer = threading.Timer(limit, kill)
        timer.start()
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError:  # a broken pipe: the child is gone
            line = ""
        finally:
            timer.cancel()
        if not line and fired.is_set():
            raise EdgeRecError(f"the {self.name} child took more than {limit:.0f} s {what} and was stopped (a peer "
                               f"that tries to download its model waits for a network that is not there): "
                               f"{self._stderr_tail()}; {self.how_to}")
        if not line:
            raise EdgeRecError(f"the {self.name} child exited ({self.proc.poll()}): {self._stderr_tail()}")
        ans = json.loads(line)
        if "error" in ans:
            raise EdgeRecError(f"{self.name}: {ans['error']}")
        return ans

    def _stderr_tail(self) -> str:
        try:
            self._err.seek(0)
            lines = [ln.strip() for ln in self._err.read().splitlines() if ln.strip()]
        except (OSError, ValueError):
            lines = []
        return lines[-1][:300] if lines else "no output"

    def recognize(self, images: list[np.ndarray], batch_size: int) -> list[str]:
        texts = self._ask({"batch_size": batch_size, "images": [_encode(im) for im in images]})["texts"]
        if len(texts) != len(images):
            raise EdgeRecError(f"{self.name} answered {len(texts)} texts for {len(images)} lines")
        return [str(t) for t in texts]

    def compute_precision(self) -> str | None:
        return self._precision

    def size_bytes(self) -> int | None:
        return self._size

    def engine_config(self) -> dict:
        return dict(self._engine_config)

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout:
            proc.stdout.close()
        self._err.close()
