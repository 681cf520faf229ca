"""A sweep's jobs: its record (what ``--resume`` launches again), launched and followed K at a time.

:func:`fahr_core.api.sweep` plans, opens the one session and builds and pushes the one image
(docs/architecture.md); this module then launches each point of the space with its own
hyperparameters through that session and follows them: at most ``parallel`` run at once, each
followed by the driver's ``wait`` in a thread of its own (its output kept by the driver, not
printed: ``fahr logs JOB`` shows it), while the main thread keeps the table and handles Ctrl-C.
A failing job does not stop the others.

The sweep's record is ``$XDG_STATE_HOME/fahr/sweeps/<id>.json`` (else ``~/.local/state/…``), on
every driver: the points, seed, objective, artifact and options, never a secret's value (names
only). docs/sweeps.md says it all for the user.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fahr_core import searchspace
from fahr_core.errors import UsageError

#: A record fahr reads back is a few kilobytes; more is not one of its own.
_RECORD_MAX_BYTES = 16 * 1024 * 1024
#: How often a running job's latest objective is read: the local driver's metrics are a file
#: in the job's folder; another driver's may be its logs read again, which costs more.
_METRICS_EVERY = {"local": 2.0}
_METRICS_EVERY_ELSE = 15.0


def default_parallel(driver: str) -> int:
    """Jobs at once when ``--parallel`` is not given: on ``local`` half this machine's CPUs (at
    least one: each job is a container beside the others and fahr), elsewhere 4 (a cloud
    account's usual per-type quota is small)."""
    if driver == "local":
        return max(1, (os.cpu_count() or 2) // 2)
    return 4


def stops_on_interrupt(driver: str) -> bool:
    """Whether Ctrl-C stops the sweep's jobs (``local``: they hold this machine) or leaves them
    running, detached, as ``fahr fit`` on a cloud driver does."""
    return driver == "local"


# -- the record ------------------------------------------------------------------------------------

def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "fahr" / "sweeps"


@dataclass
class Record:
    """A sweep as launched: enough to launch its missing points again (``fahr sweep --resume``)."""

    id: str
    driver: str
    artifact: str
    points: list[dict[str, str]]
    fixed: dict[str, str] = field(default_factory=dict)
    specs: list[str] = field(default_factory=list)
    trials: int | None = None
    seed: int = 0
    objective: str | None = None
    parallel: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)
    created: float = 0.0

    def save(self) -> Path:
        from fahr_core import jobfolder

        folder = state_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with jobfolder.Folder.open(folder) as opened:
            with jobfolder.replacing_in(opened.fd, f"{self.id}.json", mode=0o600) as handle:
                handle.write(json.dumps(self.__dict__, indent=1).encode("utf-8"))
        return folder / f"{self.id}.json"

    @classmethod
    def load(cls, sweep_id: str) -> "Record":
        from fahr_core import jobfolder

        searchspace.validate_id(sweep_id)
        path = state_dir() / f"{sweep_id}.json"
        try:
            with jobfolder.Folder.open(path.parent) as folder:
                raw = folder.read(path.name, _RECORD_MAX_BYTES)
        except FileNotFoundError:
            raise UsageError(f"no sweep {sweep_id} on this machine (its record {path} is missing); see "
                             "'fahr jobs --sweep ID' for its jobs") from None
        except OSError as exc:
            raise UsageError(f"cannot read {path} ({exc.strerror}); the sweep cannot be resumed") from None
        try:
            data = json.loads(raw.decode("utf-8"))
            record = cls(**data)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{path} is not a sweep record fahr wrote ({' '.join(str(exc).split())}); "
                             "it cannot be resumed") from None
        if (record.id != sweep_id or not isinstance(record.points, list) or not record.points
                or not all(isinstance(p, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in p.items())
                           for p in record.points)
                or not isinstance(record.artifact, str) or not isinstance(record.driver, str)):
            raise UsageError(f"{path} is not a sweep record fahr wrote (its id, points, artifact or driver); "
                             "it cannot be resumed")
        return record


# -- one job of the sweep --------------------------------------------------------------------------

