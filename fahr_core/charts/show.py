"""What ``fahr metrics`` prints: the charts, ``--json``/``--csv`` rows, ``--plot``'s image, and
``--follow`` (README, "fahr metrics"). Only the charts or the rows go to stdout; fahr's own lines
(the image written, the jobs followed) go to stderr.

``--follow``: the running jobs' metrics are read again every two seconds until they end. On a
terminal the charts are redrawn in place (at most once per read); otherwise each new point is a
line as it comes (``--json``: an object a line; ``--csv``: a row), and the charts follow once the
jobs have ended. ``--plot`` is rewritten at each read that brought points. Ctrl-C stops the
following (exit 130); the jobs run on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from fahr_core.comparison import COLUMNS, Comparison
from fahr_core.errors import UsageError


def show(read: Callable[[], Comparison], *, json_: bool = False, csv_: bool = False, plot: Path | None = None,
         follow: bool = False) -> None:
    from fahr_core.charts import files

    if json_ and csv_:
        raise UsageError("--json and --csv: choose one")
    if plot is not None:
        files.check(plot)  # before any job is read
    comparison = read()
    out = _Out(json_, csv_)
    if follow and comparison.running:
        _follow(comparison, out, plot)
        return
    comparison.check()
    if plot is not None:
        _plot(comparison, plot)
    if json_ or csv_:
        out.rows(comparison.rows(), last=True)
    elif plot is None:
        out.write(_text(comparison))


def _text(comparison: Comparison) -> str:
    from fahr_core.charts import terminal

    return comparison.text(terminal.width_for(), colour=terminal.colour_for(), unicode=terminal.unicode_for())


def _plot(comparison: Comparison, path: Path, quiet: bool = False) -> None:
    from fahr_core import ui
    from fahr_core.charts import files

    drawn = comparison.charts()
    comparison.plot(path)
    if not quiet:
        width, height = files.size(drawn)
        ui.success(f"wrote {path}: {len(drawn)} chart{'s' * (len(drawn) != 1)}, {width}x{height} pixels")


class _Out:
    """Stdout: the charts, or the points as JSON or CSV rows."""

    def __init__(self, json_: bool, csv_: bool):
        self.json, self.csv = json_, csv_
        self.started = False  # the JSON array's "[" or the CSV header written

    def write(self, text: str) -> None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # `fahr metrics … | head`: the reader has what it wanted
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            raise SystemExit(0) from None

    def rows(self, rows: list[dict], last: bool = False, streaming: bool = False) -> None:
        """Rows as JSON (an array; one object a line while ``streaming``) or CSV (a header first)."""
        import csv
        import io
        import json

        if self.json:
            if streaming:
                self.write("".join(json.dumps(row) + "\n" for row in rows))
                return
            body = ",\n".join(json.dumps(row) for row in rows)
            self.write(f"[\n{body}\n]\n" if rows else "[]\n")
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not self.started:
            writer.writerow(COLUMNS)
            self.started = True
        for row in rows:
            writer.writerow(["" if row[key] is None else repr(row[key]) if key == "value" else row[key]
                             for key in COLUMNS])
        self.write(buffer.getvalue())


def _line(row: dict) -> str:
    from fahr_core import ui

    step = "" if row["step"] is None else f"  step={row['step']}"
    host = f"  [{row['host']}]" if row["host"] else ""
    return ui.visible(f"{row['job']}  {row['metric']}={row['value']:.6g}{step}{host}  {row['time'] or ''}".rstrip())


def _follow(comparison: Comparison, out: _Out, plot: Path | None) -> None:
    import shutil

    from fahr_core import ui

    running = comparison.running
    ui.info(f"following {', '.join(job.name for job in running)} until {'it ends' if len(running) == 1 else 'they end'}"
            " (Ctrl-C stops following; the job runs on)")
    tty = not (out.json or out.csv) and _isatty()
    drawn = 0  # lines of the charts last drawn on the terminal

    def draw() -> int:
        text = _text(comparison) if comparison.names else "waiting for the jobs' first metrics…\n"
        lines = text.count("\n")
        if drawn:  # back to where the charts began, when they fit on the screen; else a clear screen
            out.write(f"\x1b[{drawn}F\x1b[J" if drawn < shutil.get_terminal_size().lines else "\x1b[H\x1b[2J")
        out.write(text)
        return lines

    def emit(rows: list[dict]) -> None:
        nonlocal drawn
        if tty:
            drawn = draw()
        elif out.json or out.csv:
            out.rows(rows, streaming=True)
        else:
            out.write("".join(_line(row) + "\n" for row in rows))
        if plot is not None and comparison.names:
            _plot(comparison, plot, quiet=True)

    emit(comparison.rows())
    for new in comparison.follow():
        rows = comparison.rows(new)
        if rows:
            emit(rows)
    for job in comparison.jobs:  # first: a job that failed before printing a metric is told so
        ui.info(f"job {job.name} ended: {job.status}" + (f" ({job.failure_reason})" if job.failure_reason else ""))
    comparison.check()
    if not tty and not (out.json or out.csv):
        out.write("\n" + _text(comparison))
    if plot is not None:
        _plot(comparison, plot)


def _isatty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
