"""A job's output as fahr shows it: whole lines for the API, host prefixes for a job of several
hosts, lines read ahead in a thread while a quiet job is followed.

A driver's ``logs`` hook yields :class:`fahr_core.values.LogLine` slices; ``fahr logs`` prints
the pieces of :func:`pieces` byte for byte, and ``Job.logs()`` joins them into lines.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator

def _prefetched(lines, patience: float = 2.0):
    """``lines`` read in a thread: yields ``(line, False)`` as they come, and ``(None, True)`` each
    time ``patience`` seconds pass without one, so a caller waiting on a quiet job can act."""
    import queue
    import threading

    box: queue.Queue = queue.Queue()
    done = object()

    def pump() -> None:
        try:
            for line in lines:
                box.put(line)
        except BaseException as exc:  # handed to the reader, raised there
            box.put(exc)
        finally:
            box.put(done)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            item = box.get(timeout=patience)
        except queue.Empty:
            yield None, True
            continue
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item, False


def readable(text: str) -> str:
    """A line as the API hands it out: bytes a driver passed on undecoded (as surrogate escapes,
    so that ``fahr logs`` prints them as they were) become U+FFFD."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


def whole_lines(pieces: Iterator[tuple[str, bool]]) -> Iterator[str]:
    """Lines, however long, from the pieces of :func:`pieces`."""
    parts: list[str] = []
    for text, ends in pieces:
        if parts or not ends:
            parts.append(text)
            if not ends:
                continue
            text, parts = "".join(parts), []
        yield readable(text)
    if parts:
        yield readable("".join(parts))


def pieces(lines: Iterable, follow: bool, host: str | None) -> Iterator[tuple[str, bool]]:
    """A driver's log lines as they are to be printed, in bounded pieces ``(text, ends)``: ``ends``
    when the text ends a line (the newline is not in it). ``host`` keeps one host's lines,
    unprefixed; otherwise a job of several hosts has each line prefixed ``[algo-N] ``."""
    if host is not None:
        yield from ((line.text, line.newline) for line in lines if line.host == host)
        return

    def shown(line, several: bool) -> tuple[str, bool]:  # with a host, a slice is a line of its own
        return (f"[{line.host}] {line.text}", True) if several else (line.text, line.newline)

    # Whether the job has several hosts shows in its lines, unless the driver says: hold them
    # back until a second host speaks, the lines end, or (following a live job) two seconds
    # have passed, even when the job prints nothing more in those seconds (the lines are then
    # read in a thread).
    source = _prefetched(lines) if follow else ((line, False) for line in lines)
    held: list = []
    several: bool | None = None
    since = time.monotonic()
    for line, timed_out in source:
        if several is None:
            if line is not None:
                held.append(line)
                if line.hosts:
                    several = line.hosts > 1
            if several is None:
                if held and line is not None and line.host != held[0].host:
                    several = True
                elif follow and (timed_out or time.monotonic() - since > 2):
                    several = False
                else:
                    continue
            for kept in held:
                yield shown(kept, several)
            held = []
            continue
        if line is not None:
            yield shown(line, several)
    for kept in held:  # one host all along
        yield shown(kept, False)