@dataclass
class Entry:
    """One point of the sweep and its job, as the table shows it."""

    point: dict[str, str]
    job: Any = None  # fahr_core.api.Job once launched
    handle: Any = None
    status: str = "Pending"
    started: float | None = None
    ended: float | None = None
    failure: str = ""
    value: float | None = None  # the objective's latest value
    finals: dict[str, float] = field(default_factory=dict)
    metrics_read: float = 0.0
    attempts: int = 1  # jobs launched for this point (``--retry``: each one linked to the first)
    capacity_failures: int = 0  # of those, how many found no capacity (the driver's next type)
    first: str = ""  # the name of the point's first job, once it is retried
    # Launched by this process: only then does its handle say whether the driver tells notify
    # itself (JobHandle.notifies); one found running (--resume) is rebuilt from a listing.
    launched: bool = False

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started


class Runner:
    """Launches the pending entries ``parallel`` at a time and follows them to their end."""

    def __init__(self, session, launch, entries: list[Entry], parallel: int, objective, show, retry: int = 0):
        self.read_back = None  # set by follow(): the sweep's (api) reader, for the trackers
        self.notify = ""  # set by follow(): the URL told of each job's end (docs/notifications.md)
        self.session, self.launch, self.entries, self.retry = session, launch, entries, retry
        self.parallel, self.objective, self.show = parallel, objective, show
        self.done: queue.Queue = queue.Queue()
        self.threads: dict[int, threading.Thread] = {}

    def run(self) -> None:
        pending = [i for i, e in enumerate(self.entries) if e.status == "Pending"]
        for i, entry in enumerate(self.entries):  # already running (resumed): followed too
            if entry.status == "InProgress" and entry.handle is not None:
                self._follow(i)
            elif entry.job is not None and not entry.metrics_read:  # ended before (resumed): its values
                self._read(entry)
        try:
            while pending or self.threads:
                while pending and len(self.threads) < self.parallel:
                    i = pending.pop(0)
                    self._start(i)
                self.show(self.entries)
                try:
                    i, result, error = self.done.get(timeout=0.5)
                except queue.Empty:
                    self._read_metrics()
                    continue
                self._ended(i, result, error)
                while True:  # every job that ended meanwhile, before launching the next
                    try:
                        self._ended(*self.done.get_nowait())
                    except queue.Empty:
                        break
        except KeyboardInterrupt:
            self.interrupted()
            raise
        self.show(self.entries)

    def _start(self, i: int, attempt_of: str = "") -> None:
        from fahr_core.errors import FahrError

        entry = self.entries[i]
        entry.status, entry.started = "Launching", time.time()
        self.show(self.entries)
        try:
            entry.job, entry.handle = self.launch(entry.point, i, attempt_of=attempt_of,
                                                  capacity_failures=entry.capacity_failures)
        except FahrError as exc:
            from fahr_core import ui

            entry.status, entry.ended, entry.failure = "Failed", time.time(), ui.one_line(exc.message)
            return
        entry.status, entry.launched = "InProgress", True
        self._follow(i)

    def _follow(self, i: int) -> None:
        entry = self.entries[i]

        def wait() -> None:
            from fahr_core import ui

            try:
                # Muted for as long as it follows: after a Ctrl-C that leaves a cloud sweep's jobs
                # running, this thread follows on (a daemon) and must not print over what comes next.
                with ui.quiet():
                    result = self.session.call("wait", job=entry.handle)
                self.done.put((i, result, None))
            except BaseException as exc:  # noqa: BLE001 - told in the table, the others go on
                self.done.put((i, None, exc))

        # A daemon: on a cloud driver, Ctrl-C leaves the jobs running and fahr must exit.
        thread = threading.Thread(target=wait, name=f"fahr-sweep-{entry.handle.job_name}", daemon=True)
        self.threads[i] = thread
        thread.start()

    def _ended(self, i: int, result, error) -> None:
        from fahr_core import report, ui
        from fahr_core.errors import FahrError
        from fahr_core.values import CAPACITY, FAILED, RETRYABLE_KINDS

        entry = self.entries[i]
        self.threads.pop(i, None)
        entry.ended = time.time()
        if result is not None:
            entry.status = result.status
            if not result.succeeded:
                entry.failure = report.failure_line(result.failure_reason)
            if entry.job is not None:
                entry.job._from_result(result)
            self._tell_trackers(result)
            # Each attempt's end, as fit --retry tells them. A job found running (--resume) was
            # launched detached: told as a detached job is (its driver, or nobody), never twice.
            if self.notify and entry.launched:
                from fahr_core import notify

                notify.followed(self.notify, entry.handle, result, entry.first)
            kind = getattr(result, "failure_kind", "")
            if not result.succeeded and kind in RETRYABLE_KINDS and entry.attempts <= self.retry:
                # As fit --retry: the point's next job is linked to its first and resumes from
                # the same checkpoints (the point's own folder); the table shows the latest.
                entry.first = entry.first or entry.handle.job_name
                entry.attempts += 1
                entry.capacity_failures += kind == CAPACITY
                entry.failure = ""
                self._start(i, attempt_of=entry.first)
                return
        else:
            entry.status = FAILED
            message = error.message if isinstance(error, FahrError) else f"{type(error).__name__}: {error}"
            entry.failure = ui.one_line(message)
        self._read(entry)

    def _tell_trackers(self, result) -> None:
        """The experiment trackers hear the job's end with its series whole (docs/trackers.md):
        the sweep's jobs are followed at once and muted, so no output was streamed to them."""
        from fahr_core import tracking

        trackers = tracking.of(self.session)
        if trackers and self.read_back is not None:
            trackers.unstreamed.add(result.job.job_name)
            tracking.ended(self.session, result, read_back=self.read_back)

    def _read(self, entry: Entry) -> None:
        from fahr_core.errors import FahrError

        entry.metrics_read = time.time()
        if entry.job is None:
            return
        try:
            entry.finals = entry.job.final_metrics
        except (FahrError, OSError):
            return
        if self.objective is not None and self.objective.metric in entry.finals:
            entry.value = entry.finals[self.objective.metric]

    def _read_metrics(self) -> None:
        every = _METRICS_EVERY.get(self.session.driver, _METRICS_EVERY_ELSE)
        now = time.time()
        for entry in self.entries:
            if entry.status == "InProgress" and now - entry.metrics_read >= every:
                self._read(entry)

    def interrupted(self) -> None:
        """Ctrl-C: on ``local`` every running job is stopped (and its containers removed) before
        fahr exits; elsewhere they run on, detached."""
        from concurrent.futures import ThreadPoolExecutor

        from fahr_core import interrupts

        running = [e for e in self.entries if e.status in ("InProgress", "Launching") and e.handle is not None]
        if not stops_on_interrupt(self.session.driver) or not running:
            return
        interrupts.doing(f"stopping the sweep's {len(running)} running jobs and removing their containers")

        def stop(entry: Entry) -> None:
            try:
                self.session.call("stop", job=entry.handle)
            except Exception:  # noqa: BLE001 - the others are stopped all the same
                pass
            interrupts.followed(entry.handle.job_name)

        with ThreadPoolExecutor(max_workers=min(8, len(running))) as pool:
            list(pool.map(stop, running))
        deadline = time.time() + 120  # each follow ends once its containers are gone
        for thread in list(self.threads.values()):
            thread.join(max(0.0, deadline - time.time()))
        while True:
            try:
                self._ended(*self.done.get_nowait())
            except queue.Empty:
                break
        self.show(self.entries)


