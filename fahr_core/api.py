"""fahr's Python API: train, list, follow and fetch jobs from Python (a notebook, a script).

The CLI runs on these functions too, so a job launched here is the job ``fahr jobs`` lists. Every
call takes the driver (``driver=``, default as the CLI's: ``FAHR_DRIVER``, ``fahr.toml``, else
``local``) and a ``config`` dict of driver keys, layered exactly as ``--config.KEY=VALUE`` (over
``fahr.toml`` and ``FAHR_<DRIVER>_<KEY>``). Errors are :class:`fahr_core.FahrError` subclasses,
never ``SystemExit``; an argument of the wrong type is a :class:`fahr_core.UsageError` naming it
and the type expected, and ``None`` in a dict argument means "not set". Status lines and job logs
go to the terminal as in the CLI; ``quiet=True`` (or ``with fahr_core.ui.quiet():``) silences
them, ``quiet="status"`` fahr's status lines only (the job's output still streams: the CLI's
``--quiet``). Times are timezone-aware UTC datetimes.

This module is fahr's only orchestration layer: each call opens one
:class:`fahr_core.session.Session` and walks its steps through it (docs/architecture.md). A
:class:`Job` keeps the session it came from, so a job of a project whose ``fahr.toml`` sets
``output_path`` is followed, stopped and fetched from any folder. ``drivers``, ``settings`` and
``templates`` answer the CLI's listing commands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from fahr_core import arguments as check
from fahr_core.errors import PluginError, UsageError

__all__ = ["Job", "fit", "sweep", "jobs", "job", "fetch", "compare", "drivers", "settings", "templates"]


def _time(seconds: float | None) -> datetime | None:
    """A driver's epoch seconds as a UTC datetime; None when unknown or beyond what a datetime
    holds (a driver's bad value must not break the listing of every job)."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _quiet(quiet: bool | str):
    """True: fahr's lines and the job's output muted; "status": fahr's own lines only."""
    from fahr_core import ui

    return ui.quiet(job_output=quiet is True) if quiet else contextlib.nullcontext()


def _open(driver: str | None, config: Mapping[str, Any], command: str | None = None, project_dir: Path | None = None):
    """The session of a command about jobs that exist: the current folder is the project, unless
    the job's own session is being opened again."""
    from fahr_core.session import open_session

    session = open_session(driver, project_dir or Path.cwd(), config, check_required=False)
    if command:
        session.require(command)
    return session


class Job:
    """One training job of a driver.

    Attributes: ``name``, ``model_tag``, ``driver``, ``status`` (``InProgress``, ``Completed``,
    ``Failed``, ``Stopping``, ``Stopped``), ``secondary_status``, ``failure_reason``, ``failure_kind``
    (why it did not complete: ``user``, ``out_of_memory``, ``timeout``, ``interrupted``,
    ``capacity``, ``platform``; '' while it runs or once it completed), ``attempt_of`` (the first job
    of a fit retried, ``fit(retry=N)``; '' for a first attempt),
    ``warm_pool`` (a :class:`fahr_core.WarmPool`: the warm pool the job started on or left
    waiting, billed, for the next; None from a driver without pools),
    ``created``/``started``/``ended`` (timezone-aware UTC datetimes, None when unknown),
    ``training_seconds``/``billable_seconds`` (float or None), ``model_artifact`` (a path or URI,
    '' until it completed), ``project`` (the folder its image was built from) and ``git_commit``
    (its git commit then, ``-dirty`` when it had changes; '' when not recorded),
    ``hyperparameters`` (as the job was given them, strings). They are as last read:
    :meth:`refresh` reads them again. :attr:`metrics` and :attr:`final_metrics` are read from the
    driver each time they are asked for (docs/metrics.md).

    A job made here by name opens its driver's session (in the current folder, with ``config``)
    when first used; one that ``fit``, ``jobs`` or ``job`` returned keeps theirs.
    """

    def __init__(self, name: str, *, driver: str | None = None, model_tag: str = "", config: Mapping[str, Any] | None = None,
                 quiet: bool | str = False):
        self.name = check.text(name, "Job(): name", "a job's name (str)", optional=False)
        self.driver = check.text(driver, "Job(): driver", "a driver's name (str) or None")
        self.model_tag = check.text(model_tag, "Job(): model_tag", "a model tag (str)") or ""
        self.status = ""
        self.secondary_status = ""
        self.failure_reason = ""
        self.failure_kind = ""
        self.attempt_of = ""
        self.warm_pool = None  # a fahr_core.WarmPool, from a driver with warm pools (plugin API 1.6)
        self.created: datetime | None = None
        self.started: datetime | None = None
        self.ended: datetime | None = None
        self.training_seconds: float | None = None
        self.billable_seconds: float | None = None
        self.price = None  # what it is billed by the hour (fahr_core.Price), when the driver says
        self.model_artifact = ""
        self.project = ""
        self.git_commit = ""
        self.hyperparameters: dict[str, str] = {}
        self._metric_definitions: tuple | None = None  # (name, regex) pairs; None: not read yet
        self._finals: dict | None = None  # final_metrics as a listing read them (final_metrics_of)
        self._config = check.config(config, "Job(): config")
        self._quiet = check.quiet(quiet, "Job(): quiet")
        self._session = None  # opened on first use, or the session this job came from
        self._project_dir: Path | None = None  # that session's project folder (None: the current one)
        self._handle = None  # the driver's handle when this process launched the job
        self._artifact: Path | None = None  # what its image was built from, when this process built it

    def __repr__(self) -> str:
        return f"Job({self.name!r}, model_tag={self.model_tag!r}, driver={self.driver!r}, status={self.status!r})"

    @classmethod
    def _of(cls, session, name: str, model_tag: str = "", quiet: bool = False) -> "Job":
        job = cls(name, driver=session.driver, model_tag=model_tag, quiet=quiet)
        job._session, job._project_dir, job._config = session, session.project_dir, dict(session.overrides)
        return job

    def __getstate__(self) -> dict:
        # A session holds the loaded plugins, which do not pickle: an unpickled job opens its
        # session again, with the same project folder, driver and overrides.
        return {**self.__dict__, "_session": None}

    @classmethod
    def _from_info(cls, session, info, quiet: bool = False) -> "Job":
        job = cls._of(session, info.job_name, info.model_tag, quiet)
        job.driver = info.driver or job.driver
        job._update(info)
        return job

    def _opened(self, command: str | None = None):
        """This job's session, checked to hold what ``command`` needs."""
        from fahr_core import names

        names.validate_job_name(self.name)
        if self._session is None:
            self._session = _open(self.driver, self._config, project_dir=self._project_dir)
        if command:
            self._session.require(command)
        return self._session

    def _handle_for(self, session):
        """The handle to give the driver: the launch's own, else one rebuilt from the name alone
        (the driver's wait fills in the model tag: hookspec ``wait``)."""
        from fahr_core.values import JobHandle

        return self._handle or JobHandle(driver=session.driver, job_name=self.name, model_tag="")

    def _update(self, info) -> None:
        self.model_tag = info.model_tag or self.model_tag
        self.status = info.status
        self.secondary_status = info.secondary_status
        self.failure_reason = info.failure_reason
        self.failure_kind = getattr(info, "failure_kind", "")  # plugin API 1.6
        self.warm_pool = getattr(info, "warm_pool", None)  # plugin API 1.6
        self.attempt_of = getattr(info, "attempt_of", "") or self.attempt_of
        self.created, self.started, self.ended = _time(info.created), _time(info.started), _time(info.ended)
        self.training_seconds, self.billable_seconds = info.training_seconds, info.billable_seconds
        self.price = getattr(info, "price", None) or self.price  # plugin API 1.6
        self.model_artifact = info.model_artifact
        # Fields of plugin API 1.4: a driver's JobInfo of before may lack them.
        self.project = getattr(info, "project", "") or self.project
        self.git_commit = getattr(info, "git_commit", "") or self.git_commit
        # Fields of plugin API 1.5.
        self.hyperparameters = dict(getattr(info, "hyperparameters", None) or self.hyperparameters)
        self._metric_definitions = tuple(getattr(info, "metric_definitions", None) or ())

    def _from_result(self, result) -> None:
        self.model_tag = result.job.model_tag or self.model_tag
        self.driver = result.job.driver or self.driver
        self.status = result.status
        self.failure_reason = result.failure_reason
        self.failure_kind = getattr(result, "failure_kind", "")  # plugin API 1.6
        self.warm_pool = getattr(result, "warm_pool", None) or self.warm_pool  # plugin API 1.6
        self.model_artifact = result.model_artifact
        self.training_seconds, self.billable_seconds = result.training_seconds, result.billable_seconds
        self.price = getattr(result, "price", None) or self.price  # plugin API 1.6

    @property
    def cost(self) -> float | None:
        """What the job cost in dollars, as last read: its billable seconds at the price its driver
        reports (``fahr jobs --cost``), and the seconds its warm pool waited, billed alike
        (docs/sagemaker.md, "Warm pools"); 0.0 on a driver that costs nothing; None when unknown."""
        if self.price is None:
            return None
        if self.price.per_hour == 0:
            return 0.0
        pooled = self.warm_pool.billable_seconds if self.warm_pool is not None else None
        if self.billable_seconds is None or not pooled:
            return self.price.cost(self.billable_seconds)
        return self.price.cost(self.billable_seconds + pooled)

    @property
    def done(self) -> bool:
        """Whether the job has ended (as last read)."""
        from fahr_core.values import FINAL_STATES

        return self.status in FINAL_STATES

    def refresh(self) -> "Job":
        """Read the job's state again from its driver (needs the driver's ``list_jobs``)."""
        self._update(_find(self._opened(), self.name, self.model_tag or None))
        return self

    def wait(self) -> "Job":
        """Follow the job to its end, streaming its logs; raise :class:`JobFailed` unless it
        completed (its ``.job`` is this job, its status and failure reason up to date)."""
        session = self._opened("wait")
        with _quiet(self._quiet), self._failing():
            result = _follow(session, self._handle_for(session), self._artifact)
        self._from_result(result)
        self._try_refresh()
        return self

    @contextlib.contextmanager
    def _failing(self):
        """A context in which a :class:`JobFailed` leaves this job as it ended, and carries it."""
        from fahr_core.errors import JobFailed

        try:
            yield
        except JobFailed as exc:
            if exc.result is not None:
                self._from_result(exc.result)
            self._try_refresh()
            exc.job = self
            raise

    def _try_refresh(self) -> None:
        """Fill in the times where the driver can list jobs; the fields already known stay otherwise."""
        from fahr_core import ui
        from fahr_core.errors import FahrError

        try:
            with ui.quiet():  # a listing's warnings (another job's bad record) are not this job's news
                self.refresh()
        except FahrError:
            pass  # a driver without list_jobs, or one that does not list the job yet
        except Exception:  # noqa: BLE001
            # The job's own work is done and reported: a listing that breaks (a driver's bug) must
            # not turn a completed fit into an internal error. `fahr jobs` shows that bug instead.
            pass

    def stop(self) -> bool:
        """Ask the driver to stop the job; False when it had already ended. ``status`` is then
        as the driver reports it (``Stopping``, ``Stopped``, or how it had ended); where the driver
        cannot list its jobs, ``Stopping`` after a stop it accepted."""
        from fahr_core.values import FINAL_STATES, STOPPING

        session = self._opened("stop")
        with _quiet(self._quiet):
            stopped = bool(session.call("stop", job=self._handle_for(session)))
        if stopped and self.status not in FINAL_STATES:
            self.status = STOPPING  # asked to stop; the listing below says whether it has
        self._try_refresh()
        return stopped

    def logs(self, follow: bool = False, host: str | None = None) -> Iterator[str]:
        """The job's output lines (str, without newline), from the start.

        With ``follow``, lines come as the job prints them, until it ends. A job of several hosts
        has each line prefixed ``[algo-N] ``; ``host="algo-2"`` gives one host's lines, unprefixed.
        A line comes whole, however long; bytes that are not UTF-8 come as U+FFFD.
        """
        from fahr_core import output

        check.flag(follow, "Job.logs(): follow")  # checked now, not when the lines are first read
        check.text(host, "Job.logs(): host", "a host's name (str, e.g. 'algo-2') or None")
        return output.whole_lines(self._output(follow, host))

    def _output(self, follow: bool, host: str | None) -> Iterator[tuple[str, bool]]:
        """The job's output as it is to be printed, in bounded pieces ``(text, ends)``: ``ends``
        when the text ends a line (the newline is not in it). ``fahr logs`` prints these."""
        from fahr_core import output
        from fahr_core.values import JobHandle

        session = self._opened()
        handle = JobHandle(driver=session.driver, job_name=self.name, model_tag=self.model_tag)
        yield from output.pieces(session.call("logs", job=handle, follow=follow), follow, host)

    @property
    def metrics(self) -> dict[str, list]:
        """The job's metrics so far: name -> its series of :class:`fahr_core.MetricPoint` (value,
        step, time, host), in time order; read from the driver each time (docs/metrics.md)."""
        from fahr_core import metrics

        return metrics.series(self._points())

    @property
    def final_metrics(self) -> dict[str, float]:
        """Each metric's last value (of :attr:`metrics`)."""
        from fahr_core import metrics

        return metrics.final(self.metrics)

    def _points(self) -> list:
        """The driver's stored points (hook ``metrics``), else the job's logs parsed here with the
        convention and its definitions, so that every driver with ``logs`` has metrics."""
        from fahr_core import metrics
        from fahr_core.values import JobHandle

        session = self._opened()
        handle = JobHandle(driver=session.driver, job_name=self.name, model_tag=self.model_tag)
        stored = session.ask("metrics", job=handle)
        if stored is not None:
            return list(stored)
        if self._metric_definitions is None:
            self._try_refresh()
        defined = [metrics.Definition(name, regex) for name, regex in self._metric_definitions or ()]
        return metrics.from_logs(session.call("logs", job=handle, follow=False), defined)

    def fetch(self, target: str | Path, *, extract: bool = True, overwrite: bool = False, output: bool = False) -> Path:
        """Bring this job's model into ``target`` (a new or empty folder); returns where it is.
        ``output``: bring its output.tar.gz instead (``/opt/ml/output/data``: other outputs, a
        notebook's executed copy), also of a job that failed or was stopped."""
        target = check.path(target, "Job.fetch(): target")
        for flag, value in (("extract", extract), ("overwrite", overwrite), ("output", output)):
            check.flag(value, f"Job.fetch(): {flag}")
        if not self.model_tag:
            self.refresh()
        with _quiet(self._quiet):
            _check_fetch(target, self.model_tag, self.name, extract, overwrite)
            return _fetch(self._opened("fetch"), target, self.model_tag, None, self.name, extract, overwrite,
                          output=output)


def _find(session, name: str, model_tag: str | None = None):
    from fahr_core import names
    from fahr_core.values import JobQuery

    names.validate_job_name(name)
    for info in session.call("list_jobs", query=JobQuery(model_tag=model_tag)):
        if info.job_name == name:
            return info
    raise UsageError(f"no job {name} on driver {session.driver!r}; see 'fahr jobs' for the jobs it has")


# -- fit: plan -> check -> build -> push -> launch -> follow -> fetch -------------------------------

def fit(artifact: str | Path, *, driver: str | None = None, config: Mapping[str, Any] | None = None,
        hyperparameters: Mapping[str, Any] | None = None, inputs: Mapping[str, str] | None = None,
        environment: Mapping[str, Any] | None = None, wait: bool = True, quiet: bool | str = False,
        fetch_to: str | Path | None = None, overwrite: bool = False, regenerate_dockerfile: bool = False,
        rebuild: bool = False, verbose: bool = False, secrets: Sequence[str] | None = None,
        metrics: Mapping[str, str] | None = None, retry: int = 0, notify: str | None = None) -> Job:
    """Build ``artifact`` into an image, launch a training job and (``wait``) follow it.

    ``artifact`` is a train.py, a notebook, or a container of your own: a folder holding a
    Dockerfile, or that Dockerfile, built as it is (its image must have a ``train`` program on
    ``PATH``; ``regenerate_dockerfile`` is refused for it). Its model tag comes from the folder:
    ``…/byoc/container`` -> ``byoc/container``. The artifact's folder is the project: its
    ``fahr.toml`` configures this job and every later call on the returned :class:`Job`.

    Returns the :class:`Job`: Completed when waited for, InProgress with ``wait=False``. A job
    that fails or is stopped raises :class:`JobFailed` (its message says why; ``fahr_core.jobs()``
    still lists it). Hyperparameter and environment values are passed as strings; a key whose value
    is None is left out (in ``config`` too: the key keeps its value from beneath). ``fetch_to``:
    once completed, extract the model there (``overwrite`` replaces a non-empty folder), as
    ``fahr fit --fetch``; ``regenerate_dockerfile`` writes the project's Dockerfile anew.
    The image is built only when something it is built from changed (its files, Dockerfile or
    base image) since the last build; ``rebuild`` builds it anyway, as ``fahr fit --rebuild``.
    A build shows a line per Dockerfile step; its whole output is printed when it fails, or as it
    comes with ``verbose`` (``fahr fit --verbose``).
    ``secrets``: names of variables of this process's environment the job's process gets, as
    ``fahr fit --secret NAME``: their values reach nothing else (README, "Secrets").
    ``metrics``: name -> regular expression with one capture group (``""``: the convention's
    metric of that name), as ``fahr fit --metric NAME=REGEX``, over fahr.toml's ``[metrics]``;
    lines ``fahr-metric NAME=VALUE … [step=N]`` need none (docs/metrics.md).
    ``retry``: launch again, at most that many times, a job that failed for a reason a retry can
    help with (``interrupted``, ``capacity``, ``platform``; never ``user``, ``out_of_memory`` or
    ``timeout``), as ``fahr fit --retry N``: each attempt a job of its own linked to the first
    (``attempt_of``), with the same configuration, so it resumes from the same checkpoints; the
    returned :class:`Job` is the last attempt.
    ``notify``: an http(s) URL POSTed a JSON summary of each job's end, as ``fahr fit --notify
    URL`` (None: ``notify`` of the project's fahr.toml; '': none; docs/notifications.md).
    """
    from fahr_core import interrupts, plan, report, tracking
    from fahr_core.session import open_session
    from fahr_core.values import IN_PROGRESS

    artifact = check.path(artifact, "fit(): artifact")
    driver = check.text(driver, "fit(): driver", check.DRIVER)
    config = check.config(config, "fit(): config")
    hyperparameters = check.strings(hyperparameters, "fit(): hyperparameters")
    inputs = check.strings(inputs, "fit(): inputs")
    environment = check.strings(environment, "fit(): environment")
    secrets = check.names(secrets, "fit(): secrets")
    metrics = check.strings(metrics, "fit(): metrics")
    fetch_to = None if fetch_to is None else check.path(fetch_to, "fit(): fetch_to")
    retry = check.count(retry, "fit(): retry")
    notify = check.text(notify, "fit(): notify", "an http(s) URL (str) or None")
    if retry and not wait:
        raise UsageError("--retry relaunches a job fahr follows to its end: it cannot be combined with --detach "
                         "(wait=False)")
    check.quiet(quiet, "fit(): quiet")
    for flag, value in (("wait", wait), ("overwrite", overwrite),
                        ("regenerate_dockerfile", regenerate_dockerfile), ("rebuild", rebuild),
                        ("verbose", verbose)):
        check.flag(value, f"fit(): {flag}")
    with _quiet(quiet):
        steps = plan.plan_fit(artifact, hyperparameters=hyperparameters, inputs=inputs, environment=environment,
                              wait=wait, fetch_to=fetch_to, overwrite=overwrite,
                              regenerate_dockerfile=regenerate_dockerfile, rebuild=rebuild, secrets=secrets,
                              metrics=metrics, notify=notify)
        session = open_session(driver, steps.project_dir, config, command="fit")
        plan.check_fit(steps, session)
        _priced(session)
        image = session.call("push_image", image=_build(session, steps, verbose))
        handle = _launch(session, steps, image)
        job = _launched(session, steps, handle, quiet)
        if not steps.wait:
            interrupts.followed(handle.job_name)  # launched to run on: an interrupt now leaves it running
            tracking.detached(session, handle)
            report.detached(handle, session)
            _detached_notify(steps, handle)
            job.status = IN_PROGRESS
        else:
            job, handle = _follow_retrying(session, steps, image, job, handle, retry, quiet)
            if steps.fetch_to is not None:
                # The target as it is now (a folder may have filled while the job trained).
                _check_fetch(steps.fetch_to, steps.model_tag, handle.job_name, True, steps.overwrite)
                _fetch(session, steps.fetch_to, steps.model_tag, session.location, handle.job_name, True,
                       steps.overwrite)
    job._try_refresh()
    return job


def _priced(session):
    """Say what the run will cost by the hour and at most (the driver's ``price``), and refuse it
    when that ceiling exceeds ``max_cost``: before the build, so a refusal costs nothing."""
    from fahr_core import report, ui

    price = report.overridden(session.ask("price"), session.config)
    # A refusal is its one line alone (README "Exit codes"); it carries the numbers itself.
    report.refuse_over(price, session.config.get("max_cost") or 0.0, session.driver, "max_run" in session.config)
    if price is not None and price.per_hour != 0:  # a run that costs nothing says so when it ends
        ui.info(report.estimate_line(price))
    return price


def _follow_retrying(session, steps, image, job: Job, handle, retry: int, quiet):
    """Follow the job to its end; while it fails for a kind a retry can help with and ``retry``
    allows, launch it again (same plan, image and configuration) linked to the first. The last
    attempt's :class:`Job` and handle; its failure raises."""
    from fahr_core import ui
    from fahr_core.errors import JobFailed
    from fahr_core.values import CAPACITY, RETRYABLE_KINDS

    first, capacity = handle.job_name, 0
    for attempt in range(1, retry + 2):
        try:
            with job._failing():
                job._from_result(_follow(session, handle, steps.artifact, notify=steps.notify,
                                         attempt_of=first if handle.job_name != first else ""))
            return job, handle
        except JobFailed as failed:
            kind = getattr(failed.result, "failure_kind", "") if failed.result is not None else ""
            if attempt > retry or kind not in RETRYABLE_KINDS:
                raise
            capacity += kind == CAPACITY
            ui.warn(failed.message)
            ui.info(f"retrying ({kind}): attempt {attempt + 1} of at most {retry + 1}, a new job linked to {first}")
        handle = _launch(session, steps, image, attempt_of=first, capacity_failures=capacity)
        job = _launched(session, steps, handle, quiet)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _launched(session, steps, handle, quiet) -> Job:
    """The :class:`Job` of a job this process just launched from ``steps``."""
    job = Job._of(session, handle.job_name, handle.model_tag, quiet)
    job.driver = handle.driver or job.driver
    job._handle, job._artifact = handle, steps.artifact
    job.hyperparameters = dict(steps.hyperparameters)
    job._metric_definitions = tuple((d.name, d.regex) for d in steps.metric_definitions)
    return job


def _build(session, steps, verbose: bool = False):
    """The image of the plan: the Dockerfile written when the project has none, then the driver's
    ``build_image`` (the core's builder unless the driver has its own), shown as progress
    (:func:`fahr_core.ui.building`: whatever builder it is, its output is held unless ``verbose``)."""
    from fahr_core import image, ui

    base_image_set = session.config.sources.get("base_image") != "default"
    context = image.prepare_context(steps.artifact, steps.model_tag, session.config["base_image"],
                                    steps.regenerate_dockerfile, base_image_set=base_image_set, rebuild=steps.rebuild)
    with ui.building(verbose=verbose):
        return session.call("build_image", context=context)


def _launch(session, steps, image, sweep: str = "", attempt_of: str = "", capacity_failures: int = 0):
    from fahr_core import names, provenance, tracking, ui
    from fahr_core.values import JobSpec

    # The project a job came from: a model tag alone does not tell projA/src/train.py from
    # projB/src/train.py (README, "fahr fetch").
    spec = JobSpec(job_name=names.job_name(steps.model_tag), model_tag=steps.model_tag, image=image,
                   hyperparameters=dict(steps.hyperparameters), inputs=dict(steps.inputs),
                   environment=dict(steps.environment), secrets=dict(steps.secrets),
                   project=provenance.project_folder(steps.project_dir),
                   git_commit=provenance.git_commit(steps.project_dir),
                   metric_definitions=tuple((d.name, d.regex) for d in steps.metric_definitions),
                   sweep=sweep, attempt_of=attempt_of, capacity_failures=capacity_failures,
                   notify=steps.notify)
    # The driver names the job (sagemaker's base_job_name renames it): the name is printed from
    # the handle it returns, never from the spec. No "launching job NAME" before it is known.
    ui.info(f"launching a job of {steps.model_tag} on driver {session.driver!r}")
    handle = session.call("launch", spec=spec)
    ui.info(f"launching job {handle.job_name} on driver {session.driver!r}: accepted")
    tracking.launched(session, spec, handle)
    return handle


def _follow(session, handle, artifact: Path | None = None, notify: str = "", attempt_of: str = ""):
    """The driver's wait, to the job's end, then how it ended; KeyboardInterrupt passes through
    (the driver's wait stops or detaches, the CLI exits 130). ``artifact``: what the job's image
    was built from, when this process built it (report.ended's hints name its files)."""
    from fahr_core import report, tracking

    # The experiment trackers hear the job's metrics as its output streams, and its end
    # (docs/trackers.md); a tracker's failure is a warning, never the job's.
    with tracking.following(session, handle) as tracked:
        result = session.call("wait", job=handle)
    if getattr(result, "price", None) is not None and session.config.get("price_per_hour"):
        result = dataclasses.replace(result, price=report.overridden(result.price, session.config))
    tracking.ended(session, result, tracked, read_back=lambda job: _read_back(session, job))
    if notify:  # not a tracker hook: trackers hear only followed jobs, and a detached one is told too
        from fahr_core import notify as notifying

        notifying.followed(notify, handle, result, attempt_of)
    return report.ended(result, session, artifact)


def _detached_notify(steps, handle, what: str = "a detached job's end", how: str = "'fahr fit' without --detach") -> None:
    """A detached job whose driver does not tell ``notify`` itself is told by nobody: say so."""
    if steps.notify and not getattr(handle, "notifies", False):
        from fahr_core import notify, ui

        ui.warn(f"--notify: driver {handle.driver!r} does not tell {notify.shown(steps.notify)} of {what} "
                f"(docs/notifications.md); follow it with {how} to be told")


def _read_back(session, handle):
    """A job's record (None when the driver cannot list it) and a reader of its stored points
    (:attr:`Job.metrics`, given its definitions): what trackers are told by a later process."""
    try:
        info = _find(session, handle.job_name, handle.model_tag or None)
    except Exception:  # noqa: BLE001 - a driver without list_jobs (or a broken one): the result's fields
        info = None

    def points(definitions):
        job = Job._of(session, handle.job_name, handle.model_tag)
        job._metric_definitions = tuple(definitions)
        return job._points()
    return info, points


# -- sweep: one plan, one session, one image; a job per point -------------------------------------

def sweep(artifact: str | Path | None = None, *, hyperparameters: Mapping[str, Any] | Sequence[str] | None = None,
          trials: int | None = None, seed: int | None = None, objective: str | None = None,
          parallel: int | None = None, resume: str | None = None, driver: str | None = None,
          config: Mapping[str, Any] | None = None, inputs: Mapping[str, str] | None = None,
          environment: Mapping[str, Any] | None = None, secrets: Sequence[str] | None = None,
          metrics: Mapping[str, str] | None = None, wait: bool = True, quiet: bool | str = False,
          fetch_to: str | Path | None = None, overwrite: bool = False, regenerate_dockerfile: bool = False,
          rebuild: bool = False, verbose: bool = False, retry: int = 0):
    """Train ``artifact`` once per point of a search space, as ``fahr sweep`` (docs/sweeps.md).

    ``hyperparameters``: name -> a value (given to every job), a list of values (a grid axis), or
    a range ``"uniform:LOW:HIGH"``, ``"loguniform:LOW:HIGH"``, ``"int:LOW:HIGH"``,
    ``"choice:A,B"`` drawn ``trials`` times with ``seed`` (or the ``--hp`` specs as a list of
    ``"NAME=SPEC"`` strings). ``objective``: ``"METRIC:min"`` or ``"METRIC:max"``, what "best"
    means. ``parallel``: jobs at once (default: half the CPUs on ``local``, 4 elsewhere).
    ``resume``: a sweep's id; its missing points are launched (its own artifact and options).
    The image is built and pushed once; the other arguments are :func:`fit`'s, for every job.
    ``wait=False`` launches every point at once and returns; ``fetch_to`` extracts the best
    job's model there once all have ended. ``retry``: each point's job is launched again, at most
    that many times, when it fails for a reason a retry can help with (as :func:`fit`'s). Returns
    the :class:`fahr_core.sweeps.Sweep`; its jobs that failed are in it (a failed job raises
    nothing here).
    """
    import time

    from fahr_core import interrupts, plan, searchspace, sweeps, ui
    from fahr_core.session import open_session
    from fahr_core.values import IN_PROGRESS

    artifact = None if artifact is None else check.path(artifact, "sweep(): artifact")
    resume = check.text(resume, "sweep(): resume", "a sweep's id (str) or None")
    fetch_to = None if fetch_to is None else check.path(fetch_to, "sweep(): fetch_to")
    check.quiet(quiet, "sweep(): quiet")
    for flag, value in (("wait", wait), ("overwrite", overwrite), ("regenerate_dockerfile", regenerate_dockerfile),
                        ("rebuild", rebuild), ("verbose", verbose)):
        check.flag(value, f"sweep(): {flag}")
    for name, value in (("trials", trials), ("seed", seed), ("parallel", parallel)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"sweep(): {name} {value!r}: expected a whole number or None")
    if parallel is not None and parallel < 1:
        raise UsageError(f"--parallel {parallel}: a number of jobs at once, 1 or more")
    if parallel is not None and not wait:
        raise UsageError("--parallel bounds the jobs a following fahr launches; --detach launches every point "
                         "at once: drop one of them")
    retry = check.count(retry, "sweep(): retry")
    if retry and not wait:
        raise UsageError("--retry relaunches the jobs a following fahr sees fail: it cannot be combined with "
                         "--detach; drop one of them")
    with _quiet(quiet):
        if resume is not None:
            given = [n for n, v in (("TRAINING_ARTIFACT", artifact), ("--hp", hyperparameters), ("--trials", trials),
                                    ("--seed", seed), ("--objective", objective), ("--input", inputs),
                                    ("--env", environment), ("--secret", secrets), ("--metric", metrics),
                                    ("--train-driver", driver), ("--config", config)) if v]
            if given:
                raise UsageError(f"--resume takes the sweep's own artifact and options; drop {', '.join(given)}")
            record = sweeps.Record.load(resume)
        else:
            if artifact is None:
                raise UsageError("missing TRAINING_ARTIFACT: fahr sweep path/to/train.py --hp NAME=V1,V2 …")
            specs = _hp_specs(hyperparameters)
            space = searchspace.parse(specs)
            seed = searchspace.new_seed() if seed is None else seed
            searchspace.objective(objective)
            record = sweeps.Record(
                id=searchspace.new_id(), driver="", artifact=str(Path(artifact).absolute()),
                points=searchspace.points(space, trials, seed), fixed=dict(space.fixed), specs=specs, trials=trials,
                seed=seed, objective=objective, config=dict(check.config(config, "sweep(): config")),
                inputs=dict(check.strings(inputs, "sweep(): inputs")),
                environment=dict(check.strings(environment, "sweep(): environment")),
                secrets=list(check.names(secrets, "sweep(): secrets")),
                metrics=dict(check.strings(metrics, "sweep(): metrics")), created=time.time())
        goal = searchspace.objective(record.objective)
        if fetch_to is not None and goal is None:
            raise UsageError("--fetch fetches the best job's model: say what best means with --objective METRIC:min|max")
        for point in record.points:
            plan.validate_text("--hp", point)
        steps = plan.plan_fit(Path(record.artifact), hyperparameters=record.fixed, inputs=record.inputs,
                              environment=record.environment, wait=wait, fetch_to=fetch_to, overwrite=overwrite,
                              regenerate_dockerfile=regenerate_dockerfile, rebuild=rebuild, secrets=record.secrets,
                              metrics=record.metrics)
        session = open_session(check.text(driver, "sweep(): driver", check.DRIVER) or (record.driver or None),
                               steps.project_dir, record.config, command="fit")
        plan.check_fit(steps, session)
        _priced(session)  # each point's job, as fit's: its estimate, and max_cost per job
        record.driver = session.driver
        entries = [sweeps.Entry(point=dict(point)) for point in record.points]
        if resume is not None:
            _resumed(session, record, entries, quiet)
        pending = [e for e in entries if e.status == "Pending"]
        parallel = (parallel or sweeps.default_parallel(session.driver)) if wait else max(1, len(pending))
        record.parallel = parallel
        image = session.call("push_image", image=_build(session, steps, verbose)) if pending else None
        record.save()
        ui.info(f"sweep {record.id}: {len(pending)} job{'s' * (len(pending) != 1)} of {steps.model_tag} to launch "
                f"on driver {session.driver!r}, {parallel} at a time (seed {record.seed})")
        result = sweeps.Sweep(record.id, session, entries, goal, parallel, lambda: _quiet(quiet), retry=retry)
        result.read_back = lambda handle: _read_back(session, handle)  # for the trackers, at each job's end
        result.notify = steps.notify  # fahr.toml's notify: told of each job's end (docs/notifications.md)

        def launch(point, index, attempt_of="", capacity_failures=0):
            import dataclasses

            hp = {**record.fixed, **point}
            handle = _launch(sweeps.point_session(session, record.id, index),
                             dataclasses.replace(steps, hyperparameters=hp), image, sweep=record.id,
                             attempt_of=attempt_of, capacity_failures=capacity_failures)
            job = Job._of(session, handle.job_name, handle.model_tag, quiet)
            job.driver = handle.driver or job.driver
            job._handle, job._artifact, job.hyperparameters = handle, steps.artifact, hp
            job._metric_definitions = tuple((d.name, d.regex) for d in steps.metric_definitions)
            job.status, job.attempt_of = IN_PROGRESS, attempt_of
            if not wait:
                interrupts.followed(handle.job_name)  # launched to run on
            return job, handle

        if not wait:
            sweeps.launch_all(result, launch)
            launched = [entry.handle for entry in entries if entry.launched]
            if launched:  # told by nobody, as fit --detach's job, unless the driver tells them
                _detached_notify(steps, launched[0], "the end of a detached sweep's jobs", "'fahr sweep' without --detach")
            ui.success(f"sweep {record.id} launched {len(result.jobs)} jobs; follow it to its leaderboard with:")
            ui.command(f"fahr sweep --resume {record.id}")
            ui.info(f"list its jobs with 'fahr jobs --sweep {record.id}', stop them all with "
                    f"'fahr stop --sweep {record.id}'")
            return result
        sweeps.follow(result, launch)
        top = result.best
        if fetch_to is not None:
            if top is None:
                from fahr_core.errors import EXIT_JOB_FAILED, FahrError

                raise FahrError(f"no job of sweep {record.id} completed with a value of {goal.metric}: "
                                "there is no best model to fetch", exit_code=EXIT_JOB_FAILED)
            _check_fetch(steps.fetch_to, steps.model_tag, top.name, True, steps.overwrite)
            _fetch(session, steps.fetch_to, steps.model_tag, session.location, top.name, True, steps.overwrite)
    return result


def _hp_specs(hyperparameters) -> list[str]:
    """``--hp`` specs from the API's dict (a list or tuple of values is a grid axis) or list."""
    if hyperparameters is None:
        return []
    if isinstance(hyperparameters, Mapping):
        specs = []
        for name, value in hyperparameters.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v).replace(",", "\\,") for v in value)
            specs.append(f"{name}={value}")
        return specs
    if isinstance(hyperparameters, (str, bytes)) or not all(isinstance(s, str) for s in hyperparameters):
        raise UsageError("sweep(): hyperparameters: expected a dict (name -> value, list of values or range) "
                         "or a list of 'NAME=SPEC' strings")
    return list(hyperparameters)


