"""A job's metrics, read from its output (docs/metrics.md).

Two ways a line of output is a metric:

- the convention, which needs no definition: a line holding ``fahr-metric`` then ``NAME=VALUE``
  pairs, ``step=N`` optional (``print(f"fahr-metric loss={loss} accuracy={acc} step={epoch}")``);
- a definition ``NAME=REGEX`` in SageMaker's shape (``--metric``, ``[metrics]`` of fahr.toml): a
  regular expression with exactly one capture group, the value.

Parsing is cheap: every regular expression is compiled once, and a line is looked at only when
it holds a text each definition needs (the convention's marker, a regex's literal part), looked
for in the bytes of a whole chunk of output at once; ordinary output costs a substring search.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

from fahr_core.errors import UsageError
from fahr_core.values import MetricPoint

#: The convention's marker: a line holding it (after the start or a space) names metrics.
MARKER = "fahr-metric"
#: A metric's name: what SageMaker and CloudWatch take, and a word in the convention's line.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]{0,254}")
#: The convention's reserved key: a point's step, not a metric.
STEP = "step"
#: SageMaker's limits on MetricDefinitions (CreateTrainingJob): 40 of them, a regex of 500 characters.
MAX_DEFINITIONS = 40
MAX_REGEX = 500
#: The points kept of one job: a job printing more (a metric a batch for days) keeps its first
#: MAX_POINTS; the rest are dropped, and the record says so (``Recorder.dropped``).
MAX_POINTS = 100_000
#: The largest step: a signed 64-bit integer, what MLflow's steps and most JSON readers hold
#: exactly (a longer run of digits is no step: its float overflows a chart's axis).
MAX_STEP = 2**63 - 1
#: A line longer than this is no metric: it is not held to be parsed.
MAX_LINE = 8 * 1024
#: A number as the convention and SageMaker's console read it.
NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"

_CONVENTION = re.compile(rf"(?:^|\s){MARKER}\s+(.*)$")
_PAIR = re.compile(r"([^\s=]+)=(\S+)")


@dataclass(frozen=True)
class Definition:
    """A metric named by a regular expression: its one capture group is the value."""

    name: str
    regex: str

    def as_sagemaker(self) -> dict:
        return {"Name": self.name, "Regex": self.regex}


def convention_regex(name: str) -> str:
    """The convention's line for metric ``name`` as one regex in SageMaker's shape (its console
    then shows the metric too): ``--metric NAME`` without a regex asks for it."""
    return rf"{MARKER}\s(?:.*\s)?{re.escape(name)}=({NUMBER})(?:\s|$)"


def definitions(given: Mapping[str, str] | Iterable[str] = (), table: Mapping[str, object] | None = None, *,
                source: str = "fahr.toml", flag: str = "--metric") -> tuple[Definition, ...]:
    """The definitions of ``--metric NAME=REGEX`` (or ``NAME`` alone: the convention's metric
    named, so that a driver's own console shows it) over those of a ``[metrics]`` table; a
    ``--metric`` of a name the table has replaces it. A bad one is one UsageError (exit 2)."""
    found: dict[str, Definition] = {}
    if table is not None:
        if not isinstance(table, Mapping):
            raise UsageError(f"{source}: [metrics] must be a table of NAME = \"REGEX\" (one capture group)")
        for name, regex in table.items():
            if not isinstance(regex, str):
                raise UsageError(f"{source}: metric {name} = {regex!r} must be a regular expression (a string) "
                                 "with one capture group, or \"\" for the convention's line")
            found[name] = _definition(name, regex, f"{source}: metric {name}")
    pairs = given.items() if isinstance(given, Mapping) else (pair.partition("=")[::2] for pair in given)
    for name, regex in pairs:
        if not isinstance(regex, str):
            raise UsageError(f"{flag}: metric {name!r} = {regex!r} must be a regular expression (a str)")
        found[name] = _definition(name, regex, f"{flag} {name}={regex}" if regex else f"{flag} {name}")
    if len(found) > MAX_DEFINITIONS:
        raise UsageError(f"{len(found)} metric definitions: at most {MAX_DEFINITIONS} (SageMaker's limit)")
    return tuple(found.values())


def _definition(name: str, regex: str, where: str) -> Definition:
    if not NAME.fullmatch(name):
        raise UsageError(f"{where}: a metric's name is a letter or _ then letters, digits, _ . - / "
                         "(at most 255), e.g. --metric val_loss='val_loss: (\\S+)'")
    if name == STEP:
        raise UsageError(f"{where}: 'step' is the convention's step, not a metric; name it otherwise")
    if not regex:
        return Definition(name, convention_regex(name))
    if len(regex) > MAX_REGEX:
        raise UsageError(f"{where}: the regular expression is {len(regex)} characters; SageMaker takes at most {MAX_REGEX}")
    try:
        compiled = re.compile(regex)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UsageError(f"{where}: not a regular expression ({exc}); e.g. --metric loss='loss: (\\S+)'") from None
    if compiled.groups != 1:
        raise UsageError(f"{where}: the regular expression has {compiled.groups} capture groups; it needs exactly "
                         "one, the value (write other groups as (?:…))")
    return Definition(name, regex)


def _required_text(regex: str) -> str | None:
    """A text every line the regex matches holds (its longest run of literal characters at the
    top level), or None when there is none to look for (the regex is then tried on each line)."""
    try:
        import re._parser as parser  # noqa: PLC0415 (Python 3.11+: sre_parse)
        import re._constants as const
    except ImportError:  # pragma: no cover
        return None
    try:
        parsed = parser.parse(regex)
    except Exception:  # noqa: BLE001
        return None
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    best, run = "", []
    for op, arg in list(parsed) + [(None, None)]:
        if op is const.LITERAL:
            run.append(chr(arg))
            continue
        if len("".join(run)) > len(best):
            best = "".join(run)
        run = []
    return best or None


#: One value of one metric (the plugin API's MetricPoint).
Point = MetricPoint


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Parser:
    """The metrics of lines, by the convention and the definitions given."""

    def __init__(self, defined: Iterable[Definition] = ()):
        self._regexes = []
        needed: set[str] = {MARKER}
        self._always = False  # a regex without a literal text: every line is tried
        for definition in defined:
            if definition.regex == convention_regex(definition.name):
                continue  # the convention reads it already
            literal = _required_text(definition.regex)
            self._regexes.append((definition.name, re.compile(definition.regex), literal))
            if literal is None:
                self._always = True
            else:
                needed.add(literal)
        self._needed = tuple(needed)
        self._needed_bytes = tuple(text.encode("utf-8") for text in needed)

    def may_hold(self, data: bytes) -> bool:
        """Whether ``data`` (any number of lines) may hold a metric: False costs a substring search."""
        return self._always or any(text in data for text in self._needed_bytes)

    def line(self, text: str) -> list[tuple[str, float, int | None]]:
        """The ``(name, value, step)`` a line holds; [] for an ordinary line or a malformed one."""
        if len(text) > MAX_LINE:
            return []
        found: list[tuple[str, float, int | None]] = []
        if MARKER in text and (match := _CONVENTION.search(text)):
            found.extend(_convention(match.group(1)))
        for name, regex, literal in self._regexes:
            if literal is not None and literal not in text:
                continue
            match = regex.search(text)
            if match and match.group(1) is not None and (value := _number(match.group(1))) is not None:
                found.append((name, value, None))
        return found


def _convention(rest: str) -> list[tuple[str, float, int | None]]:
    """The pairs after the marker; a line with any pair that is not NAME=NUMBER (or a step that
    is not a whole number) is not a metric line at all: nothing of it is taken."""
    words = rest.split()
    pairs, step = [], None
    for word in words:
        match = _PAIR.fullmatch(word)
        if not match:
            return []
        key, raw = match.groups()
        if key == STEP:
            # ASCII digits only: str.isdigit() also holds for '²' and '٣', which int() refuses or reads
            if not (raw.isascii() and raw.isdigit()) or step is not None or len(raw) > 19 or int(raw) > MAX_STEP:
                return []
            step = int(raw)
            continue
        value = _number(raw)
        if value is None or not NAME.fullmatch(key):
            return []
        pairs.append((key, value))
    return [(name, value, step) for name, value in pairs]


class Recorder:
    """A job's output, as bytes per host, turned into :class:`Point` handed to ``sink`` as they
    come; at most ``limit`` points (then ``dropped`` counts the others). Holds no more than a
    line (at most :data:`MAX_LINE`) per host."""

    def __init__(self, parser: Parser, sink: Callable[[list[Point]], None], *, limit: int = MAX_POINTS,
                 clock: Callable[[], float] = time.time, kept: int = 0):
        self.parser, self.sink, self.limit, self.clock = parser, sink, limit, clock
        self.kept, self.dropped = kept, 0
        self._rest: dict[str, bytes] = {}  # each host's unfinished line, or None while one too long is skipped
        self._skipping: set[str] = set()

    def feed(self, host: str, data: bytes, at: float | None = None) -> None:
        rest = self._rest.get(host, b"")
        end = data.rfind(b"\n")
        if end < 0:
            self._hold(host, rest + data if len(rest) + len(data) <= MAX_LINE else None)
            return
        whole = rest + data[:end + 1]
        if host in self._skipping:  # the start of the first line was too long: not a metric
            self._skipping.discard(host)
            whole = whole[whole.find(b"\n") + 1:]
        self._hold(host, data[end + 1:])
        if self.parser.may_hold(whole):
            self._lines(host, whole.split(b"\n")[:-1], at)

    def _hold(self, host: str, rest: bytes | None) -> None:
        if rest is None or len(rest) > MAX_LINE:
            self._skipping.add(host)
            self._rest[host] = b""
        else:
            self._rest[host] = rest

    def end(self, at: float | None = None) -> None:
        """The output has ended: the last lines without a newline are lines too."""
        for host, rest in list(self._rest.items()):
            if rest and host not in self._skipping and self.parser.may_hold(rest):
                self._lines(host, [rest], at)
        self._rest.clear()
        self._skipping.clear()

    def text(self, host: str, line: str, at: float | None = None) -> None:
        """One whole line, already decoded (a driver's LogLine)."""
        if len(line) <= MAX_LINE and self.parser.may_hold(line.encode("utf-8", "surrogateescape")):
            self._points(host, self.parser.line(line), at)

    def _lines(self, host: str, lines: list[bytes], at: float | None) -> None:
        for raw in lines:
            if self.parser.may_hold(raw):
                self._points(host, self.parser.line(raw.decode("utf-8", "replace").rstrip("\r")), at)

    def _points(self, host: str, found, at: float | None) -> None:
        if not found:
            return
        room = self.limit - self.kept
        if room < len(found):
            self.dropped += len(found) - max(room, 0)
            found = found[:max(room, 0)]
        if not found:
            return
        when = self.clock() if at is None else at
        self.kept += len(found)
        self.sink([Point(name, value, step, when, host) for name, value, step in found])


def from_logs(lines: Iterable, defined: Iterable[Definition | tuple[str, str]] = (),
              limit: int = MAX_POINTS) -> list[MetricPoint]:
    """The metrics of a job's output as a driver's ``logs`` hook yields it (LogLines, a long line
    perhaps in slices), each at its line's timestamp when the driver gives one: by the convention
    and the ``defined`` metrics, ``(name, regex)`` pairs as ``JobInfo.metric_definitions`` holds
    them; at most ``limit`` points. The core's own reading of a job's logs, for a driver's
    ``metrics`` hook that adds what its backend keeps (plugin API 1.5)."""
    points: list[Point] = []
    defined = [d if isinstance(d, Definition) else Definition(*d) for d in defined]
    recorder = Recorder(Parser(defined), points.extend, limit=limit)
    held: dict[str, list[str]] = {}  # each host's slices of a line that goes on
    for line in lines:
        parts = held.get(line.host)
        if not line.newline:
            parts = held.setdefault(line.host, [])
            if sum(map(len, parts)) <= MAX_LINE:
                parts.append(line.text)
            continue
        text = line.text
        if parts is not None:
            text = "".join(held.pop(line.host)) + text
        recorder.text(line.host, text, line.timestamp)
    for host, parts in held.items():
        recorder.text(host, "".join(parts), None)
    return points


# -- stored: one JSON object a line ------------------------------------------------------------

def encode(points: Iterable[Point]) -> bytes:
    return b"".join(json.dumps(point.as_dict(), separators=(",", ":")).encode() + b"\n" for point in points)


#: A stored point's host: what a driver names a host (algo-1), nothing a terminal would act on.
_HOST = re.compile(r"[A-Za-z0-9_.\-]{0,64}")
#: A stored line longer than this is not a point (a point's line is well under 1 KiB).
_STORED_LINE = 4 * 1024


def stored_lines(handle) -> Iterator[bytes]:
    """The lines of a stored file, each read at most :data:`_STORED_LINE` bytes at a time: a file
    edited into one endless line costs that much memory, not the file's size (it is skipped)."""
    skipping = False
    while True:
        raw = handle.readline(_STORED_LINE)
        if not raw:
            return
        whole = raw.endswith(b"\n")
        if not skipping and whole:
            yield raw
        skipping = not whole and len(raw) >= _STORED_LINE or (skipping and not whole)


def decode(lines: Iterable[bytes], limit: int = MAX_POINTS) -> Iterator[Point]:
    """The points of a stored file's lines. The file is untrusted (a job's folder can be edited):
    a line that is not a point (cut by a crash, or made up) is skipped, and so is one whose name
    is not a metric's name, whose value is not a finite number or whose host is not a host's
    name, so that nothing read back can be a terminal's escape sequence or a NaN in a sort."""
    count = 0
    for raw in lines:
        if count >= limit:
            return
        try:
            item = json.loads(raw)
            step = item.get("step")
            when = item.get("time")
            point = Point(item["name"], float(item["value"]),
                          step if isinstance(step, int) and not isinstance(step, bool) and abs(step) <= MAX_STEP
                          else None,
                          float(when) if when is not None else None, item.get("host") or "")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            continue
        if not (isinstance(point.name, str) and NAME.fullmatch(point.name) and point.name != STEP
                and isinstance(point.host, str) and _HOST.fullmatch(point.host) and math.isfinite(point.value)
                and (point.time is None or math.isfinite(point.time))):
            continue
        count += 1
        yield point


def series(points: Iterable) -> dict[str, list]:
    """Points by metric name, each series in time order (as printed, for points of one time)."""
    by_name: dict[str, list] = {}
    for point in points:
        by_name.setdefault(point.name, []).append(point)
    for values in by_name.values():
        values.sort(key=lambda p: p.time if p.time is not None else 0.0)
    return by_name


def final(by_name: Mapping[str, list]) -> dict[str, float]:
    """Each metric's last value."""
    return {name: values[-1].value for name, values in by_name.items() if values}
