"""fahr's Python API: train, list, follow and fetch jobs from Python (a notebook, a script).

The CLI runs on these functions too, so a job launched here is the job ``fahr jobs`` lists. Every
call takes the driver (``driver=``, default as the CLI's: ``FAHR_DRIVER``, ``fahr.toml``, else
``local``) and a ``config`` dict of driver keys, layered exactly as ``--config.KEY=VALUE`` (over
``fahr.toml`` and ``FAHR_<DRIVER>_<KEY>``). Errors are :class:`fahr_core.FahrError` subclasses,
never ``SystemExit``; an argument of the wrong type is a :class:`fahr_core.UsageError` naming it
and the type expected, and ``None`` in a dict argument means "not set". Status lines and job logs
go to the terminal as in the CLI; ``quiet=True`` (or ``with fahr_core.ui.quiet():``) silences
them. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from fahr_core.errors import PluginError, UsageError

__all__ = ["Job", "fit", "jobs", "job", "fetch"]


# -- the arguments' types ------------------------------------------------------------------------
# Every public function checks its arguments first: a wrong type is a UsageError naming the
# argument and the type expected, never a TypeError from deep inside. In a mapping, None means
# "not set": the key is left out (never the string "None").

_SCALAR = (str, int, float, bool)
_SCALAR_NAMES = "str, int, float, bool or a path"
_DRIVER = "a driver's name (str, e.g. 'local') or None"


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _path(value: Any, what: str) -> Path:
    """``value`` as a Path: a non-empty str or os.PathLike (of str; bytes are refused), no NUL."""
    from fahr_core.config import text_problem

    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise UsageError(f"{what} must be a path (str or os.PathLike), not {_kind(text)}")
    if not text:
        raise UsageError(f"{what} is an empty path; give a file or folder")
    problem = text_problem(text, utf8=False)  # a path's bytes may be any but NUL
    if problem:
        raise UsageError(f"{what} {text!r} {problem}")
    return Path(text)


def _text(value: Any, what: str, expected: str = "str or None", *, optional: bool = True) -> str | None:
    if not isinstance(value, str) and not (optional and value is None):
        raise UsageError(f"{what} must be {expected}, not {_kind(value)}")
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be True or False, not {_kind(value)}")
    return value


def _mapping(values: Any, what: str, nested: bool = False) -> dict[str, Any]:
    """``values`` (a mapping of str keys to scalars, or None) without its None values.

    ``nested`` allows a mapping as a value, for a config key of type dict (sagemaker's ``tags``).
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UsageError(f"{what} must be a mapping (a dict of str to {_SCALAR_NAMES}), not {_kind(values)}")
    kept = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise UsageError(f"{what} keys must be str, not {_kind(key)} ({key!r})")
        if value is None:
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)  # bytes (a PathLike of bytes) is refused below
        if nested and isinstance(value, Mapping):
            value = _mapping(value, f"{what}[{key!r}]")
        elif not isinstance(value, _SCALAR):
            raise UsageError(f"{what}[{key!r}] must be {_SCALAR_NAMES}, not {_kind(value)}")
        kept[key] = value
    return kept


def _strings(values: Any, what: str) -> dict[str, str]:
    """A mapping of hyperparameters, inputs or environment as the strings the job is given."""
    return {key: str(value) for key, value in _mapping(values, what).items()}


def _config(config: Any, what: str) -> dict[str, Any]:
    return _mapping(config, what, nested=True)


def _pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A (checked, see :func:`_config`) config dict as the ``--config.KEY=VALUE`` pairs the CLI
    would pass."""
    pairs = []
    for key, value in config.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Mapping):
            text = json.dumps({k: str(v) for k, v in value.items()})
        else:
            text = str(value)
        pairs.append((key, text))
    return pairs


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


def _readable(text: str) -> str:
    """A line as the API hands it out: bytes a driver passed on undecoded (as surrogate escapes,
    so that ``fahr logs`` prints them as they were) become U+FFFD."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


def _whole_lines(pieces: Iterator[tuple[str, bool]]) -> Iterator[str]:
    """Lines, however long, from the pieces of :meth:`Job._output`."""
    parts: list[str] = []
    for text, ends in pieces:
        if parts or not ends:
            parts.append(text)
            if not ends:
                continue
            text, parts = "".join(parts), []
        yield _readable(text)
    if parts:
        yield _readable("".join(parts))


