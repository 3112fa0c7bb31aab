"""What every ``edgerec`` command shares: the precision and engine vocabularies and the one-line failure."""

from __future__ import annotations

import sys

import click

from edgerec.engines import registry

PRECISION = click.Choice(["fp32", "fp16", "int8", "bf16"])  # bf16: the fp32 IR at bf16 compute (native-bf16 CPUs)
ENGINE = click.Choice(registry.names())


def fail(exc: BaseException | str) -> None:
    """One line on stderr, exit 1: what a bad argument or a failed step costs the user."""
    click.echo(f"edgerec: error: {exc}", err=True)
    sys.exit(1)
