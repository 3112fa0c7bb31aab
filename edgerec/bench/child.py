"""One configuration in its own process: cold start and peak RSS, or (``"mode": "timing"``) its latency.

Run as ``python -m edgerec.bench.child`` with a JSON spec on stdin (one line); prints one JSON line. The PaddleX
peer's children run it from PaddleX's own interpreter: what they import is kept to NumPy, OpenCV and edgerec's
bench and io modules (no OpenVINO). Its own process so that
peak RSS (VmHWM) and cold start belong to this configuration alone, and no other engine's threads share the cores:
ONNX Runtime's intra-op threads keep spinning after each run, and in a shared process they took the cores from
the OpenVINO request that ran next (2.8 ms per line alone, 5.9 alternating with ONNX Runtime, 2 cores).
"""

import json
import os
import sys
import time

_W0 = time.time()
_T0 = time.perf_counter()


def rss() -> tuple[float | None, float | None]:
    """(current, peak) resident MB of this process; peak from ru_maxrss where /proc is absent."""
    from edgerec.utils.memory import proc_status_kb

    status = proc_status_kb()
    if status is None:
        import resource
        return None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 2**20)
    cur, peak = status.get("VmRSS"), status.get("VmHWM")
    return (cur / 1024 if cur is not None else None), (peak / 1024 if peak is not None else None)


def timing(spec: dict) -> dict:
    """Load the configuration, run every input shape once untimed, then time the lines ``repeats`` times: each
    line alone at batch 1 (``line_ms``: per line, the median over repeats), then the set ``chunk`` lines at a
    time at ``batch_size`` (per-repeat totals), with time.perf_counter."""
    import statistics

    from edgerec.bench.configs import Config
    from edgerec.bench.measure import shape_plan
    from edgerec.bench.runners import open_runner
    from edgerec.io.inputs import load_image

    images = [load_image(p) for p in spec["lines"]]
    threads, chunk, bs, repeats = spec["threads"], spec["chunk"], spec["batch_size"], spec["repeats"]
    runner = open_runner(Config.of(spec), threads, spec.get("exe"))
    runner.warm(shape_plan([runner.width_of(im) for im in images], chunk, bs), images)
    per_line: list[list[float]] = [[] for _ in images]
    b1_total, b8_total = [], []
    for _ in range(repeats):
        runner.phase = 1
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            runner.recognize([img], 1)
            per_line[i].append(time.perf_counter() - t0)
        b1_total.append(sum(p[-1] for p in per_line))
        if 8 in runner.batch_sizes:
            runner.phase = 8
            t0 = time.perf_counter()
            for start in range(0, len(images), chunk):
                runner.recognize(images[start:start + chunk], bs)
            b8_total.append(time.perf_counter() - t0)
        runner.phase = None
    st8 = runner.stages[8]
    out = {"pid": os.getpid(), "mode": "timing", "repeats": repeats,
           "line_ms": [1000 * statistics.median(p) for p in per_line], "b1_total_s": b1_total,
           "b8_total_s": b8_total, "stages1": runner.stages[1].per_line_ms(), "stages8": st8.per_line_ms(),
           "b8_avg_batch": st8.lines / st8.calls if st8.calls else None,
           "precision": runner.compute_precision(), "engine_config": runner.engine_config(),
           "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    runner.close()
    return out


def _answer_stream():
    """This process's stdout for its answers alone: what libraries print (PaddleX, Paddle) goes to stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return out


def main() -> None:
    """Read the spec (one JSON line), run it, print the numbers as one JSON line. ``"mode": "serve"`` (the PaddleX
    peer's texts, edgerec.bench.paddlex_peer) answers one line per further stdin line instead."""
    spec = json.loads(sys.stdin.readline())
    out = _answer_stream()
    if spec.get("mode") == "serve":
        from edgerec.bench.peer_process import serve

        serve(spec, sys.stdin, out)
        return
    if spec.get("mode") == "timing":
        print(json.dumps(timing(spec)), file=out, flush=True)
        return
    from edgerec import create_model
    from edgerec.bench.configs import create_kwargs
    from edgerec.io.inputs import load_image

    t1 = time.perf_counter()
    r1 = rss()
    model = create_model(spec["model"], precision=spec["precision"], engine=spec["engine"], threads=spec["threads"],
                         progress=False, **create_kwargs(spec.get("engine_options")))
    t2 = time.perf_counter()
    r2 = rss()
    first = next(iter(model.predict(spec["first"], batch_size=1)))
    t3 = time.perf_counter()
    w3 = time.time()
    for paths, width in spec["groups"]:
        model.predictor.run_batch([load_image(p) for p in paths], width)
    r4 = rss()
    print(json.dumps({"pid": os.getpid(), "w_start": _W0, "w_first": w3, "import_s": t1 - _T0,
                      "create_model_s": t2 - t1, "first_text_s": t3 - t2, "first_text": first["rec_text"],
                      "rss_after_import_mb": r1[0], "rss_after_load_mb": r2[0], "peak_rss_mb": r4[1]}),
          file=out, flush=True)


if __name__ == "__main__":
    main()
