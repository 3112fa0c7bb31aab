"""``edgerec predict``: line images to text, on stdout, into a JSON Lines file, or through Ray."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from pathlib import Path

import click

from edgerec.commands.common import (
    ENGINE,
    MIN_WIDTH,
    PRECISION_OPTION,
    RECHECK,
    USE_HPIP,
    WIDTH_BUCKET,
    fail,
    recheck_options,
)
from edgerec.commands.shell import plain
from edgerec.engines import registry
from edgerec.errors import EdgeRecError
from edgerec.zoo.cards import DEFAULT_MODEL


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "model_name", help="Model card name [default: PP-OCRv4_mobile_rec unless --model-dir].")
@click.option("--model-dir", type=click.Path(), help="An exported IR folder, or a local Paddle/ONNX model.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, GPU, GPU.0, AUTO (Intel); gpu:N (NVIDIA, paddle engine).")
@PRECISION_OPTION
@USE_HPIP
@RECHECK
@click.option("--engine", type=ENGINE, default=None,
              help="Force an engine [default: by device, as the API picks: paddle for gpu/gpu:N, else openvino].")
@click.option("--batch-size", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Inference threads (default: all cores).")
@click.option("--shape-cache", type=click.IntRange(0, 100000), default=None,
              help="Input shapes besides the minimum width whose OpenVINO kernels stay prepared [default: 0, or with "
                   "--width-bucket (or --use-hpip on CPU) the buckets times the batch sizes, at most 32]; ~10 MB "
                   "each in int8, ~0.3 MB in fp32. Raise it to about the number of distinct widths for speed on "
                   "folders of a few widths.")
@click.option("--save-dir", type=click.Path(file_okay=False),
              help="A folder (created if needed; always a folder, whatever its name) to write <stem>_res.json and "
                   "<stem>_res.<suffix> into; inputs of one run named alike get <stem>_2, _3, ... Files already "
                   "there are not replaced unless --overwrite.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--strict-device", is_flag=True,
              help="Refuse gpu/gpu:N without a usable NVIDIA GPU (default: warn, run on cpu).")
@click.option("--output", type=click.Path(), help="Write one JSON line per input to this file as results come "
              "(crash-safe; with --ray: a new folder of JSON files). Nothing is printed per line then.")
@click.option("--resume", is_flag=True, help="Continue an --output file: inputs already in it are skipped.")
@click.option("--overwrite", is_flag=True, help="Start an existing --output file again (with --ray: replace the "
              "folder's contents); with --save-dir: replace files of the same name already there.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Threads decoding folder images ahead of inference [default: 2 with --output, else 1].")
@click.option("--hint", type=click.Choice(["LATENCY", "THROUGHPUT"]), default=None,
              help="OpenVINO performance hint [default: THROUGHPUT with --output (parallel streams), else LATENCY].")
@MIN_WIDTH
@WIDTH_BUCKET
@click.option("--ray", "use_ray", is_flag=True, help="Run on Ray Data (pip install 'edgerec[ray]'); needs --output.")
@click.option("--address", default=None, help="With --ray: the cluster to join ('auto', or a head's "
              "HOST:PORT; not ray://) [default: a local Ray on this machine's cores].")
def predict(inputs, model_name, model_dir, device, precision, use_hpip, recheck, recheck_below, engine, batch_size,
            threads, shape_cache, save_dir, as_json, quiet, strict_device, output, resume, overwrite, workers, hint,
            use_ray, address, min_width, width_bucket):
    """Recognize the text in line images: files, folders, PDFs, URLs.

    Bad inputs are reported one line each on stderr; the others still get results; the exit status is then 1.
    With --output, results go to a JSON Lines file instead of stdout (see docs/scale.md).
    """
    from tqdm import tqdm

    from edgerec.api import create_model

    if (resume or use_ray) and not output:
        fail("--resume and --ray need --output")
    if address is not None and not use_ray:
        fail("--address names the Ray cluster for --ray: add --ray, or leave --address out")
    if overwrite and not (output or save_dir):
        fail("--overwrite needs --output or --save-dir")
    if resume and overwrite:
        fail("--resume and --overwrite contradict each other: pick one")
    if output and (save_dir or as_json):
        fail("--output writes the results file; --save-dir and --json print or save per line: pick one")
    again = recheck_options(recheck, recheck_below)
    if use_ray:
        _predict_ray(inputs, output, model_name, model_dir, precision, batch_size, threads, address, overwrite,
                     resume, min_width, width_bucket, use_hpip, again)
        return
    if output and hint is None and _takes(engine, device, "hint"):
        hint = "THROUGHPUT"  # a long run wants lines per second: OpenVINO's streams, batches in parallel
    try:
        if model_name is None and model_dir is None:
            model_name = DEFAULT_MODEL
        logging.getLogger("edgerec.bad_input").setLevel(logging.ERROR)  # reported on stderr below, once each
        if click.get_current_context().get_parameter_source("engine") is click.core.ParameterSource.DEFAULT:
            engine = None  # pick by device, so --device gpu can fall back to cpu as PaddleX does
        model = create_model(model_name, model_dir=model_dir, device=device, precision=precision, engine=engine,
                             use_hpip=use_hpip,
                             batch_size=batch_size, threads=threads, progress=not quiet,
                             shape_cache=shape_cache, strict_device=strict_device, hint=hint, min_width=min_width,
                             width_bucket=width_bucket, **again)
    except EdgeRecError as exc:
        fail(exc)
    if (use_hpip or recheck) and not quiet:  # what runs, and why: on stderr, so results on stdout stay as they are
        click.echo(f"edgerec: {plain(model.config_summary)}", err=True)
    if output:
        try:
            _predict_to_file(model, inputs, output, resume, overwrite, batch_size, workers or 2, quiet)
        finally:
            _say_rechecked(model, quiet)
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
    saver = SaveDir(save_dir, overwrite=overwrite) if save_dir else None
    try:
        for res in model.predict(list(inputs), batch_size=batch_size, workers=workers or 1):
            bar.update(1)
            if res.error:
                failures += 1
                tqdm.write(f"edgerec: error: {plain(res.error)}", file=sys.stderr)
                continue
            where = res["input_path"] if res["input_path"] is not None else res._stem()
            if as_json:
                emit(_json_line(res.json["res"]))
            else:
                page = f" [page {res['page_index']}]" if res["page_index"] is not None else ""
                emit(f"{plain(where)}{page}\t{plain(res['rec_text'])}\t{res['rec_score']:.4f}")
            if saver is not None:
                try:  # one result that cannot be saved is an error for that input; the others go on
                    saver.save(res)
                except Exception as exc:  # whatever the encoder or the disk says: that input's error
                    failures += 1
                    page = f" [page {res['page_index']}]" if res["page_index"] is not None else ""
                    tqdm.write(f"edgerec: error: {plain(where)}{page}: cannot save its result in {plain(save_dir)}: "
                               f"{plain(_why(exc))}", file=sys.stderr)
                    continue
    except EdgeRecError as exc:
        fail(exc)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise  # the reader went away (`| head`): EdgeRecGroup ends quietly
        fail(f"cannot write results to stdout: {exc.strerror or exc}")
    finally:
        bar.close()
        _say_rechecked(model, quiet)
    if failures:
        sys.exit(1)


def _say_rechecked(model, quiet: bool) -> None:
    """With --recheck: how many lines were read again (on stderr, after the results)."""
    counts = model.recheck_counts
    if counts and not quiet:
        click.echo(f"edgerec: {counts['read_again']} of {counts['lines']} lines scored below "
                   f"{model.predictor.recheck.below:g} and were read again at {model.predictor.recheck.precision}",
                   err=True)


def _json_line(obj: dict) -> str:
    """One --json line: UTF-8 text, a file name that is not UTF-8 written with \\udcXX escapes (as --output does)."""
    line = json.dumps(obj, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes of a non-UTF-8 name: raw bytes would make the line invalid
        line = json.dumps(obj, ensure_ascii=True)
    return line


def _why(exc: BaseException) -> str:
    """What went wrong, in one line: an OSError's reason and file, else the exception's own message."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