def _resumed(session, record, entries, quiet) -> None:
    """Each point's job as the driver lists the sweep's: Completed and InProgress ones are kept
    (the running ones followed), the others launched again."""
    from fahr_core.values import COMPLETED, IN_PROGRESS, JobHandle, JobQuery

    infos = [i for i in session.call("list_jobs", query=JobQuery(sweep=record.id))
             if getattr(i, "sweep", "") == record.id]
    for entry in entries:
        wanted = {**record.fixed, **entry.point}
        for info in infos:  # newest first
            hp = dict(getattr(info, "hyperparameters", {}) or {})
            if info.status in (COMPLETED, IN_PROGRESS) and all(hp.get(k) == v for k, v in wanted.items()):
                entry.job = Job._from_info(session, info, quiet)
                entry.handle = JobHandle(driver=session.driver, job_name=info.job_name, model_tag=info.model_tag)
                entry.status, entry.started, entry.ended = info.status, info.started or info.created, info.ended
                if info.status == COMPLETED:
                    entry.ended = entry.ended or entry.started
                break


def stop_sweep(sweep_id: str, *, driver: str | None = None, config: Mapping[str, Any] | None = None) -> list[str]:
    """Stop every running job of the sweep ``sweep_id`` (as ``fahr stop --sweep``); the names of
    those stopped."""
    from fahr_core import sweeps
    from fahr_core.values import IN_PROGRESS, JobHandle, JobQuery

    sweep_id = check.text(sweep_id, "stop_sweep(): sweep_id", "a sweep's id (str)", optional=False)
    driver, config, where = sweeps.session_of(sweep_id, check.text(driver, "stop_sweep(): driver", check.DRIVER),
                                              check.config(config, "stop_sweep(): config"))
    session = _open(driver, config, "stop", where if where is not None and where.is_dir() else None)
    stopped = []
    for info in session.call("list_jobs", query=JobQuery(sweep=sweep_id, status=IN_PROGRESS)):
        if getattr(info, "sweep", "") != sweep_id or info.status != IN_PROGRESS:
            continue
        if session.call("stop", job=JobHandle(driver=session.driver, job_name=info.job_name, model_tag=info.model_tag)):
            stopped.append(info.job_name)
    return stopped


