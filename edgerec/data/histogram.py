"""check-dataset's label-length histogram: PaddleX's buckets, drawn with matplotlib (Agg, no display)."""

from __future__ import annotations

import io
import math

SPLITS = ("train", "val")
BUCKET = 5  # label length bucket width of the histogram, as PaddleX
MAX_BUCKETED_LENGTH = 100  # longer labels share one "> 100" bar, as PaddleX



def length_histogram(lengths: dict[str, list[int]]) -> tuple[list[str], dict[str, list[int]]]:
    """Label-length buckets of ``BUCKET`` (PaddleX's '0-5', '5-10', ...: start < n <= stop; 0 goes in the first),
    up to the longest label (at most ``MAX_BUCKETED_LENGTH``, then one '> 100' bucket): (names, counts per split)."""
    longest = max((n for ns in lengths.values() for n in ns), default=0)
    top = min(MAX_BUCKETED_LENGTH, max(BUCKET, math.ceil(longest / BUCKET) * BUCKET))
    names = [f"{lo}-{lo + BUCKET}" for lo in range(0, top, BUCKET)]
    over = longest > top
    if over:
        names.append(f"> {top}")
    counts = {}
    for split, ns in lengths.items():
        row = [0] * len(names)
        for n in ns:
            row[len(names) - 1 if n > top else max(0, math.ceil(n / BUCKET) - 1)] += 1
        counts[split] = row
    return names, counts


def plot_histogram(names: list[str], counts: dict[str, list[int]]) -> bytes:
    """PNG bytes: label-length buckets on x, images on y, train and val side by side (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 3), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.4
    xs = range(len(names))
    for k, (split, color) in enumerate(zip(SPLITS, ("tab:blue", "tab:orange"))):
        row = counts.get(split, [0] * len(names))
        ax.bar([x + (k - 0.5) * width for x in xs], row, width=width, color=color,
               label=f"{split} ({sum(row)} images)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=45 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
    ax.set_xlabel(f"label length (characters, buckets of {BUCKET})")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("label length: train vs val")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
