"""The metrics parser: the convention, definitions in SageMaker's shape, malformed lines, caps."""

import re
import time

import pytest

from fahr_core import metrics
from fahr_core.errors import UsageError
from fahr_core.metrics import Definition, Parser, Point, Recorder


def parse(lines, defined=(), **kw):
    got = []
    recorder = Recorder(Parser(defined), got.extend, clock=lambda: 7.0, **kw)
    for line in lines:
        recorder.feed("algo-1", line.encode())
    recorder.end()
    return [(p.name, p.value, p.step) for p in got], recorder


def test_the_convention_carries_names_values_and_an_optional_step():
    got, _ = parse(["epoch 1\n", "fahr-metric loss=0.5 accuracy=0.75 step=3\n", "fahr-metric lr=1e-3\n"])
    assert got == [("loss", 0.5, 3), ("accuracy", 0.75, 3), ("lr", 0.001, None)]


def test_a_logging_prefix_before_the_marker_is_fine_but_not_a_word_ending_in_it():
    got, _ = parse(["INFO:root: fahr-metric loss=1\n", "xfahr-metric loss=2\n"])
    assert got == [("loss", 1.0, None)]


@pytest.mark.parametrize("line", [
    "fahr-metric loss=abc\n", "fahr-metric loss=0.5 step=1.5\n", "fahr-metric loss\n",
    "fahr-metric loss=nan\n", "fahr-metric loss=inf\n", "fahr-metric 9x=1\n", "fahr-metric loss=1 step=2 step=3\n",
    "fahr-metric-ish loss=1\n", "fahr-metric loss=" + "1" * (metrics.MAX_LINE + 1) + "\n",
])
def test_a_malformed_line_gives_nothing(line):
    assert parse([line])[0] == []


def test_a_definition_in_sagemakers_shape():
    defined = metrics.definitions(["val_loss=val_loss: (\\S+)", "acc=.*acc=([0-9.]+)"])
    got, _ = parse(["epoch 2 val_loss: 0.25\n", "acc=0.9\n", "val_loss: oops\n"], defined)
    assert got == [("val_loss", 0.25, None), ("acc", 0.9, None)]


def test_lines_across_chunks_and_without_a_final_newline():
    got = []
    recorder = Recorder(Parser(metrics.definitions(["loss=loss (\\S+)"])), got.extend)
    for piece in (b"lo", b"ss 1\nfahr-met", b"ric a=2\nlos", b"s 3"):
        recorder.feed("algo-2", piece)
    recorder.end()
    assert [(p.name, p.value, p.host) for p in got] == [("loss", 1.0, "algo-2"), ("a", 2.0, "algo-2"),
                                                          ("loss", 3.0, "algo-2")]


def test_points_beyond_the_cap_are_dropped_and_counted():
    got, recorder = parse([f"fahr-metric loss={i}\n" for i in range(10)], limit=4)
    assert [value for _, value, _ in got] == [0, 1, 2, 3]
    assert recorder.dropped == 6


def test_the_convention_as_one_sagemaker_regex_reads_the_same_value():
    regex = re.compile(metrics.convention_regex("loss"))
    assert regex.groups == 1
    assert regex.search("fahr-metric acc=0.9 loss=0.25 step=3").group(1) == "0.25"
    assert regex.search("fahr-metric val_loss=0.5") is None
    # named alone (--metric loss), it is the convention's: read once, not twice
    got, _ = parse(["fahr-metric loss=1\n"], metrics.definitions(["loss"]))
    assert got == [("loss", 1.0, None)]


