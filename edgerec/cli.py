"""The ``edgerec`` command line: the group and its commands, one module each under edgerec/commands/.

The commands only map arguments onto the API (edgerec.api) and the zoo; ``python -m edgerec.cli`` runs it.
"""

from __future__ import annotations

import logging

import click

from edgerec._version import __version__
from edgerec.commands.camera import camera
from edgerec.commands.dataset import check_dataset_cmd, evaluate_cmd
from edgerec.commands.models import export_cmd, models
from edgerec.commands.predict import predict
from edgerec.commands.quantize import calibrate, quantize
from edgerec.commands.report import report
from edgerec.commands.shell import EdgeRecGroup, exit_if_stuck, ignore_late_interrupts
from edgerec.commands.train import train_cmd


@click.group(cls=EdgeRecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgerec")
@click.option("-v", "--verbose", is_flag=True, help="Log what edgerec is doing.")
def main(verbose: bool) -> None:
    """Text-line recognition (OCR) on Intel edge devices, PaddleX-compatible."""
    before = list(logging.getLogger().handlers)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    for handler in logging.getLogger().handlers:
        if handler not in before:  # the one basicConfig made (a host's own handlers are left as they are)
            handler.setFormatter(_Said())
            if not verbose:
                handler.addFilter(_Said.quiet_telemetry)


class _Said(logging.Formatter):
    """Log lines say who says them: ``edgerec:`` for edgerec's own, the package's name for a library that logs
    through the root logger (OpenVINO's telemetry does), so a third party's message never reads as edgerec's."""

    def format(self, record: logging.LogRecord) -> str:
        who = "edgerec" if record.name.startswith("edgerec") else record.name
        if who == "root":
            parts = record.pathname.replace("\\", "/").split("/")
            who = parts[parts.index("site-packages") + 1] if "site-packages" in parts[:-1] else record.module
        return f"{who}: {record.getMessage()}"

    @staticmethod
    def quiet_telemetry(record: logging.LogRecord) -> bool:
        """OpenVINO's telemetry warns on every start where the home folder is read-only (a kiosk): -v shows it."""
        return "openvino_telemetry" not in record.pathname


for command in (predict, camera, models, export_cmd, quantize, calibrate, report, check_dataset_cmd, evaluate_cmd,
                train_cmd):
    main.add_command(command)


def run() -> None:
    """The ``edgerec`` console script: ``main``, then a Ctrl-C during the interpreter's shutdown is ignored, and a
    call given up on that still blocks in OpenCV (a stalled pipe or stream) does not abort the exit."""
    exited: list = []
    try:
        main()
    except SystemExit as exc:
        exited.append(exc.code)
        raise
    finally:
        ignore_late_interrupts()  # first: a second Ctrl-C during exit_if_stuck's wait leaves quietly
        if exited:
            exit_if_stuck(exited[0])


if __name__ == "__main__":
    run()
