"""The charts of ``fahr metrics``: the terminal's (80 columns, jobs overlaid, a legend, one point,
non-finite and huge values, 10,000 points), the PNG (its chunks parsed: signature, size, pixels,
CRCs) and the SVG (XML of the documented size), written whole or not at all."""

from __future__ import annotations

import errno
import math
import os
import re
import struct
import time
import xml.etree.ElementTree as ET
import zlib

import pytest

from fahr_core import charts
from fahr_core.charts import Run, files, png, svg, terminal
from fahr_core.errors import EnvironmentProblem, UsageError
from fahr_core.values import MetricPoint as P

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(name, hps, **series):
    return Run(name, hps, {metric: [P(metric, value, step, time_, "algo-1") for value, step, time_ in points]
                           for metric, points in series.items()})


def two_jobs():
    a = run("my-model-train-20261203-145512-1795", {"alpha": "0.5", "epochs": "9"},
            loss=[(1 / (i + 1), i, 100.0 + i) for i in range(30)], acc=[(0.5 + i / 100, i, 100.0 + i) for i in range(30)])
    b = run("my-model-train-20261203-145612-1796", {"alpha": "0.9", "epochs": "9"},
            loss=[(2 / (i + 1), i, 200.0 + i) for i in range(12)])
    return [a, b]


def lines_of(text):
    return text.rstrip("\n").split("\n")


@pytest.mark.parametrize("colour", [False, True])
def test_every_line_fits_80_columns_and_the_jobs_are_overlaid_with_a_legend(colour):
    text = terminal.render(charts.charts(two_jobs()), 80, colour=colour)
    plain = ANSI.sub("", text)
    assert all(len(line) <= 80 for line in lines_of(plain)), plain
    assert ("\x1b[" in text) is colour
    loss = plain[plain.index("\nloss\n"):]
    # both jobs drawn in the loss chart, each its own marker, each named once in its legend with
    # the hyperparameter that differs (not the one they share)
    assert "●" in loss and "○" in loss
    assert "  ● my-model-train-20261203-145512-1795  alpha=0.5\n" in loss
    assert "  ○ my-model-train-20261203-145612-1796  alpha=0.9" in loss
    assert "epochs" not in plain
    # a metric only one job has is charted with that job alone, in the same marker
    acc = plain[:plain.index("\nloss\n")]
    assert "●" in acc and "○" not in acc and "1796" not in acc
    # the y axis is labelled with the max and the min, the x axis with its range and name
    assert re.search(r"^ *2 ┤", loss, re.M) and re.search(r"^ *0\.03333 ┤", loss, re.M)
    assert re.search(r"^ +0 +step +29$", loss, re.M)


def test_a_narrow_terminal_still_gets_no_line_wider_than_asked():
    for width in (24, 40, 60):
        text = terminal.render(charts.charts(two_jobs()), width)
        assert all(len(line) <= width for line in lines_of(text)), text


def test_without_utf8_the_chart_is_ascii():
    text = terminal.render(charts.charts(two_jobs()), 80, unicode=False)
    assert text.isascii() and "*" in text and "o" in text


def test_a_single_point_is_drawn_in_the_middle():
    text = terminal.render(charts.charts([run("job-a", {}, loss=[(3.0, 5, 1.0)])]), 80)
    rows = [line for line in lines_of(text) if "┤" in line or "│" in line]
    marked = [i for i, line in enumerate(rows) if "●" in line]
    assert len(marked) == 1 and 0 < marked[0] < len(rows) - 1
    assert text.count("●") == 2  # the point and its legend


def test_non_finite_values_are_skipped_and_huge_ones_drawn():
    job = run("job-a", {}, loss=[(float("nan"), 0, 1.0), (1e308, 1, 2.0), (float("inf"), 2, 3.0),
                                 (-1e308, 3, 4.0), (float("-inf"), 4, 5.0)])
    (chart,) = charts.charts([job])
    assert chart.lines[0].ys == [1e308, -1e308]
    text = terminal.render([chart], 80)
    assert "1e+308" in text and "-1e+308" in text and "nan" not in text and "inf" not in text
    assert all(len(line) <= 80 for line in lines_of(text))
    ET.fromstring(svg.render([chart]))  # no NaN coordinate either
    assert "nan" not in svg.render([chart]).lower()
    only_nan = run("job-b", {}, loss=[(float("nan"), 0, 1.0)])
    assert charts.charts([only_nan]) == []