# -- the jobs there are ----------------------------------------------------------------------------

def jobs(model_tag: str | None = None, *, driver: str | None = None, config: Mapping[str, Any] | None = None,
         status: str | None = None, limit: int | None = None, project: str | Path | None = None,
         sort: str | None = None, sweep: str | None = None, cost: bool = False) -> list[Job]:
    """The driver's jobs, newest first: of one model tag, in one status, at most ``limit``, built
    from the folder ``project`` (the folder of their script, notebook or Dockerfile), of one
    ``sweep`` (its id; the driver and configuration its record on this machine names, unless given).
    ``sort``: a metric's name, the jobs ordered by its last value, lowest first (``-NAME``:
    highest first); jobs without it come last, newest first. ``cost``: the driver reports each
    job's price too (:attr:`Job.price`, :attr:`Job.cost`), as ``fahr jobs --cost``."""
    from fahr_core import names, provenance
    from fahr_core.values import COMPLETED, FAILED, IN_PROGRESS, STOPPED, STOPPING, JobQuery

    model_tag = check.text(model_tag, "jobs(): model_tag", "a model tag (str) or None")
    driver = check.text(driver, "jobs(): driver", check.DRIVER)
    config = check.config(config, "jobs(): config")
    status = check.text(status, "jobs(): status")
    if model_tag is not None:
        names.validate_model_tag(model_tag)
    states = (IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED)
    if status is not None:  # as the CLI takes it: any case (--status failed)
        status = next((state for state in states if state.lower() == status.lower()), status)
    if status is not None and status not in states:
        raise UsageError(f"status {status!r}: expected one of {', '.join(states)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit {limit!r}: expected a whole number of jobs, 1 or more")
    if project is not None:
        folder = check.path(project, "jobs(): project")
        if not folder.is_dir():
            raise UsageError(f"project {str(folder)!r} is not a folder; give the folder a job was fitted from "
                             "(its script's, notebook's or Dockerfile's)")
        project = provenance.project_folder(folder)
    sort = check.text(sort, "jobs(): sort", "a metric's name (str), '-' before it for highest first, or None")
    sweep = check.text(sweep, "jobs(): sweep", "a sweep's id (str) or None")
    check.flag(cost, "jobs(): cost")
    where = None
    if sweep is not None:
        from fahr_core import sweeps

        driver, config, where = sweeps.session_of(sweep, driver, config)
    session = _open(driver, config, project_dir=where if where is not None and where.is_dir() else None)
    infos = session.call("list_jobs", query=JobQuery(model_tag=model_tag, status=status, limit=limit,
                                                     project=project, sweep=sweep, cost=bool(cost)))
    if sweep is not None:  # a driver before plugin API 1.5 ignores the filter: its jobs are of no sweep
        infos = [info for info in infos if getattr(info, "sweep", "") == sweep]
    if cost and session.config.get("price_per_hour"):
        from fahr_core import report

        infos = [dataclasses.replace(info, price=report.overridden(getattr(info, "price", None), session.config))
                 for info in infos]
    found = [Job._from_info(session, info) for info in infos]
    return found if not sort else _sorted(found, sort)


