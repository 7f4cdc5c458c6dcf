"""The accuracy-versus-latency scatter plot, with labels moved apart where they would overlap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def label_heights(points: Sequence[tuple[float, float, str]], gap: float) -> list[float]:
    """Heights for the points' labels: each at its point's height, moved down where labels at nearby latencies would
    overlap, so that such labels are at least ``gap`` apart (points given as ``(latency, accuracy, name)``).

    Labels are drawn to the right of their points; a label reaches about ``0.02 * span`` per character (the plot's
    latency span, at the plot's size and font), so a long label also collides with points further right.
    """
    heights = [y for _, y, _ in points]
    xs = [x for x, _, _ in points]
    span = (max(xs) - min(xs)) or 1.0
    reach = [0.03 * span + 0.02 * span * len(name) for _, _, name in points]

    def overlaps(i: int, j: int) -> bool:
        left, right = (i, j) if xs[i] <= xs[j] else (j, i)
        return abs(xs[j] - xs[i]) < 0.15 * span or xs[right] - xs[left] < reach[left]

    placed: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        near = [j for j in placed if overlaps(i, j)]
        for j in sorted(near, key=lambda j: -heights[j]):
            if heights[i] > heights[j] - gap:
                heights[i] = min(heights[i], heights[j] - gap)
        placed.append(i)
    return heights


def plot_accuracy_vs_latency(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Save a scatter plot (x: batch-1 median latency in ms, y: accuracy in %), one labelled point per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    key = "accuracy" if "accuracy" in rows[0] else "pearson"  # regression rows have no accuracy
    scale = 100 if key == "accuracy" else 1
    points = [(r["latency_ms_median"], scale * r[key], str(r["model"])) for r in rows]
    colors = []
    for (x, y, _), r in zip(points, rows, strict=True):
        marker = "s" if r.get("runtime") == "onnxruntime" else "o"
        colors.append(ax.scatter([x], [y], s=40, marker=marker).get_facecolor()[0])
        low, high = r.get("latency_ms_round_min"), r.get("latency_ms_round_max")
        if low is not None and high is not None:  # the spread of the round medians
            ax.errorbar([x], [y], xerr=[[x - low], [high - x]], fmt="none", ecolor=colors[-1], lw=1, capsize=2)
    m = rows[0]
    ax.set_xlabel("batch-1 median latency (ms; bars: min-max over rounds; squares: ONNX Runtime)")
    ax.set_ylabel("accuracy (%)" if key == "accuracy" else "Pearson r")
    ax.set_title(f"{m['dataset']} / {m['split']}: {m['threads']} thread(s), {m['device_name']}", fontsize=9)
    ax.margins(x=0.25, y=0.2)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    heights = label_heights(points, 0.045 * (y1 - y0))
    for (x, y, name), label_y, color in zip(points, heights, colors, strict=True):
        arrow = {"arrowstyle": "-", "lw": 0.6, "color": color} if abs(label_y - y) > 1e-9 else None
        xytext = (x + 0.03 * (x1 - x0), label_y)
        ax.annotate(name, (x, y), xytext=xytext, va="center", fontsize=9, color=color, arrowprops=arrow)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
