"""`make bench`: the accuracy-versus-latency report for the edge recognizers on ../shared/evalsets.

    python scripts/bench.py [--evalsets ../shared/evalsets] [--limit 200 | --full] [--threads N]
                            [--models A,B] [--sets a,b] [--output output/bench] [--no-fresh-process]
                            [--rounds 3] [--repeats 3] [--timing-lines N] [--paddlex-python PATH]
                            [--rapidocr-python PATH] [--no-peers]

Runs `edgerec report` (edgerec/bench/) for PP-OCRv4_mobile_rec, en_PP-OCRv3_mobile_rec, PP-OCRv5_mobile_rec,
PP-OCRv6_small_rec and PP-OCRv6_tiny_rec on iiit5k_3000, svt_647, en_uw3_70 and zh_plates_1000: OpenVINO fp32,
bf16 (where the CPU has native bf16) and int8 (int8 only where `edgerec quantize` installed it; otherwise
skipped with a message), bf16 and int8 again with 160-px width buckets (`width_bucket=160`, what use_hpip takes on
CPU for document lines of many widths), int8 and bf16 with low-scoring lines read again at fp32
(`recheck="fp32"`), ONNX Runtime fp32 on the same ONNX
(as it ships and with spinning off), and Paddle Inference fp32 for PP-OCRv4 (the only one with a Paddle source).
Tesseract joins when installed, and PaddleX itself (`paddlex.create_model(...).predict`, PP-OCRv4's same Paddle
weights) when --paddlex-python (default: $EDGEREC_PADDLEX_PYTHON) names a virtualenv with paddlex[ocr-core]==3.7.2
and paddlepaddle; PaddleX's children run with that interpreter (docs/usage.md). RapidOCR's OpenVINO engine
(rapidocr-openvino, its bundled PP-OCRv4 recognizer) joins when installed here or when --rapidocr-python (default:
$EDGEREC_RAPIDOCR_PYTHON) names a virtualenv that has it; --no-peers leaves out these three (they read the same lines
whatever --models says), for a run that compares edgerec's precisions with ONNX Runtime model by model. Latency
comes from a separate process per configuration, --rounds rounds interleaved, every engine on the same --threads
(default: every usable core); see edgerec/bench/timing.py.

Each set is cut to its first --limit lines (200 by default; en_uw3_70 has 70). Every configuration reads a
set once in this process (accuracy) and --rounds x --repeats times in its timing processes (3 x 3 by default),
at batch 1 and 8, so the run takes several times as long as one pass; en_uw3_70's 70 long lines are each a new
input shape, warmed in every process. 200 words leave about +-3 points of sampling noise on an accuracy: use
--full (every line for accuracy; latency on each set's first --timing-lines lines, 200 by default) for figures
to quote, or `--limit 50 --rounds 1 --repeats 1
--no-fresh-process` for a quick look (`--rounds 0` times in one process: quicker, and biased). Writes
report.md, report.json and acc_vs_latency.png to --output and prints the summary table and the per-set tables.
Skips, with a message and exit status 0, when the evaluation sets are absent.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from edgerec.bench import Config, ReportOptions, dataset_table, run_report, summary_table, timing_line  # noqa: E402
from edgerec.errors import EdgeRecError  # noqa: E402

MODELS = ["PP-OCRv4_mobile_rec", "en_PP-OCRv3_mobile_rec", "PP-OCRv5_mobile_rec", "PP-OCRv6_small_rec",
          "PP-OCRv6_tiny_rec"]
SETS = ["iiit5k_3000", "svt_647", "en_uw3_70", "zh_plates_1000"]
PADDLE_MODELS = {"PP-OCRv4_mobile_rec"}
DEFAULT_EVALSETS = ROOT.parent / "shared" / "evalsets"


def bench_configs(models: list[str]) -> list[Config]:
    """OpenVINO fp32, bf16 (skipped on CPUs without native bf16), int8, bf16 and int8 with width buckets (use_hpip's
    choices on CPU), int8 and bf16 with low-scoring lines read again at fp32 (recheck), ONNX Runtime fp32, and
    Paddle fp32 where the model has a Paddle source."""
    out = []
    bucket = (("width_bucket", 160),)
    recheck = (("recheck", "fp32"),)
    for m in models:
        out += [Config(m, "fp32", "openvino"), Config(m, "bf16", "openvino"), Config(m, "int8", "openvino"),
                Config(m, "bf16", "openvino", bucket), Config(m, "int8", "openvino", bucket),
                Config(m, "int8", "openvino", recheck), Config(m, "bf16", "openvino", recheck),
                Config(m, "fp32", "onnxruntime")]
        if m in PADDLE_MODELS:
            out.append(Config(m, "fp32", "paddle"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evalsets", type=Path, default=Path(os.environ.get("EDGEREC_EVALSETS", DEFAULT_EVALSETS)))
    ap.add_argument("--limit", type=int, default=200, help="first N lines of each set (default 200)")
    ap.add_argument("--full", action="store_true", help="every line of every set (ignores --limit)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--output", type=Path, default=Path("output/bench"))
    ap.add_argument("--no-fresh-process", action="store_true", help="skip cold start and peak RSS")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, one process per configuration each; "
                    "0: in-process (biased)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over a set inside each timing process")
    ap.add_argument("--timing-lines", type=int, default=None,
                    help="time on the first N lines of each set only (default: 200 with --full, else every line "
                         "read); accuracy still reads every line")
    ap.add_argument("--paddlex-python", default=os.environ.get("EDGEREC_PADDLEX_PYTHON") or None, metavar="PATH",
                    help="Python of a virtualenv with paddlex[ocr-core]==3.7.2 + paddlepaddle: PaddleX itself as a "
                    "peer (default: $EDGEREC_PADDLEX_PYTHON; skipped without it)")
    ap.add_argument("--rapidocr-python", default=os.environ.get("EDGEREC_RAPIDOCR_PYTHON") or None, metavar="PATH",
                    help="Python of a virtualenv with rapidocr-openvino==1.4.4: RapidOCR's OpenVINO engine as a peer "
                    "(default: $EDGEREC_RAPIDOCR_PYTHON; else in this interpreter where installed, or skipped)")
    ap.add_argument("--no-peers", action="store_true",
                    help="leave out Tesseract, RapidOCR and PaddleX (edgerec's configurations and ONNX Runtime only)")
    args = ap.parse_args(argv)

    if not args.evalsets.is_dir():
        print(f"bench: skipped: no evaluation sets at {args.evalsets} (expected ../shared/evalsets)")
        return 0
    sets = []
    for name in [s for s in args.sets.split(",") if s]:
        folder = args.evalsets / name
        if (folder / "label.txt").is_file():
            sets.append(folder)
        else:
            print(f"bench: {name}: not found in {args.evalsets}; skipped", file=sys.stderr)
    if not sets:
        print(f"bench: skipped: none of {args.sets} is in {args.evalsets}")
        return 0
    models = [m for m in args.models.split(",") if m]
    try:
        opts = ReportOptions(models=models, datasets=sets, output=args.output,
                             limit=None if args.full else args.limit, threads=args.threads,
                             fresh_process=not args.no_fresh_process, precisions=["fp32", "bf16", "int8"],
                             engines=["openvino", "onnxruntime", "paddle"], configs=bench_configs(models),
                             rounds=args.rounds, repeats=args.repeats, paddlex_python=args.paddlex_python,
                             rapidocr_python=args.rapidocr_python, tesseract=not args.no_peers,
                             rapidocr=not args.no_peers, paddlex=not args.no_peers,
                             timing_lines=args.timing_lines or (200 if args.full else None),
                             paddlex_models=[m for m in models if m in PADDLE_MODELS])
        report = run_report(opts)
    except EdgeRecError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(timing_line(report) + "\n" + report["environment"]["isa"] + "\n")
    print("\n".join(summary_table(report)))
    for ds in report["datasets"]:
        rows = [r for r in report["results"] if r["dataset"] == ds["name"]]
        if rows:
            print(f"\n{ds['name']} ({ds['lines']} lines)\n" + "\n".join(dataset_table(ds, rows)))
    print(f"\nwrote {args.output}/report.md, report.json, acc_vs_latency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
