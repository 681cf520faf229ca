"""The plugin API levels of the conformance suite's rules.

The suite was first published at plugin API level 1.0. A rule added after that is tagged with the
level that introduced it (:func:`since`). A driver's conformance test class says which level it
targets (``api_level = "1.1"``; a class that says nothing targets 1.0), and a rule of a higher
level than that is a :class:`ConformanceWarning` for it, naming the rule and the level that
makes it an error, not a failure: fahr may tighten the suite, but never turns a third party's CI
red under a level the driver already passes (docs/writing-a-driver.md, "Moving up an API level").
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass

#: The level the suite was first published at, and what a test class targets when it says nothing.
FIRST_LEVEL = "1.0"


class ConformanceWarning(UserWarning):
    """A driver breaks a conformance rule of a plugin API level above the one its test class
    targets: not a failure yet, an error once the class targets that level."""


@dataclass(frozen=True)
class Rule:
    """One conformance rule added after the suite was first published."""

    level: str
    """The plugin API level that introduced it: from this level on, breaking it fails the test."""
    text: str
    """What the rule asks, as the warning and the docs name it."""
    test: str
    """The conformance test that checks it."""


def parse_level(level: object) -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``; anything else is a ValueError."""
    match = re.fullmatch(r"(\d+)\.(\d+)", level) if isinstance(level, str) else None
    if not match:
        raise ValueError(f'a plugin API level is a string such as "1.0", not {level!r}')
    return int(match[1]), int(match[2])


def current_level() -> str:
    from fahr_core import PLUGIN_API_VERSION

    return PLUGIN_API_VERSION


def check_level(level: object, owner: str) -> None:
    """Refuse a level this fahr does not implement, when the test class is defined: a driver
    targeting a newer level than the installed fahr's needs a newer fahr, not a quieter suite."""
    current = current_level()
    try:
        major, minor = parse_level(level)
    except ValueError as error:
        raise TypeError(f"{owner}.api_level: {error}") from None
    if (major, minor) < parse_level(FIRST_LEVEL) or major != parse_level(current)[0] \
            or (major, minor) > parse_level(current):
        raise TypeError(f"{owner}.api_level = {level!r}: this fahr's conformance suite has the plugin API levels "
                        f"{FIRST_LEVEL} to {current} (a newer level needs a newer fahr)")


def since(level: str, text: str):
    """Tag a conformance test as the rule ``text``, introduced at plugin API ``level``.

    For a test class targeting ``level`` or higher, the test is as it is. For a class targeting a
    lower level, a broken rule (an AssertionError) becomes a :class:`ConformanceWarning` and the
    test passes; skips and errors pass through unchanged.
    """
    parse_level(level)

    def tag(test):
        rule = Rule(level, text, test.__name__)

        @functools.wraps(test)
        def checked(self, *args, **kwargs):
            if parse_level(self.api_level) >= parse_level(level):
                return test(self, *args, **kwargs)
            try:
                return test(self, *args, **kwargs)
            except AssertionError as error:
                found = str(error).strip().splitlines()[0] if str(error).strip() else "the check failed"
                warnings.warn(ConformanceWarning(
                    f"conformance rule of plugin API {level} broken: {text} ({found[:300]}). "
                    f"It is an error for a test class with api_level = \"{level}\" or higher; "
                    f"{type(self).__name__} targets {self.api_level}"))

        checked.rule = rule
        return checked

    return tag