@pytest.mark.parametrize("pair, words", [
    ("loss=(\\S+) (\\S+)", "2 capture groups"),
    ("loss=\\S+", "0 capture groups"),
    ("loss=(unclosed", "not a regular expression"),
    ("9loss=(x)", "a metric's name"),
    ("step=(x)", "'step' is the convention's step"),
    ("loss=(" + "x" * 600 + ")", "at most 500"),
])
def test_a_bad_definition_is_refused(pair, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        metrics.definitions([pair])


def test_the_command_line_replaces_the_tables_definition_of_a_name():
    got = metrics.definitions(["loss=L (\\S+)"], {"loss": "x (\\S+)", "acc": "a (\\S+)"})
    assert got == (Definition("loss", "L (\\S+)"), Definition("acc", "a (\\S+)"))


def test_stored_points_read_back_skipping_a_cut_line():
    data = metrics.encode([Point("loss", 0.5, 1, 10.0, "algo-1"), Point("loss", 0.25, 2, 11.0, "algo-1")])
    lines = (data + b'{"name":"loss","va').splitlines()
    points = list(metrics.decode(lines))
    assert [p.value for p in points] == [0.5, 0.25]
    by_name = metrics.series(points)
    assert metrics.final(by_name) == {"loss": 0.25}


def test_stored_points_that_are_not_points_are_skipped():
    good = metrics.encode([Point("loss", 0.5, 1, 10.0, "algo-1")])
    made_up = [b'{"name":"\\u001b[2Jloss","value":1,"time":1,"host":"algo-1"}\n',
               b'{"name":"loss","value":NaN,"time":1,"host":"algo-1"}\n',
               b'{"name":"loss","value":"Infinity","time":1,"host":"algo-1"}\n',
               b'{"name":"loss","value":1,"time":1,"host":"\\u001b]0;x\\u0007"}\n',
               b'{"name":"step","value":1,"time":1,"host":"algo-1"}\n',
               b'{"name":["loss"],"value":1,"time":1,"host":"algo-1"}\n',
               b'{"name":"loss","value":1,"time":1e400,"host":"algo-1"}\n']
    points = list(metrics.decode(made_up + [good]))
    assert points == [Point("loss", 0.5, 1, 10.0, "algo-1")]


def test_a_stored_file_of_one_endless_line_is_read_a_bounded_piece_at_a_time(tmp_path):
    import io
    good = metrics.encode([Point("acc", 0.9, 2, 12.0, "algo-2")])
    huge = b'{"name":"loss","value":1,"pad":"' + b"x" * (5 * 1024 * 1024) + b'"}\n'

    class Counting(io.BytesIO):
        largest = 0

        def readline(self, size=-1):
            got = super().readline(size)
            Counting.largest = max(Counting.largest, len(got))
            return got

    handle = Counting(good + huge + good)
    assert list(metrics.decode(metrics.stored_lines(handle))) == [Point("acc", 0.9, 2, 12.0, "algo-2")] * 2
    assert Counting.largest <= 4 * 1024


def test_ordinary_output_costs_a_substring_search():
    parser = Parser(metrics.definitions([f"m{i}=metric{i}: (\\S+)" for i in range(5)]))
    assert not parser.may_hold(b"an ordinary line of training output\n" * 1000)
    assert parser.may_hold(b"x\nmetric3: 1\n")


def test_a_line_too_long_to_hold_is_skipped_and_the_lines_around_it_kept():
    got = []
    recorder = Recorder(Parser(), got.extend)
    recorder.feed("algo-1", b"fahr-metric a=1\n" + b"x" * (metrics.MAX_LINE + 10))  # a line that goes on
    recorder.feed("algo-1", b"x" * 10 + b" fahr-metric no=1\nfahr-metric b=2\n")
    recorder.end()
    assert [(p.name, p.value) for p in got] == [("a", 1.0), ("b", 2.0)]


def test_a_drivers_log_lines_in_slices_are_read_at_their_own_times():
    from fahr_core.values import LogLine

    lines = [LogLine(host="algo-2", text="fahr-metric lo", newline=False, timestamp=5.0),
             LogLine(host="algo-2", text="ss=0.5 step=1", timestamp=6.0),
             LogLine(host="algo-1", text="val 3", timestamp=7.0)]
    points = metrics.from_logs(lines, metrics.definitions(["v=val (\\d)"]))
    assert [(p.name, p.value, p.step, p.time, p.host) for p in points] == [
        ("loss", 0.5, 1, 6.0, "algo-2"), ("v", 3.0, None, 7.0, "algo-1")]


def test_the_jobs_table_shows_a_recorded_hyperparameters_name_visibly(capsys):
    from types import SimpleNamespace

    from fahr_core import cli

    def job(value):
        return SimpleNamespace(name="j", model_tag="m/train", status="Completed", secondary_status="", done=True,
                               started=None, ended=None, billable_seconds=None, project="", git_commit="",
                               failure_kind="", attempt_of="", warm_pool=None,
                               hyperparameters={"\x1b]0;owned\x07lr": value})

    cli._print_table([job("1"), job("2")], [{}, {}])
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\\x1b]0;owned\\x07lr" in shown


@pytest.mark.parametrize("step", ["²", "٣", "9" * 20, str(2**63)])
def test_a_step_that_is_not_a_64_bit_whole_number_in_ascii_digits_is_no_metric_line(step):
    # '²'.isdigit() held and int('²') raised out of the parser (a job's output stopped its
    # metrics); a step of 20 digits was kept, and its float overflowed the charts' axis
    assert parse([f"fahr-metric loss=1 step={step}\n", "fahr-metric loss=2 step=7\n"])[0] == [("loss", 2.0, 7)]
    assert parse([f"fahr-metric loss=1 step={2**63 - 1}\n"])[0] == [("loss", 1.0, 2**63 - 1)]


def test_a_stored_step_beyond_64_bits_is_read_as_none():
    line = b'{"name":"loss","value":1.0,"step":%d,"time":1.0,"host":"algo-1"}\n'
    (huge,) = metrics.decode([line % 10**30])
    (fine,) = metrics.decode([line % 12])
    assert (huge.step, fine.step) == (None, 12)
