"""use_hpip's speed check: on a CPU that computes bf16 natively, is this model's int8 faster than its bf16?

Not always: on a 2-core Xeon with AMX (issue 12, docs/measurements/2026-12-07-amx-xeon.md) bf16 read word crops at
0.97-1.15x int8's speed for the five PP-OCR recognizers (faster for four), while on Zen 5 int8 was 1.2-1.3x bf16.
So it is measured on the machine, once per model files, CPU and engine settings, and kept beside the
compiled-model cache. Where nothing can be kept (a read-only home, ``cache=False``) it is not measured: a timing
at every start could choose differently from one start to the next, so use_hpip keeps int8 there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerec.engines.base import DeviceSpec, EngineKind, first_line
from edgerec.runtime.preprocess import MIN_W
from edgerec.utils import cpu

log = logging.getLogger(__name__)

# int8 is chosen only when it takes at most this share of bf16's time: bf16 reads closer to fp32 than int8, and
# two timings of one configuration in one process differ by a few per cent
MARGIN = 0.95
WARM, RUNS = 3, 15
STORE_NAME = "hpip-speed.json"
STORE_MAX = 256  # entries kept (one per model files, CPU and settings measured)
LOCK_WAIT_S = 600  # longer than a timing that waits for the compile lock (300 s) and then compiles two models


@dataclass(frozen=True)
class Verdict:
    int8_ms: float
    bf16_ms: float
    height: int
    kept: bool  # read from the store, measured by an earlier process

    @property
    def int8_wins(self) -> bool:
        return self.int8_ms <= MARGIN * self.bf16_ms

    def describe(self) -> str:
        when = "measured on this machine before" if self.kept else "measured now"
        return (f"a {self.height} x {MIN_W} line takes {self.int8_ms:.2f} ms in int8 and {self.bf16_ms:.2f} ms in "
                f"bf16, {when}")


def int8_against_bf16(kind: EngineKind, spec: DeviceSpec, int8_xml: Path, fp32_xml: Path, values: dict
                      ) -> Verdict | None:
    """int8's and bf16's ms per line at batch 1 and PaddleX's minimum width, with the engine settings the model
    will run with (``values``), as kept from an earlier process or measured now (under a lock, so two processes
    starting together do not slow each other's timing); None when there is no writable place to keep it or the
    models cannot be timed: then use_hpip keeps int8, as before."""
    from filelock import Timeout

    from edgerec.utils.fs import file_lock

    if not values.get("cache_dir"):
        log.info("use_hpip: int8 is not timed against bf16 without the compiled-model cache (cache=False)")
        return None
    key = _key(kind, spec, int8_xml, fp32_xml, values)
    store = Path(values["cache_dir"]) / STORE_NAME
    if (kept := _kept(store, key)) is not None:
        return kept
    try:
        lock = file_lock(store.with_name(f".{STORE_NAME}.lock"), timeout=LOCK_WAIT_S)
        lock.acquire()
    except Timeout:  # the other process's timing may have waited for the compile lock (300 s) itself
        if (kept := _kept(store, key)) is not None:
            return kept
        log.warning("use_hpip: another process held %s for %d s; int8 is not timed against bf16", lock.lock_file,
                    LOCK_WAIT_S)
        return None
    except OSError as exc:  # a read-only home (an image): nothing can be kept, so nothing is timed
        log.info("use_hpip: int8 is not timed against bf16 (%s cannot be written: %s); prepare the home with one "
                 "use_hpip load where it is writable", store.parent, exc.strerror or exc)
        return None
    try:
        if (kept := _kept(store, key)) is not None:  # timed by another process while this one waited
            return kept
        try:
            verdict = _measure(kind, spec, int8_xml, fp32_xml, values)
        except Exception as exc:  # a model that cannot be timed here is still run as use_hpip would have run it
            log.warning("use_hpip: could not time int8 against bf16 (%s); taking int8", first_line(exc))
            return None
        _write(store, key, {"int8_ms": round(verdict.int8_ms, 4), "bf16_ms": round(verdict.bf16_ms, 4),
                            "height": verdict.height, "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return verdict
    finally:
        lock.release()


def _kept(store: Path, key: str) -> Verdict | None:
    kept = _read(store).get(key)
    if isinstance(kept, dict):
        try:
            return Verdict(float(kept["int8_ms"]), float(kept["bf16_ms"]), int(kept["height"]), kept=True)
        except (KeyError, TypeError, ValueError):
            pass  # a damaged entry: measured again
    return None


def _measure(kind: EngineKind, spec: DeviceSpec, int8_xml: Path, fp32_xml: Path, values: dict) -> Verdict:
    from edgerec.zoo.export import read_info

    height = read_info(fp32_xml).input_height
    line = np.random.default_rng(0).uniform(-1, 1, (1, 3, height, MIN_W)).astype(np.float32)
    options = kind.make_options(values)
    engines = {}
    try:
        engines["int8"] = kind.open(int8_xml, spec, options, "int8")
        engines["bf16"] = kind.open(fp32_xml, spec, options, "bf16")
        times: dict[str, list[float]] = {name: [] for name in engines}
        for i in range(WARM + RUNS):  # interleaved, so a slow moment of the machine weighs on both alike
            for name, eng in engines.items():
                t = time.perf_counter()
                eng.infer(line)
                if i >= WARM:
                    times[name].append(time.perf_counter() - t)
    finally:
        for eng in engines.values():
            eng.close()
    return Verdict(statistics.median(times["int8"]) * 1e3, statistics.median(times["bf16"]) * 1e3, height,
                   kept=False)


def _key(kind: EngineKind, spec: DeviceSpec, int8_xml: Path, fp32_xml: Path, values: dict) -> str:
    """What the timing depends on: both models' files as they are now, the engine settings, the CPU (its ISA
    flags and oneDNN cap) and the inference library's version."""
    def files(xml: Path) -> list:
        # the path's last parts, not all of it: a home prepared at one path and mounted at another keeps its timing
        out = []
        for f in (xml, xml.with_suffix(".bin")):
            try:
                st = f.stat()
                out.append([list(f.resolve().parts[-4:]), st.st_size, st.st_mtime_ns])
            except OSError:
                out.append([list(f.parts[-4:]), None, None])
        return out

    facts = {"engine": kind.name, "device": spec.text, "int8": files(int8_xml), "fp32": files(fp32_xml),
             "settings": {k: str(v) for k, v in values.items() if k != "cache_dir"}, **cpu.compile_facts()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _read(store: Path) -> dict:
    try:
        data = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(store: Path, key: str, entry: dict) -> None:
    """Kept for later processes (written under the store's lock, atomically: never half a file). A read-only home
    keeps nothing: the next process measures again."""
    from edgerec.utils.fs import atomic_write_text

    data = _read(store)
    data.pop(key, None)
    data[key] = entry
    data = dict(list(data.items())[-STORE_MAX:])
    try:
        atomic_write_text(store, json.dumps(data, indent=1))
    except OSError as exc:
        log.info("use_hpip: the speed check is not kept (%s cannot be written: %s)", store, exc.strerror or exc)
