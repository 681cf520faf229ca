"""Charts as text for a terminal: a line chart per metric, the jobs overlaid, each job its own
marker (and colour, where the terminal shows colour), a legend line per job.

Every line is at most ``width`` characters (the colour codes aside), so a chart reads in an 80-column
terminal and in a log file alike. A column shows each job's mean value over the points that fall
in it (10,000 points fit in 70 columns); between two of a job's columns a dot joins them.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Sequence

from fahr_core.charts import Chart, number, position

#: The plot's height in rows.
HEIGHT = 10
#: The narrowest chart drawn (a terminal narrower still gets this width).
MIN_WIDTH = 24
#: The widest: a chart across a 200-column terminal reads no better.
MAX_WIDTH = 100

_MARKERS = "●○◆◇■□▲△"
_ASCII_MARKERS = "*o#@x+%&"
_COLOURS = (36, 35, 33, 32, 34, 31, 96, 95)  # cyan, magenta, yellow, green, blue, red, bright cyan, bright magenta


def width_for(stream=None) -> int:
    """The width to draw at on ``stream``: the terminal's (``COLUMNS`` when set), within
    :data:`MIN_WIDTH`..:data:`MAX_WIDTH`; 80 when it is no terminal and ``COLUMNS`` is unset."""
    import shutil

    columns = shutil.get_terminal_size((80, 24)).columns
    return max(MIN_WIDTH, min(MAX_WIDTH, columns))


def colour_for(stream=None) -> bool:
    """Whether ``stream`` shows colour: a terminal, ``NO_COLOR`` unset, ``TERM`` not ``dumb``."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def unicode_for(stream=None) -> bool:
    """Whether ``stream`` takes the box-drawing characters and markers (its encoding is UTF-8)."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "") in ("utf8", "utf_8")


def marker(index: int, unicode: bool = True) -> str:
    markers = _MARKERS if unicode else _ASCII_MARKERS
    return markers[index % len(markers)]


def render(charts: Sequence[Chart], width: int = 80, *, colour: bool = False, unicode: bool = True,
           height: int = HEIGHT) -> str:
    """The charts as text, one after another, a blank line between them; a job has the same
    marker (its ``Line.index``) in every chart."""
    return "\n\n".join("\n".join(_chart(chart, width, colour, unicode, height)) for chart in charts) + "\n"


def _paint(text: str, index: int, colour: bool) -> str:
    return f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{text}\x1b[0m" if colour else text


def _row(fraction: float, rows: int) -> int:
    """The row (0 at the top) a value at ``fraction`` of the y axis (0.0 its bottom) is drawn on."""
    return rows - 1 - min(max(int(fraction * (rows - 1) + 0.5), 0), rows - 1)


def _chart(chart: Chart, width: int, colour: bool, unicode: bool, height: int) -> list[str]:
    from fahr_core import ui

    low, high = chart.y_range
    x_low, x_high = chart.x_range
    labels = [number(high), number(low / 2 + high / 2), number(low)]
    label_width = max(map(len, labels))
    plot_width = max(width - label_width - 2, 4)
    rows = max(height, 3)
    grid: list[list[tuple[str, int] | None]] = [[None] * plot_width for _ in range(rows)]
    for line in chart.lines:
        index = line.index
        columns: dict[int, list[float]] = {}
        for x, y in zip(line.xs, line.ys):
            columns.setdefault(min(int(position(x, x_low, x_high) * (plot_width - 1) + 0.5), plot_width - 1), []).append(y)
        cells = []
        for column in sorted(columns):
            values = columns[column]
            mean = math.fsum(y / len(values) for y in values)  # never overflows, however large the values
            cells.append((column, _row(position(mean, low, high), rows)))
        for (c1, r1), (c2, r2) in zip(cells, cells[1:]):  # join a job's columns with dots
            for column in range(c1 + 1, c2):
                row = round(r1 + (r2 - r1) * (column - c1) / (c2 - c1))
                if grid[row][column] is None:
                    grid[row][column] = ("·" if unicode else ".", index)
        for column, row in cells:
            grid[row][column] = (marker(index, unicode), index)
    vertical, tick, corner, across = ("│", "┤", "└", "─") if unicode else ("|", "+", "+", "-")
    title = ui.visible(chart.metric)
    lines = [title[:width]]
    middle_row = _row(0.5, rows)  # the row a value halfway is drawn on (rows // 2 was one below it)
    for row in range(rows):
        label = labels[0] if row == 0 else labels[2] if row == rows - 1 else labels[1] if row == middle_row else ""
        cells = "".join(" " if cell is None else _paint(cell[0], cell[1], colour) for cell in grid[row]).rstrip()
        lines.append(f"{label.rjust(label_width)} {tick if label else vertical}{cells}")
    lines.append(" " * label_width + " " + corner + across * plot_width)
    left, right = number(x_low), number(x_high)
    middle = chart.x_label
    room = plot_width + 1 - len(left) - len(right)
    if room >= len(middle) + 2:
        axis = left + middle.center(room) + right
    else:
        axis = left + " " * max(room, 1) + right
    lines.append((" " * (label_width + 1) + axis)[:width].rstrip())
    for line in chart.lines:
        index = line.index
        text = ui.visible(line.label) + (f"  {ui.visible(line.detail)}" if line.detail else "")
        if len(text) > width - 4:  # its start and its end (where names and values differ) stay
            text = ui.cut_middle(text, width - 4)
        text = text if unicode else text.replace("…", "~")  # (the legend's detail may be cut already)
        lines.append(f"  {_paint(marker(index, unicode), index, colour)} {text}")
    return lines
