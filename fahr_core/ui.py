"""What fahr prints. Status goes to stderr; a job's own log lines go to stdout, unadorned but for
a host label when a job has several hosts, so that ``fahr fit … > train.log`` keeps the logs.

rich is imported on first use, not at start-up.

Plugins use it as ``from fahr_core import ui``; the functions in ``__all__`` are part of fahr's
plugin API (the rest, ``console`` and ``error``, is the CLI's own).
"""

from __future__ import annotations

import contextlib
import sys
import threading

__all__ = ["info", "success", "warn", "command", "status_change", "log_line", "build_step", "build_output", "quiet",
           "size"]

_lock = threading.Lock()
_console = None
_muted = 0  # how many quiet() contexts are open (a count, not a flag: they may nest or overlap)


def size(n: float) -> str:
    """A byte count as fahr's messages show it, in powers of 1024: ``512 bytes``, ``1.5 KiB``,
    ``120 MiB``, ``1.0 GiB``."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"


@contextlib.contextmanager
def quiet():
    """Mute status lines and job log lines for the duration (errors are raised, not printed).

    Process-wide rather than per thread: the drivers stream logs from their own threads.
    """
    global _muted
    with _lock:
        _muted += 1
    try:
        yield
    finally:
        with _lock:
            _muted -= 1


def console():
    """The rich console fahr's status lines go to (stderr)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def _say(markup: str) -> None:
    with _lock:
        if _muted:
            return
        console().print(markup)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def info(message: str) -> None:
    """A status line: what fahr is doing."""
    _say(f"[bold cyan]fahr[/] {_escape(message)}")


def success(message: str) -> None:
    """A status line: something finished well."""
    _say(f"[bold green]fahr[/] {_escape(message)}")


def warn(message: str) -> None:
    """A status line: something the user should know, that does not stop the run."""
    _say(f"[bold yellow]fahr warning[/] {_escape(message)}")


def error(message: str) -> None:
    """The CLI's one error line (plugins raise a FahrError instead)."""
    _say(f"[bold red]fahr error:[/] {_escape(message)}")


def command(text: str) -> None:
    """A command the user may copy, alone on its line."""
    _say(f"    [bold]{_escape(text)}[/]")


def build_step(line: str) -> None:
    """Progress: a step of a long operation (an image build, a push) begins."""
    _say(f"[blue]{_escape(line)}[/]")


def build_output(line: str) -> None:
    """Progress: a line of output of the current step, dimmed."""
    _say(f"[dim]  {_escape(line)}[/]")


def status_change(job: str, status: str, detail: str = "") -> None:
    """A job's (secondary) status changed."""
    extra = f" — {_escape(detail)}" if detail else ""
    _say(f"[bold cyan]fahr[/] {_escape(job)}: [bold]{_escape(status)}[/]{extra}")


def log_line(line: str, host: str | None = None) -> None:
    """One line of the training container's output, to stdout, as it arrives."""
    text = f"[{host}] {line}" if host else line
    with _lock:
        if _muted:
            return
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