class SaveDir:
    """``predict --save-dir``: ``<stem>_res.json`` and ``<stem>_res<suffix>`` per result in the folder ``folder``.

    The folder is always a folder, whatever its name ends with (PaddleX's "a path with a suffix is a file" rule is
    for save_to_json/save_to_img, not for this option). Names are unique within a run: an input whose stem was
    taken by an earlier one (``a/x.png`` and ``b/x.png``, or X.png and x.png, alike on a case-insensitive disk)
    saves as ``<stem>_2``, ``<stem>_3``, ...; its saved JSON's input_path says which input it is. A file already
    in the folder before the run is never replaced unless ``overwrite``: that result's save is then an error.
    Every file is written atomically.
    """

    def __init__(self, folder: str | os.PathLike, *, overwrite: bool = False):
        self.folder = Path(folder)
        self.overwrite = overwrite
        self._taken: set[str] = set()  # stems (case-folded) this run has used

    def claim(self, base: str) -> str:
        """A stem no earlier result of this run used: ``base``, else ``base_2``, ``base_3``, ..."""
        stem, n = base, 1
        while stem.casefold() in self._taken:
            n += 1
            stem = f"{base}_{n}"
        self._taken.add(stem.casefold())
        return stem

    def save(self, res) -> list[Path]:
        """Write ``res``'s JSON and visualisation; an exception (naming the file) when either cannot be written."""
        from edgerec.results import write_new
        from edgerec.utils.fs import atomic_write_bytes

        stem = self.claim(res._stem())
        where = self.folder / f"{stem}_res{res._image_suffix()}"
        img, suffix = res.img_bytes(res._image_suffix(), where=plain(where), fallback=True)  # too big: PNG
        files = [(self.folder / f"{stem}_res.json", res.json_bytes()), (self.folder / f"{stem}_res{suffix}", img)]
        for path, _ in files:  # checked for both before either is written: never one saved and not the other
            if path.is_dir() and not path.is_symlink():
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(path))
        if not self.overwrite:
            there = [str(p) for p, _ in files if os.path.lexists(p)]
            if there:
                raise FileExistsError(f"{' and '.join(there)} already exist{'s' if len(there) == 1 else ''}; "
                                      "pass --overwrite to replace files in --save-dir, or pick another folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        write = atomic_write_bytes if self.overwrite else write_new
        return [write(path, data) for path, data in files]


def _takes(engine: str | None, device: str, option: str) -> bool:
    """Whether the engine that ``engine``/``device`` picks has ``option`` (only what it takes is defaulted)."""
    try:
        return registry.pick(engine, device).takes(option)
    except EdgeRecError:
        return False


def _predict_to_file(model, inputs, output: str, resume: bool, overwrite: bool, batch_size: int, workers: int,
                     quiet: bool) -> None:
    """predict --output: stream into the JSON Lines file; exit 1 when any input in it failed."""
    from tqdm import tqdm

    from edgerec.sinks.stream import predict_to_jsonl

    def report(message: str) -> None:
        tqdm.write(f"edgerec: error: {plain(message)}", file=sys.stderr)

    try:
        got = predict_to_jsonl(model, list(inputs), output, resume=resume, overwrite=overwrite,
                               batch_size=batch_size, workers=workers, on_error=report,
                               progress=not quiet and sys.stderr.isatty())
    except EdgeRecError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"cannot write results to {output}: {exc.strerror or exc}")
    if not quiet:
        skipped = f", {got.skipped} already there" if got.skipped else ""
        click.echo(f"edgerec: {got.written} results written to {output} ({got.errors} failed{skipped})", err=True)
    if got.errors or got.earlier_errors:
        if got.earlier_errors:
            click.echo(f"edgerec: {got.earlier_errors} inputs failed in the earlier run(s) of {output}", err=True)
        sys.exit(1)