def test_ten_thousand_points_are_downsampled_and_keep_their_spike():
    values = [(1.0 if i != 7777 else 50.0, i, float(i)) for i in range(10_000)]
    (chart,) = charts.charts([run("job-a", {}, loss=values)])
    started = time.monotonic()
    text = terminal.render([chart], 80)
    assert time.monotonic() - started < 2
    assert all(len(line) <= 80 for line in lines_of(text))
    document = ET.fromstring(svg.render([chart]))
    (polyline,) = document.iter("{http://www.w3.org/2000/svg}polyline")
    points = polyline.get("points").split()
    assert len(points) <= charts.MAX_DRAWN
    top = min(float(p.split(",")[1]) for p in points)
    assert top == pytest.approx(charts.svg.MARGIN[1])  # the spike at 50 is still the highest point


def test_time_is_the_x_axis_when_the_points_have_no_step():
    job = run("job-a", {}, loss=[(1.0, None, 1000.0), (0.5, None, 1300.0)])
    (chart,) = charts.charts([job])
    assert chart.x_label == "time (min)" and chart.lines[0].xs == [0.0, 5.0]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        found.append((kind, body))
        at += 12 + length
    assert at == len(data)
    return found


def check_png(data: bytes, count: int) -> None:
    """A valid PNG of ``count`` charts: 800 wide, 400 high each, 8-bit RGB, whole pixels."""
    chunks = png_chunks(data)
    assert [kind for kind, _ in chunks][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, kind, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (width, height) == (charts.WIDTH, charts.HEIGHT * count) == (800, 400 * count)
    assert (depth, kind, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)


def check_svg(text: str, count: int) -> ET.Element:
    document = ET.fromstring(text)
    assert document.tag == "{http://www.w3.org/2000/svg}svg"
    assert (document.get("width"), document.get("height")) == ("800", str(400 * count))
    return document


def test_the_png_is_valid_of_the_documented_size_and_not_blank():
    drawn = charts.charts(two_jobs())
    data = png.render(drawn)
    check_png(data, 2)
    raw = zlib.decompress(b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT"))
    colours = {raw[i:i + 3] for i in range(1, len(raw) - 3, 3 * 97)}
    assert len(colours) > 2  # white, the text, the lines


def test_the_svg_is_xml_of_the_documented_size_a_polyline_a_job():
    drawn = charts.charts(two_jobs())
    document = check_svg(svg.render(drawn), 2)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(list(document.iter(f"{ns}polyline"))) == 3  # acc: one job; loss: two
    texts = " ".join(t.text or "" for t in document.iter(f"{ns}text"))
    assert "loss" in texts and "acc" in texts and "alpha=0.9" in texts and "step" in texts


def test_text_from_a_job_cannot_break_the_svg_or_the_terminal():
    job = run("job-a", {"note": "</text><script>x</script>\x1b[2J"}, loss=[(1.0, 0, 1.0), (2.0, 1, 2.0)])
    other = run("job-b", {"note": "b"}, loss=[(1.0, 0, 1.0)])
    drawn = charts.charts([job, other])
    document = check_svg(svg.render(drawn), 1)
    assert not list(document.iter("{http://www.w3.org/2000/svg}script"))
    assert "\x1b" not in terminal.render(drawn, 80) and "\x1b" not in svg.page(drawn, "t")


def test_an_image_is_written_by_its_extension_whole(tmp_path):
    drawn = charts.charts(two_jobs())
    check_png((files.write(tmp_path / "m.png", drawn)).read_bytes(), 2)
    check_svg((tmp_path / "m.svg").read_text() if files.write(tmp_path / "m.svg", drawn) else "", 2)
    page = files.write(tmp_path / "m.html", drawn).read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    with pytest.raises(UsageError, match=r"\.png, \.svg, \.html"):
        files.write(tmp_path / "m.jpg", drawn)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        files.write(tmp_path / "folder.png", drawn)
    with pytest.raises(UsageError, match="does not exist"):
        files.write(tmp_path / "nowhere" / "m.png", drawn)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png", "m.html", "m.png", "m.svg"]


def test_a_failed_write_leaves_the_old_file_and_nothing_beside_it(tmp_path, monkeypatch):
    target = tmp_path / "m.svg"
    target.write_text("old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "rename", full)
    with pytest.raises(EnvironmentProblem, match="No space left"):
        files.write(target, charts.charts(two_jobs()))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.svg"]


class FakeJob:
    """A job as a Comparison reads it: its points grow as it runs, and it ends."""

    def __init__(self, name, hyperparameters, batches):
        self.name, self.hyperparameters, self.batches = name, hyperparameters, list(batches)
        self.points, self.status, self.failure_reason = [], "InProgress", ""
        self.reads = 0

    @property
    def done(self):
        return self.status != "InProgress"

    def _try_refresh(self):
        if not self.batches:
            self.status = "Completed"

    def _points(self):
        self.reads += 1
        if self.batches:
            self.points = self.points + self.batches.pop(0)
        return list(self.points)


def points(metric, *values, start=0):
    return [P(metric, value, start + i, 100.0 + start + i, "algo-1") for i, value in enumerate(values)]


def test_a_comparison_chooses_metrics_by_name_or_glob_and_says_what_is_missing():
    from fahr_core.comparison import Comparison

    a = FakeJob("job-a", {"lr": "0.1"}, [points("loss", 1.0, 0.5) + points("val_loss", 2.0) + points("acc", 0.3)])
    b = FakeJob("job-b", {"lr": "0.2"}, [[]])
    shown = Comparison([a, b], ["val_*", "loss"])
    assert shown.names == ["val_loss", "loss"]
    assert [(r["job"], r["metric"], r["value"], r["step"]) for r in shown.rows()] == [
        ("job-a", "val_loss", 2.0, 0), ("job-a", "loss", 1.0, 0), ("job-a", "loss", 0.5, 1)]
    assert shown.rows()[0]["time"] == "1970-01-01T00:01:40+00:00"
    assert [chart.metric for chart in shown.charts()] == ["val_loss", "loss"]
    with pytest.raises(UsageError, match="metric 'nope': no job shown has it; they have acc, loss, val_loss"):
        Comparison([a], ["nope"]).check()
    with pytest.raises(UsageError, match="job job-b has no metrics: .*'fahr-metric loss=0.25 step=3'"):
        Comparison([FakeJob("job-b", {}, [[]])]).check()


def test_following_yields_the_new_points_until_every_job_has_ended():
    from fahr_core.comparison import Comparison

    a = FakeJob("job-a", {}, [points("loss", 1.0), points("loss", 0.5, start=1), [], points("loss", 0.25, start=2)])
    shown = Comparison([a])
    got = [[(p.value, p.step) for p in new.get("job-a", [])] for new in shown.follow(interval=0)]
    assert got == [[(0.5, 1)], [], [(0.25, 2)], []]  # the last read after it ended
    assert a.done and [p.value for p in shown.series["job-a"]["loss"]] == [1.0, 0.5, 0.25]
    assert list(Comparison([a]).follow(interval=0)) == []  # an ended job is not followed


@pytest.mark.parametrize("args, kwargs, words", [
    (("job-a",), {}, "a non-empty list of jobs"),
    (([],), {}, "a non-empty list of jobs"),
    (([3],), {}, "compare(): jobs"),
    ((["job-a"],), {"metrics": "loss"}, "metrics must be a list"),
])
def test_compare_checks_its_arguments_before_any_driver(args, kwargs, words):
    import fahr_core

    with pytest.raises(UsageError, match=re.escape(words)):
        fahr_core.compare(*args, **kwargs)


def test_following_waits_the_drivers_poll_interval_when_it_is_longer(monkeypatch):
    from types import SimpleNamespace

    from fahr_core import comparison

    slept = []
    monkeypatch.setattr(comparison.time, "sleep", slept.append)
    for poll, expected in ((10.0, 10.0), (0.5, comparison.FOLLOW_INTERVAL), (None, comparison.FOLLOW_INTERVAL)):
        job = FakeJob("job-a", {}, [points("loss", 1.0), points("loss", 0.5, start=1)])
        job._opened = lambda poll=poll: SimpleNamespace(config={"poll_interval": poll} if poll else {})
        slept.clear()
        list(comparison.Comparison([job]).follow())
        assert slept and set(slept) == {expected}


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """The width, height and RGB rows (filter bytes removed) of a PNG written unfiltered."""
    chunks = png_chunks(data)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + 3 * width
    assert all(raw[row * stride] == 0 for row in range(height))  # each row's filter: none
    return width, height, b"".join(raw[row * stride + 1:(row + 1) * stride] for row in range(height))


@pytest.mark.parametrize("values", [[1.7e308], [1.7e308, 1.7e308], [-1.7e308], [5e-324, 1e-323],
                                    [1e-14, 5e-14, 3e-14], [-2e-300, -1e-300]])
def test_extreme_and_tiny_ranges_draw_in_every_format(values):
    # a single value near the largest float was widened to an infinite range (NaN coordinates:
    # the PNG raised, the SVG said y="nan"); a subnormal span raised in ticks(); a span of 1e-14
    # had every tick rounded to 0 (an axis without a label)
    (chart,) = charts.charts([run("job-a", {}, loss=[(v, i, float(i)) for i, v in enumerate(values)])])
    low, high = chart.y_range
    assert all(map(math.isfinite, (low, high))) and low <= min(values) <= max(values) <= high
    text = terminal.render([chart], 80)
    assert "inf" not in text and "nan" not in text
    document = check_svg(svg.render([chart]), 1)
    assert "nan" not in svg.render([chart]).lower() and "inf" not in svg.render([chart]).lower()
    labels = [t.text for t in document.iter("{http://www.w3.org/2000/svg}text") if t.get("text-anchor") == "end"]
    assert labels and "0" not in labels or min(values) <= 0 <= max(values)
    check_png(png.render([chart]), 1)


def test_the_ticks_of_a_tiny_range_are_its_own_values():
    assert charts.ticks(1e-14, 5e-14) == [1e-14, 2e-14, 3e-14, 4e-14, 5e-14]
    assert charts.ticks(0.1, 0.7) == [0.2, 0.4, 0.6]
    assert charts.ticks(5e-324, 1e-323) == [5e-324, 1e-323]


@pytest.mark.parametrize("text", ["\ufffe", "\uffff"])
def test_a_character_xml_cannot_hold_is_written_as_its_escape(text):
    job = run("job-a", {"note": f"a{text}b"}, loss=[(1.0, 0, 1.0)])
    other = run("job-b", {"note": "b"}, loss=[(2.0, 0, 1.0)])
    drawn = charts.charts([job, other])
    document = check_svg(svg.render(drawn), 1)
    texts = " ".join(t.text or "" for t in document.iter("{http://www.w3.org/2000/svg}text"))
    assert f"note=a\\u{ord(text):04x}b" in texts
    assert text not in svg.page(drawn, "t")


def many_metrics(count):
    return [run("job-a", {}, **{f"m{k}": [(float(k + i), i, float(i)) for i in range(3)] for k in range(count)})]


def test_a_png_of_many_charts_is_drawn_a_chart_at_a_time(tmp_path):
    # the whole canvas was held (800x400x3 bytes a chart, then copied to compress): a job printing
    # thousands of metric names took gigabytes; now one chart's pixels are in memory at a time
    import subprocess
    import sys

    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from fahr_core import charts\n"
        "from fahr_core.charts import files\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_charts import many_metrics\n"
        "drawn = charts.charts(many_metrics(80))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "files.write(Path(sys.argv[1]), drawn)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    target = tmp_path / "many.png"
    done = subprocess.run([sys.executable, "-c", script, str(target), os.path.dirname(__file__)],
                          capture_output=True, text=True, check=True)
    grown_kib = int(done.stdout)
    assert grown_kib < 30 * 1024, f"{grown_kib} KiB more to write 80 charts"
    width, height, pixels = png_pixels(target.read_bytes())
    assert (width, height) == (800, 80 * 400) and len(pixels) == 800 * 80 * 400 * 3


def test_an_image_of_more_charts_than_one_opens_is_refused_whole(tmp_path):
    target = tmp_path / "many.svg"
    drawn = charts.charts(many_metrics(201))
    with pytest.raises(UsageError, match=r"201 metrics; an image holds at most 200 charts: choose .*--metric"):
        files.write(target, drawn)
    assert os.listdir(tmp_path) == []
    files.write(target, drawn[:200])
    check_svg(target.read_text(), 200)


def test_the_png_draws_each_value_where_the_axes_say():
    # a line from (step 0, 0.0) to (step 10, 10.0): its ends at the plot box's bottom-left and
    # top-right corners, its middle point (5, 5.0) in the box's middle, in the first job's colour
    (chart,) = charts.charts([run("job-a", {}, loss=[(float(i), i, float(i)) for i in range(11)])])
    x0, y0, x1, y1 = svg.layout(chart)["box"]
    width, _, pixels = png_pixels(png.render([chart]))
    blue = bytes(int(svg.COLOURS[0][i:i + 2], 16) for i in (1, 3, 5))

    def near(x, y):  # the line is 2 pixels thick: a pixel of it within one of (x, y)
        return any(pixels[((int(y) + dy) * width + int(x) + dx) * 3:][:3] == blue
                   for dx in (-1, 0, 1) for dy in (-1, 0, 1))

    assert near(x0, y1) and near(x1, y0) and near((x0 + x1) / 2, (y0 + y1) / 2)
    assert not near(x0, y0) and not near(x1, y1)  # not the other diagonal


def test_a_point_per_host_is_linear_time():
    # each host's line was gathered by a pass over every point: 100,000 points of as many hosts
    # (a job folder's metrics file edited so) took n² steps
    def made(count):
        series = {"loss": [P("loss", float(i), i, float(i), f"h{i}") for i in range(count)]}
        started = time.perf_counter()
        (chart,) = charts.charts([Run("job-a", {}, series)])
        assert len(chart.lines) == count and chart.lines[0].label == "job-a [h0]"
        return time.perf_counter() - started

    made(1000)
    assert made(16_000) < 0.5, "16,000 hosts' lines"


def test_following_a_job_read_host_by_host_yields_each_new_point_once():
    # a job of two hosts read from its logs comes host by host: a point algo-1 printed since comes
    # before algo-2's already read. The new points were told by count (the last read's length on):
    # algo-2's old point came again and algo-1's new one never
    from fahr_core.comparison import Comparison

    def on(host, step):
        return P("loss", float(step), step, 100.0 + step, host)

    class HostByHost(FakeJob):
        def _points(self):  # each read stamps the points anew, as logs without timestamps are
            return [P(p.name, p.value, p.step, p.time + self.reads, p.host)
                    for p in sorted(super()._points(), key=lambda p: (p.host, p.time))]

    job = HostByHost("job-a", {}, [[on("algo-1", 0), on("algo-2", 0)], [on("algo-1", 1), on("algo-2", 1)],
                                   [on("algo-1", 2)]])
    shown = Comparison([job])
    got = [sorted((p.host, p.step) for p in new.get("job-a", [])) for new in shown.follow(interval=0)]
    assert got == [[("algo-1", 1), ("algo-2", 1)], [("algo-1", 2)], []]


@pytest.mark.parametrize("call, words", [
    (lambda shown: shown.plot(3), "Comparison.plot(): path must be a path"),
    (lambda shown: shown.plot(""), "Comparison.plot(): path is an empty path"),
    (lambda shown: shown.text("80"), "Comparison.text(): width must be a whole number of columns, at least 24"),
    (lambda shown: shown.text(0), "width must be a whole number of columns, at least 24, not 0"),
    (lambda shown: shown.text(80, colour="yes"), "Comparison.text(): colour must be True or False"),
    (lambda shown: list(shown.follow(interval="2")), "Comparison.follow(): interval must be seconds"),
    (lambda shown: list(shown.follow(interval=-1)), "Comparison.follow(): interval must be seconds"),
])
def test_a_comparisons_methods_refuse_a_wrong_argument_in_one_line(call, words):
    # they raised TypeError or ValueError (a traceback, or from text(0) lines wider than asked)
    from fahr_core.comparison import Comparison

    shown = Comparison([FakeJob("job-a", {}, [points("loss", 1.0, 0.5), points("loss", 0.2, start=2)])])
    with pytest.raises(UsageError, match=re.escape(words)):
        call(shown)
    assert all(len(line) <= 24 for line in shown.text(24).splitlines())


def test_a_point_without_a_time_has_no_place_on_a_time_axis():
    # it was drawn at 0 - the job's first time: -1.8e9 seconds, the axis in hours from 1970
    job = run("job-a", {}, loss=[(9.0, None, None), (1.0, None, 1000.0), (0.5, None, 1060.0)])
    (chart,) = charts.charts([job])
    assert chart.x_label == "time (s)" and chart.lines[0].xs == [0.0, 60.0] and chart.lines[0].ys == [1.0, 0.5]


def test_following_a_job_that_fails_before_any_metric_says_how_it_ended(monkeypatch, capsys):
    # the "no metrics" refusal came first and the job's end (Failed, and why) was never said
    from fahr_core import comparison
    from fahr_core.charts import show

    class Failing(FakeJob):
        def _try_refresh(self):
            super()._try_refresh()
            if self.status == "Completed":
                self.status, self.failure_reason = "Failed", "exit code 1: ZeroDivisionError"

    monkeypatch.setattr(comparison, "FOLLOW_INTERVAL", 0)
    job = Failing("job-a", {}, [[], []])
    with pytest.raises(UsageError, match="job job-a has no metrics"):
        show.show(lambda: comparison.Comparison([job]), follow=True)
    assert "job job-a ended: Failed (exit code 1: ZeroDivisionError)" in capsys.readouterr().err


@pytest.mark.parametrize("height", [10, 9, 4])
def test_the_middle_label_is_on_the_row_its_value_is_drawn_on(height):
    # on an even number of rows the halfway label sat one row below the points of that value
    job = run("job-a", {}, m=[(0.0, 0, 1.0), (15.0, 1, 2.0), (30.0, 2, 3.0)])
    rows = [line for line in lines_of(terminal.render(charts.charts([job]), 40, height=height))
            if "┤" in line or "│" in line]
    (middle,) = [i for i, line in enumerate(rows) if line.lstrip().startswith("15 ┤")]
    assert "●" in rows[middle]  # the point of value 15 (the legend's marker is not among these rows)


def test_a_legend_shows_a_bounded_part_of_many_hyperparameters():
    # the differing hyperparameters were joined whole into every chart's legend: a job.json of
    # 20,000 made an SVG of 100 charts 43 MB (and one of 16 MiB, gigabytes)
    many = {f"k{i:05}": f"v{i}" for i in range(20_000)}
    drawn = charts.charts([run("job-a", many, **{f"m{k}": [(1.0, 0, 1.0)] for k in range(100)}),
                           run("job-b", {}, **{f"m{k}": [(2.0, 0, 1.0)] for k in range(100)})])
    detail = drawn[0].lines[0].detail
    assert len(detail) <= 120 and detail.startswith("k00000=v0 k00001=v1") and detail.endswith("k19999=v19999")
    assert len(svg.render(drawn)) < 2_000_000
    text = terminal.render(drawn[:1], 80, unicode=False)
    assert "k00000=v0" in text and "…" not in text and text.isascii()
