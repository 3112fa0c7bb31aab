"""`edgerec report` and `make bench`: accuracy versus latency of every configuration (see bench/report.py)."""

from edgerec.bench.configs import Config, plan_configs
from edgerec.bench.datasets import load_dataset
from edgerec.bench.measure import batch_groups, shape_plan
from edgerec.bench.plot import pareto_front
from edgerec.bench.render import dataset_table, render_markdown, summary_table, timing_line, write_report
from edgerec.bench.report import ReportOptions, environment, run_report
from edgerec.bench.timing import interleave, round_ratios, summarize

__all__ = ["Config", "ReportOptions", "batch_groups", "dataset_table", "environment", "interleave", "load_dataset",
           "pareto_front", "plan_configs", "render_markdown", "round_ratios", "run_report", "shape_plan",
           "summarize", "summary_table", "timing_line", "write_report"]
