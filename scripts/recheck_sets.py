#!/usr/bin/env python
"""What ``recheck`` does to accuracy, on full evaluation sets: int8 and bf16 alone, and with low-scoring lines
read again at fp32.

    PYTHONPATH=. python scripts/recheck_sets.py [--models A,B] [--sets a,b] [--below 0.9,0.95]
        [--evalsets ../shared/evalsets] [--workdir /tmp/recheck-sets]

Every line of each set is read at fp32, bf16 (where the CPU has it natively) and int8 (where `edgerec quantize`
installed it) through ``RecPredictor`` as `edgerec evaluate` reads it (batches of 8, exact widths), and each line's
text and score are kept in the workdir per model and set (a second run reads them back). A recheck at threshold t
takes the fp32 reading of every line whose int8 (bf16) score is below t, which is what ``create_model(...,
recheck="fp32", recheck_below=t)`` does: the re-read line is the same input tensor read by the fp32 model
(tests/test_recheck.py checks that line by line). Prints a markdown table per threshold: Δ acc / Δ NED against
fp32 in points with the half-width of the 95 % interval paired over the lines (bold where it excludes 0), the share
of lines with fp32's text, and the share re-read. Measurement: docs/measurements/2026-12-08-recheck.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = "PP-OCRv4_mobile_rec,en_PP-OCRv3_mobile_rec,PP-OCRv5_mobile_rec,PP-OCRv6_small_rec,PP-OCRv6_tiny_rec"
SETS = "iiit5k_3000,svt_647,en_uw3_70,en_doc_taigi,zh_plates_1000"


def readings(model: str, sets: list[Path], workdir: Path) -> dict:
    """{set: {"labels": [...], precision: [[text, score], ...]}}, each set read once and kept in
    ``workdir/MODEL/SET.json``."""
    import openvino as ov

    from edgerec.bench.datasets import load_dataset
    from edgerec.quant.quantize import _predictor
    from edgerec.utils.cpu import has_native_bf16
    from edgerec.utils.fs import atomic_write_text
    from edgerec.zoo import home as homes
    from edgerec.zoo.export import read_info

    out: dict = {}
    compiled: dict = {}
    fp32_xml = homes.ir_dir(model, "fp32") / "model.xml"
    int8_xml = homes.ir_dir(model, "int8") / "model.xml"
    for folder in sets:
        kept = workdir / model / f"{folder.name}.json"
        if kept.is_file():
            out[folder.name] = json.loads(kept.read_text("utf-8"))
            continue
        info = read_info(fp32_xml)
        if not compiled:
            core = ov.Core()
            compiled["fp32"] = core.compile_model(str(fp32_xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            if has_native_bf16():
                compiled["bf16"] = core.compile_model(str(fp32_xml), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
            if int8_xml.is_file():
                compiled["int8"] = core.compile_model(str(int8_xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        ds = load_dataset(folder)
        row: dict = {"labels": list(ds.labels)}
        for precision, model_ in compiled.items():
            read = _predictor(model_, info.classes, info.input_height).recognize(ds.images, 8)
            row[precision] = [[text, float(score)] for text, score in read]
            print(f"{model} {ds.name} {precision}: read", file=sys.stderr, flush=True)
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(kept, json.dumps(row))
        out[folder.name] = row
    return out


def cell(fp32: list, other: list, labels: list[str], reread: float | None) -> str:
    from edgerec.data.metrics import paired_difference

    d = paired_difference(fp32, other, labels)

    def fmt(key: str) -> str:
        delta, ci = d[key]["delta"], d[key]["ci95"]
        text = f"{100 * delta:+.2f} ±{100 * ci:.2f}"
        return f"**{text}**" if abs(delta) > ci or (ci == 0 and delta != 0) else text

    same = sum(a == b for a, b in zip(fp32, other)) / len(fp32)
    tail = f"; {100 * reread:.0f} % re-read" if reread is not None else ""
    return f"{fmt('acc')} / {fmt('norm_edit_dis')} ({100 * same:.1f} %{tail})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--sets", default=SETS)
    ap.add_argument("--below", default="0.9", help="recheck thresholds, comma-separated")
    ap.add_argument("--evalsets", type=Path, default=ROOT.parent / "shared" / "evalsets")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/recheck-sets"))
    a = ap.parse_args(argv)
    if not a.evalsets.is_dir():
        print(f"recheck_sets: skipped: no evaluation sets at {a.evalsets}")
        return 0
    sets = [a.evalsets / s for s in a.sets.split(",") if s]
    names = [s.name for s in sets]
    for below in [float(x) for x in a.below.split(",")]:
        print(f"\nrecheck below {below:g}\n\n| model | reading | " + " | ".join(names) + " |\n|---|---|"
              + "---|" * len(names))
        for model in [m for m in a.models.split(",") if m]:
            got = readings(model, sets, a.workdir)
            for fast in ("int8", "bf16"):
                if fast not in got[names[0]]:
                    continue
                for recheck in (False, True):
                    cells = []
                    for name in names:
                        row = got[name]
                        fp32 = [t for t, _ in row["fp32"]]
                        low = [s < below for _, s in row[fast]] if recheck else [False] * len(fp32)
                        texts = [f if lo else t for (t, _), f, lo in zip(row[fast], fp32, low)]
                        cells.append(cell(fp32, texts, row["labels"], sum(low) / len(low) if recheck else None))
                    label = f"{fast} + fp32 recheck" if recheck else fast
                    print(f"| {model} | {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
