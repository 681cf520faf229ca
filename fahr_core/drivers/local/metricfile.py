"""A local job's metrics, kept in its folder (docs/metrics.md).

``metrics.live.jsonl``: the points as a following ``fahr fit``/``fahr wait`` reads them from the
job's output, appended as they come (a fit killed mid-job keeps every point printed until then).
``metrics.jsonl``: the job's whole series, written when the job ends by whoever finishes it: the
live file renamed when its follower read the output whole, else (a detached job, a fit killed or
interrupted) read anew from the containers' logs, streamed with the engine's own timestamps. One
JSON object a line (fahr_core.metrics.encode); at most fahr_core.metrics.MAX_POINTS points.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from fahr_core import metrics
from fahr_core.errors import UsageError
from fahr_core.jobfolder import Folder, Refused

LIVE = "metrics.live.jsonl"
FINAL = "metrics.jsonl"


def definitions(record: dict) -> tuple:
    """The job's definitions as its record holds them; a record edited into a bad one reads none."""
    with contextlib.suppress(UsageError):
        return metrics.definitions(record.get("metric_definitions") or {})
    return ()


def parser(record: dict) -> metrics.Parser:
    return metrics.Parser(definitions(record))


class Live:
    """The points of a followed job's output, appended to its live file as they come (each host's
    output from its own thread: fed under a lock). The file is open only while a write lasts: one
    held open for the job's whole life would keep its disk from being remounted read-only. A
    write that fails (a full disk) stops the recording, never the job's following."""

    def __init__(self, job_dir: Path, record: dict):
        self.job_dir = job_dir
        self._lock = threading.Lock()
        self._writing = False
        with contextlib.suppress(OSError, UsageError, Refused):
            with Folder.open(job_dir) as folder:
                folder.write(LIVE, b"")  # from the start: a follower reads the output from its start
                self._writing = True
        self.recorder = metrics.Recorder(parser(record), self._write)

    def _write(self, points) -> None:
        if not self._writing:
            return
        try:
            with Folder.open(self.job_dir) as folder:
                fd = folder.open_own(LIVE, create=False, append=True)
                try:
                    os.write(fd, metrics.encode(points))
                finally:
                    os.close(fd)
        except (OSError, UsageError, Refused):
            self._writing = False

    def output(self, host: str | None, data: bytes) -> None:
        with self._lock:
            self.recorder.feed(host or "algo-1", data)

    def close(self, complete: bool = False) -> None:
        """The output has ended (``complete``: read whole, from the start): the live file is then
        the job's series."""
        with self._lock:
            if complete:
                self.recorder.end()
            if self._writing and complete:
                with contextlib.suppress(OSError, UsageError, Refused):
                    with Folder.open(self.job_dir) as folder:
                        folder.commit(LIVE, FINAL)
            self._writing = False


def save(run, folder: Folder, record: dict) -> None:
    """The job's whole series into ``metrics.jsonl``, before its containers go (fahr_core.drivers.
    local.finish): kept when a follower wrote it, else read from the containers' logs, each line
    at the time the engine received it. OSError (a full disk) propagates, as the logs' saving does."""
    if FINAL in folder.names():
        return
    if not run.containers():  # removed outside fahr: what a follower kept is all there is
        if LIVE in folder.names():
            folder.commit(LIVE, FINAL)
        return
    with folder.replacing(FINAL) as handle:
        _from_containers(run, record, lambda points: handle.write(metrics.encode(points)))
    with contextlib.suppress(OSError):
        folder.tidy(r"metrics\.live\.jsonl")


def running(run, record: dict) -> list:
    """The points of a running job nobody follows (a detached one: no live file), read from its
    containers' logs at the times the engine received the lines, not at the time of this read."""
    points: list = []
    _from_containers(run, record, points.extend)
    return points


def _from_containers(run, record: dict, sink) -> None:
    from fahr_core.contract import _engine_time, _logged
    from fahr_core.joblog import LineSplitter

    recorder = metrics.Recorder(parser(record), sink)
    for host, container in sorted(run.containers().items()):
        splitter = LineSplitter()

        def parse(piece: bytes) -> None:
            if piece.endswith(b"\n") and recorder.parser.may_hold(piece):  # a slice of a long line is none
                stamp, _, text = piece.partition(b" ")
                recorder.feed(host, text, _engine_time(stamp.decode("ascii", "replace")))

        try:
            for chunk in _logged(container, False, {}, timestamps=True):
                for piece in splitter.feed(chunk):
                    parse(piece)
        except Exception:  # noqa: BLE001 - the container went away: what was read is kept
            pass
        parse(splitter.end() + b"\n")


def read(job_dir: Path):
    """The job's stored points, or None when it has none stored (its logs are then read)."""
    try:
        with Folder.open(job_dir) as folder:
            names = folder.names()
            name = FINAL if FINAL in names else LIVE if LIVE in names else None
            if name is None:
                return None
            handle = folder.open_file(name)
    except (OSError, UsageError, Refused):
        return None
    with handle:
        return list(metrics.decode(metrics.stored_lines(handle)))
