"""`edgerec report` and `make bench`: accuracy versus latency of every configuration (see bench/report.py).

The names below are imported on first use: the child processes (``python -m edgerec.bench.child``, PaddleX's own
interpreter among them) import this package without the report's modules and what they need.
"""

from __future__ import annotations

import importlib

_WHERE = {"Config": "configs", "plan_configs": "configs", "load_dataset": "datasets", "batch_groups": "measure",
          "shape_plan": "measure", "pareto_front": "plot", "dataset_table": "render", "render_markdown": "render",
          "summary_table": "render", "timing_line": "render", "write_report": "render", "ReportOptions": "report",
          "environment": "report", "run_report": "report", "interleave": "timing", "round_ratios": "timing",
          "summarize": "timing"}

__all__ = ["Config", "ReportOptions", "batch_groups", "dataset_table", "environment", "interleave", "load_dataset",
           "pareto_front", "plan_configs", "render_markdown", "round_ratios", "run_report", "shape_plan",
           "summarize", "summary_table", "timing_line", "write_report"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"edgerec.bench.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'edgerec.bench' has no attribute {name!r}")