def _time(seconds: float | None) -> datetime | None:
    """A driver's epoch seconds as a UTC datetime; None when unknown or beyond what a datetime
    holds (a driver's bad value must not break the listing of every job)."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _quiet(quiet: bool):
    import contextlib

    from fahr_core import ui

    return ui.quiet() if quiet else contextlib.nullcontext()


class Job:
    """One training job of a driver.

    Attributes: ``name``, ``model_tag``, ``driver``, ``status`` (``InProgress``, ``Completed``,
    ``Failed``, ``Stopping``, ``Stopped``), ``secondary_status``, ``failure_reason``,
    ``created``/``started``/``ended`` (timezone-aware UTC datetimes, None when unknown),
    ``training_seconds``/``billable_seconds`` (float or None), ``model_artifact`` (a path or URI,
    '' until it completed). They are as last read: :meth:`refresh` reads them again.
    """

    def __init__(self, name: str, *, driver: str | None = None, model_tag: str = "", config: Mapping[str, Any] | None = None,
                 quiet: bool = False):
        self.name = _text(name, "Job(): name", "a job's name (str)", optional=False)
        self.driver = _text(driver, "Job(): driver", "a driver's name (str) or None")
        self.model_tag = _text(model_tag, "Job(): model_tag", "a model tag (str)") or ""
        self.status = ""
        self.secondary_status = ""
        self.failure_reason = ""
        self.created: datetime | None = None
        self.started: datetime | None = None
        self.ended: datetime | None = None
        self.training_seconds: float | None = None
        self.billable_seconds: float | None = None
        self.model_artifact = ""
        self._config = _config(config, "Job(): config")
        self._quiet = _flag(quiet, "Job(): quiet")

    def __repr__(self) -> str:
        return f"Job({self.name!r}, model_tag={self.model_tag!r}, driver={self.driver!r}, status={self.status!r})"

    @classmethod
    def _from_info(cls, info, config, quiet=False) -> "Job":
        job = cls(info.job_name, driver=info.driver, model_tag=info.model_tag, config=config, quiet=quiet)
        job._update(info)
        return job

    def _update(self, info) -> None:
        self.model_tag = info.model_tag or self.model_tag
        self.status = info.status
        self.secondary_status = info.secondary_status
        self.failure_reason = info.failure_reason
        self.created, self.started, self.ended = _time(info.created), _time(info.started), _time(info.ended)
        self.training_seconds, self.billable_seconds = info.training_seconds, info.billable_seconds
        self.model_artifact = info.model_artifact

    def _from_result(self, result) -> None:
        self.model_tag = result.job.model_tag or self.model_tag
        self.status = result.status
        self.failure_reason = result.failure_reason
        self.model_artifact = result.model_artifact
        self.training_seconds, self.billable_seconds = result.training_seconds, result.billable_seconds

    @property
    def done(self) -> bool:
        """Whether the job has ended (as last read)."""
        from fahr_core.values import FINAL_STATES

        return self.status in FINAL_STATES

    def refresh(self) -> "Job":
        """Read the job's state again from its driver (needs the driver's ``list_jobs``)."""
        found = _find(self.name, self.driver, self._config, self.model_tag or None)
        self._update(found)
        return self

    def wait(self) -> "Job":
        """Follow the job to its end, streaming its logs; raise :class:`JobFailed` unless it completed."""
        from fahr_core import run
        from fahr_core.errors import JobFailed

        with _quiet(self._quiet):
            try:
                result = run.wait(self.name, driver=self.driver, cli_config=_pairs(self._config))
            except JobFailed:
                self._try_refresh()
                raise
        self._from_result(result)
        self.driver = result.job.driver or self.driver
        self._try_refresh()
        return self

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
        """Ask the driver to stop the job; False when it had already ended."""
        from fahr_core import run

        with _quiet(self._quiet):
            return run.stop(self.name, driver=self.driver, cli_config=_pairs(self._config))

    def logs(self, follow: bool = False, host: str | None = None) -> Iterator[str]:
        """The job's output lines (str, without newline), from the start.

        With ``follow``, lines come as the job prints them, until it ends. A job of several hosts
        has each line prefixed ``[algo-N] ``; ``host="algo-2"`` gives one host's lines, unprefixed.
        A line comes whole, however long; bytes that are not UTF-8 come as U+FFFD.
        """
        _flag(follow, "Job.logs(): follow")  # checked now, not when the lines are first read
        _text(host, "Job.logs(): host", "a host's name (str, e.g. 'algo-2') or None")
        return _whole_lines(self._output(follow, host))

    def _output(self, follow: bool, host: str | None) -> Iterator[tuple[str, bool]]:
        """The job's output as it is to be printed, in bounded pieces ``(text, ends)``: ``ends``
        when the text ends a line (the newline is not in it). ``fahr logs`` prints these."""
        from fahr_core import names
        from fahr_core.values import JobHandle

        names.validate_job_name(self.name)
        session = _session(self.driver, self._config)
        handle = JobHandle(driver=session.config.driver, job_name=self.name, model_tag=self.model_tag)
        lines = session.hook.logs(job=handle, config=session.config, follow=follow)
        if lines is None:
            raise _lacks(session.config.driver, "read logs", "logs")
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

    def fetch(self, target: str | Path, *, extract: bool = True, overwrite: bool = False) -> Path:
        """Bring this job's model into ``target`` (a new or empty folder); returns where it is."""
        target = _path(target, "Job.fetch(): target")
        _flag(extract, "Job.fetch(): extract")
        _flag(overwrite, "Job.fetch(): overwrite")
        if not self.model_tag:
            self.refresh()
        return fetch(target, self.model_tag, driver=self.driver, config=self._config, job=self.name,
                     extract=extract, overwrite=overwrite, quiet=self._quiet)