def final_metrics_of(found: Sequence[Job]) -> list[dict[str, float]]:
    """Each job's :attr:`Job.final_metrics`, read a few jobs at a time (a cloud driver reads
    each job's logs); a job whose metrics cannot be read has none. Read once per job."""
    from concurrent.futures import ThreadPoolExecutor

    from fahr_core import ui
    from fahr_core.errors import FahrError

    def read(job: Job) -> dict[str, float]:
        if job._finals is None:
            try:
                job._finals = job.final_metrics
            except (FahrError, OSError):
                job._finals = {}
        return job._finals

    with ui.quiet():  # a job's warnings (a log it cannot read) are not the listing's news
        if len(found) < 2:
            return [read(job) for job in found]
        with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
            return list(pool.map(read, found))


def _sorted(found: list[Job], sort: str) -> list[Job]:
    from fahr_core import metrics

    descending, name = sort.startswith("-"), sort.lstrip("-")
    if not metrics.NAME.fullmatch(name):
        raise UsageError(f"sort {sort!r}: a metric's name, '-' before it for highest first (e.g. -accuracy)")
    finals = final_metrics_of(found)
    having = [(final[name], i) for i, final in enumerate(finals) if name in final]
    if found and not having:
        known = sorted({key for final in finals for key in final})
        raise UsageError(f"sort {sort!r}: no listed job has a metric {name!r}"
                         + (f"; they have {', '.join(known)}" if known else "; they have no metrics"))
    having.sort(key=lambda pair: -pair[0] if descending else pair[0])
    ranked = [found[i] for _, i in having]
    return ranked + [job for job, final in zip(found, finals) if name not in final]


