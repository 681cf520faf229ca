"""The Python API's arguments, checked before anything runs.

Every public function of :mod:`fahr_core.api` checks its arguments first: a wrong type is a
:class:`UsageError` naming the argument and the type expected, never a TypeError from deep inside.
In a mapping, None means "not set": the key is left out (never the string "None").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from fahr_core.errors import UsageError

#: The argument ``driver`` as the API takes it, for the error that refuses another type.
DRIVER = "a driver's name (str, e.g. 'local') or None"

SCALAR = (str, int, float, bool)
SCALAR_NAMES = "str, int, float, bool or a path"


def kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def path(value: Any, what: str) -> Path:
    """``value`` as a Path: a non-empty str or os.PathLike (of str; bytes are refused), no NUL."""
    from fahr_core.config import text_problem

    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise UsageError(f"{what} must be a path (str or os.PathLike), not {kind(text)}")
    if not text:
        raise UsageError(f"{what} is an empty path; give a file or folder")
    problem = text_problem(text, utf8=False)  # a path's bytes may be any but NUL
    if problem:
        raise UsageError(f"{what} {text!r} {problem}")
    return Path(text)


def text(value: Any, what: str, expected: str = "str or None", *, optional: bool = True) -> str | None:
    if not isinstance(value, str) and not (optional and value is None):
        raise UsageError(f"{what} must be {expected}, not {kind(value)}")
    return value


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be True or False, not {kind(value)}")
    return value


#: The most retries ``fit(retry=N)`` takes: more is a typo, or a bill.
RETRY_MAX = 20


def count(value: Any, what: str, most: int = RETRY_MAX) -> int:
    """A whole number from 0 to ``most`` (``fit(retry=N)``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise UsageError(f"{what} must be a whole number from 0 to {most}, not {value!r}")
    return value


def quiet(value: Any, what: str) -> bool | str:
    """``quiet``: True (fahr's lines and the job's output muted), False, or ``"status"`` (fahr's
    own lines only: the job's output still streams, as with the CLI's ``--quiet``)."""
    if isinstance(value, bool) or (isinstance(value, str) and value == "status"):
        return value
    raise UsageError(f"{what} must be True, False or 'status', not {kind(value)}")


def mapping(values: Any, what: str, nested: bool = False) -> dict[str, Any]:
    """``values`` (a mapping of str keys to scalars, or None) without its None values.

    ``nested`` allows a mapping as a value, for a config key of type dict (sagemaker's ``tags``).
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UsageError(f"{what} must be a mapping (a dict of str to {SCALAR_NAMES}), not {kind(values)}")
    kept = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise UsageError(f"{what} keys must be str, not {kind(key)} ({key!r})")
        if value is None:
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)  # bytes (a PathLike of bytes) is refused below
        if nested and isinstance(value, Mapping):
            value = mapping(value, f"{what}[{key!r}]")
        elif not isinstance(value, SCALAR):
            raise UsageError(f"{what}[{key!r}] must be {SCALAR_NAMES}, not {kind(value)}")
        kept[key] = value
    return kept


def strings(values: Any, what: str) -> dict[str, str]:
    """A mapping of hyperparameters, inputs or environment as the strings the job is given."""
    return {key: str(value) for key, value in mapping(values, what).items()}


def names(values: Any, what: str) -> list[str]:
    """A list (or tuple) of str, e.g. the variable names of ``secrets``; None is none. A lone str
    is refused: it would be a list of its letters."""
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise UsageError(f"{what} must be a list of str (variable names), not {kind(values)}")
    for value in values:
        if not isinstance(value, str):
            raise UsageError(f"{what} must hold str (variable names), not {kind(value)} ({value!r})")
    return list(values)


def config(values: Any, what: str) -> dict[str, Any]:
    """A driver configuration: a mapping of key to scalar, or to a mapping for a key of type dict."""
    return mapping(values, what, nested=True)
