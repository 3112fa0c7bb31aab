"""``edgerec report``: accuracy versus latency of models, precisions and engines on labelled sets."""

from __future__ import annotations

from pathlib import Path

import click

from edgerec.bench.configs import PRECISIONS
from edgerec.commands.common import fail
from edgerec.engines import registry
from edgerec.errors import EdgeRecError


def _csv(choices: tuple[str, ...] | None = None):
    """A click callback that splits 'a,b' into ['a', 'b'] and checks each against ``choices``."""
    def parse(ctx, param, value):
        items = [v.strip() for v in (value or "").split(",") if v.strip()]
        bad = [v for v in items if choices is not None and v not in choices]
        if bad or not items:
            raise click.BadParameter(f"{', '.join(bad) or 'nothing given'}: use a comma-separated list"
                                     + (f" of {', '.join(choices)}" if choices else ""))
        return items
    return parse


@click.command()
@click.option("--models", required=True, callback=_csv(), help="Comma-separated model card names.")
@click.option("--precisions", default="fp32", show_default=True, callback=_csv(PRECISIONS),
              help="fp32,fp16,bf16,int8 (all but fp32 on openvino only; bf16 where the CPU has it natively; int8 "
                   "once `edgerec quantize` made it).")
@click.option("--engines", default=registry.DEFAULT_ENGINE, show_default=True, callback=_csv(registry.names()),
              help=f"{','.join(registry.names())} (all but openvino run the source model at fp32).")
@click.option("--dataset", "datasets", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="An evalset folder (label.txt) or a MSTextRecDataset folder (val.txt); repeat for more.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Folder for report.md, report.json and acc_vs_latency.png.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use the first N lines of each data set.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Inference threads (default: all cores).")
@click.option("--chunk", type=click.IntRange(1, 100000), default=64, show_default=True,
              help="Lines per alternation step.")
@click.option("--batch-size", type=click.IntRange(2, 256), default=8, show_default=True,
              help="Batch size of the throughput pass.")
@click.option("--scene-text", multiple=True, metavar="NAME",
              help="Score data set folder NAME with alnum acc too (automatic for iiit5k, svt, icdar, cute).")
@click.option("--tesseract/--no-tesseract", default=True, show_default=True,
              help="Add Tesseract --psm 7 as a peer when the binary is on PATH.")
@click.option("--tesseract-lang", default="eng", show_default=True)
@click.option("--no-fresh-process", is_flag=True, help="Skip cold start and peak RSS (one new process each).")
@click.option("--rounds", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Timing rounds, a new process per configuration each; 0: time in this process (biased, quick).")
@click.option("--timing-lines", type=click.IntRange(1), default=None,
              help="Time each configuration on the first N lines of each set only (accuracy still reads every "
                   "line) [default: every line].")
@click.option("--paddlex-python", envvar="EDGEREC_PADDLEX_PYTHON", show_envvar=True, metavar="PATH",
              help="The Python of a virtualenv with paddlex[ocr-core]==3.7.2 and paddlepaddle: adds PaddleX itself "
                   "as a peer for each model (skipped, with a message, without it).")
@click.option("--rapidocr-python", envvar="EDGEREC_RAPIDOCR_PYTHON", show_envvar=True, metavar="PATH",
              help="The Python of a virtualenv with rapidocr-openvino (it pins opencv-python and an older OpenVINO): "
                   "RapidOCR's OpenVINO engine as a peer from there [default: in this interpreter, if installed].")
def report(models, precisions, engines, datasets, output, limit, threads, chunk, batch_size, scene_text, tesseract,
           tesseract_lang, no_fresh_process, rounds, timing_lines, paddlex_python, rapidocr_python) -> None:
    """Accuracy versus latency for every model x precision x engine on every data set.

    Writes report.md, report.json and acc_vs_latency.png to --output and prints the summary table.
    """
    from edgerec.bench import ReportOptions, run_report, summary_table

    if not str(output).strip():
        fail("--output: give a folder name, not an empty one")
    opts = ReportOptions(models=models, datasets=[Path(d) for d in datasets], output=Path(output),
                         precisions=precisions, engines=engines, limit=limit, threads=threads, chunk=chunk,
                         batch_size=batch_size, scene_text=list(scene_text), tesseract=tesseract,
                         tesseract_lang=tesseract_lang, fresh_process=not no_fresh_process, rounds=rounds,
                         timing_lines=timing_lines,
                         paddlex_python=paddlex_python or None, rapidocr_python=rapidocr_python or None)
    try:
        rep = run_report(opts)
    except EdgeRecError as exc:
        fail(exc)
    click.echo("\n".join(summary_table(rep)))
    click.echo(f"\nwrote {output}/report.md, report.json, acc_vs_latency.png")