# -- the leaderboard -------------------------------------------------------------------------------

def ranked(entries: list[Entry], objective) -> list[Entry]:
    """Best first: the completed jobs with the objective, by it; then the other completed ones;
    then the rest (failed, stopped, not run), in launch order."""
    from fahr_core.values import COMPLETED

    def key(pair):
        i, e = pair
        if e.status == COMPLETED and e.value is not None and objective is not None:
            return (0, e.value if objective.goal == "min" else -e.value, i)
        return (1 if e.status == COMPLETED else 2, 0.0, i)

    return [e for _, e in sorted(enumerate(entries), key=key)]


def best(entries: list[Entry], objective) -> Entry | None:
    from fahr_core.values import COMPLETED

    if objective is None:
        return None
    top = ranked(entries, objective)
    return top[0] if top and top[0].status == COMPLETED and top[0].value is not None else None


# -- what the user sees while it runs --------------------------------------------------------------

def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class Display:
    """The live table on a terminal (rich, on stderr, redrawn in place); elsewhere a line per
    job whose status changed; nothing when fahr's lines were muted (``quiet``)."""

    def __init__(self, names: list[str], objective, muted: bool):
        from fahr_core import ui

        self.names, self.objective, self.muted = names, objective, muted
        self.live = None
        self.said: dict[int, str] = {}
        self.last = 0.0
        if not muted and ui.console().is_terminal:
            from rich.live import Live

            self.live = Live(console=ui.console(), auto_refresh=False, transient=False,
                             redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> "Display":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def table(self, entries: list[Entry]):
        from rich.table import Table
        from rich.text import Text

        from fahr_core import ui

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("JOB", *self.names, "STATUS", "ELAPSED", str(self.objective or "OBJECTIVE")):
            table.add_column(ui.visible(column), no_wrap=column != "STATUS")
        for entry in entries:
            name = entry.handle.job_name if entry.handle is not None else "-"
            status = entry.status + (f": {entry.failure}" if entry.failure else "")
            cells = (name, *(entry.point.get(n, "-") for n in self.names), status, _elapsed(entry.elapsed),
                     _value(entry.value))
            table.add_row(*(Text(ui.visible(cell)) for cell in cells))
        return table

    def show(self, entries: list[Entry]) -> None:
        if self.muted:
            return
        if self.live is not None:
            now = time.monotonic()
            if now - self.last >= 0.25 or all(e.status not in ("Pending", "Launching", "InProgress") for e in entries):
                self.last = now
                self.live.update(self.table(entries), refresh=True)
            return
        from fahr_core import ui

        for i, entry in enumerate(entries):
            if entry.status in ("Pending", "Launching") or self.said.get(i) == entry.status:
                continue
            self.said[i] = entry.status
            name = entry.handle.job_name if entry.handle is not None else "a job"
            point = " ".join(f"{k}={v}" for k, v in entry.point.items())
            line = f"{name} ({point}): {entry.status}"
            if entry.status != "InProgress":
                line += f" in {_elapsed(entry.elapsed)}"
            if entry.value is not None and entry.status != "InProgress":
                line += f", {self.objective.metric}={_value(entry.value)}"
            if entry.failure:
                line += f": {entry.failure}"
            ui.progress(line)


# -- the Python API's value ------------------------------------------------------------------------

class Sweep:
    """A sweep: its ``id``, its ``jobs`` (one per launched point, in the space's order),
    ``wait()``, ``best`` (the completed job with the best objective, None without an objective or
    such a job) and ``leaderboard()`` (best first). :func:`fahr_core.sweep` returns it."""

    def __init__(self, sweep_id: str, session, entries: list[Entry], objective, parallel: int, quieted=None,
                 retry: int = 0):
        import contextlib

        self.id = sweep_id
        self.objective = objective
        self._session, self._entries, self._parallel, self._retry = session, entries, parallel, retry
        self._quieted = quieted or contextlib.nullcontext  # the context its calls run in (the API's quiet)
        self.read_back = None  # (api) a job's record and stored points, for the trackers at its end
        self.notify = ""  # (api) the URL told of each job's end, unless its driver tells it

    def __repr__(self) -> str:
        return f"Sweep({self.id!r}, jobs={len(self.jobs)}, objective={str(self.objective) if self.objective else None!r})"

    @property
    def driver(self) -> str:
        return self._session.driver

    @property
    def points(self) -> list[dict[str, str]]:
        """Each point's swept hyperparameters, in the space's order."""
        return [dict(e.point) for e in self._entries]

    @property
    def jobs(self) -> list:
        """The :class:`fahr_core.Job` of each launched point, in the space's order."""
        return [e.job for e in self._entries if e.job is not None]

    @property
    def done(self) -> bool:
        return all(e.status not in ("Pending", "Launching", "InProgress") for e in self._entries)

    def wait(self) -> "Sweep":
        """Follow the sweep's running jobs to their end (the table as ``fahr sweep`` shows it,
        unless the sweep was made ``quiet``)."""
        with self._quieted():
            follow(self, launch=None)
        return self

    @property
    def best(self):
        top = best(self._entries, self.objective)
        return None if top is None else top.job

    def leaderboard(self) -> list[dict]:
        """One row per point, best first (docs/sweeps.md): ``rank`` (1… for the completed jobs
        ranked by the objective, None for the others), ``job``, ``status``, ``hyperparameters``,
        ``objective`` (its last value or None), ``final_metrics``, ``failure``, ``seconds``."""
        rows = []
        rank = 0
        for entry in ranked(self._entries, self.objective):
            ranked_here = entry.value is not None and entry.status == "Completed" and self.objective is not None
            rank += ranked_here
            rows.append({"rank": rank if ranked_here else None,
                         "job": entry.handle.job_name if entry.handle is not None else None,
                         "status": entry.status, "hyperparameters": dict(entry.point), "objective": entry.value,
                         "final_metrics": dict(entry.finals), "failure": entry.failure,
                         "seconds": None if entry.elapsed is None else round(entry.elapsed, 3)})
        return rows


def follow(sweep: Sweep, launch) -> None:
    """Launch the sweep's pending points (with ``launch``; None: launch nothing) and follow its
    jobs to their end, the table shown; Ctrl-C stops them on ``local``, else leaves them running
    and says how to stop them all (then the interrupt goes on)."""
    from fahr_core import ui

    session = sweep._session
    entries = sweep._entries
    names = list(dict.fromkeys(k for e in entries for k in e.point))
    display = Display(names, sweep.objective, muted=ui.muted())
    if launch is None:
        for entry in entries:  # nothing is launched by a later wait: the points not launched stay so
            if entry.status == "Pending":
                entry.status = "NotLaunched"
    runner = Runner(session, launch, entries, sweep._parallel, sweep.objective, display.show, retry=sweep._retry)
    runner.read_back = sweep.read_back
    runner.notify = sweep.notify
    try:
        with display, ui.quiet():  # the drivers' own lines (launching, status) are the table's now
            runner.run()
    except KeyboardInterrupt:
        # Said even under quiet (as an error is): what became of the jobs, and the one command.
        if stops_on_interrupt(session.driver):
            ui.progress(f"sweep {sweep.id} interrupted: its running jobs were stopped; "
                        f"launch what is missing with 'fahr sweep --resume {sweep.id}'")
        else:
            ui.progress(f"sweep {sweep.id} detached: its jobs run on; stop them all with: fahr stop --sweep {sweep.id}")
            ui.progress(f"or follow them, launching what is missing, with: fahr sweep --resume {sweep.id}")
        raise


#: The configuration keys that name where a job's checkpoints are kept (``checkpoint_path`` of
#: ``local``, ``checkpoint_s3_uri`` of ``sagemaker``, and any driver's key so named).
CHECKPOINT_KEYS = "checkpoint_"


def point_session(session, sweep_id: str, index: int):
    """The session a point of a sweep is launched in: the sweep's, with every checkpoint location
    set given a sub-folder ``SWEEP_ID/N`` of its own (N: the point's place in the sweep), so that
    jobs of other points never share (nor resume from) each other's checkpoints, and the point's
    job relaunched by ``--resume`` finds its own (docs/sweeps.md)."""
    import dataclasses

    from fahr_core import tracking
    from fahr_core.values import Config

    values = dict(session.config)
    changed = {key: f"{str(value).rstrip('/')}/{sweep_id}/{index}" for key, value in values.items()
               if key.startswith(CHECKPOINT_KEYS) and isinstance(value, str) and value.strip()}
    if not changed:
        return session
    config = Config(session.config.driver, {**values, **changed}, session.config.sources)
    derived = dataclasses.replace(session, config=config)
    derived._trackers = tracking.of(session)  # one set of trackers for the sweep's jobs
    return derived


def launch_all(sweep: Sweep, launch) -> None:
    """``--detach``: every pending point launched now, none followed; a launch refused is said."""
    from fahr_core import ui
    from fahr_core.errors import FahrError

    for i, entry in enumerate(sweep._entries):
        if entry.status != "Pending":
            continue
        try:
            entry.job, entry.handle = launch(entry.point, i)
        except FahrError as exc:
            entry.status, entry.failure = "Failed", ui.one_line(exc.message)
            ui.warn(f"a job of sweep {sweep.id} could not be launched: {entry.failure}")
            continue
        entry.status, entry.started, entry.launched = "InProgress", time.time(), True


def session_of(sweep_id: str, driver: str | None, config: dict):
    """Where a sweep's jobs are: ``(driver, config, project folder or None)`` as its record on
    this machine says (so ``fahr jobs|stop --sweep ID`` need no more, from any folder: the
    project's fahr.toml is read as the sweep read it), unless a driver or configuration is given."""
    searchspace.validate_id(sweep_id)
    if driver is None and not config:
        try:
            record = Record.load(sweep_id)
        except UsageError:
            return None, config, None
        return record.driver, dict(record.config), Path(record.artifact).parent
    return driver, config, None