def _session(driver: str | None, config: Mapping[str, Any] | None, command: str | None = None):
    from fahr_core import run

    return run.open_session(driver, Path.cwd(), _pairs(config), check_required=False, command=command)


def _lacks(driver: str, what: str, hook: str) -> PluginError:
    return PluginError(f"driver {driver!r} cannot {what} (it does not implement {hook})")


def _find(name: str, driver: str | None, config, model_tag: str | None = None):
    from fahr_core import names
    from fahr_core.values import JobQuery

    names.validate_job_name(name)
    session = _session(driver, config)
    infos = session.hook.list_jobs(query=JobQuery(model_tag=model_tag), config=session.config)
    if infos is None:
        raise _lacks(session.config.driver, "list jobs", "list_jobs")
    for info in infos:
        if info.job_name == name:
            return info
    raise UsageError(f"no job {name} on driver {session.config.driver!r}; see 'fahr jobs' for the jobs it has")


def fit(artifact: str | Path, *, driver: str | None = None, config: Mapping[str, Any] | None = None,
        hyperparameters: Mapping[str, Any] | None = None, inputs: Mapping[str, str] | None = None,
        environment: Mapping[str, Any] | None = None, wait: bool = True, quiet: bool = False,
        fetch_to: str | Path | None = None, overwrite: bool = False, regenerate_dockerfile: bool = False,
        rebuild: bool = False) -> Job:
    """Build ``artifact`` into an image, launch a training job and (``wait``) follow it.

    ``artifact`` is a train.py, a notebook, or a container of your own: a folder holding a
    Dockerfile, or that Dockerfile, built as it is (its image must have a ``train`` program on
    ``PATH``; ``regenerate_dockerfile`` is refused for it). Its model tag comes from the folder:
    ``…/byoc/container`` -> ``byoc/container``.

    Returns the :class:`Job`: Completed when waited for, InProgress with ``wait=False``. A job
    that fails or is stopped raises :class:`JobFailed` (its message says why; ``fahr_core.jobs()``
    still lists it). Hyperparameter and environment values are passed as strings; a key whose value
    is None is left out (in ``config`` too: the key keeps its value from beneath). ``fetch_to``:
    once completed, extract the model there (``overwrite`` replaces a non-empty folder), as
    ``fahr fit --fetch``; ``regenerate_dockerfile`` writes the project's Dockerfile anew.
    The image is built only when something it is built from changed (its files, Dockerfile or
    base image) since the last build; ``rebuild`` builds it anyway, as ``fahr fit --rebuild``.
    """
    from fahr_core import run
    from fahr_core.values import JobHandle

    artifact = _path(artifact, "fit(): artifact")
    driver = _text(driver, "fit(): driver", _DRIVER)
    config = _config(config, "fit(): config")
    hyperparameters = _strings(hyperparameters, "fit(): hyperparameters")
    inputs = _strings(inputs, "fit(): inputs")
    environment = _strings(environment, "fit(): environment")
    fetch_to = None if fetch_to is None else _path(fetch_to, "fit(): fetch_to")
    for flag, value in (("wait", wait), ("quiet", quiet), ("overwrite", overwrite),
                        ("regenerate_dockerfile", regenerate_dockerfile), ("rebuild", rebuild)):
        _flag(value, f"fit(): {flag}")
    with _quiet(quiet):
        outcome = run.fit(artifact, driver=driver, cli_config=_pairs(config), hyperparameters=hyperparameters,
                          inputs=inputs, environment=environment, detach=not wait, fetch_dir=fetch_to,
                          overwrite=overwrite, regenerate_dockerfile=regenerate_dockerfile, rebuild=rebuild)
    handle = outcome if isinstance(outcome, JobHandle) else outcome.job
    job = Job(handle.job_name, driver=handle.driver, model_tag=handle.model_tag, config=config, quiet=quiet)
    if isinstance(outcome, JobHandle):
        job.status = "InProgress"
    else:
        job._from_result(outcome)
    job._try_refresh()
    return job


