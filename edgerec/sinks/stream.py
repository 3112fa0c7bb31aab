"""``predict --output``: a long run over folders into a crash-safe JSON Lines file, resumable, with progress.

The recognizer streams (sorted folder walk, reader pool, results without their images); the sink writes whole
lines in fsynced chunks; with ``resume`` the inputs already in the file are skipped before they are read. The
progress bar's total is counted by a second walk in a background thread, so the first result never waits for
a million-file listing.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgerec.errors import EdgeRecError
from edgerec.io.images import INPUT_SUFFIXES
from edgerec.io.walk import walk_files
from edgerec.runtime.preprocess import MIN_W
from edgerec.sinks.jsonl import JsonlSink

CHUNK_ENV = "EDGEREC_JSONL_CHUNK"  # lines per fsynced chunk (default 64): a kill loses at most one chunk


@dataclass
class StreamSummary:
    written: int  # result lines this run added
    errors: int  # of those, inputs that failed
    skipped: int  # inputs already in the file (resume)
    earlier_errors: int  # failed inputs already in the file


@functools.lru_cache(maxsize=65536)
def _real_dir(folder: str) -> str:
    """``folder`` with its symlinks resolved, once per folder (a tree of millions of files has few folders)."""
    try:
        return os.path.realpath(folder)
    except (OSError, ValueError):  # a symlink loop on some Pythons, a NUL byte: the folder as written
        return folder


def _norm(path: str | None, base: str | None = None) -> str | None:
    """The identity of a file input across runs: its absolute path, its folder's symlinks resolved (a tree reached
    through a link, or a current folder under a symlinked /home, is the same tree; two file links to one target
    stay two inputs), a relative one taken against ``base`` (the folder it was given in; default: the current
    folder). URLs and array names are kept as they are."""
    if not isinstance(path, str) or "://" in path:
        return path
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    path = os.path.normpath(os.path.abspath(path))
    folder, name = os.path.split(path)
    return os.path.join(_real_dir(folder), name)


def _key(rec: dict) -> tuple | None:
    """A results line's identity for resume; None for a line without a path (an array): never "done"."""
    if rec["input_path"] is None:
        return None
    return (_norm(rec["input_path"], rec.get("cwd")), rec["page_index"])


def _relative(path: str | None) -> bool:
    """A local path that means something only with the folder it was given in."""
    return isinstance(path, str) and "://" not in path and not os.path.isabs(path)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the current folder was removed: relative inputs cannot be read anyway
        return None


def count_inputs(inputs: Sequence[str], stop: threading.Event) -> int | None:
    """How many files ``inputs`` name (folders walked); None when stopped first. PDF/TIFF pages count as one."""
    n = 0
    for inp in inputs:
        if os.path.isdir(inp):
            for _ in walk_files(inp, INPUT_SUFFIXES):
                n += 1
                if stop.is_set():
                    return None
        else:
            n += 1
    return n


def reader_of(model) -> str:
    """What reads the lines, as a results line records it: the model's name and precision, and the options that
    change texts where they are not PaddleX's (widths, a recheck)."""
    text = f"{model.model_name} {model.precision}"
    predictor = getattr(model, "predictor", None)
    min_width = getattr(predictor, "min_width", MIN_W)
    bucket = getattr(predictor, "width_bucket", None)
    again = getattr(predictor, "recheck", None)
    return text + (f" min_width={min_width}" if min_width != MIN_W else "") + (
        f" width_bucket={bucket}" if bucket else "") + (
        f" recheck={again.precision}<{again.below:g}" if again is not None else "")


def predict_to_jsonl(model, inputs: Sequence[str], output: str, *, resume: bool = False, overwrite: bool = False,
                     batch_size: int | None = None, workers: int = 2, progress: bool = True,
                     on_error: Callable[[str], None] | None = None) -> StreamSummary:
    """Recognize ``inputs`` into the JSON Lines file ``output``; ``on_error`` gets each failed input's message."""
    from tqdm import tqdm

    chunk = int(os.environ.get(CHUNK_ENV, "64") or 64)
    earlier: list = []
    with JsonlSink(output, resume=resume, overwrite=overwrite, chunk=chunk, errors=earlier, key=_key) as sink:
        # inputs are matched on their absolute normalised path, so `scans`, `./scans/` and /abs/scans resume alike;
        # a relative path is taken against the folder its line records ("cwd"), so a resume started from another
        # folder matches too (lines without it, from older versions, against the current folder). Results without
        # a path (arrays) have no identity to match: they are never "done".
        done = sink.done
        identity = reader_of(model)
        others = sorted(m for m in sink.models if m != identity)
        if others:  # the file could not say which line which model read
            raise EdgeRecError(f"--output {output}: its lines were read by {', '.join(others)}; this run reads "
                               f"with {identity}: resume with the same --model, --precision, --min-width, "
                               "--width-bucket and --use-hpip, or give another --output")
        here = _cwd()
        skipped = 0

        def skip(path: str) -> bool:
            nonlocal skipped
            if (_norm(path), None) in done:
                skipped += 1
                return True
            return False

        bar = tqdm(desc="recognizing", unit="line", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        stop = threading.Event()
        if not bar.disable:
            def set_total() -> None:
                total = count_inputs(inputs, stop)
                if total is not None:
                    bar.total = max(total - len(done), bar.n)
                    bar.refresh()

            threading.Thread(target=set_total, name="edgerec-count", daemon=True).start()
        errors = 0
        try:
            for res in model.predict(list(inputs), batch_size=batch_size, workers=workers, keep_image=False,
                                     skip=skip if done else None):
                if done and (_norm(res["input_path"]), res["page_index"]) in done:  # a PDF page done before
                    skipped += 1
                    continue
                sink.add({"input_path": res["input_path"], "page_index": res["page_index"],
                          "rec_text": res["rec_text"], "rec_score": float(res["rec_score"]), "error": res.error,
                          "cwd": here if _relative(res["input_path"]) else None, "model": identity})
                if res.error:
                    errors += 1
                    if on_error is not None:
                        on_error(res.error)
                bar.update(1)
                if errors:
                    bar.set_postfix(errors=errors, refresh=False)
        finally:
            stop.set()
            bar.close()
    return StreamSummary(sink.written, errors, skipped, len(earlier))