def job(name: str, *, driver: str | None = None, config: Mapping[str, Any] | None = None) -> Job:
    """The job called ``name`` (as ``fahr fit`` printed it), read from its driver."""
    from fahr_core import names

    name = check.text(name, "job(): name", "a job's name (str)", optional=False)
    driver = check.text(driver, "job(): driver", check.DRIVER)
    names.validate_job_name(name)
    session = _open(driver, check.config(config, "job(): config"))
    return Job._from_info(session, _find(session, name))


def compare(jobs: Sequence[Job | str], *, metrics: Sequence[str] | None = None, driver: str | None = None,
            config: Mapping[str, Any] | None = None):
    """The metrics of ``jobs`` (:class:`Job` objects, or names as ``fahr fit`` printed them),
    side by side, as ``fahr metrics`` shows them: a :class:`fahr_core.comparison.Comparison`
    (``.rows()``, ``.text(width)``, ``.plot(path)``, ``.follow()``). ``metrics``: the names (or
    glob patterns) of the metrics shown, as ``--metric``; None: all (docs/metrics.md)."""
    from fahr_core import names as naming
    from fahr_core.comparison import Comparison
    from fahr_core.values import JobQuery

    if isinstance(jobs, (str, Job)) or not isinstance(jobs, Sequence) or not jobs:
        raise UsageError("compare(): jobs must be a non-empty list of jobs (Job or a job's name, str)")
    if metrics is not None and (isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics)):
        raise UsageError("compare(): metrics must be a list of metric names (str) or None")
    driver = check.text(driver, "compare(): driver", check.DRIVER)
    config = check.config(config, "compare(): config")
    named = [job for job in jobs if not isinstance(job, Job)]
    for name in named:
        check.text(name, "compare(): jobs", "a job's name (str) or a Job", optional=False)
        naming.validate_job_name(name)
    found: dict[str, Job] = {}
    if named:
        session = _open(driver, config)
        wanted = set(named)
        for info in session.call("list_jobs", query=JobQuery()):
            if info.job_name in wanted and info.job_name not in found:
                found[info.job_name] = Job._from_info(session, info)
        missing = [name for name in named if name not in found]
        if missing:
            raise UsageError(f"no job {missing[0]} on driver {session.driver!r}; see 'fahr jobs' for the jobs it has")
    chosen = [job if isinstance(job, Job) else found[job] for job in jobs]
    return Comparison(list({job.name: job for job in chosen}.values()), metrics)


