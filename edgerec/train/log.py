"""train.log: every line of a run, timestamped, appended to as PaddleOCR appends to its log file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

RUN_MARK = "===== edgerec train"  # the first line of each run in train.log


class TrainLog:
    """train.log (every line, timestamped) plus the terminal (through tqdm.write, so bars stay intact).

    The file is appended to, as PaddleOCR does with its log file: an earlier run's lines stay above this run's,
    which begins after a blank line with ``===== edgerec train``."""

    def __init__(self, path: Path, echo: bool):
        earlier = path.is_file() and path.stat().st_size > 0
        self.file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed by its caller)
        if earlier:
            self.file.write("\n")
        self.echo = echo

    def __call__(self, msg: str, *, terminal: bool = True) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in msg.splitlines() or [""]:
            self.file.write(f"[{stamp}] {line}\n")
        if terminal and self.echo:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def close(self) -> None:
        self.file.close()
