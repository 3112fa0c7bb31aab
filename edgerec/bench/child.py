"""One configuration in its own process: cold start, first text, every input shape once, peak RSS.

Run as ``python -m edgerec.bench.child`` with a JSON spec on stdin; prints one JSON line. Its own process so that
peak RSS (VmHWM) and cold start belong to this configuration alone, and no other engine's threads share the cores.
"""

import json
import os
import sys
import time

_W0 = time.time()
_T0 = time.perf_counter()


def rss() -> tuple[float | None, float | None]:
    """(current, peak) resident MB of this process; peak from ru_maxrss where /proc is absent."""
    cur = peak = None
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                if ln.startswith("VmRSS:"):
                    cur = int(ln.split()[1]) / 1024
                elif ln.startswith("VmHWM:"):
                    peak = int(ln.split()[1]) / 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 2**20)
    return cur, peak


def main() -> None:
    """Read the spec, run it, print the numbers as one JSON line."""
    spec = json.loads(sys.stdin.read())
    from edgerec import create_model
    from edgerec.io.inputs import load_image

    t1 = time.perf_counter()
    r1 = rss()
    model = create_model(spec["model"], precision=spec["precision"], engine=spec["engine"], threads=spec["threads"],
                         progress=False)
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
                      "rss_after_import_mb": r1[0], "rss_after_load_mb": r2[0], "peak_rss_mb": r4[1]}))


if __name__ == "__main__":
    main()