# -- fetch -----------------------------------------------------------------------------------------

def fetch(target: str | Path, model_tag: str, location: str | None = None, *, driver: str | None = None,
          config: Mapping[str, Any] | None = None, job: str | None = None, extract: bool = True,
          overwrite: bool = False, quiet: bool | str = False, output: bool = False, strict: bool = False) -> Path:
    """Download a model of ``model_tag`` (the newest completed job's, or ``job``'s) and extract it
    safely into ``target``; returns the folder (or the archive, with ``extract=False``).
    ``output``: the job's output.tar.gz instead of its model (``fahr fetch --output``), under the
    same rules; ``job`` may then name a job that failed or was stopped.

    Without ``job`` and ``location``, the job is chosen as ``fahr fetch TAG`` chooses it: built
    from the project the current folder names when there is one, the newest Completed, with one
    line saying when the newest job is not Completed or a newer model came from another folder.
    ``strict``: refuse instead (exit 1) of fetching an older model or another project's."""
    from fahr_core.session import driver_for_location

    target = check.path(target, "fetch(): target")
    model_tag = check.text(model_tag, "fetch(): model_tag", "a model tag (str)", optional=False)
    location = check.text(os.fspath(location) if isinstance(location, os.PathLike) else location,
                          "fetch(): location", "a location (str: a folder or a URI such as s3://…) or None")
    if location:
        check.path(location, "fetch(): location")  # a folder or a URI: no NUL either
    driver = check.text(driver, "fetch(): driver", check.DRIVER)
    config = check.config(config, "fetch(): config")
    job = check.text(job, "fetch(): job", "a job's name (str) or None")
    check.quiet(quiet, "fetch(): quiet")
    for flag, value in (("extract", extract), ("overwrite", overwrite), ("output", output), ("strict", strict)):
        check.flag(value, f"fetch(): {flag}")
    with _quiet(quiet):
        _check_fetch(target, model_tag, job, extract, overwrite)
        if driver is None and location:
            driver = driver_for_location(location, Path.cwd(), config)
            if driver is None and "://" in location:
                raise UsageError(
                    f"no installed driver handles {location}; pass --train-driver NAME "
                    "(see 'fahr drivers'), or install the driver for it"
                )
        session = _open(driver, config, "fetch")
        if job is None and not location:
            job = _choose(session, model_tag, Path.cwd(), strict, "output" if output else "model")
        return _fetch(session, target, model_tag, location, job, extract, overwrite, output=output)


