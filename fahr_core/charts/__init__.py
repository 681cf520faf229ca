"""Charts of jobs' metrics: one chart per metric, the jobs overlaid (``fahr metrics``, docs/metrics.md).

This module turns the jobs' series into :class:`Chart` values (the x axis chosen, non-finite
values dropped, the scales worked out once); ``terminal``, ``svg`` and ``png`` draw them. Nothing
here imports anything beyond the standard library: ``fahr metrics`` must start fast, and an image
is written without a plotting library (README, "fahr metrics").
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

#: Each chart of an image: its size in pixels (SVG and PNG alike; the charts are stacked).
WIDTH, HEIGHT = 800, 400
#: The charts an image holds at most: 800x80,000 pixels, below what image viewers and libraries
#: open without refusing it as a decompression bomb (Pillow warns from 89 million pixels). A job
#: can print thousands of metric names; an image of them all is nobody's to open.
MAX_IMAGE_CHARTS = 200
#: The extensions ``--plot`` writes.
EXTENSIONS = (".png", ".svg", ".html")
#: A legend's hyperparameters, in characters at most (a line of an image shows about 110).
MAX_DETAIL = 120
#: The points a line of an image keeps at most (a series of more is downsampled, its spikes kept).
MAX_DRAWN = 2000


@dataclass
class Line:
    """One job's series of one metric (one host's, for a job of several)."""

    label: str
    detail: str = ""  # the job's hyperparameters that differ between the jobs shown
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    index: int = 0  # the job's place among the jobs shown: its marker and colour in every chart


@dataclass
class Chart:
    """One metric, the jobs overlaid: ``x_label`` is ``step`` or ``time (s|min|h)``."""

    metric: str
    x_label: str
    lines: list[Line]

    @property
    def x_range(self) -> tuple[float, float]:
        return _range(x for line in self.lines for x in line.xs)

    @property
    def y_range(self) -> tuple[float, float]:
        return _range(y for line in self.lines for y in line.ys)


@dataclass
class Run:
    """What a chart needs of a job: its name, hyperparameters and series (name -> points with
    ``value``, ``step``, ``time``, ``host``)."""

    name: str
    hyperparameters: Mapping[str, str]
    series: Mapping[str, Sequence]


def differing(hyperparameters: Sequence[Mapping[str, str]]) -> list[str]:
    """The hyperparameters whose values are not the same in every job (one missing counts)."""
    names = sorted({name for given in hyperparameters for name in given})
    return [name for name in names if len({given.get(name) for given in hyperparameters}) > 1]


def charts(runs: Sequence[Run], metrics: Iterable[str] | None = None) -> list[Chart]:
    """A chart per metric (``metrics``: those, in that order; else every metric, by name), with
    a line per job that has it (per host, for a job of several). The x axis is the step when
    every point of the metric has one, else the seconds since each job's first point."""
    hps = differing([run.hyperparameters for run in runs])
    details = [_detail(run.hyperparameters, hps) for run in runs]  # once a job, not once a chart
    names = list(metrics) if metrics is not None else sorted({name for run in runs for name in run.series})
    starts = {run.name: _first_time(run) for run in runs}
    made = []
    for name in names:
        having = [run for run in runs if run.series.get(name)]
        if not having:
            continue
        by_step = all(point.step is not None for run in having for point in run.series[name])
        lines = []
        for index, run in enumerate(runs):
            if not run.series.get(name):
                continue
            detail = details[index]
            by_host: dict[str, list] = {}  # in one pass: a point per host (a job folder edited so) is linear too
            for point in run.series[name]:
                by_host.setdefault(point.host or "", []).append(point)
            for host in sorted(by_host):
                line = Line(run.name + (f" [{host}]" if len(by_host) > 1 else ""), detail, index=index)
                for point in by_host[host]:
                    if not by_step and point.time is None:  # no x on a time axis (it was drawn at -start)
                        continue
                    x = float(point.step) if by_step else point.time - starts[run.name]
                    if _finite(point.value) and _finite(x):
                        line.xs.append(x)
                        line.ys.append(float(point.value))
                if by_step:  # in step order (time order otherwise, as the series come)
                    order = sorted(range(len(line.xs)), key=line.xs.__getitem__)
                    line.xs, line.ys = [line.xs[i] for i in order], [line.ys[i] for i in order]
                if line.xs:
                    lines.append(line)
        if not lines:
            continue
        x_label = "step"
        if not by_step:
            unit, size = time_unit(max(x for line in lines for x in line.xs))
            x_label = f"time ({unit})"
            for line in lines:
                line.xs = [x / size for x in line.xs]
        made.append(Chart(name, x_label, lines))
    return made


