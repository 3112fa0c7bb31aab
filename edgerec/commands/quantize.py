"""``edgerec quantize`` and ``edgerec calibrate``: INT8 models with NNCF, from calibration crops."""

from __future__ import annotations

import click

from edgerec.commands.common import MIN_WIDTH, WIDTH_BUCKET, fail, finite
from edgerec.errors import EdgeRecError


@click.command()
@click.argument("name", required=False)
@click.option("--model-dir", type=click.Path(exists=True), help="A local model instead of a card name.")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False),
              help="Dataset folder of real crops: its train.txt, else val.txt or label.txt [default: rendered "
                   "lines].")
@click.option("--eval", "eval_dir", type=click.Path(exists=True, file_okay=False),
              help="Labelled folder to check accuracy on: its val.txt or label.txt (never train.txt), with at least "
                   "one line [default: rendered lines].")
@click.option("--subset-size", type=click.IntRange(1, 10000), default=300, show_default=True,
              help="Calibration crops (a sample of --calibration's). They are held in memory with their input "
                   "tensors: about 0.25 MB a rendered line, 2.5 GB at the bound.")
@click.option("--eval-size", type=click.IntRange(1, 100000), default=200, show_default=True,
              help="Eval crops (a sample of --eval's), read by fp32 and int8. They are held in memory: about 40 KB "
                   "a rendered line, 4 GB at the bound.")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=0.005, callback=finite, show_default=True,
              help="Largest allowed absolute drop of acc and norm_edit_dis.")
@click.option("--float-stem/--int8-stem", default=None,
              help="Keep the backbone's stem and first stage (convolutions on inputs of at least half the line's "
                   "height) in float: PP-OCRv5's int8 needs it; it made int8 8-12 % slower on v4 / v5 "
                   "[default: the model card's choice, else int8].")
@click.option("--search", type=click.Choice(["none", "sensitivity", "accuracy-control"]), default="none",
              show_default=True,
              help="On a miss: nothing (refuse; the default keeps the command to a few minutes), rank layers once and "
                   "keep the top few in float (3-8 more minutes on 2 cores), or NNCF's accuracy-controlled search "
                   "(~15 min).")
@click.option("--search-seconds", type=click.FloatRange(1), default=600, callback=finite, show_default=True,
              help="Time bound of the sensitivity search: no new try starts after this long.")
@click.option("--keep-float", type=click.IntRange(1, 64), multiple=True,
              help="Layers kept in float by the sensitivity search, tried in order [default: 2 4 8].")
@click.option("--qat", is_flag=True,
              help="Experimental: quantization-aware fine-tuning first (simulated int8, the fp32 model as teacher, "
                   "the calibration crops, no labels; needs the train extra). Measured on PP-OCRv4 it did not beat "
                   "plain PTQ (docs/int8.md). About 5 minutes on 2 cores.")
@click.option("--qat-steps", type=click.IntRange(1, 100000), default=200, show_default=True,
              help="Fine-tuning steps for --qat.")
@click.option("--qat-lr", type=click.FloatRange(0, 1, min_open=True), default=1e-5, callback=finite, show_default=True,
              help="Learning rate for --qat.")
@click.option("--overflow-fix", type=click.Choice(["first-layer", "enable", "disable"]), default="first-layer",
              show_default=True,
              help="NNCF's overflow fix: weights at half the int8 range so that CPUs without VNNI (AVX2) cannot "
                   "saturate; 'enable' for every convolution and MatMul, 'first-layer' for the first quantized one "
                   "(docs/int8.md, 'CPUs without VNNI').")
@click.option("--check-without-vnni/--no-check-without-vnni", default=True, show_default=True,
              help="On a CPU with VNNI and AVX-512, also read the eval lines as CPUs without VNNI (AVX2) compute int8 "
                   "(a child process under ONEDNN_MAX_CPU_ISA=AVX512_CORE), so that use_hpip knows whether int8 holds "
                   "there too.")
