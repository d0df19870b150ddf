"""Metric curves as text, and as PNG files when matplotlib is installed (``ketch runs plot``).

The text plot is pure Python: one character grid per key, each run drawn with its
own marker, the value range labelled on the left, the step range below, and a
legend. NaN and ±inf points are left out (they break the line).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any, TextIO

from ketch._types import MetricHistory

__all__ = [
    "Curve",
    "Panel",
    "can_write_png",
    "default_width",
    "glyphs_for",
    "history_json",
    "panels",
    "render",
    "render_panels",
    "write_png",
]

PNG_MISSING = "install matplotlib to write PNG files: pip install matplotlib"


@dataclasses.dataclass(frozen=True)
class Glyphs:
    markers: str
    tick: str  # y axis at a labelled row
    axis: str  # y axis elsewhere
    corner: str
    rule: str  # x axis


UNICODE = Glyphs(markers="•x+o*#@%~^", tick="┤", axis="│", corner="└", rule="─")
ASCII = Glyphs(markers="*x+o#@%&~^", tick="+", axis="|", corner="+", rule="-")


@dataclasses.dataclass(frozen=True)
class Curve:
    """One run's points of one key."""

    label: str
    steps: Sequence[float]
    values: Sequence[float]


@dataclasses.dataclass(frozen=True)
class Panel:
    """One key: a plot of every run's curve."""

    title: str
    curves: Sequence[Curve]


def panels(
    keys: Sequence[str], labels: dict[str, str], histories: dict[tuple[str, str], MetricHistory]
) -> list[Panel]:
    """One panel per key with one curve per run (runs in the order of ``labels``)."""
    out = []
    for key in keys:
        curves = []
        for run_id, label in labels.items():
            history = histories.get((run_id, key))
            steps, values = (history.steps, history.values) if history is not None else ((), ())
            curves.append(Curve(label, steps, values))
        out.append(Panel(key, curves))
    return out


def history_json(history: MetricHistory) -> dict[str, Any]:
    """A history as plain JSON values (steps and values as lists)."""
    return {
        "run_id": history.run_id,
        "key": history.key,
        "steps": [int(s) for s in history.steps],
        "values": [float(v) for v in history.values],
    }


def glyphs_for(stream: TextIO) -> Glyphs:
    """Box-drawing glyphs when ``stream`` can encode them, else ASCII."""
    try:
        (UNICODE.markers + UNICODE.tick + UNICODE.axis + UNICODE.corner + UNICODE.rule).encode(
            getattr(stream, "encoding", None) or "ascii"
        )
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return UNICODE


def default_width() -> int:
    """A plot width that fits the terminal (room left for labels), 20 to 100 columns."""
    return max(20, min(shutil.get_terminal_size((80, 24)).columns - 14, 100))


def render_panels(
    panels: Sequence[Panel], *, width: int = 66, height: int = 12, glyphs: Glyphs = UNICODE
) -> str:
    """Every panel as text, separated by blank lines."""
    return "\n\n".join(render(p, width=width, height=height, glyphs=glyphs) for p in panels)


def render(panel: Panel, *, width: int = 66, height: int = 12, glyphs: Glyphs = UNICODE) -> str:
    """One panel as text: title, plot of ``width`` x ``height`` characters, legend."""
    points = [_finite(c) for c in panel.curves]
    flat = [p for curve in points for p in curve if p is not None]
    if not flat:
        return f"{panel.title}\n  (no points)\n" + _legend(panel, points, glyphs)
    x_lo, x_hi = min(s for s, _ in flat), max(s for s, _ in flat)
    y_lo, y_hi = _value_range([v for _, v in flat])
    grid = [[" "] * width for _ in range(height)]
    for i, curve in enumerate(points):
        marker = glyphs.markers[i % len(glyphs.markers)]
        bounds = (x_lo, x_hi, y_lo, y_hi)
        cells = [None if p is None else _cell(*p, bounds, width, height) for p in curve]
        _draw(grid, cells, marker)
    lines = [panel.title, *_framed(grid, _num(y_hi), _num(y_lo), glyphs)]
    pad = " " * (max(len(_num(y_hi)), len(_num(y_lo))) + 2)
    left, right = _num(x_lo), _num(x_hi)
    gap = max(width - len(left) - len(right), 1)
    lines.append(f"{pad}{left}{' ' * gap}{right}" if x_hi != x_lo else f"{pad}{left}")
    lines.append(f"{pad}step")
    return "\n".join(lines) + "\n" + _legend(panel, points, glyphs)


def _finite(curve: Curve) -> list[tuple[float, float] | None]:
    """The curve's (step, value) points; None marks a non-finite value (a gap)."""
    return [
        (float(s), float(v)) if math.isfinite(v) else None
        for s, v in zip(curve.steps, curve.values, strict=True)
    ]


def _value_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if lo == hi:  # a flat line sits in the middle
        pad = abs(lo) * 0.5 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def _cell(
    step: float, value: float, bounds: tuple[float, ...], width: int, height: int
) -> tuple[int, int]:
    x_lo, x_hi, y_lo, y_hi = bounds
    col = round((step - x_lo) / (x_hi - x_lo) * (width - 1)) if x_hi > x_lo else 0
    row = round((y_hi - value) / (y_hi - y_lo) * (height - 1))
    return row, col


def _draw(grid: list[list[str]], cells: list[tuple[int, int] | None], marker: str) -> None:
    """Mark each point and join neighbours with a straight run of markers."""
    previous = None
    for cell in cells:
        if cell is None:
            previous = None
            continue
        if previous is None:
            grid[cell[0]][cell[1]] = marker
        else:
            (r0, c0), (r1, c1) = previous, cell
            n = max(abs(r1 - r0), abs(c1 - c0), 1)
            for i in range(n + 1):
                grid[round(r0 + (r1 - r0) * i / n)][round(c0 + (c1 - c0) * i / n)] = marker
        previous = cell


def _framed(grid: list[list[str]], top: str, bottom: str, glyphs: Glyphs) -> list[str]:
    """The grid with the y axis (max and min labelled) on the left and the x axis below."""
    label_width = max(len(top), len(bottom))
    lines = []
    for r, row in enumerate(grid):
        label = top if r == 0 else bottom if r == len(grid) - 1 else ""
        axis = glyphs.tick if label else glyphs.axis
        lines.append(f"{label.rjust(label_width)} {axis}{''.join(row)}".rstrip())
    lines.append(" " * (label_width + 1) + glyphs.corner + glyphs.rule * len(grid[0]))
    return lines


def _legend(panel: Panel, points: list, glyphs: Glyphs) -> str:
    lines = []
    for i, (curve, finite) in enumerate(zip(panel.curves, points, strict=True)):
        marker = glyphs.markers[i % len(glyphs.markers)]
        note = "" if any(finite) else "  (no points)"
        lines.append(f"  {marker} {curve.label}{note}")
    return "\n".join(lines)


def _num(value: float) -> str:
    return format(value, ".4g")


# -------------------------------------------------------------------- PNG


def can_write_png() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_png(path: str | pathlib.Path, panels: Sequence[Panel]) -> None:
    """One subplot per panel, one line per curve, written as a PNG file.

    Raises:
        ImportError: matplotlib is not installed (see ``PNG_MISSING``).
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(8, 3 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        for curve in panel.curves:
            ax.plot(curve.steps, curve.values, label=curve.label, linewidth=1)
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if panel.curves:
            ax.legend(fontsize="small")
    fig.savefig(path, format="png", dpi=100)
