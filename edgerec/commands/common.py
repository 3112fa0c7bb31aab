"""What every ``edgerec`` command shares: the precision and engine vocabularies, the input-width options and the
one-line failure."""

from __future__ import annotations

import math
import sys

import click

from edgerec.engines import registry
from edgerec.runtime.predictor import RECHECK_BELOW

PRECISION = click.Choice(["fp32", "fp16", "int8", "bf16"])  # bf16: the fp32 IR at bf16 compute (native-bf16 CPUs)
ENGINE = click.Choice(registry.names())
# the precision a command runs at; unset: the model's own (fp32 for a card name, an IR given with --model-dir as
# it is), so `--model-dir int8_folder` runs int8 and `--model-dir fp32_folder --precision int8` finds the int8 IR
# beside it or says there is none
PRECISION_OPTION = click.option(
    "--precision", type=PRECISION, default=None,
    help="fp32, fp16, int8 or bf16 (bf16: native-bf16 CPUs) [default: the model's own: fp32, or the IR that "
         "--model-dir names as it is].")

# use_hpip (PaddleX's flag, both spellings): create_model picks the precision and, on CPU, width buckets; a
# --precision or --width-bucket given wins
USE_HPIP = click.option(
    "--use-hpip", "--use_hpip", "use_hpip", is_flag=True,
    help="Run the fastest installed configuration for the device, as PaddleX's use_hpip: int8 if `edgerec quantize` "
         "installed one within its accuracy bound (bf16 instead where the CPU computes bf16 natively and int8 is "
         "not clearly faster), else bf16 where native, else fp32; on CPU also 160-px width buckets (masked) for "
         "lines wider than the minimum. --precision and --width-bucket (0: exact widths) win.")

# the widths lines are read at (create_model's min_width and width_bucket), for every command that reads lines:
# predict, evaluate and quantize's guard. The bounds are MIN_W_FLOOR and MAX_W of runtime.preprocess.
MIN_WIDTH = click.option(
    "--min-width", type=click.IntRange(16, 3200), default=None,
    help="Narrowest input width a line is padded to [default: 320, PaddleX's]. 160 is faster on short lines but "
         "changes some texts (docs/usage.md).")


def _bucket(ctx: click.Context, param: click.Parameter, value):
    """--width-bucket as given (0 stays 0: exact widths, also under --use-hpip), checked by check_width_bucket."""
    from edgerec.runtime.preprocess import check_width_bucket

    try:
        check_width_bucket(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


WIDTH_BUCKET = click.option(
    "--width-bucket", type=int, default=None, callback=_bucket,
    help="Pad lines wider than the minimum width up to the minimum + k x N, so a folder of many widths runs on a few "
         "input shapes; 0: each line at its own width, as PaddleX [default: 0; 160 under use_hpip on CPU]. Faster on "
         "document lines; OpenVINO masks the padding, so fp32 texts stay the same, bf16 and int8 change a few % "
         "(docs/usage.md).")


def finite(ctx: click.Context, param: click.Parameter, value):
    """A click callback: ``nan`` passes FloatRange's bounds; refuse it (and infinities) by name."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


# recheck (create_model's recheck / recheck_below): low-scoring lines read again at a more precise precision
_RECHECK = click.option(
    "--recheck", type=click.Choice(["fp32", "bf16"]), default=None,
    help="Read every line scoring below --recheck-below again at this more precise precision (the same model "
         "loaded a second time; fp32 after int8 or bf16, bf16 after int8): on words and scene text most of fp32's "
         "accuracy, int8's or bf16's speed on the confident lines; no help on document lines (docs/usage.md).")


_RECHECK_BELOW = click.option(
    "--recheck-below", type=click.FloatRange(0.0, 1.0), default=RECHECK_BELOW, show_default=True, callback=finite,
    help="With --recheck: the rec_score below which a line is read again.")


def RECHECK(command):  # noqa: N802 - a decorator, named like the other option constants
    """--recheck and --recheck-below (the command gets ``recheck`` and ``recheck_below``; see recheck_options)."""
    return _RECHECK(_RECHECK_BELOW(command))


def recheck_options(recheck: str | None, below: float) -> dict:
    """create_model's recheck arguments; --recheck-below alone is refused (it would silently do nothing)."""
    ctx = click.get_current_context()
    if recheck is None and ctx.get_parameter_source("recheck_below") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--recheck-below sets when --recheck reads a line again: add --recheck fp32 (or bf16)")
    return {"recheck": recheck, "recheck_below": below}


def fail(exc: BaseException | str) -> None:
    """One line on stderr, exit 1: what a bad argument or a failed step costs the user."""
    click.echo(f"edgerec: error: {exc}", err=True)
    sys.exit(1)
