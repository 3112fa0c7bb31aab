"""OpenVINO's compiled-model cache (``CACHE_DIR``): compiling under a lock, and keeping the folder bounded.

A second start of a model loads its compiled kernels from the cache instead of compiling them (seconds saved on a
small CPU). Each model, precision and static width compiled adds an entry, in a folder of its compile
configuration (``entry_folder``); past ``EDGEREC_CACHE_MB`` the least recently used entries go.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path

from edgerec.engines.base import first_line

log = logging.getLogger(__name__)

# past this many MB the least recently used entries go (a removed entry costs one slower compile, nothing else)
CACHE_MB = 2048
CACHE_MB_ENV = "EDGEREC_CACHE_MB"


def compile_cached(core, model, device: str, cfg: dict, path: Path):
    """``compile_model`` under a file lock on the compiled-model cache: OpenVINO writes a cache entry in place, and
    a second process starting at the same moment read a half-written one ("cannot compile"). If compiling with
    the cache still fails, compile without it (dropping CACHE_DIR from ``cfg``): a broken cache entry must not
    stop the model from loading."""
    cache = cfg.get("CACHE_DIR")
    if cache:
        from filelock import Timeout

        from edgerec.utils.fs import file_lock

        def without(level: int, why: str):
            log.log(level, "%s: %s; compiling without the compiled-model cache", path, why)
            cfg.pop("CACHE_DIR")
            return core.compile_model(model, device, cfg)

        entries = entry_folder(Path(cache), device, cfg)
        try:
            entries.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only home prepared without this entry: nothing to read, nowhere to write
            return without(logging.INFO, f"no compiled-model cache in {entries} ({exc.strerror or exc})")
        try:
            lock = file_lock(Path(cache) / ".compile.lock", timeout=300)
            lock.acquire()
        except Timeout:  # another process held it for minutes: go on without the cache rather than wait more
            return without(logging.WARNING, f"the compiled-model cache {cache} stayed locked for 300 s")
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or os.access(cache, os.W_OK):
                # a full disk, too many files, a lock file of another user's in a cache we may write: other
                # processes write there, so it is not read without the lock
                return without(logging.WARNING, f"cannot lock the compiled-model cache {cache} "
                                                f"({exc.strerror or exc})")
            # a read-only home (an image, a kiosk's mount): nobody writes there, so it is read without the lock
            log.info("%s: the compiled-model cache %s cannot be written (%s); reading it as it is", path, cache,
                     exc.strerror or exc)
            lock = None
        try:
            before = _blobs(entries)
            compiled = core.compile_model(model, device, {**cfg, "CACHE_DIR": str(entries)})
            new = set(_blobs(entries)) - set(before)
            _readable(new)
            if new and lock is not None:  # keep the folder within its bound, the new entry kept whatever its time
                try:
                    prune_cache(Path(cache), keep=new)
                except Exception as exc:  # a prune that fails costs disk, never the compiled model
                    log.warning("compiled-model cache %s: could not prune it (%s)", cache, first_line(exc))
            return compiled
        except Exception as exc:
            log.warning("%s: compiling with the model cache in %s failed (%s); compiling without it", path,
                        cache, first_line(exc))
            cfg.pop("CACHE_DIR")
        finally:
            if lock is not None:
                lock.release()
    return core.compile_model(model, device, cfg)


# properties that say how a compiled model is run, not what is compiled: entries are shared across them (checked
# for the hint: an entry written under LATENCY reads bit-for-bit as a fresh THROUGHPUT compile, tests/test_engines.py)
RUNTIME_PROPERTIES = frozenset({"PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS", "INFERENCE_NUM_THREADS",
                                "NUM_STREAMS", "CPU_RUNTIME_CACHE_CAPACITY", "ENABLE_CPU_PINNING",
                                "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE", "LOG_LEVEL", "PERF_COUNT"})
# the folders entry_folder names: only their entries are pruned (a cache_dir shared with another program keeps its
# files, and entries an older edgerec wrote at the root are never read nor removed: delete them to free the space)
ENTRY_FOLDER = re.compile(r"[a-z0-9_.-]+-[A-Za-z0-9_.]+-[0-9a-f]{16}")


def entry_folder(cache: Path, device: str, cfg: dict) -> Path:
    """The folder, under the cache root, of the entries compiled with this configuration: ``cpu-f32-<digest>``.

    OpenVINO's CPU plugin (2026.4) keys an entry on the model and the CPU's name only (its CACHING_PROPERTIES
    list FULL_DEVICE_NAME alone): the same IR compiled for f32 and for bf16, or for LATENCY and THROUGHPUT, or
    under a oneDNN ISA cap (``edgerec quantize``'s reading without VNNI), wrote and read one entry, so each
    loaded whichever had been compiled last. On a Xeon with AMX, bf16 loaded from an f32 entry gave NaN scores
    and empty texts. So the digest covers the compile properties that shape the compiled graph (all but the
    folder and RUNTIME_PROPERTIES, which OpenVINO applies when it loads an entry: a kiosk prepared with other
    threads or hint still finds its entries), the device, the ISA cap, this CPU's ISA flags (a virtual machine
    may name several CPU generations alike) and OpenVINO's version."""
    from edgerec.utils import cpu

    graph = {str(k): str(v) for k, v in cfg.items() if k != "CACHE_DIR" and k not in RUNTIME_PROPERTIES}
    facts = {"config": graph, "device": device, **cpu.compile_facts()}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
    precision = str(cfg.get("INFERENCE_PRECISION_HINT") or "default")
    return cache / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{device.lower()}-{precision}-{digest}")


