"""What fahr prints. Status goes to stderr, a line each, with every control character of the text
shown as an escape (``\\x1b``): a driver may pass a backend's message or a file name as it is. A
job's own log lines go to stdout byte for byte (as ``docker logs`` shows them), unadorned but for
a host label when a job has several hosts, so that ``fahr fit … > train.log`` keeps the logs.

fahr's own lines quote untrusted text (a job's failure reason, a record's status, a file name a
job wrote, a driver's message): every one passes through :func:`visible`, so that no quoted text
can move the cursor, set the terminal's title, write its clipboard or start a line that looks like
fahr's (README, "What fahr guarantees").

rich is imported on first use, not at start-up.

Plugins use it as ``from fahr_core import ui``; the functions in ``__all__`` are part of fahr's
plugin API (the rest, ``console``, ``error``, ``trace``, ``visible`` and ``one_line``, is the CLI's own).
"""

from __future__ import annotations

import atexit
import contextlib
import re
import sys
import threading

__all__ = ["info", "success", "warn", "command", "status_change", "log_line", "build_step", "build_output", "quiet",
           "size", "transfer"]

_lock = threading.Lock()
_console = None
_muted = 0  # how many quiet() contexts are open (a count, not a flag: they may nest or overlap)
_muted_output = 0  # how many of them mute the job's output too


def dollars(amount: float) -> str:
    """An amount of US dollars as fahr's messages show it: ``$12.35`` (cents) from a dollar up,
    ``$0.4608`` (four decimals) below, two significant digits under a cent (``$0.000032``), so
    that a short job's cost is not ``$0.00``."""
    if amount <= 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount >= 0.01:
        return f"${amount:.4f}"
    # two significant digits of a fraction of a cent: $0.000032, not $0.0000
    import math

    return f"${amount:.{min(10, 1 - math.floor(math.log10(amount)))}f}"


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


# What a terminal acts on instead of showing, or what makes a line look other than it is: the C0
# controls (newline and tab too: a quoted text must not start a line of its own), DEL, the C1
# controls (U+0080-U+009F: some terminals take U+009B as ESC [), the line and paragraph separators,
# the bidirectional marks, embeddings, overrides and isolates (they reorder what is shown), and lone
# surrogates (a name read with surrogateescape; they cannot even be encoded for output).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(text) -> str:
    """``text`` as one line a terminal shows as it is: every control character (C0 with newline
    and tab, DEL, C1), line separator, bidirectional control and lone surrogate written as its
    escape (``\\x1b``, ``\\n``, ``\\u202e``); everything else (``é``, ``模型``) unchanged.
    Nothing it writes is escaped again: applied twice, it gives the same line.
    """
    return _HIDDEN.sub(_shown, str(text))


def one_line(text) -> str:
    """The lines of ``text`` joined by spaces, blank ones dropped: an error quoting a message of
    several lines (a tarfile's, an SDK's) reads as one sentence rather than with ``\\n`` in it."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def cut_middle(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long, cut in its middle (`` … `` marks the cut): its
    start says what it is about and its end (an error's last words) stays."""
    if len(text) <= limit:
        return text
    end = (limit - 3) // 2
    return f"{text[:limit - 3 - end].rstrip()} … {text[len(text) - end:].lstrip()}"


def warm_pool(pool) -> str:
    """A warm pool in a few words: ``Available, billed 12 s so far, until 21:04:05 CET`` (local
    time, as ``fahr jobs`` shows times), ``Reused by JOB``, ``InUse (from JOB)``, ``Terminated,
    billed 300 s``."""
    text = pool.status
    if pool.reused_by:
        text += f" by {pool.reused_by}"
    if pool.reused_from:
        text += f" (from {pool.reused_from})"
    if pool.billable_seconds is not None:
        text += f", billed {pool.billable_seconds:.0f} s" + (" so far" if pool.status == "Available" else "")
    if pool.status == "Available" and pool.expires is not None:
        text += f", until {clock(pool.expires)}"
    return text


def clock(moment: float) -> str:
    """A time of today or soon as the user's clock shows it: ``21:04:05 CET``."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(moment, timezone.utc).astimezone().strftime("%H:%M:%S %Z")


@contextlib.contextmanager
def quiet(job_output: bool = True):
    """Mute status lines and (unless ``job_output=False``) job log lines for the duration
    (errors are raised, not printed). ``fahr fit|wait|fetch --quiet`` mutes fahr's own lines only:
    the job's output still streams on stdout (README, "Quiet output").

    Process-wide rather than per thread: the drivers stream logs from their own threads.
    """
    global _muted, _muted_output
    with _lock:
        _muted += 1
        _muted_output += job_output
    try:
        yield
    finally:
        with _lock:
            _muted -= 1
            _muted_output -= job_output


def console():
    """The rich console fahr's status lines go to (stderr)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def _say(*parts: tuple[str, str], muted_by_quiet: bool = True) -> None:
    """One status line made of ``(text, style)`` parts: the text is shown as it is (made
    :func:`visible`), never read as rich markup or emoji codes (``[red]``, ``:skull:``)."""
    from rich.text import Text

    line = Text(no_wrap=True, end="\n")
    for text, style in parts:
        line.append(visible(text), style=style or None)
    with _lock:
        if _muted and muted_by_quiet:
            return
        with contextlib.suppress(OSError):
            _flush_output()  # the job's output held so far goes first
        console().print(line)


