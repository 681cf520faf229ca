"""Several jobs' metrics side by side: what ``fahr metrics`` and ``fahr_core.compare`` show
(docs/metrics.md, "fahr metrics").

A :class:`Comparison` holds the jobs and their series, read once through each :class:`Job`
(the driver's ``metrics`` hook, else its logs parsed); :meth:`Comparison.follow` reads the
running jobs' again every few seconds until they end. It draws nothing itself:
``fahr_core.charts`` does, from :meth:`Comparison.charts`.
"""

from __future__ import annotations

import fnmatch
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from fahr_core.errors import UsageError

#: Seconds between two reads of a followed job's metrics (and at most one redraw per them).
FOLLOW_INTERVAL = 2.0
#: The columns of ``--json`` and ``--csv``.
COLUMNS = ("job", "metric", "value", "step", "time", "host")
#: How a job is told to print metrics, said when one has none.
HOW = ("a job's metrics are the lines it prints as 'fahr-metric loss=0.25 step=3' (or that fit --metric "
       "NAME=REGEX matches); see docs/metrics.md")


class Comparison:
    """The metrics of ``jobs`` (:class:`fahr_core.Job`), read when made. ``metrics``: names or
    glob patterns (``val_*``) of the metrics shown, in that order; None: all, by name.

    ``series``: job name -> metric name -> its points (:class:`fahr_core.MetricPoint`, in time
    order). :meth:`rows` gives the points as ``--json`` and ``--csv`` do, :meth:`text` the
    terminal's charts, :meth:`plot` writes an image.
    """

    def __init__(self, jobs: Sequence, metrics: Sequence[str] | None = None):
        self.jobs = list(jobs)
        self.patterns = list(metrics) if metrics else None
        self.series: dict[str, dict[str, list]] = {}
        self._seen: dict[str, dict[str, int]] = {}  # each job's points read so far, per host
        for job, points in zip(self.jobs, _read_all(self.jobs)):
            self._take(job, points)

    def _take(self, job, points: list) -> list:
        """Keep a job's points as read now; the ones not read before (in the driver's order).
        Counted per host: each host's points come in the order it printed them, but a read need
        not append to the last one as a whole (a job of several hosts read from its logs comes host
        by host, so a point of algo-1 printed since comes before algo-2's already read); nor are
        they told by their times (read from logs without timestamps, a point is stamped when read)."""
        from fahr_core import metrics

        before = self._seen.get(job.name, {})
        now: dict[str, int] = {}
        new = []
        for point in points:
            now[point.host] = now.get(point.host, 0) + 1
            if now[point.host] > before.get(point.host, 0):
                new.append(point)
        self._seen[job.name] = now
        self.series[job.name] = metrics.series(points)
        return new

    # -- what is shown --------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The metrics shown: those the patterns match (each pattern's in name order), else all."""
        have = sorted({name for series in self.series.values() for name in series})
        if self.patterns is None:
            return have
        chosen: list[str] = []
        for pattern in self.patterns:
            chosen += [name for name in have if fnmatch.fnmatchcase(name, pattern) and name not in chosen]
        return chosen

    def check(self) -> None:
        """Refuse (one UsageError) when there is nothing to show: no job has metrics, or none the
        patterns name; say which jobs have none when others have."""
        from fahr_core import ui

        have = sorted({name for series in self.series.values() for name in series})
        empty = [job.name for job in self.jobs if not self.series.get(job.name)]
        if not have:
            which = f"job {empty[0]} has" if len(empty) == 1 else f"jobs {', '.join(empty)} have"
            raise UsageError(f"{which} no metrics: {HOW}")
        for pattern in self.patterns or ():
            if not any(fnmatch.fnmatchcase(name, pattern) for name in have):
                raise UsageError(f"metric {pattern!r}: no job shown has it; they have {', '.join(have)}")
        for name in empty:
            ui.warn(f"job {name} has no metrics: {HOW}")

    def rows(self, points: dict[str, list] | None = None) -> list[dict]:
        """Every point of the metrics shown: ``job``, ``metric``, ``value``, ``step``, ``time``
        (ISO 8601, UTC; None when unknown), ``host``; job by job, metric by metric, in time order.
        ``points``: job name -> points (those :meth:`follow` yields) instead of all."""
        shown = set(self.names)
        found = []
        for job in self.jobs:
            if points is None:
                chosen = [point for name in self.names for point in self.series.get(job.name, {}).get(name, ())]
            else:
                chosen = [point for point in points.get(job.name, ()) if point.name in shown]
            found += [{"job": job.name, "metric": point.name, "value": point.value, "step": point.step,
                       "time": _iso(point.time), "host": point.host} for point in chosen]
        return found

    def charts(self) -> list:
        """A :class:`fahr_core.charts.Chart` per metric shown, the jobs overlaid."""
        from fahr_core import charts

        runs = [charts.Run(job.name, job.hyperparameters, self.series.get(job.name, {})) for job in self.jobs]
        return charts.charts(runs, self.names)

    def text(self, width: int = 80, *, colour: bool = False, unicode: bool = True) -> str:
        """The charts as the terminal shows them, every line at most ``width`` characters (at
        least :data:`fahr_core.charts.terminal.MIN_WIDTH`)."""
        from fahr_core import arguments as check
        from fahr_core.charts import terminal

        if isinstance(width, bool) or not isinstance(width, int) or width < terminal.MIN_WIDTH:
            raise UsageError(f"Comparison.text(): width must be a whole number of columns, at least "
                             f"{terminal.MIN_WIDTH}, not {width!r}")
        check.flag(colour, "Comparison.text(): colour")
        check.flag(unicode, "Comparison.text(): unicode")
        return terminal.render(self.charts(), width, colour=colour, unicode=unicode)

    def plot(self, path: str | Path) -> Path:
        """Write the charts as an image: ``.png``, ``.svg`` or ``.html`` (a page of them), by the
        extension; 800 pixels wide, 400 high per chart, stacked. Written whole or not at all."""
        from fahr_core import arguments as check
        from fahr_core.charts import files

        return files.write(check.path(path, "Comparison.plot(): path"), self.charts(), "fahr metrics: " + ", ".join(job.name for job in self.jobs))

    # -- following ------------------------------------------------------------------------------

    @property
    def running(self) -> list:
        return [job for job in self.jobs if not job.done]

    def follow(self, interval: float | None = None) -> Iterator[dict[str, list]]:
        """Read the running jobs' metrics again every ``interval`` seconds until every job has
        ended; yield each time the points read anew (job name -> points; maybe none). The last
        read is made after the jobs ended, so the series end whole. By default every
        :data:`FOLLOW_INTERVAL` seconds, or the driver's ``poll_interval`` when it is longer (a
        cloud driver's reads cost calls: sagemaker's is 10 s)."""
        from fahr_core import ui

        if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))
                                     or not 0 <= interval < float("inf")):
            raise UsageError(f"Comparison.follow(): interval must be seconds (a number, 0 or more) or None, "
                             f"not {interval!r}")
        if interval is None:
            interval = max([FOLLOW_INTERVAL] + [_poll_interval(job) for job in self.running])
        while True:
            running = self.running
            if not running:
                return
            time.sleep(interval)
            for job in running:
                with ui.quiet():
                    job._try_refresh()
            new = {job.name: self._take(job, points) for job, points in zip(running, _read_all(running))}
            yield new


def _poll_interval(job) -> float:
    """The driver's ``poll_interval`` (seconds), 0 when it has none."""
    try:
        return float(job._opened().config.get("poll_interval") or 0)
    except Exception:  # noqa: BLE001 - a job without a driver's session (a test's) or a key not a number
        return 0.0


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _read_all(jobs: Sequence) -> list[list]:
    """Each job's points, a few jobs at a time (a cloud driver reads each job's logs)."""
    from concurrent.futures import ThreadPoolExecutor

    if len(jobs) < 2:
        return [job._points() for job in jobs]
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        return list(pool.map(lambda job: job._points(), jobs))