@click.option("--no-accuracy-control", is_flag=True, hidden=True, help="Same as --search none (older name).")
@MIN_WIDTH
@WIDTH_BUCKET
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--force", is_flag=True, help="Install the int8 model even if it misses --max-drop.")
@click.option("--output", type=click.Path(file_okay=False), help="Write the int8 IR here instead of the model home.")
def quantize(name, model_dir, calibration, eval_dir, subset_size, eval_size, max_drop, float_stem, search,
             search_seconds, keep_float, qat, qat_steps, qat_lr, overflow_fix, check_without_vnni,
             no_accuracy_control, min_width, width_bucket, seed, force, output) -> None:
    """Quantize a model to INT8 with NNCF, checking accuracy against fp32 before installing it.

    With --min-width / --width-bucket, calibration and the accuracy check read lines at the widths you will run
    int8 with (`edgerec predict --width-bucket N`); by default at PaddleX's, each line at its own width.
    """
    from edgerec.quant.qat import QATConfig
    from edgerec.quant.quantize import QuantizationConfig, quantize_model

    if not name and not model_dir:
        raise click.UsageError("give a model NAME or --model-dir")
    search = "none" if no_accuracy_control else search.replace("-", "_")
    try:
        cfg = QuantizationConfig(subset_size=subset_size, max_drop=max_drop, ignore_stem=float_stem, search=search,
                                 search_seconds=search_seconds, min_width=min_width, width_bucket=width_bucket,
                                 overflow_fix=overflow_fix.replace("-", "_"), check_without_vnni=check_without_vnni,
                                 qat=QATConfig(steps=qat_steps, learning_rate=qat_lr, seed=seed) if qat else None,
                                 **({"keep_float": tuple(keep_float)} if keep_float else {}))
    except ValueError as exc:  # a combination the options alone do not refuse: one line, not a traceback
        fail(exc)
    try:
        xml, report = quantize_model(name, model_dir, calibration=calibration, eval_dir=eval_dir,
                                     subset_size=subset_size, eval_size=eval_size, max_drop=max_drop, seed=seed,
                                     force=force, config=cfg, output=output)
    except EdgeRecError as exc:
        fail(exc)
    f, q = report["fp32"], report["int8"]
    if report.get("qat"):
        t = report["qat"]
        click.echo(f"QAT: {t['steps']} steps in {t['seconds']:.0f} s, divergence of simulated int8 from fp32 "
                   f"{t['divergence_before']:.5f} -> {t['divergence_after']:.5f} nats")
    click.echo(f"fp32 acc {f['acc']:.4f} ned {f['norm_edit_dis']:.4f} | int8 acc {q['acc']:.4f} "
               f"ned {q['norm_edit_dis']:.4f} | same text {report['same_text_as_fp32']:.3f} | {report['method']}")
    ci = report.get("drop_ci95") or {}
    if ci.get("acc") is not None:
        drop = report["drop"]
        click.echo(f"drop acc {drop['acc']:+.4f} ±{ci['acc']:.4f}, ned {drop['norm_edit_dis']:+.4f} "
                   f"±{ci['norm_edit_dis']:.4f} (95 % interval over the {report['eval']['count']} eval lines)")
    vnni = report["int8_vnni"]
    click.echo(f"int8 read on {report['cpu']}" + ("" if vnni is None else ": with VNNI" if vnni else
               ": without VNNI (saturating int8 sums; a VNNI CPU reads some lines differently)"))
    other = report["without_vnni"]
    if other["checked"]:
        d = other["drop"]
        click.echo(f"int8 as CPUs without VNNI read it ({other['emulated_with']}): acc {other['int8']['acc']:.4f} "
                   f"ned {other['int8']['norm_edit_dis']:.4f} | same text as with VNNI "
                   f"{other['same_text_as_int8']:.3f} | "
                   + ("within the bound" if other["within_bound"] else
                      f"misses the bound (drop acc {d['acc']:+.4f}, ned {d['norm_edit_dis']:+.4f}): use_hpip will "
                      "not pick int8 on such CPUs; --overflow-fix enable avoids the saturation"))
    elif vnni:
        click.echo(f"not read as CPUs without VNNI: {other['why']}"
                   + ("" if cfg.overflow_fix == "enable" else
                      "; use_hpip on CPUs without VNNI will not pick this int8 (unless quantized with "
                      "--overflow-fix enable)"))
    if report["recipe_choices"]["stem_in_float"]:
        click.echo(f"stem and first stage kept in float ({report['recipe_choices']['ignore_stem']})")
    if min_width or width_bucket:
        r = cfg.reading()
        click.echo(f"lines read at a minimum width of {r['min_width']}"
                   + (f", padded to {r['min_width']} + k x {r['width_bucket']}" if r["width_bucket"] else ""))
    click.echo(str(xml))


@click.command()
@click.argument("name")
@click.option("--output", type=click.Path(file_okay=False), required=True,
              help="Dataset folder to write: a new or empty one, or an earlier set (only images/ and train.txt), "
                   "which is replaced.")
@click.option("--n", "count", type=click.IntRange(1, 100000), default=300, show_default=True,
              help="Lines to render; each is written as it is rendered (about 20 KB of PNG a line), so memory does "
                   "not grow with N.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def calibrate(name, output, count, seed, quiet) -> None:
    """Render a seeded calibration set for a model's charset (images/ + train.txt), to inspect or reuse."""
    from edgerec.quant.calibration import dataset_files, iter_lines, save_dataset
    from edgerec.utils.fs import check_replaceable
    from edgerec.zoo.resolve import resolve_model

    what = "edgerec calibrate"
    try:
        check_replaceable(output, dataset_files("train.txt"), what)  # before the model and the rendering
        info = resolve_model(name, None, "fp32").info  # the classes quantize renders for: the IR's
        folder = save_dataset(iter_lines(info.classes, count, seed=seed), output, total=count,
                              progress=False if quiet else None, what=what)
    except EdgeRecError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"cannot write to {output}: {exc.strerror or exc}")
    click.echo(f"{count} lines in {folder}/ (train.txt); use with: edgerec quantize {name} --calibration {folder}")
