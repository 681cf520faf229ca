"""Telling experiment trackers about a job: the hooks ``job_started``, ``job_metrics``,
``job_ended`` (docs/trackers.md).

A tracker is any plugin (an extension plugin, group ``fahr.plugins``, such as ``fahr-mlflow``)
that implements one of them. The process that follows a job tells them:

- the one that launched it and follows it from the launch (``fahr fit``, a sweep): the start at
  the launch, its metrics in batches as its streamed output is read, its end;
- any other (``fahr wait JOB``, ``Job.wait()`` of a job launched with ``wait=False``): the start
  again, then at the job's end its stored metrics read back whole (``whole=True``), then the end.
  A tracker finds its record of the job by the job's name, so that nothing is recorded twice.

A tracker that raises never breaks or fails the job: one ``fahr warning`` line names the plugin
and what failed, and that tracker hears nothing more of the job in this process (a tracker that
cannot reach its server would otherwise slow every batch). Each tracker is called in a thread of
its own, from a bounded queue: one that is slow or hangs neither slows the job's output (whose
streaming thread only queues) nor holds fahr: the end of a job waits for it at most
:data:`END_SECONDS` (``FAHR_TRACKER_TIMEOUT``), and one that falls :data:`QUEUED_CALLS` calls
behind is dropped for the job (memory stays bounded). Without trackers nothing here runs: no
metrics are read back and no output is parsed twice.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from typing import Any

#: The tracker hooks: a plugin implementing any of them is a tracker.
HOOKS = ("job_started", "job_metrics", "job_ended")
#: Points handed over at once at most, and how long points are held before they are: a chatty
#: job makes a call a second, not one a line.
BATCH_POINTS = 1000
BATCH_SECONDS = 1.0
#: How long fahr waits, at a job's end (or at ``--detach``), for its trackers to finish what they
#: were told, unless ``FAHR_TRACKER_TIMEOUT`` (seconds) says otherwise: a tracker that hangs
#: (a server that never answers) must not hold a fit for ever.
END_SECONDS = 30.0
#: The calls a tracker may be behind (at most BATCH_POINTS points each): one slower than the
#: job's output is dropped for the job rather than holding its points in memory without end.
QUEUED_CALLS = 64
#: A tracker's thread ends after this long without a call (the next call starts another).
IDLE_SECONDS = 60.0


def end_seconds() -> float:
    """:data:`END_SECONDS`, or ``FAHR_TRACKER_TIMEOUT`` when it is a number of seconds (read at
    a job's end, when refusing it would fail a job that ran: a bad value is one warning)."""
    raw = os.environ.get("FAHR_TRACKER_TIMEOUT", "").strip()
    if raw:
        try:
            seconds = float(raw)
            if 0 <= seconds < float("inf"):
                return seconds
        except ValueError:
            pass
        from fahr_core import ui

        ui.warn(f"FAHR_TRACKER_TIMEOUT={raw!r} is not a number of seconds; the default of "
                f"{END_SECONDS:g} is used")
    return END_SECONDS


class _Worker:
    """The thread one tracker is called in, and its bounded queue of calls."""

    def __init__(self, trackers: "Trackers", key: int):
        self.trackers, self.key = trackers, key
        self.calls: queue.Queue = queue.Queue(QUEUED_CALLS)
        self.thread = threading.Thread(target=self._run, name=f"fahr-tracker-{trackers._names[key]}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                call = self.calls.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self.trackers._lock:  # (calls are queued under it: none is lost)
                    if self.calls.empty():
                        # Idle: a long-lived process (a notebook's fits) keeps no thread per fit.
                        self.trackers._workers.pop(self.key, None)
                        return
                continue
            if isinstance(call, threading.Event):
                call.set()  # every call queued before it is done
            else:
                self.trackers._call(self.key, *call)


class Trackers:
    """The trackers of one session, each told through its own hook caller, so that one that
    raises neither stops the others nor the job."""

    def __init__(self, session):
        self.session = session
        pm = session.pm
        plugins = {impl.plugin for hook in HOOKS for impl in getattr(pm.hook, hook).get_hookimpls()}
        self._names = {id(plugin): pm.get_name(plugin) or repr(plugin) for plugin in plugins}
        self._callers = {
            id(plugin): {hook: pm.subset_hook_caller(hook, [p for p in pm.get_plugins() if p is not plugin])
                         for hook in HOOKS}
            for plugin in plugins
        }
        self._failed: dict[str, set[int]] = {}  # job name -> the trackers that raised for it
        self._lock = threading.Lock()
        self._workers: dict[int, _Worker] = {}  # made at a tracker's first call
        self._stuck: set[int] = set()  # the trackers that did not finish in time: not waited for again
        self.launched: dict[str, Any] = {}  # job name -> TrackedJob, of the jobs this session launched
        self.unstreamed: set[str] = set()  # jobs followed while another was: told whole at their end

    def __bool__(self) -> bool:
        return bool(self._callers)

    def tell(self, hook: str, job, **kwargs: Any) -> None:
        """Queue ``hook`` for every tracker still listening about ``job`` (a TrackedJob): each is
        called in its own thread (:class:`_Worker`); :meth:`finish` waits for them."""
        for key in self._callers:
            if self._dropped(key, job):
                continue
            try:
                self._queue(key, (hook, job, kwargs))
            except queue.Full:
                self._drop(key, job, f"is {QUEUED_CALLS} calls behind the output of job {job.job_name}")

    def _queue(self, key: int, call) -> _Worker:
        """``call`` queued for tracker ``key`` (its thread started when it has none); raises
        queue.Full when it is :data:`QUEUED_CALLS` calls behind."""
        with self._lock:
            worker = self._workers.get(key)
            if worker is None:
                worker = self._workers[key] = _Worker(self, key)
            worker.calls.put_nowait(call)
            return worker

    def finish(self, job) -> None:
        """Wait until every tracker has done what it was told of ``job``, at most
        :func:`end_seconds` for all of them; one still busy then is dropped for the job (its
        thread is a daemon: it does not keep fahr from exiting)."""
        seconds = end_seconds()
        deadline = time.monotonic() + seconds
        with self._lock:
            keys = list(self._workers)
        asked = {}  # every tracker is asked first, so that they finish side by side
        for key in keys:
            if key in self._stuck:  # it already kept a job waiting in vain
                self._drop(key, job, f"is still busy with an earlier job; job {job.job_name} is not recorded")
            if self._dropped(key, job):
                continue
            asked[key] = threading.Event()
            try:
                self._queue(key, asked[key])
            except queue.Full:  # busy: its thread goes on, and takes it when there is room
                with contextlib.suppress(queue.Full):
                    self._workers[key].calls.put(asked[key], timeout=max(0.0, deadline - time.monotonic()))
        for key, done in asked.items():
            if not done.wait(max(0.0, deadline - time.monotonic())):
                self._stuck.add(key)
                self._drop(key, job, f"did not finish recording job {job.job_name} within "
                                     f"{seconds:g} s (FAHR_TRACKER_TIMEOUT) and is not waited for")

    def _dropped(self, key: int, job) -> bool:
        with self._lock:
            return key in self._failed.get(job.job_name, ())

    def _drop(self, key: int, job, what: str) -> None:
        """The tracker ``key`` hears nothing more of ``job`` in this process: one warning line."""
        from fahr_core import ui

        with self._lock:  # held while it is said: finish() does not return before the warning is out
            if key in self._failed.get(job.job_name, ()):
                return
            self._failed.setdefault(job.job_name, set()).add(key)
            name = self._names[key].replace(":", " ", 1)
            ui.warn(f"{name} {what}; the job goes on, untracked by it "
                    f"('fahr wait {job.job_name}' tells it again once that is fixed)")

    def _call(self, key: int, hook: str, job, kwargs: dict) -> None:
        """In the tracker's thread: ``hook`` of tracker ``key``; its exception is one warning."""
        from fahr_core import ui

        if self._dropped(key, job):
            return
        try:
            self._callers[key][hook](job=job, config=self.session.config, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - a tracker's failure is never the job's (its sys.exit too:
            # it would end this thread, and the job's end would wait for it in vain)
            what = {"job_started": "recording the start of", "job_metrics": "recording the metrics of",
                    "job_ended": "recording the end of"}[hook]
            self._drop(key, job, f"failed {what} job {job.job_name}: {type(exc).__name__}: "
                                 f"{ui.one_line(str(exc))[:300]}")


def of(session) -> Trackers:
    """The session's trackers (made once per session; falsy when no plugin is one)."""
    trackers = getattr(session, "_trackers", None)
    if trackers is None:
        trackers = session._trackers = Trackers(session)
    return trackers


def tracked_job(*, job_name: str, model_tag: str, driver: str, source) -> Any:
    """The TrackedJob of a job, from its JobSpec (at launch) or its JobInfo (a later process)."""
    from fahr_core.values import TrackedJob

    # At launch an ImageRef; a later process has no image unless the driver's JobInfo names one.
    image = getattr(source, "image", None) or ""
    reference = image if isinstance(image, str) else image.reference
    digest = "" if isinstance(image, str) else (image.digest or image.image_id)
    return TrackedJob(job_name=job_name, model_tag=model_tag, driver=driver,
                      hyperparameters=dict(getattr(source, "hyperparameters", None) or {}),
                      image=reference, image_digest=digest,
                      project=getattr(source, "project", "") or "", git_commit=getattr(source, "git_commit", "") or "",
                      sweep=getattr(source, "sweep", "") or "",
                      metric_definitions=tuple(getattr(source, "metric_definitions", None) or ()),
                      created=getattr(source, "created", None) or time.time())


def launched(session, spec, handle) -> None:
    """A job this session launched: its trackers are told its start, and its follower (if this
    session follows it) tells the rest (:func:`following`)."""
    trackers = of(session)
    if not trackers:
        return
    job = tracked_job(job_name=handle.job_name, model_tag=handle.model_tag or spec.model_tag,
                      driver=handle.driver or session.driver, source=spec)
    trackers.launched[handle.job_name] = job
    trackers.tell("job_started", job)


def detached(session, handle) -> None:
    """A job launched to run on: whoever follows it later tells its metrics, whole, and its end.
    Its start, told at the launch, is waited for (this process is about to exit)."""
    trackers = of(session)
    job = trackers.launched.pop(handle.job_name, None)
    if job is not None:
        trackers.finish(job)


class _Batches:
    """The points of a streamed output, handed to the trackers in batches (:data:`BATCH_POINTS`,
    :data:`BATCH_SECONDS`). Fed from the driver's streaming threads (a thread per host)."""

    def __init__(self, trackers: Trackers, job, clock=time.monotonic):
        from fahr_core import metrics

        self.trackers, self.job, self.clock = trackers, job, clock
        self._held: list = []
        self._since = clock()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.shared = False  # another job's output streams here too: nothing more is told live
        defined = [metrics.Definition(name, regex) for name, regex in job.metric_definitions]
        self.recorder = metrics.Recorder(metrics.Parser(defined), self._points)

    def output(self, data: bytes, host: str | None) -> None:
        with self._lock:
            if not self.shared:
                self.recorder.feed(host or "algo-1", data)

    def _points(self, points: list) -> None:  # (the caller holds _lock)
        self._held.extend(points)
        if len(self._held) >= BATCH_POINTS or self.clock() - self._since >= BATCH_SECONDS:
            self._send()
        elif self._timer is None:  # a job that goes quiet: its last points still go within the second
            self._timer = threading.Timer(BATCH_SECONDS, self._later)
            self._timer.daemon = True
            self._timer.start()

    def _later(self) -> None:
        with self._lock:
            self._timer = None
            self._send()

    def _send(self) -> None:  # (the caller holds _lock)
        while self._held:
            batch, self._held = self._held[:BATCH_POINTS], self._held[BATCH_POINTS:]
            self.trackers.tell("job_metrics", self.job, points=tuple(batch), whole=False)
        self._since = self.clock()

    def end(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.recorder.end()
            self._send()


def following(session, handle):
    """A context to follow ``handle`` in: the trackers hear the metrics of its streamed output
    when this session launched the job; yields the TrackedJob (or None: nothing to tell live)."""
    import contextlib

    from fahr_core import ui

    trackers = of(session)
    job = trackers.launched.get(handle.job_name) if trackers else None
    if job is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def tapped():
        batches = _Batches(trackers, job)
        with _streaming_lock:
            _streaming.add(batches)
            if len(_streaming) > 1:
                # The streamed output does not say whose it is: with several jobs followed at once
                # in one process (a sweep), none is told live; each is read back whole at its end.
                for each in _streaming:
                    each.shared = True
        try:
            with ui.tapping(batches.output):
                try:
                    yield job
                finally:
                    batches.end()
        finally:
            with _streaming_lock:
                _streaming.discard(batches)
            if batches.shared:
                trackers.unstreamed.add(job.job_name)
    return tapped()


_streaming: set = set()  # the _Batches of the jobs followed now, in this process
_streaming_lock = threading.Lock()


def ended(session, result, job=None, read_back=None) -> None:
    """The job of ``result`` has ended: a job this session followed from its launch (``job``)
    is told its end; any other is told its start, its stored metrics read back whole, then its
    end. ``read_back(handle)`` answers ``(info, points)``: the job's JobInfo (or None) and a
    callable reading its points (the API's ``Job.metrics``); called only when there are trackers."""
    trackers = of(session)
    if not trackers:
        return
    if job is None:
        job = trackers.launched.pop(result.job.job_name, None)
    else:
        trackers.launched.pop(job.job_name, None)
    if job is None:
        job = _told_late(session, trackers, result, read_back)
    elif job.job_name in trackers.unstreamed:
        trackers.unstreamed.discard(job.job_name)
        _tell_whole(trackers, job, read_back)
    trackers.tell("job_ended", job, result=result)
    trackers.finish(job)


def _told_late(session, trackers: Trackers, result, read_back):
    """Start and whole metrics of a job this process did not launch (``fahr wait JOB``)."""
    from fahr_core import ui

    with ui.quiet():  # reading it back is no news of the job's
        info, points = read_back(result.job)
    job = tracked_job(job_name=result.job.job_name, model_tag=result.job.model_tag or getattr(info, "model_tag", ""),
                      driver=result.job.driver or session.driver, source=info)
    trackers.tell("job_started", job)
    _tell_whole(trackers, job, lambda handle: (info, points))
    return job


def _tell_whole(trackers: Trackers, job, read_back) -> None:
    """The job's whole series, read back, told with ``whole=True``."""
    from fahr_core import ui
    from fahr_core.values import JobHandle

    try:
        with ui.quiet():
            _, points = read_back(JobHandle(driver=job.driver, job_name=job.job_name, model_tag=job.model_tag))
            read = list(points(job.metric_definitions))
    except Exception as exc:  # noqa: BLE001 - the job's end is still told
        ui.warn(f"the metrics of job {job.job_name} could not be read for its trackers: "
                f"{type(exc).__name__}: {ui.one_line(str(exc))[:200]}")
        read = []
    trackers.tell("job_metrics", job, points=tuple(read), whole=True)