def info(message: str) -> None:
    """A status line: what fahr is doing."""
    _say(("fahr", "bold cyan"), (f" {message}", ""))


def success(message: str) -> None:
    """A status line: something finished well."""
    _say(("fahr", "bold green"), (f" {message}", ""))


def warn(message: str) -> None:
    """A status line: something the user should know, that does not stop the run."""
    _say(("fahr warning", "bold yellow"), (f" {message}", ""))


def error(message: str) -> None:
    """The CLI's one error line (plugins raise a FahrError instead), whatever the message quotes."""
    _say(("fahr error:", "bold red"), (f" {one_line(message)}", ""))


def muted() -> bool:
    """Whether fahr's status lines are muted now (:func:`quiet`)."""
    return bool(_muted)


def progress(message: str) -> None:
    """A line of a sweep's progress (fahr_core.sweeps): the sweep mutes its jobs' own status lines
    while it runs, and says itself, unless it was muted before, what became of each job."""
    _say(("fahr", "bold cyan"), (f" {message}", ""), muted_by_quiet=False)


def trace(message: str) -> None:
    """A line of the plugin trace (``FAHR_TRACE_PLUGINS=1``, see fahr_core/trace.py): asked for
    explicitly, so shown under :func:`quiet` too (the Python API's ``quiet=True``)."""
    _say(("fahr trace", "magenta"), (f" {one_line(message)}", "dim"), muted_by_quiet=False)


def command(text: str) -> None:
    """A command the user may copy, alone on its line."""
    _say(("    ", ""), (text, "bold"))


def build_step(line: str) -> None:
    """Progress: a step of a long operation (an image build, a push) begins."""
    if _build is not None:
        _build.step(line)
    _say((line, "blue"))


def build_output(line: str) -> None:
    """Progress: a line of output of the current step, dimmed. During ``build_image`` (unless
    ``fahr fit --verbose``) it is held instead: shown beside a spinner on a terminal, and printed
    with the rest of the build's output only if the build fails."""
    if _build is not None and _build.hold(line):
        return
    _say((f"  {line}", "dim"))


class _Build:
    """The image build being shown by :func:`building`: its whole output, kept for a failure in
    a temporary file (a build may print without end: memory holds one line at a time)."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.kept = None  # the temporary file of the build's lines, made at the first
        self.spinner = None  # rich's spinner on a terminal

    def _keep(self, line: str) -> None:
        import json

        if self.kept is None:
            import tempfile

            self.kept = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.kept.write(json.dumps(line) + "\n")  # one line per line kept, whatever it holds

    def lines(self):
        """The lines kept, from the first."""
        import json

        if self.kept is not None:
            self.kept.seek(0)
            for line in self.kept:
                yield json.loads(line)

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()

    def step(self, line: str) -> None:
        self._keep(line)
        self._show(line)

    def hold(self, line: str) -> bool:
        """Keep ``line``; True when it is not to be printed now."""
        self._keep(f"  {line}")
        if self.verbose:
            return False
        self._show(line)
        return True

    def _show(self, line: str) -> None:
        if self.spinner is not None:
            self.spinner.update(text=visible(cut_middle(line.strip(), 100)))


_build: _Build | None = None


@contextlib.contextmanager
def building(verbose: bool = False):
    """Show an image build as progress: a line per step (:func:`build_step`), the steps' own
    output (:func:`build_output`) not printed but held (on a terminal, its latest line beside a
    spinner); when the build raises, all of its output is printed before the error goes on.
    ``verbose`` prints the output as it comes. Under :func:`quiet` none of it is shown."""
    global _build
    build = _Build(verbose)
    previous, _build = _build, build
    try:
        with contextlib.ExitStack() as stack:
            if not verbose and not _muted and console().is_terminal:
                from rich.live import Live
                from rich.spinner import Spinner

                # stdout is left alone (rich would route it to stderr): it is the job's.
                build.spinner = Spinner("dots", "the image")
                stack.enter_context(Live(build.spinner, console=console(), transient=True, refresh_per_second=10,
                                         redirect_stdout=False, redirect_stderr=False))
            try:
                yield
            finally:
                build.spinner = None
    except BaseException as exc:
        if not verbose and build.kept is not None and not isinstance(exc, KeyboardInterrupt):
            _say(("fahr", "bold cyan"), (" the image build failed; its whole output:", ""))
            for line in build.lines():
                _say((line, "dim"))
        raise
    finally:
        _build = previous
        build.close()


def status_change(job: str, status: str, detail: str = "") -> None:
    """A job's (secondary) status changed."""
    _say(("fahr", "bold cyan"), (f" {job}: ", ""), (status, "bold"), (f" — {detail}" if detail else "", ""))


