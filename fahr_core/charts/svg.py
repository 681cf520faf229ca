"""Charts as SVG (and an HTML page of them), written by hand: no plotting library at run time.

One image holds every chart, stacked: :data:`fahr_core.charts.WIDTH` by ``HEIGHT`` times the
number of charts, in pixels. Each chart: its metric's name, the axes with round ticks and their
values, the x axis's name, a polyline per job (at most :data:`fahr_core.charts.MAX_DRAWN` points:
a longer series is downsampled, its spikes kept) and a legend naming each job and its
hyperparameters that differ.
"""

from __future__ import annotations

import re
from typing import Sequence
from xml.sax.saxutils import escape

from fahr_core.charts import HEIGHT, MAX_DRAWN, WIDTH, Chart, downsample, number, position, ticks

#: The jobs' colours, in order (the terminal's order of colours).
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
#: The plot area within a chart: left, top, right and bottom margins.
MARGIN = (80, 40, 20, 70)
#: The legend: a line of this many pixels per job, under the plot (fewer rows of plot for many jobs).
LEGEND_LINE = 16


#: What XML 1.0 cannot hold that ui.visible leaves (it escapes what a terminal would act on):
#: U+FFFE and U+FFFF; one in a name made the whole SVG unreadable.
_NOT_XML = re.compile("[\ufffe\uffff]")


def _visible(text: str) -> str:
    from fahr_core import ui

    return escape(_NOT_XML.sub(lambda found: f"\\u{ord(found.group()):04x}", ui.visible(text)))


def layout(chart: Chart, top: float = 0.0) -> dict:
    """Where a chart's parts go, in pixels (shared with the PNG renderer): plot box, the lines'
    points, ticks, legend rows."""
    left, top_margin, right, bottom = MARGIN
    legend = LEGEND_LINE * min(len(chart.lines), 8)
    box = (left, top + top_margin, WIDTH - right, top + HEIGHT - bottom - legend)
    x_low, x_high = chart.x_range
    y_low, y_high = chart.y_range

    def at(x: float, y: float) -> tuple[float, float]:
        return (box[0] + position(x, x_low, x_high) * (box[2] - box[0]),
                box[3] - position(y, y_low, y_high) * (box[3] - box[1]))

    polylines = []
    for line in chart.lines:
        xs, ys = downsample(line.xs, line.ys, MAX_DRAWN // 4)
        polylines.append([at(x, y) for x, y in zip(xs, ys)])
    x_ticks = [(at(x, y_low)[0], number(x)) for x in ticks(x_low, x_high) if x_low <= x <= x_high]
    y_ticks = [(at(x_low, y)[1], number(y)) for y in ticks(y_low, y_high) if y_low <= y <= y_high]
    legend_rows = [(box[3] + 54 + LEGEND_LINE * i, line) for i, line in enumerate(chart.lines[:8])]
    hidden = len(chart.lines) - len(legend_rows)
    return {"box": box, "polylines": polylines, "x_ticks": x_ticks, "y_ticks": y_ticks, "legend": legend_rows,
            "hidden": hidden, "title": (left, top + 24), "x_label": ((box[0] + box[2]) / 2, box[3] + 34)}


def render(charts: Sequence[Chart]) -> str:
    """One SVG document holding every chart, stacked."""
    height = HEIGHT * max(len(charts), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    for i, chart in enumerate(charts):
        parts.append(_chart(chart, i * HEIGHT))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def inline(charts: Sequence[Chart]) -> list[str]:
    """Each chart as an SVG of its own (for an HTML page)."""
    return [render([chart]).replace(' xmlns="http://www.w3.org/2000/svg"', "", 1) for chart in charts]


def page(charts: Sequence[Chart], title: str) -> str:
    """An HTML page with every chart (inline SVG): nothing fetched, opens offline."""
    body = "\n".join(f"<figure>{svg}</figure>" for svg in inline(charts))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{_visible(title)}</title>'
            "<style>body{font-family:sans-serif;margin:2em}figure{margin:0 0 1em 0}</style></head>\n"
            f"<body><h1>{_visible(title)}</h1>\n{body}\n</body></html>\n")


def _chart(chart: Chart, top: float) -> str:
    shape = layout(chart, top)
    x0, y0, x1, y1 = shape["box"]
    parts = ['<g class="chart">',
             f'<text x="{shape["title"][0]}" y="{shape["title"][1]}" font-size="16" font-weight="bold">'
             f'{_visible(chart.metric)}</text>',
             f'<rect x="{x0}" y="{y0:.1f}" width="{x1 - x0}" height="{y1 - y0:.1f}" fill="none" stroke="#888"/>']
    for x, label in shape["x_ticks"]:
        parts.append(f'<line x1="{x:.1f}" y1="{y1:.1f}" x2="{x:.1f}" y2="{y1 + 5:.1f}" stroke="#888"/>'
                     f'<text x="{x:.1f}" y="{y1 + 18:.1f}" text-anchor="middle">{escape(label)}</text>')
    for y, label in shape["y_ticks"]:
        parts.append(f'<line x1="{x0 - 5}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" stroke="#888"/>'
                     f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{x0 - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    x_middle, x_label_y = shape["x_label"]
    parts.append(f'<text x="{x_middle:.1f}" y="{x_label_y:.1f}" text-anchor="middle">{escape(chart.x_label)}</text>')
    for line, points in zip(chart.lines, shape["polylines"]):
        colour = COLOURS[line.index % len(COLOURS)]
        if len(points) == 1:
            (x, y), = points
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        else:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
    for y, line in shape["legend"]:
        colour = COLOURS[line.index % len(COLOURS)]
        text = line.label + (f"  {line.detail}" if line.detail else "")
        parts.append(f'<line x1="{x0}" y1="{y - 4}" x2="{x0 + 20}" y2="{y - 4}" stroke="{colour}" stroke-width="3"/>'
                     f'<text x="{x0 + 28}" y="{y}">{_visible(text)}</text>')
    if shape["hidden"]:
        parts.append(f'<text x="{x1}" y="{shape["legend"][-1][0]}" text-anchor="end">and {shape["hidden"]} more</text>')
    parts.append("</g>")
    return "\n".join(parts)