def _predict_ray(inputs, output: str, model_name, model_dir, precision: str | None, batch_size: int, threads, address,
                 overwrite: bool, resume: bool, min_width: int | None, width_bucket: int | None,
                 use_hpip: bool = False, recheck: dict | None = None) -> None:
    """predict --ray: the same recognizer as Ray Data actors; JSON files into the new folder ``output``. A failed
    input is a row with its error and one line on stderr, as without --ray; a failure of Ray itself is one line."""
    from edgerec.integrations.ray import recognize_folder
    from edgerec.integrations.ray_cluster import ray_error

    out = Path(output)
    if resume:
        fail("--resume is not supported with --ray (Ray Data writes a folder of files): use a new --output")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        fail(f"--output {out}: exists; with --ray give a new or empty folder (or --overwrite to replace its contents)")
    try:
        rows, errors = recognize_folder(list(inputs), str(out), model_name=model_name,
                                        model_dir=model_dir, precision=precision, address=address,
                                        num_cpus=threads or 1, batch_size=max(8, batch_size), overwrite=overwrite,
                                        min_width=min_width, width_bucket=width_bucket, use_hpip=use_hpip,
                                        **(recheck or {}),
                                        on_error=lambda e: click.echo(f"edgerec: error: {plain(e)}", err=True))
    except EdgeRecError as exc:
        fail(plain(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - Ray's or pyarrow's own, outside recognize_folder's guard: one line
        fail(plain(ray_error(exc)))
    click.echo(f"edgerec: {rows} results written to {out}/ through Ray ({errors} failed)", err=True)
    if errors:
        sys.exit(1)