def _readable(blobs: set[Path]) -> None:
    """OpenVINO writes cache entries readable by their owner and group only (0440): a kiosk image prepared as
    root and run as another user could not read them. They get the read bits the umask allows, as the IR has."""
    from edgerec.utils.fs import current_umask

    bits = 0o444 & ~current_umask()
    for blob in blobs:
        try:
            mode = blob.stat().st_mode & 0o777
            if mode | bits != mode:
                blob.chmod(mode | bits)
        except OSError:  # another user's entry, a read-only folder: left as it is
            pass


def _blobs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.suffix == ".blob"]
    except OSError:
        return []


def _all_blobs(cache: Path) -> list[Path]:
    """Every entry in the configuration folders under the cache root."""
    try:
        folders = [p for p in cache.iterdir() if ENTRY_FOLDER.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return [b for folder in folders for b in _blobs(folder)]


def cache_limit_bytes() -> int:
    """The compiled-model cache's bound: ``EDGEREC_CACHE_MB`` (default CACHE_MB; 0 = no bound)."""
    raw = os.environ.get(CACHE_MB_ENV, "").strip()
    try:
        mb = float(raw) if raw else CACHE_MB
        if not math.isfinite(mb):
            raise ValueError
    except ValueError:
        log.warning("%s=%r is not a number of MB; using %d", CACHE_MB_ENV, raw, CACHE_MB)
        mb = CACHE_MB
    return max(0, int(mb * 2**20))


def prune_cache(folder: Path, limit: int | None = None, keep: set[Path] | frozenset = frozenset()) -> list[Path]:
    """Remove the least recently used compiled models (by access or write time, whichever is later) until the
    folder's blobs fit ``limit`` bytes; the newest entry and those in ``keep`` (just written) always stay. Called
    under the compile lock, so no other edgerec process is reading an entry; one mapped by a running process stays
    readable to it (POSIX unlink)."""
    limit = cache_limit_bytes() if limit is None else limit
    if limit <= 0:
        return []
    entries = []
    for blob in _all_blobs(folder):
        try:
            st = blob.stat()
        except OSError:
            continue
        entries.append((max(st.st_atime, st.st_mtime), st.st_size, blob))
    entries.sort()
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, blob in entries[:-1]:
        if total <= limit:
            break
        if blob in keep:
            continue
        try:
            blob.unlink()
        except OSError:
            continue
        total -= size
        removed.append(blob)
        if blob.parent != folder:
            try:
                blob.parent.rmdir()  # its configuration's last entry: the folder goes too
            except OSError:
                pass
    if removed:
        log.info("compiled-model cache %s: removed %d least recently used entries to stay within %d MB", folder,
                 len(removed), limit // 2**20)
    return removed
