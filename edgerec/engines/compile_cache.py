"""OpenVINO's compiled-model cache (``CACHE_DIR``): compiling under a lock, and keeping the folder bounded.

A second start of a model loads its compiled kernels from the cache instead of compiling them (seconds saved on a
small CPU). Each model, precision, hint and static width compiled adds an entry; past ``EDGEREC_CACHE_MB`` the
least recently used entries go.
"""

from __future__ import annotations

import logging
import os
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
        from edgerec.utils.fs import file_lock

        try:
            with file_lock(Path(cache) / ".compile.lock", timeout=300):
                before = _blobs(Path(cache))
                compiled = core.compile_model(model, device, cfg)
                if set(_blobs(Path(cache))) - set(before):  # a new entry: keep the folder within its bound
                    prune_cache(Path(cache))
                return compiled
        except Exception as exc:
            log.warning("%s: compiling with the model cache in %s failed (%s); compiling without it", path,
                        cache, first_line(exc))
            cfg.pop("CACHE_DIR")
    return core.compile_model(model, device, cfg)


def _blobs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.suffix == ".blob"]
    except OSError:
        return []


def cache_limit_bytes() -> int:
    """The compiled-model cache's bound: ``EDGEREC_CACHE_MB`` (default CACHE_MB; 0 = no bound)."""
    raw = os.environ.get(CACHE_MB_ENV, "").strip()
    try:
        mb = float(raw) if raw else CACHE_MB
    except ValueError:
        log.warning("%s=%r is not a number of MB; using %d", CACHE_MB_ENV, raw, CACHE_MB)
        mb = CACHE_MB
    return max(0, int(mb * 2**20))


def prune_cache(folder: Path, limit: int | None = None) -> list[Path]:
    """Remove the least recently used compiled models (by access or write time, whichever is later) until the
    folder's blobs fit ``limit`` bytes; the newest entry always stays. Called under the compile lock, so no other
    edgerec process is reading an entry; one mapped by a running process stays readable to it (POSIX unlink)."""
    limit = cache_limit_bytes() if limit is None else limit
    if limit <= 0:
        return []
    entries = []
    for blob in _blobs(folder):
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
        try:
            blob.unlink()
        except OSError:
            continue
        total -= size
        removed.append(blob)
    if removed:
        log.info("compiled-model cache %s: removed %d least recently used entries to stay within %d MB", folder,
                 len(removed), limit // 2**20)
    return removed