def _detail(hyperparameters: Mapping[str, str], names: Sequence[str]) -> str:
    """A legend's ``name=value`` of the hyperparameters that differ, at most :data:`MAX_DETAIL`
    characters (cut in its middle): a job.json of 20,000 of them made each chart's legend 200 KB."""
    from fahr_core import ui

    return ui.cut_middle(" ".join(f"{key}={hyperparameters.get(key, '-')}" for key in names), MAX_DETAIL)


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit a span of ``seconds`` reads best in: s, min or h."""
    if seconds > 2 * 3600:
        return "h", 3600.0
    if seconds > 120:
        return "min", 60.0
    return "s", 1.0


def _first_time(run: Run) -> float:
    times = [point.time for points in run.series.values() for point in points
             if point.time is not None and _finite(point.time)]
    return min(times, default=0.0)


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except TypeError:
        return False


def _range(values: Iterable[float]) -> tuple[float, float]:
    """The lowest and highest value; a single value is widened so that it sits in the middle."""
    low = high = None
    for value in values:
        low = value if low is None or value < low else low
        high = value if high is None or value > high else high
    if low is None:
        return 0.0, 1.0
    if low == high:  # widened within the floats: a value near the largest has no finite double
        pad = abs(low) * 0.5 or 1.0
        return max(low - pad, -sys.float_info.max), min(high + pad, sys.float_info.max)
    return low, high


def position(value: float, low: float, high: float) -> float:
    """Where ``value`` sits between ``low`` (0.0) and ``high`` (1.0); exact for values so large
    that ``high - low`` overflows."""
    span = high - low
    if math.isfinite(span) and span > 0:
        return (value - low) / span
    half = high / 2 - low / 2
    return (value / 2 - low / 2) / half if half > 0 else 0.5


def number(value: float) -> str:
    """A value as an axis shows it: four significant digits (``0.3333``, ``1.235e+06``)."""
    text = f"{value:.4g}"
    return "0" if text == "-0" else text


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) from ``low`` to ``high``."""
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return [low, high]
    raw = span / max(count - 1, 1)
    if raw < sys.float_info.min:  # a span among the subnormals: no power of ten to count in
        return [low, high]
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    # whole multiples of the step, each rounded to 12 significant digits (0.1 * 3 is 0.3): a
    # fixed number of decimals would round the ticks of a range of 1e-14 all to 0
    first = math.ceil(low / step)
    found, k = [], 0
    while (first + k) * step <= high + step * 1e-9 and k < 50:
        found.append(float(f"{(first + k) * step:.12g}"))
        k += 1
    return found or [low, high]


def downsample(xs: Sequence[float], ys: Sequence[float], buckets: int) -> tuple[list[float], list[float]]:
    """At most ``4 * buckets`` points of a series in x order: in each of ``buckets`` equal spans
    of x, its first point, lowest, highest and last (in x order), so that spikes stay."""
    if len(xs) <= 4 * buckets:
        return list(xs), list(ys)
    low, high = xs[0], xs[-1]
    groups: dict[int, list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(min(int(position(x, low, high) * buckets), buckets - 1), []).append(i)
    kept: list[int] = []
    for members in groups.values():
        lowest = min(members, key=ys.__getitem__)
        highest = max(members, key=ys.__getitem__)
        kept.extend(sorted({members[0], lowest, highest, members[-1]}))
    return [xs[i] for i in kept], [ys[i] for i in kept]
