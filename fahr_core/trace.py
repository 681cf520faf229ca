"""Seeing the plugins work: each hook call on stderr (``FAHR_TRACE_PLUGINS=1``, or ``fahr --debug``).

One line per hook call, when it returns, through pluggy's hook-call monitoring: the hook and the
names of its arguments, the kind of its result (``JobHandle``, ``None``, ``list[3]``, ``iterator``,
``stream``, or ``raised FahrError``), how long it took, and every implementation asked, in the
order pluggy asked them, with the kind of its own answer::

    fahr trace build_image(context, config) -> ImageRef in 1.52 s; asked driver:local -> None, fahr-core-defaults -> ImageRef

so a driver's author sees what fahr asked of their plugin, in what order, and whether their
implementation or the core's default answered. Values are never shown, only their kinds: a
config, a job spec's environment or a stream may hold secrets, and an iterator of log lines is
not consumed to be described.

Nothing is installed unless the variable is set: :func:`watch` returns at once otherwise.
"""

from __future__ import annotations

import collections.abc
import functools
import os
import threading
import time
from pathlib import PurePath

ENV = "FAHR_TRACE_PLUGINS"

_local = threading.local()  # the hook calls under way on this thread, innermost last
_wrapping = threading.Lock()


def enabled() -> bool:
    """Whether hook calls are traced in this process (``FAHR_TRACE_PLUGINS`` set, not ``0``)."""
    return os.environ.get(ENV, "") not in ("", "0")


def turn_on() -> None:
    """Trace the hook calls of this process and of the ``fahr`` processes it starts (``--debug``):
    through the environment, as a user would set it."""
    os.environ[ENV] = "1"


def watch(pm) -> None:
    """Trace every hook call of the plugin manager ``pm``, if tracing is on; otherwise nothing."""
    if enabled():
        pm.add_hookcall_monitoring(_before, _after)


def kind(value) -> str:
    """What a hook returned, without its value: its type's name, a collection's length, a bool as
    itself; ``stream`` for a file-like object and ``iterator`` for a generator, neither read."""
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{type(value).__name__}[{len(value)}]"
    if isinstance(value, PurePath):
        return "Path"
    # Looked up on the type: an instance's __getattr__ (a driver's object) runs no code here.
    if callable(getattr(type(value), "read", None)):
        return "stream"
    if isinstance(value, collections.abc.Iterator):
        return "iterator"
    return type(value).__name__


class _Call:
    __slots__ = ("start", "asked")

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.asked: list[str] = []


def _calls() -> list[_Call]:
    calls = getattr(_local, "calls", None)
    if calls is None:
        calls = _local.calls = []
    return calls


def _before(hook_name, hook_impls, kwargs) -> None:
    try:  # what goes wrong here costs the trace its attribution, never the call its outcome
        for impl in hook_impls:
            _report_answers(impl)
    except Exception:
        pass
    _calls().append(_Call())


def _after(outcome, hook_name, hook_impls, kwargs) -> None:
    call = _calls().pop()
    elapsed = time.perf_counter() - call.start
    # A trace line must never change a call's outcome: whatever goes wrong printing it is dropped.
    try:
        if outcome.exception is not None:
            result = f"raised {type(outcome.exception).__name__}"
        else:
            result = kind(outcome.get_result())
        wrappers = [impl.plugin_name for impl in hook_impls if impl.wrapper or impl.hookwrapper]
        line = f"{hook_name}({', '.join(kwargs)}) -> {result} in {_duration(elapsed)}; "
        line += f"asked {', '.join(call.asked)}" if call.asked else "no implementation"
        if wrappers:
            line += f"; wrapped by {', '.join(wrappers)}"
        from fahr_core import ui

        ui.trace(line)
    except Exception:
        pass


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _report_answers(impl) -> None:
    """Make ``impl`` note the kind of its answer in the traced call it runs in.

    pluggy's monitoring sees the call's result, not which implementation gave it: for a
    ``firstresult`` hook with a driver's implementation and the core's default, the trace would not
    say whose answer it was. The implementation's function is wrapped once (a wrapper of the
    call, ``wrapper=True``, is a generator and is left alone); outside a traced call the wrapped
    function only calls through.
    """
    if impl.wrapper or impl.hookwrapper or getattr(impl.function, "_fahr_traced", False):
        return
    with _wrapping:
        if getattr(impl.function, "_fahr_traced", False):
            return
        function, name = impl.function, impl.plugin_name

        @functools.wraps(function)
        def answering(*args, **kwargs):
            calls = _calls()
            call = calls[-1] if calls else None
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                if call is not None:
                    call.asked.append(f"{name} raised {type(exc).__name__}")
                raise
            if call is not None:
                call.asked.append(f"{name} -> {kind(result)}")
            return result

        answering._fahr_traced = True
        impl.function = answering