def log_line(line: str, host: str | None = None, *, newline: bool = True) -> None:
    """One line of the training container's output, to stdout, as it arrives: byte for byte, as
    ``docker logs`` shows it (it is the job's own output, not a line of fahr's). ``newline=False``:
    part of a line that goes on, or the job's last output, which had none."""
    if newline:
        line += "\n"
    try:
        data = line.encode("utf-8", "surrogateescape")  # bytes decoded that way come back as they were
    except UnicodeEncodeError:
        data = line.encode("utf-8", "replace")
    log_output(data, host)


# A job's output goes to stdout as bytes, as it came: held here and written in large writes
# (a write per line made a chatty job several times slower than `docker run`), at the latest
# FLUSH_AFTER seconds after it arrived, and before any status line (so the two keep their order).
FLUSH_AFTER = 0.05
_HOLD = 64 * 1024
_held = bytearray()
_closed = False  # stdout's reader has gone (see output_closed)
_timer: threading.Timer | None = None


_taps: tuple = ()  # who else reads the job's output as it is streamed (tapping)


@contextlib.contextmanager
def tapping(tap):
    """Within the context, every piece of a job's output streamed here is also handed to
    ``tap(data, host)``, as it comes: whatever the driver, its streamed output passes here, where
    the core reads the metrics its trackers hear (fahr_core/tracking.py)."""
    global _taps
    with _lock:
        _taps = (*_taps, tap)
    try:
        yield
    finally:
        with _lock:
            _taps = tuple(t for t in _taps if t is not tap)


def log_output(data: bytes, host: str | None = None) -> None:
    """Part of a job's output, byte for byte, to stdout (a job's own output is never altered).

    With ``host`` (a job of several hosts), ``data`` is a line or a slice of a long one (see
    ``fahr_core.joblog``): it goes out as a line of its own, prefixed ``[host] ``.
    """
    global _timer
    for tap in _taps:  # muted or not: a quiet fit's metrics still reach its trackers
        tap(data, host)
    if host:
        data = b"[%s] %s" % (host.encode(), data)
        if not data.endswith(b"\n"):
            data += b"\n"
    with _lock:
        if _muted_output or _closed:
            return
        _held.extend(data)
        if len(_held) >= _HOLD:
            _flush_output()
        elif _timer is None:
            _timer = threading.Timer(FLUSH_AFTER, _flush_later)
            _timer.daemon = True
            _timer.start()


def output_closed() -> bool:
    """Whether stdout's reader has gone (`fahr logs JOB | head`): the job's output is no longer
    printed (``fit`` and ``wait`` still follow the job to its end and record it)."""
    return _closed


def flush_output() -> None:
    """Write out the job output held (fahr calls it when a job's output ends)."""
    with _lock:
        _flush_output()


def _flush_later() -> None:
    global _timer
    with _lock:
        _timer = None
        with contextlib.suppress(OSError):  # stdout closed (`fahr logs … | head`): the caller's next write says so
            _flush_output()


def _flush_output() -> None:
    """(The caller holds ``_lock``.)"""
    if not _held:
        return
    global _closed
    data = bytes(_held)
    _held.clear()
    out = sys.stdout
    try:
        out.flush()  # text written before (by print) goes first
        binary = getattr(out, "buffer", None)
        if binary is None:  # a stream of text only (a notebook's): undecodable bytes are replaced there
            out.write(data.decode("utf-8", "replace"))
        else:
            binary.write(data)
            binary.flush()
        out.flush()
    except BrokenPipeError:  # the reader has gone, as `head` does once it has its lines: no more output
        _closed = True
        with contextlib.suppress(Exception):  # what stdout still buffers goes nowhere, not to an error at exit
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)


@atexit.register
def _flush_at_exit() -> None:
    with contextlib.suppress(Exception):
        flush_output()


@contextlib.contextmanager
def transfer(what: str, total: int):
    """One progress display for a transfer of ``total`` bytes by any number of threads: yields a
    thread-safe callable they call with each count of bytes moved. On a terminal it is one rich
    progress bar (removed at the end, then one line says it is done); elsewhere a line
    ``WHAT: NN% of SIZE`` at most every 2 s. Under :func:`quiet`, nothing.
    (Added in plugin API 1.6.)"""
    import time

    done = [0, time.monotonic()]
    guard = threading.Lock()
    bar = task = None
    if not _muted and total > 0 and console().is_terminal:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        bar = Progress(TextColumn(f"fahr {visible(what)}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       TimeRemainingColumn(), console=console(), transient=True,
                       redirect_stdout=False, redirect_stderr=False)
        task = bar.add_task(what, total=total)

    def moved(count: int) -> None:
        with guard:
            done[0] += count
            if bar is not None:
                bar.update(task, completed=done[0])
                return
            now = time.monotonic()
            if now - done[1] >= 2 and done[0] < total:
                done[1] = now
                info(f"{what}: {100 * done[0] / total:.0f}% of {size(total)}")

    with bar if bar is not None else contextlib.nullcontext():
        yield moved
    if total > 0:
        info(f"{what}: {size(total)} done")
