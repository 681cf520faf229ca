"""Ctrl-C and SIGTERM (and SIGHUP, see below): the first one interrupts; later ones never leave
a job half-stopped.

The first signal raises :class:`KeyboardInterrupt` wherever the main thread is: the driver
stops the job, saves what it left and removes its containers, then the CLI exits 130. Every
later signal only says what fahr is still doing and lets it finish: a second Ctrl-C in the
middle of stopping would otherwise leave the job's containers running and its record
unfinished, which is exactly what the user's first Ctrl-C asked fahr to prevent.

:func:`shield` defers even the first signal around a step that must not be cut in half (packing
a finished job's model); a signal that came meanwhile is raised when the step is done.

SIGHUP (the terminal closed) interrupts the same way while a job is launched that nothing else
would finish (:func:`until_followed`, until :func:`attended`: the local driver's follower has
started), or while fahr defers signals; otherwise fahr dies of it as before, and the job runs on,
finished by its follower. Its output then goes to /dev/null: writing to a closed terminal fails,
and must not cut the cleanup short.

Messages are written with ``os.write`` on stderr, not through :mod:`fahr_core.ui`: a signal
handler runs in the main thread between two bytecodes, perhaps while that thread holds the
console's lock, and taking it again would deadlock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULT_DOING = "cleaning up"

_state = {"interrupted": False, "shield": 0, "deferred": 0, "doing": _DEFAULT_DOING}
_cleanups: dict[str, Callable[[], None]] = {}
_unattended: set[str] = set()  # jobs launched that nothing would finish if this process died


def _handler(signum, frame) -> None:
    if _state["interrupted"] or _state["shield"]:
        _state["deferred"] += 1
        _say(f"{_state['doing']}; please wait, Ctrl-C again does not abandon it")
        return
    # From here on every signal is deferred: the code that catches this interrupt is cleaning up.
    _state["interrupted"] = True
    raise KeyboardInterrupt


def _hangup(signum, frame) -> None:
    for fd in (1, 2):  # the terminal is gone: nothing can be told there
        try:
            if os.isatty(fd):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
        except OSError:
            pass
    if _unattended or _state["interrupted"] or _state["shield"]:
        _handler(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)  # as before: the job runs on, its follower finishes it
    os.kill(os.getpid(), signum)


def _say(text: str) -> None:
    try:
        os.write(2, f"fahr {text}\n".encode("utf-8", "replace"))
    except OSError:
        pass  # stderr closed: nothing to tell


def install() -> None:
    """Handle SIGINT and SIGTERM alike, and SIGHUP, for the whole process (the CLI's entry point
    calls this)."""
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    signal.signal(signal.SIGHUP, _hangup)


def doing(text: str) -> None:
    """What fahr does while it defers signals, as the user reads it ("stopping job J …")."""
    _state["doing"] = text or _DEFAULT_DOING


def interrupted() -> bool:
    """Whether the user has interrupted this process."""
    return bool(_state["interrupted"])


@contextlib.contextmanager
def shield(text: str = ""):
    """Defer SIGINT/SIGTERM inside the block; one that came meanwhile is raised at its end.

    Works without :func:`install` too (in the main thread it installs the handler for the
    block's duration); in another thread, where Python delivers no signals, it does nothing.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = {}
    if main:
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current is not _handler:
                previous[signum] = current
                signal.signal(signum, _handler)
    before_doing, before_deferred = _state["doing"], _state["deferred"]
    if text:
        _state["doing"] = text
    _state["shield"] += 1
    leaving_normally = False
    try:
        yield
        leaving_normally = True
    finally:
        _state["shield"] -= 1
        _state["doing"] = before_doing
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        came = _state["deferred"] > before_deferred
        if came and leaving_normally and not _state["shield"] and not _state["interrupted"]:
            _state["interrupted"] = True
            raise KeyboardInterrupt


def until_followed(key: str, cleanup: Callable[[], None]) -> None:
    """Register what an interrupt must do for a job nobody handles interrupts for yet.

    Between a job's launch and the moment its driver's ``wait`` follows it (and handles Ctrl-C
    itself) there is a moment where an interrupt would leave the job running unattended; the
    CLI runs ``cleanup`` then (see :func:`run_cleanups`). Call :func:`followed` once the job
    is in good hands (or launched on purpose to run on: ``--detach``).
    """
    _cleanups[key] = cleanup
    _unattended.add(key)


def attended(key: str) -> None:
    """The job ``key`` has a process of its own that finishes it (the local driver's follower):
    a closed terminal no longer needs to stop it (Ctrl-C still does, until :func:`followed`)."""
    _unattended.discard(key)


def followed(key: str) -> None:
    """The job ``key`` is taken care of: an interrupt no longer needs its cleanup."""
    _cleanups.pop(key, None)
    _unattended.discard(key)


def run_cleanups() -> None:
    """After an interrupt (signals are deferred by now): run what is still registered, once."""
    while _cleanups:
        _, cleanup = _cleanups.popitem()
        cleanup()
