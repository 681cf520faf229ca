"""A sweep's search space: the ``--hp`` specs of ``fahr sweep`` parsed, and the points drawn.

Pure: no driver, no Docker, nothing written (docs/sweeps.md says the grammar). A spec is

- ``NAME=VALUE``: fixed, given to every job;
- ``NAME=V1,V2,…``: a grid axis (``\\,`` is a comma inside a value);
- ``NAME=uniform:LOW:HIGH``, ``loguniform:LOW:HIGH`` (0 < LOW), ``int:LOW:HIGH`` (both ends
  included), ``choice:V1,V2,…``: a range, drawn ``--trials`` times.

The points are the grid's product, each crossed with the same ``trials`` random draws (the draws
do not depend on the grid, so each grid point is tried on the same draws): a grid alone gives its
product, ranges alone ``trials`` points. A seed makes the draws repeatable: the same points in
the same order.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass, field

from fahr_core.errors import UsageError

#: The most jobs one sweep may have: more is a typo (a grid of grids), refused before the build.
MAX_POINTS = 1000
RANGE_KINDS = ("uniform", "loguniform", "int", "choice")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_SPLIT = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class Range:
    """One range of the space: ``kind`` one of RANGE_KINDS; ``low``/``high`` for the numeric
    ones, ``choices`` for ``choice``."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    def draw(self, rng: random.Random) -> str:
        if self.kind == "uniform":
            return _number(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return _number(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "int":
            return str(rng.randint(int(self.low), int(self.high)))
        return rng.choice(self.choices)


@dataclass(frozen=True)
class Space:
    """What ``--hp`` specs say: fixed values, grid axes (name -> values), ranges, in the order given."""

    fixed: dict[str, str] = field(default_factory=dict)
    grid: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: tuple[Range, ...] = ()

    @property
    def swept(self) -> list[str]:
        """The names that vary, grid axes first."""
        return [*self.grid, *(r.name for r in self.ranges)]


def _number(value: float) -> str:
    """A drawn float as the job sees it: 6 significant digits, the same text for the same draw."""
    return f"{value:.6g}"


def _values(text: str) -> list[str]:
    return [part.replace("\\,", ",") for part in _SPLIT.split(text)]


def parse(specs: list[str] | tuple[str, ...]) -> Space:
    """The space of ``--hp`` specs; a :class:`UsageError` (one line) for a bad one."""
    fixed: dict[str, str] = {}
    grid: dict[str, tuple[str, ...]] = {}
    ranges: list[Range] = []
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep:
            raise UsageError(f"--hp {spec}: expected NAME=VALUE, NAME=V1,V2,… or NAME=KIND:… "
                             "(kinds: uniform, loguniform, int, choice)")
        if not _NAME.fullmatch(name):
            raise UsageError(f"--hp {spec}: {name!r} is not a hyperparameter name (a letter or _, then letters, "
                             "digits, _ . -)")
        if name in fixed or name in grid or any(r.name == name for r in ranges):
            raise UsageError(f"--hp {name}: given twice; give each hyperparameter once")
        kind, colon, rest = value.partition(":")
        if colon and kind in RANGE_KINDS:
            ranges.append(_range(spec, name, kind, rest))
            continue
        values = _values(value)
        if len(values) == 1:
            fixed[name] = values[0]
            continue
        if any(v == "" for v in values):
            raise UsageError(f"--hp {spec}: an empty value in the list; write V1,V2,… (\\, for a comma in a value)")
        if len(set(values)) != len(values):
            raise UsageError(f"--hp {spec}: a value is listed twice; list each once")
        grid[name] = tuple(values)
    return Space(fixed, grid, tuple(ranges))


def _range(spec: str, name: str, kind: str, rest: str) -> Range:
    if kind == "choice":
        choices = _values(rest)
        if len(choices) < 2 or any(c == "" for c in choices) or len(set(choices)) != len(choices):
            raise UsageError(f"--hp {spec}: choice needs two or more different, non-empty values "
                             f"(e.g. {name}=choice:adam,sgd)")
        return Range(name, kind, choices=tuple(choices))
    example = {"uniform": "0:1", "loguniform": "1e-4:1e-1", "int": "2:8"}[kind]
    low_text, sep, high_text = rest.partition(":")
    try:
        if not sep or ":" in high_text:
            raise ValueError
        if kind == "int":
            low, high = int(low_text), int(high_text)
        else:
            low, high = float(low_text), float(high_text)
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError
    except ValueError:
        what = "whole numbers" if kind == "int" else "finite numbers"
        raise UsageError(f"--hp {spec}: {kind} needs LOW:HIGH, two {what} (e.g. {name}={kind}:{example})") from None
    if kind == "int" and low > high:
        raise UsageError(f"--hp {spec}: int needs LOW <= HIGH (e.g. {name}=int:{example})")
    if kind != "int" and not low < high:
        raise UsageError(f"--hp {spec}: {kind} needs LOW < HIGH (e.g. {name}={kind}:{example})")
    if kind == "loguniform" and low <= 0:
        raise UsageError(f"--hp {spec}: loguniform needs 0 < LOW (its logarithm is drawn; e.g. {name}=loguniform:{example})")
    return Range(name, kind, low, high)


def points(space: Space, trials: int | None, seed: int) -> list[dict[str, str]]:
    """Every job's swept hyperparameters, in launch order: the grid's product, each crossed with
    the same ``trials`` draws of the ranges from ``random.Random(seed)``. A
    :class:`UsageError` when the space and ``trials`` do not go together or make too many."""
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise UsageError(f"--trials {trials!r}: a whole number of random points, 1 or more")
    if space.ranges and trials is None:
        names = ", ".join(r.name for r in space.ranges)
        raise UsageError(f"--hp {names}: a range is drawn --trials N times; give --trials (e.g. --trials 8)")
    if trials is not None and not space.ranges:
        raise UsageError("--trials N draws points of ranges (e.g. --hp lr=loguniform:1e-4:1e-1), and no --hp is a "
                         "range; drop --trials to run the grid")
    if not space.grid and not space.ranges:
        raise UsageError("nothing to sweep: give a --hp with several values (lr=0.1,0.01) or a range "
                         "(lr=loguniform:1e-4:1e-1 with --trials N); for one job use 'fahr fit'")
    size = math.prod(len(v) for v in space.grid.values()) * (trials or 1)
    if size > MAX_POINTS:
        raise UsageError(f"the sweep has {size} jobs, more than {MAX_POINTS}; sweep fewer values or trials")
    rng = random.Random(seed)
    draws = [{r.name: r.draw(rng) for r in space.ranges} for _ in range(trials or 1)]
    grid = [dict(zip(space.grid, values)) for values in itertools.product(*space.grid.values())]
    return [{**cell, **draw} for cell in grid for draw in draws]


def new_seed() -> int:
    """A seed for a sweep that was given none (recorded with it, so its points can be drawn again)."""
    return random.SystemRandom().randrange(2**32)


# -- the objective ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Objective:
    """What "best" means: a metric's name, and whether lower (``min``) or higher (``max``) wins."""

    metric: str
    goal: str  # "min" or "max"

    def __str__(self) -> str:
        return f"{self.metric}:{self.goal}"

    def better(self, a: float, b: float) -> bool:
        return a < b if self.goal == "min" else a > b


def objective(text: str | None) -> Objective | None:
    """``NAME:min`` or ``NAME:max`` as an :class:`Objective`; None for None."""
    from fahr_core import metrics

    if text is None:
        return None
    name, sep, goal = text.rpartition(":")
    if not sep or goal not in ("min", "max") or not metrics.NAME.fullmatch(name):
        raise UsageError(f"--objective {text}: expected METRIC:min or METRIC:max (e.g. val_loss:min, accuracy:max)")
    return Objective(name, goal)


# -- the sweep's id --------------------------------------------------------------------------------

SWEEP_ID = re.compile(r"sw-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")


def new_id() -> str:
    import secrets
    import time

    return f"sw-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def validate_id(text: str, what: str = "sweep") -> str:
    """``text`` when it is a sweep's id (as ``fahr sweep`` printed it), else a one-line UsageError."""
    if not isinstance(text, str) or not SWEEP_ID.fullmatch(text):
        from fahr_core import ui

        raise UsageError(f"{what} {ui.visible(text)!s}: not a sweep id (sw-YYYYMMDD-HHMMSS-xxxx, as 'fahr sweep' "
                         "printed it)")
    return text
