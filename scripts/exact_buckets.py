#!/usr/bin/env python
"""Do width buckets keep the texts? ``create_model(NAME)`` against ``create_model(NAME, width_bucket=160)`` (the
padding masked, edgerec/engines/padding_mask.py) line by line on evaluation sets.

    PYTHONPATH=. python scripts/exact_buckets.py MODEL PRECISION [--sets en_uw3_70,en_doc_taigi] [--batch-size 1]

Prints, per set, how many texts are the same and the largest score difference. Measurement made with it:
docs/measurements/2026-12-07-exact-buckets.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("precision")
    ap.add_argument("--sets", default="en_uw3_70,en_doc_taigi")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--bucket", type=int, default=160)
    ap.add_argument("--evalsets", type=Path, default=ROOT.parent / "shared" / "evalsets")
    a = ap.parse_args(argv)
    from edgerec import create_model
    from edgerec.bench.datasets import load_dataset

    exact = create_model(a.model, precision=a.precision, threads=2, progress=False)
    bucketed = create_model(a.model, precision=a.precision, threads=2, width_bucket=a.bucket, progress=False)
    print(bucketed.config_summary)
    for name in a.sets.split(","):
        ds = load_dataset(a.evalsets / name)
        want = exact.recognize_batch(ds.images, batch_size=a.batch_size)
        got = bucketed.recognize_batch(ds.images, batch_size=a.batch_size)
        same = sum(x[0] == y[0] for x, y in zip(want, got))
        diff = max(abs(x[1] - y[1]) for x, y in zip(want, got))
        print(f"{a.model} {a.precision} {name} batch {a.batch_size}: text same on {same}/{len(want)}, "
              f"max |score difference| {diff:.2e}")


if __name__ == "__main__":
    main()
