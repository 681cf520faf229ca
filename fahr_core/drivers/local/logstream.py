"""A local job's output: streamed from its containers while they run, read from its saved logs after.

Each host's whole output is saved as ``<job>/logs/<host>.log`` when the job ends
(fahr_core.contract's ``save_logs``); until then it is read from the engine, host after host or,
followed, all hosts at once. Bytes that are not UTF-8 are passed on as the job printed them.
"""

from __future__ import annotations

import time
from pathlib import Path

from fahr_core import ui
from fahr_core.drivers.local.records import _container_job, _ended, _job_dir, _read_record
from fahr_core.errors import UsageError
from fahr_core.jobfolder import Folder

_LIVE_QUEUE = 64  # pieces of output (each at most a line, or a slice of one: fahr_core.joblog)


def logs(job, config, follow):
    from fahr_core.contract import ContractRun

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)  # raises now, not at the first iteration
    hosts = record.get("instance_count", 1)
    if _ended(record) or record.get("upload_error"):
        return _saved_logs(job_dir, hosts)

    def running():
        seen: dict[str, int] = {}
        run = ContractRun(_container_job(record, config))
        yield from _live_logs(run, follow, hosts, seen)
        if run.containers():
            return  # the containers are still there: their streams held every line
        # The job ended meanwhile and the fahr finishing it saved the logs and removed the
        # containers: lines printed after the streams broke off are in the saved logs.
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if _ended(_read_record(job_dir)):
                    break
            except UsageError:
                return
            time.sleep(0.5)
        yield from _saved_logs(job_dir, hosts, skip=seen)  # what the streams had not passed on

    return running()


def _log_files(job_dir: Path):
    """``(host, open file)`` of every log fahr saved for the job, opened as fahr_core.jobfolder
    says (never through a link, regular files only: a FIFO or /dev/zero is refused, one line)."""
    try:
        with Folder.open(job_dir) as folder:
            logs = folder.sub("logs")
    except FileNotFoundError:
        return  # no logs saved (a job that never started), or the job's folder removed meanwhile
    with logs:
        for name in logs.names():
            if name.endswith(".log") and not name.startswith("."):
                with logs.open_file(name) as handle:
                    yield name[:-len(".log")], handle


def _saved_output(job_dir: Path, lines: bool):
    """The saved logs' bytes, host after host, as ``(host, data)``: read a chunk at a time, in
    pieces that each end a line or slice a long one (see fahr_core.joblog) with ``lines``."""
    from fahr_core import joblog

    for host, handle in _log_files(job_dir):
        chunks = joblog.read_chunks(handle)
        for data in joblog.pieces(chunks) if lines else chunks:
            yield host, data


def _log_line(host: str, piece: bytes, hosts: int):
    """A piece of output as the logs hook yields it: undecodable bytes as surrogate escapes, so
    that `fahr logs` prints them as the job did."""
    from fahr_core.values import LogLine

    newline = piece.endswith(b"\n")
    text = (piece[:-1] if newline else piece).decode("utf-8", "surrogateescape")
    return LogLine(host=host, text=text, newline=newline, hosts=hosts)


def _saved_logs(job_dir: Path, hosts: int, skip: dict[str, int] | None = None):
    """The saved logs as LogLines, without the first ``skip[host]`` bytes of each host's as the
    engine's log holds them (``fahr logs -f`` read that far there): the saved log may hold bytes
    that are not UTF-8 where the engine's has U+FFFD (see fahr_core.contract.LoggedSize)."""
    from fahr_core.contract import LoggedSize

    skip = dict(skip or {})
    sizes: dict[str, LoggedSize] = {}
    for host, piece in _saved_output(job_dir, lines=True):
        left = skip.get(host, 0)
        if left:
            size = sizes.setdefault(host, LoggedSize())
            logged = size(1, piece)
            if logged <= left:
                skip[host] = left - logged
                continue
            skip[host] = 0
            piece = piece[size.cut(1, piece, left):]
            if not piece:
                continue
        yield _log_line(host, piece, hosts)


def _live_logs(run, follow: bool, hosts: int, seen: dict[str, int]):
    """Every host's output from its container, host after host without ``follow``; with it, all
    hosts at once (threads), as the lines come, until every container has stopped. ``seen``
    counts the bytes passed on of each host."""
    import queue
    import threading

    from fahr_core.contract import output_chunks
    from fahr_core.joblog import LineSplitter

    containers = run.containers()

    def output(host, container):
        splitter = LineSplitter()
        try:
            for chunk in output_chunks(container, follow):
                seen[host] = seen.get(host, 0) + len(chunk)
                for piece in splitter.feed(chunk):
                    yield _log_line(host, piece, hosts)
        except Exception:
            pass  # the container went away (the job ended and was cleaned up): the saved logs follow
        if rest := splitter.end():
            yield _log_line(host, rest, hosts)

    if not follow:
        for host in sorted(containers):
            yield from output(host, containers[host])
        return
    # Bounded: a reader slower than the job (stdout a slow pipe) holds the streams back, not
    # the job's output in memory. Closed early (`| head`, an abandoned generator), the threads end.
    events: queue.Queue = queue.Queue(maxsize=_LIVE_QUEUE)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                events.put(item, timeout=0.25)
                return True
            except queue.Full:
                continue
        return False

    def pump(host, container):
        try:
            for line in output(host, container):
                if not put(line):
                    return
        finally:
            put(host)

    for host, container in containers.items():
        threading.Thread(target=pump, args=(host, container), daemon=True).start()
    done = 0
    try:
        while done < len(containers):
            item = events.get()
            if isinstance(item, str):
                done += 1
            else:
                yield item
    finally:
        stop.set()


def _replay_logs(job_dir: Path, record: dict) -> None:
    several = record.get("instance_count", 1) > 1
    for host, data in _saved_output(job_dir, lines=several):
        ui.log_output(data, host if several else None)
        if ui.output_closed():
            break  # stdout's reader has gone (`| head`)
    ui.flush_output()
