"""Accuracy–complexity plot of a search: every trial as a point, the Pareto front highlighted, presets labelled.

A static PNG (matplotlib, Agg backend) and optionally a self-contained interactive HTML (plotly) with the same layers.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402

MEGA = float(2**20)

__all__ = ["FLOPS_AXIS", "LATENCY_AXIS", "CostAxis", "PlotPoint", "pareto_plot"]


@dataclass(frozen=True)
class CostAxis:
    """The cost a plot puts on its x axis: its title, the divisor of the raw values, and the name of a budget."""

    title: str
    divisor: float
    budget: str
    hover: str


FLOPS_AXIS = CostAxis("FLOPs (M)", MEGA, "FLOPs budget", "FLOPs %{x:.2f} M")
LATENCY_AXIS = CostAxis("latency (ms)", 1.0, "latency budget", "latency %{x:.2f} ms")


@dataclass(frozen=True)
class PlotPoint:
    """One trial: `flops` is the raw count; `label` (e.g. a preset name) is drawn, `hover` is shown on hover."""

    key: str
    ap: float
    flops: float
    label: str = ""
    hover: str = ""


def _front_in_order(points: Sequence[PlotPoint], front_keys: set[str]) -> list[PlotPoint]:
    """Front points sorted by FLOPs (then AP) so they can be joined by a step line."""
    return sorted((p for p in points if p.key in front_keys), key=lambda p: (p.flops, p.ap, p.key))


def _png(
    points: Sequence[PlotPoint],
    front: list[PlotPoint],
    budget_flops: float | None,
    title: str,
    path: Path,
    marked: str = "presets",
    axis: CostAxis = FLOPS_AXIS,
) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if points:
        ax.scatter(
            [p.flops / axis.divisor for p in points],
            [p.ap for p in points],
            s=14,
            color="0.6",
            alpha=0.7,
            label="trials",
            zorder=2,
        )
    if front:
        xs = [p.flops / axis.divisor for p in front]
        ys = [p.ap for p in front]
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1.2, zorder=3)
        ax.scatter(xs, ys, s=24, color="tab:red", label="Pareto front", zorder=4)
    labelled = [p for p in points if p.label]
    if labelled:
        ax.scatter(
            [p.flops / axis.divisor for p in labelled],
            [p.ap for p in labelled],
            s=110,
            marker="*",
            color="tab:blue",
            edgecolors="black",
            linewidths=0.5,
            label=marked,
            zorder=5,
        )
    if budget_flops is not None:
        ax.axvline(budget_flops / axis.divisor, color="black", linestyle="--", linewidth=1.0, label=axis.budget,
                   zorder=1)  # fmt: skip
    ax.set_xlabel(axis.title)
    ax.set_ylabel("AP")
    if title:
        ax.set_title(textwrap.fill(title, 80), fontsize=9)
    ax.margins(x=0.18, y=0.12)  # room for the labels of the outermost points
    ax.grid(True, linewidth=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    place_labels(ax, [(p.label, (p.flops / axis.divisor, p.ap)) for p in labelled], [
        (p.flops / axis.divisor, p.ap) for p in points])  # fmt: skip
    fig.savefig(path)
    plt.close(fig)
    return path


# Where a label may sit around its point (offset points): right-above first, then the other corners, then further.
LABEL_OFFSETS = [(6, 5), (6, -5), (-6, 5), (-6, -5), (6, 14), (6, -14), (-6, 14), (-6, -14), (10, 24), (10, -24),
                 (-10, 24), (-10, -24)]  # fmt: skip
MARKER_PIXELS = 7.0  # half the size of the largest marker (the presets' star), in pixels at the plot's dpi


def place_labels(ax, labels: list[tuple[str, tuple[float, float]]], points: list[tuple[float, float]]) -> list:
    """Annotate each (label, point) where its text covers no point and no label placed before it: the first free
    place of LABEL_OFFSETS (the first one if none is free). Returns the texts."""
    renderer = ax.figure.canvas.get_renderer()
    centres = [ax.transData.transform(xy) for xy in points]
    taken: list = []
    texts = []
    for label, xy in labels:
        chosen = None
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(label, xy, xytext=(dx, dy), textcoords="offset points", fontsize=8, zorder=6,
                               ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top")  # fmt: skip
            box = text.get_window_extent(renderer)
            covers = any(_near(box, c) for c in centres) or any(box.overlaps(other) for other in taken)
            if not covers:
                chosen = text
                break
            text.remove()
        if chosen is None:  # crowded everywhere: the first place, as before
            dx, dy = LABEL_OFFSETS[0]
            chosen = ax.annotate(label, xy, xytext=(dx, dy), textcoords="offset points", fontsize=8, zorder=6)
        taken.append(chosen.get_window_extent(renderer))
        texts.append(chosen)
    return texts


def _near(box, centre, margin: float = MARKER_PIXELS) -> bool:
    """Whether a text box covers any part of a marker centred at `centre` (display pixels)."""
    x, y = centre
    return box.x0 - margin < x < box.x1 + margin and box.y0 - margin < y < box.y1 + margin


def _hover_data(points: Sequence[PlotPoint]) -> list[list[str]]:
    # plotly renders hover text as (a subset of) HTML, so escape it to show genome strings literally
    return [[html.escape(p.key), html.escape(p.hover)] for p in points]


def _hover_template(axis: CostAxis) -> str:
    return f"<b>%{{customdata[0]}}</b><br>AP %{{y:.3f}}<br>{axis.hover}<br>%{{customdata[1]}}<extra></extra>"


def _html(
    points: Sequence[PlotPoint],
    front: list[PlotPoint],
    budget_flops: float | None,
    title: str,
    path: Path,
    marked: str = "presets",
    axis: CostAxis = FLOPS_AXIS,
) -> Path:
    import plotly.graph_objects as go  # local import: only needed for the interactive version

    fig = go.Figure()

    def scatter(pts: Sequence[PlotPoint], name: str, **kwargs: object) -> None:
        fig.add_trace(
            go.Scatter(
                x=[p.flops / axis.divisor for p in pts],
                y=[p.ap for p in pts],
                customdata=_hover_data(pts),
                hovertemplate=_hover_template(axis),
                name=name,
                **kwargs,
            )
        )

    scatter(points, "trials", mode="markers", marker={"color": "rgba(150,150,150,0.7)", "size": 6})
    if front:
        scatter(
            front,
            "Pareto front",
            mode="lines+markers",
            line={"color": "crimson", "shape": "hv", "width": 1.5},
            marker={"color": "crimson", "size": 8},
        )
    labelled = [p for p in points if p.label]
    if labelled:
        scatter(
            labelled,
            marked,
            mode="markers+text",
            text=[p.label for p in labelled],
            textposition="top right",
            marker={"symbol": "star", "color": "royalblue", "size": 14, "line": {"color": "black", "width": 0.5}},
        )
    if budget_flops is not None:
        fig.add_vline(
            x=budget_flops / axis.divisor,
            line={"color": "black", "dash": "dash", "width": 1},
            annotation_text="budget",
            annotation_position="top",
        )
    fig.update_layout(
        title=title or None,
        xaxis_title=axis.title,
        yaxis_title="AP",
        template="plotly_white",
        hovermode="closest",
    )
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def pareto_plot(
    points: Sequence[PlotPoint],
    front_keys: set[str],
    budget_flops: float | None,
    title: str,
    png_path: Path,
    html_path: Path | None = None,
    marked: str = "presets",
    axis: CostAxis = FLOPS_AXIS,
) -> list[Path]:
    """AP against a cost (`axis`: FLOPs in M = raw / 2**20 by default, or latency in ms) as a PNG and, if
    `html_path` is given, an offline interactive HTML.

    All points are grey; points whose key is in `front_keys` are red and joined by a step line in FLOPs order;
    points with a label get a star marker, the label as text and the legend entry `marked`; a dashed vertical line
    marks the budget if given. Works for any number of points including none. Returns the written paths (PNG first).
    """
    points = list(points)
    front = _front_in_order(points, front_keys)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    written = [_png(points, front, budget_flops, title, png_path, marked, axis)]
    if html_path is not None:
        html_path = Path(html_path)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        written.append(_html(points, front, budget_flops, title, html_path, marked, axis))
    return written