def jobs(model_tag: str | None = None, *, driver: str | None = None, config: Mapping[str, Any] | None = None,
         status: str | None = None, limit: int | None = None) -> list[Job]:
    """The driver's jobs, newest first: of one model tag, in one status, at most ``limit``."""
    from fahr_core import names
    from fahr_core.values import COMPLETED, FAILED, IN_PROGRESS, STOPPED, STOPPING, JobQuery

    model_tag = _text(model_tag, "jobs(): model_tag", "a model tag (str) or None")
    driver = _text(driver, "jobs(): driver", _DRIVER)
    config = _config(config, "jobs(): config")
    status = _text(status, "jobs(): status")
    if model_tag is not None:
        names.validate_model_tag(model_tag)
    states = (IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED)
    if status is not None:  # as the CLI takes it: any case (--status failed)
        status = next((state for state in states if state.lower() == status.lower()), status)
    if status is not None and status not in states:
        raise UsageError(f"status {status!r}: expected one of {', '.join(states)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit {limit!r}: expected a whole number of jobs, 1 or more")
    session = _session(driver, config)
    infos = session.hook.list_jobs(query=JobQuery(model_tag=model_tag, status=status, limit=limit),
                                   config=session.config)
    if infos is None:
        raise _lacks(session.config.driver, "list jobs", "list_jobs")
    return [Job._from_info(info, config) for info in infos]


def job(name: str, *, driver: str | None = None, config: Mapping[str, Any] | None = None) -> Job:
    """The job called ``name`` (as ``fahr fit`` printed it), read from its driver."""
    name = _text(name, "job(): name", "a job's name (str)", optional=False)
    config = _config(config, "job(): config")
    return Job._from_info(_find(name, _text(driver, "job(): driver", _DRIVER), config), config)


def fetch(target: str | Path, model_tag: str, location: str | None = None, *, driver: str | None = None,
          config: Mapping[str, Any] | None = None, job: str | None = None, extract: bool = True,
          overwrite: bool = False, quiet: bool = False) -> Path:
    """Download a model of ``model_tag`` (the newest completed job's, or ``job``'s) and extract it
    safely into ``target``; returns the folder (or the archive, with ``extract=False``)."""
    from fahr_core import run

    target = _path(target, "fetch(): target")
    model_tag = _text(model_tag, "fetch(): model_tag", "a model tag (str)", optional=False)
    location = _text(os.fspath(location) if isinstance(location, os.PathLike) else location, "fetch(): location",
                     "a location (str: a folder or a URI such as s3://…) or None")
    if location:
        _path(location, "fetch(): location")  # a folder or a URI: no NUL either
    driver = _text(driver, "fetch(): driver", _DRIVER)
    config = _config(config, "fetch(): config")
    job = _text(job, "fetch(): job", "a job's name (str) or None")
    for flag, value in (("extract", extract), ("overwrite", overwrite), ("quiet", quiet)):
        _flag(value, f"fetch(): {flag}")
    with _quiet(quiet):
        return run.fetch(target, model_tag, location, driver=driver, job_name=job, extract=extract,
                         overwrite=overwrite, cli_config=_pairs(config))