def _choose(session, model_tag: str, folder: Path, strict: bool, what: str = "model") -> str | None:
    """The job ``fahr fetch TAG`` (without --job and location) fetches, chosen from the driver's
    listing: the newest Completed job of the tag built from the project ``folder`` names
    (fahr_core.provenance.project_of_fetch), else of any folder. What it passes over is said in
    one line: a newer job that is not Completed, a newer model of another folder, no job of this
    project; ``strict`` refuses the first and the last instead (exit 1).

    None leaves the choice to the driver's fetch (the newest Completed job of the tag): a driver
    without ``list_jobs``, or no Completed job at all (the driver says so, in its terms).
    """
    from fahr_core import provenance, ui
    from fahr_core.errors import EXIT_JOB_FAILED, FahrError
    from fahr_core.values import COMPLETED, JobQuery

    if not session.pm.hook.list_jobs.get_hookimpls():
        return None

    listings = []

    def newest(**query):
        # limit=1: one small Search page on SageMaker, whatever the number of jobs. A listing's
        # warnings (a broken job.json skipped) are said once, by the first.
        with ui.quiet() if listings else contextlib.nullcontext():
            found = session.call("list_jobs", query=JobQuery(model_tag=model_tag, limit=1, **query))
        listings.append(query)
        return next(iter(found), None)

    def refuse(message: str) -> FahrError:
        return FahrError(f"{message}; --strict fetches no other (drop it, or name one with --job)",
                         exit_code=EXIT_JOB_FAILED)

    project = provenance.project_of_fetch(folder, model_tag)
    latest = newest(project=project) if project else None
    # A driver before plugin API 1.4 ignores the project filter and reports no project: no choice.
    if latest is not None and not getattr(latest, "project", ""):
        project = latest = None
    elif project:
        ours = newest(project=project, status=COMPLETED)
        if ours is None:  # nothing of this project to fetch: any folder's newest, said so
            other = newest(status=COMPLETED)
            if other is None:
                return None
            why = (f"no job of {model_tag} was built from {project}" if latest is None else
                   f"no job of {model_tag} built from {project} completed (its newest, {latest.job_name}, "
                   f"is {latest.status})")
            if strict:
                raise refuse(why)
            ui.warn(f"{why}; fetching the newest Completed one, job {other.job_name} of {_from(other)}")
            return other.job_name
        passed_over = []
        if latest.job_name != ours.job_name:
            why = f"the newest job of {model_tag} built from {project}, {latest.job_name}, is {latest.status}"
            if strict:
                raise refuse(why)
            passed_over.append(why)
        other = newest(status=COMPLETED)
        if other is not None and other.job_name != ours.job_name:
            passed_over.append(f"a newer {what} of {model_tag}, job {other.job_name}, came from another folder "
                               f"({_from(other)})")
        if passed_over:  # one line, whatever was passed over
            ui.warn(f"{'; '.join(passed_over)}; fetching the newest Completed one built from {project}, "
                    f"job {ours.job_name}")
        else:
            ui.info(f"fetching the {what} of job {ours.job_name}, built from {project}")
        return ours.job_name
    latest, ours = newest(), newest(status=COMPLETED)
    if ours is None:
        _no_job_of_the_tag(session, model_tag, folder)
        return None
    if latest is not None and latest.job_name != ours.job_name:
        if strict:
            raise refuse(f"the newest job of {model_tag}, {latest.job_name}, is {latest.status}")
        ui.warn(f"the newest job of {model_tag}, {latest.job_name}, is {latest.status}; "
                f"fetching the newest Completed one, job {ours.job_name}")
    else:
        ui.info(f"fetching the {what} of job {ours.job_name}")
    return ours.job_name


