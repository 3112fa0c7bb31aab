"""The accuracy-versus-latency plot and its Pareto front."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from edgerec.bench.configs import EDGEREC_ENGINES

# ------------------------------------------------------------------------------------------------ Pareto + plot

def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), sorted by x.

    A point is kept when it is strictly more accurate than every faster-or-equal point; of exact duplicates the
    first is kept. Points with a non-finite coordinate are ignored.
    """
    order = sorted((i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)),
                   key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


_MARKERS = {("openvino", "fp32"): "o", ("openvino", "fp16"): "^", ("openvino", "int8"): "*",
            ("onnxruntime", "fp32"): "s", ("onnxruntime no-spin", "fp32"): "p", ("paddle", "fp32"): "D",
            ("rapidocr", "fp32"): "P"}


def _kind(r: dict) -> tuple[str, str]:
    """The marker key of a row: engine (ONNX Runtime without spinning apart) and precision."""
    spin = (r.get("engine_options") or {}).get("allow_spinning") is False
    return (f"{r['engine']} no-spin" if spin else r["engine"], r["precision"])


def point_style(r: dict, color) -> dict:
    """scatter() keywords of a row's point: edgerec's own configurations filled, peers (ONNX Runtime, Paddle,
    Tesseract) hollow, so the plot says at a glance which points are edgerec's."""
    marker = "X" if r["engine"] == "tesseract" else _MARKERS.get(_kind(r), "o")
    own = bool(r.get("edgerec", r["engine"] in EDGEREC_ENGINES))
    return {"marker": marker, "s": 110 if marker == "*" else 55, "facecolors": color if own else "none",
            "edgecolors": "black" if own else color, "linewidths": 0.5 if own else 1.6}


def plot_acc_vs_latency(datasets: list[dict], rows: list[dict]) -> bytes:
    """PNG bytes: one subplot per data set, x = batch-1 p50 ms/line, y = acc (alnum acc for scene text);
    edgerec's points filled, peers' hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(datasets)
    cols = 1 if n == 1 else 2
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(7.2 * cols, 5.2 * nrows), squeeze=False)
    models = list(dict.fromkeys(r["model"] for r in rows if r["engine"] != "tesseract"))
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    to_label = []
    for k, ds in enumerate(datasets):
        ax = axes[k // cols][k % cols]
        rs = [r for r in rows if r["dataset"] == ds["name"]]
        metric = "alnum acc (case-insensitive) %" if ds["scene_text"] else "acc (PaddleOCR, exact) %"
        ax.set_title(f"{ds['name']} ({ds['lines']} lines)", fontsize=11)
        ax.set_xlabel("ms per line, batch 1, p50 (log)")
        ax.set_ylabel(metric)
        ax.grid(True, which="both", alpha=0.25)
        if not rs:
            ax.text(0.5, 0.5, "no configuration ran", ha="center", va="center", transform=ax.transAxes)
            continue
        xs = [r["p50_ms"] for r in rs]
        ys = [100 * r["score"] for r in rs]
        for r, x, y in zip(rs, xs, ys):
            color = "0.35" if r["engine"] == "tesseract" else colors[r["model"]]
            ax.scatter([x], [y], zorder=3, **point_style(r, color))
        front = pareto_front(list(zip(xs, ys)))
        fx, fy = [xs[i] for i in front], [ys[i] for i in front]
        if fx:
            ax.plot(fx + [max(xs) * 1.15], fy + [fy[-1]], drawstyle="steps-post", color="0.3", ls="--", lw=1.2,
                    zorder=2, label="Pareto front")
        to_label.append((ax, [r["label"] for r in rs], xs, ys, set(front)))
        ax.set_xscale("log")
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.35, hi * 1.6)
        ylo, yhi = min(ys), max(ys)
        pad = max(2.0, 0.12 * (yhi - ylo))
        ax.set_ylim(max(-1.0, ylo - pad), min(100.0, yhi + pad) + (0.5 if yhi + pad >= 100 else 0))
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(loc="lower right", fontsize=8)
    for k in range(n, nrows * cols):
        axes[k // cols][k % cols].axis("off")
    handles = [matplotlib.lines.Line2D([], [], marker=mk, ls="", color="0.6", markeredgecolor="black",
                                       label=f"{e} {p}") for (e, p), mk in _MARKERS.items()
               if any(_kind(r) == (e, p) for r in rows)]
    handles += [matplotlib.lines.Line2D([], [], marker="o", ls="", markerfacecolor="0.35", markeredgecolor="black",
                                        label="edgerec (filled)"),
                matplotlib.lines.Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="0.35",
                                        markeredgewidth=1.6, label="peer (hollow)")]
    handles += [matplotlib.patches.Patch(color=c, label=m) for m, c in colors.items()]
    if any(r["engine"] == "tesseract" for r in rows):
        handles.append(matplotlib.lines.Line2D([], [], marker="X", ls="", markerfacecolor="none",
                                               markeredgecolor="0.35", markeredgewidth=1.6, label="tesseract --psm 7"))
    per_row = 3 if cols == 1 else 5
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), per_row), fontsize=8, frameon=False)
    fig.suptitle("edgerec (filled) vs peers (hollow): accuracy vs latency\n(up and left is better; dashed: "
                 "Pareto front)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(handles) / per_row), 1, 0.95))
    for args in to_label:  # after the layout: labels are placed in final pixel coordinates
        _label_points(*args)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _label_points(ax, labels: list[str], xs: list[float], ys: list[float], front: set[int]) -> None:
    """Annotate each marker, trying positions around it until the label hits no other label or marker."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pix = ax.transData.transform(np.column_stack([xs, ys]))
    occupied = [(px - 6, py - 6, px + 6, py + 6) for px, py in pix]
    spots = [(dx, dy) for dist in (3, 11, 20) for dy in (dist, -dist) for dx in (7, -7)] + [(0, 28), (0, -28)]

    def place(i: int, dx: int, dy: int, leader: bool = False):
        return ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", fontsize=7.5,
                           ha="left" if dx > 0 else "right" if dx < 0 else "center",
                           va="bottom" if dy > 0 else "top", fontweight="bold" if i in front else "normal",
                           arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 0,
                                       "shrinkB": 4} if leader else None)

    def clash(bb) -> bool:
        inside = bb.x0 >= frame.x0 and bb.x1 <= frame.x1 and bb.y0 >= frame.y0 and bb.y1 <= frame.y1
        return not inside or any(bb.x0 < x1 and bb.x1 > x0 and bb.y0 < y1 and bb.y1 > y0 for x0, y0, x1, y1 in occupied)

    for i in sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i])):
        chosen, box = spots[0], None
        for dx, dy in spots:
            ann = place(i, dx, dy)  # measured without a leader line: its extent is the text's alone
            bb = ann.get_window_extent(renderer)
            ann.remove()
            if box is None:
                box = bb
            if not clash(bb):
                chosen, box = (dx, dy), bb
                break
        place(i, *chosen, leader=abs(chosen[1]) > 5)  # a label away from its marker gets a line back to it
        occupied.append((box.x0, box.y0, box.x1, box.y1))