def _no_job_of_the_tag(session, model_tag: str, folder: Path) -> None:
    """A tag is the script's folder's name and its stem (``churn/train`` for ``churn/train.py``,
    wherever fit ran), so ``fahr fetch … train`` inside ``churn`` finds nothing: when jobs were
    built from ``folder`` under another tag, say which, rather than "train it first"."""
    from fahr_core import provenance
    from fahr_core.errors import UsageError
    from fahr_core.values import JobQuery

    mine = session.call("list_jobs", query=JobQuery(project=provenance.project_folder(folder), limit=1))
    mine = next(iter(mine), None)
    if mine is not None and getattr(mine, "project", "") and mine.model_tag and mine.model_tag != model_tag:
        raise UsageError(f"no completed job of {model_tag!r}; the jobs built from this folder are tagged "
                         f"{mine.model_tag!r} (a tag is the script's folder's name and its stem): "
                         f"fahr fetch TARGET {mine.model_tag}")


def _from(info) -> str:
    """Where a job was built, as a notice names it."""
    return getattr(info, "project", "") or "a folder not recorded"


def _check_fetch(target: Path, model_tag: str, job: str | None, extract: bool, overwrite: bool) -> None:
    """What a fetch can refuse before any driver is asked."""
    from fahr_core import names
    from fahr_core.extract import check_target, max_model_bytes

    names.validate_model_tag(model_tag)
    if job:
        names.validate_job_name(job)
    check_target(Path(target), overwrite)
    if extract:
        max_model_bytes()  # a bad FAHR_MAX_MODEL_BYTES fails now, not after the download


def _fetch(session, target: Path, model_tag: str, location: str | None, job: str | None, extract: bool,
           overwrite: bool, *, output: bool = False) -> Path:
    """Download a job's model (or, with ``output``, its output.tar.gz) through the session's
    driver and put it, extracted safely, in ``target``.

    The driver's ``fetch`` hook answers with the downloaded archive's path, or with a readable
    stream of it (its download still running): the stream is extracted as it arrives, under the
    same rules, and closed at the end or on any refusal or interrupt.
    """
    from fahr_core import plan, ui
    from fahr_core.extract import is_stream, place
    from fahr_core.values import FetchRequest

    what = "output" if output else "model"
    # Replacing the folder the jobs live in (with --overwrite) would delete them all.
    plan.fetch_spares_output(Path(target), location or session.location, flag="fetch target")
    with tempfile.TemporaryDirectory(prefix="fahr-fetch-") as download_dir:
        request = FetchRequest(model_tag=model_tag, job_name=job, location=location or None,
                               download_dir=Path(download_dir), what=what)
        archive = session.call("fetch", request=request)
        if not is_stream(archive) and not isinstance(archive, (str, os.PathLike)):
            raise PluginError(f"driver {session.driver!r} fetched a {type(archive).__name__}, neither "
                              "the path of an archive nor a readable stream of one (its fetch hook is wrong)")
        if output:
            _must_be_the_output(session, archive)
        placed = place(archive if is_stream(archive) else Path(archive), Path(target), extract=extract,
                       overwrite=overwrite, what=what)
    if not output:
        ui.success(f"model of {model_tag} is in {placed}")
        return placed
    ui.success(f"output of {model_tag}{f' (job {job})' if job else ''} is in {placed}")
    if extract and not any(path.is_file() for path in placed.rglob("*")):
        ui.warn("the job's output is empty: it wrote no file in /opt/ml/output/data")
    return placed


def _must_be_the_output(session, archive) -> None:
    """Refuse what a driver that ignores ``FetchRequest.what`` (before plugin API 1.3) answers to
    ``fetch --output``: its model. A driver that reads ``what`` names the answer output.tar.gz
    (hookspec ``fetch``); the refused stream is closed, nothing is written."""
    from fahr_core.extract import is_stream

    name = getattr(archive, "name", None) if is_stream(archive) else os.fspath(archive)
    name = os.path.basename(name) if isinstance(name, str) else ""
    if name == "output.tar.gz":
        return
    if is_stream(archive):
        import contextlib

        with contextlib.suppress(Exception):
            archive.close()
    answer = repr(name) if name else "an unnamed stream"
    raise PluginError(f"driver {session.driver!r} cannot fetch a job's output: asked for output.tar.gz, it "
                      f"answered with {answer} (a driver before plugin API 1.3 ignores FetchRequest.what and "
                      "hands over the model); update the driver; nothing was written")


# -- what is installed and configured (the CLI's listings) -----------------------------------------

def drivers(*, keys: bool = False) -> list[dict]:
    """The installed drivers, read from their distributions' files (none is imported): name,
    distribution, version, description; with ``keys``, each one's config keys too (imports them)."""
    from fahr_core import plugins

    rows = [entry.as_dict() for entry in plugins.installed_drivers().values()]
    if keys:
        for row in rows:
            row["config"] = [_key_row(key) for key in plugins.driver_config_keys(plugins.manager_for(row["name"]))]
    return rows


def settings(driver: str | None = None, config: Mapping[str, Any] | None = None) -> dict:
    """The driver's config keys with the value in force in the current folder and where it came
    from: ``{"driver": NAME, "keys": [{name, type, default, required, required_for, help, value,
    source, env}, …]}``."""
    from fahr_core.config import env_var

    session = _open(check.text(driver, "settings(): driver", check.DRIVER),
                    check.config(config, "settings(): config"))
    rows = []
    for key in session.keys:
        row = _key_row(key)
        row["value"] = session.config[key.name]
        row["source"] = session.config.sources[key.name]
        row["env"] = env_var(session.driver, key.name)
        rows.append(row)
    return {"driver": session.driver, "keys": rows}


def _key_row(key) -> dict:
    # required_for (the commands a key is required for) is newer than required: read it if present.
    required_for = sorted(getattr(key, "required_for", None) or ())
    return {"name": key.name, "type": key.type_name, "default": key.default, "required": key.required,
            "required_for": required_for, "help": key.help}


def templates() -> dict:
    """The templates ``fahr init --template`` knows, by name: the built-in ones and the plugins'
    (a plugin that fails to load is warned about and skipped)."""
    from fahr_core import plugins, scaffold, ui

    return scaffold.available_templates(plugins.all_plugins_manager(on_error=lambda e: ui.warn(str(e))))
