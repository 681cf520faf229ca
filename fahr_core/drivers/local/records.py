"""The local driver's job records: ``<output_path>/<job>/job.json``, checked, written whole, locked.

A job's record is fahr's memory of it (status, reason, times, what it was launched with). Anyone
may edit it, so every reader goes through :func:`_read_record`, which checks it; it is written
whole (fahr_core.jobfolder), and one process at a time finishes a job (:func:`_locked`). This
module also turns records into the values the hooks return, and lists a folder's jobs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import stat
from pathlib import Path

from fahr_core import names, ui
from fahr_core.commandlines import stop_command, wait_command
from fahr_core.errors import ConfigError, EnvironmentProblem, UsageError
from fahr_core.jobfolder import Folder, Refused
from fahr_core.values import (COMPLETED, FAILED, FAILURE_KINDS, FINAL_STATES, IN_PROGRESS, PLATFORM, STOPPED, STOPPING,
                              USER, JobHandle, JobResult)

NAME = "local"
RECORD = "job.json"
#: The most hosts one local job may have. Each is a container on this machine: more is a typo (or
#: a billion), refused before anything is built or allocated.
MAX_INSTANCE_COUNT = 64
#: The largest job.json fahr reads: what it writes is a few kilobytes.
_RECORD_MAX_BYTES = 16 * 1024 * 1024

# A record's "unfinished" field: what `fahr wait JOB` still has to do although the status reads final.
# FOLLOW: fahr lost the engine (or hit a bug) while following the job; it recorded the job Failed,
#   for a fit that has exited must not leave it InProgress, but the containers may run on or hold
#   the artifacts: `fahr wait` follows them, or finishes them, and records how the job really ended.
# CLEANUP: the job's end is recorded and its artifacts saved, but its containers could not be removed.
FOLLOW = "follow"
CLEANUP = "cleanup"
# Writing the artifacts or the record failed for want of room or of a writable disk: the user can
# fix that, then `fahr wait` finishes the job (exit 3, not a bug).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})

_STATES = (IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED)
_TEXT_FIELDS = ("failure_reason", "failure_kind", "attempt_of", "model_artifact", "output_artifact", "instance_type", "gpus", "secondary_status",
                "upload_error", "checkpoint_path", "project", "git_commit", "sweep", "notify")
_TIME_FIELDS = ("created", "started", "ended")
_LATEST_TIME = 253402300799  # 9999-12-31T23:59:59Z: the last second a datetime can show
_MAP_FIELDS = ("hyperparameters", "channels", "environment", "metric_definitions")


def default_output_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fahr", "jobs")


def _output_root(config) -> Path:
    raw = str(config["output_path"])
    if not raw.strip():
        raise ConfigError("config.output_path is empty; give a folder for the jobs' artifacts")
    if "\x00" in raw:
        raise ConfigError(f"config.output_path={raw!r} holds a NUL character; give a folder for the jobs' artifacts")
    return Path(os.path.abspath(os.path.expanduser(raw)))


def _job_dir(config, job_name: str) -> Path:
    return _output_root(config) / job_name


def _check_output_path(config) -> None:
    """Refuse, before anything is built, an output_path no job folder can be made in."""
    root = _output_root(config)
    setting = f"config.output_path={config['output_path']}"
    probe = _nearest_folder(root, setting, "the jobs' artifacts")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}: {probe} is not writable; choose a folder you can write to")


def _nearest_folder(root: Path, setting: str, purpose: str) -> Path:
    """``root``, or the nearest of its ancestors that exists (it decides whether ``root`` can be
    made); a ConfigError when that is not a folder, a broken link, or cannot be looked at."""
    probe = root
    while True:
        try:
            info = os.stat(probe)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.islink(probe):
                raise ConfigError(f"{setting}: {probe} is a broken link; fix it or choose another folder") from None
            probe = probe.parent
            continue
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot use {probe} ({exc.strerror}); choose another folder") from None
        break
    if not stat.S_ISDIR(info.st_mode):
        where = "is a file" if probe == root else f"is under {probe}, a file"
        raise ConfigError(f"{setting} {where}, not a folder; choose a folder for {purpose}")
    return probe


# -- reading and writing a record ------------------------------------------------------------


class BadRecord(UsageError):
    """A job.json fahr cannot use (exit 2): ``reason`` says what is wrong with it."""

    def __init__(self, job_dir: Path, reason: str):
        self.job_dir, self.reason = job_dir, reason
        super().__init__(f"{job_dir / RECORD} {reason}; restore it, or remove the job's folder {job_dir}")


def _read_record(job_dir: Path | Folder) -> dict:
    """The job's record, checked: every reader goes through here, since anyone may have edited it.

    ``job_dir`` is the job's folder, or that folder opened (see fahr_core.jobfolder: never through
    a link, the record a regular file of at most _RECORD_MAX_BYTES). A missing record is a
    :class:`UsageError`; one that is not a regular file, not UTF-8 JSON, or whose fields have the
    wrong type, a :class:`BadRecord`; a job folder that is a link, a :class:`Refused`. All exit 2.
    """
    try:
        with _opened(job_dir) as folder:
            raw = folder.read(RECORD, _RECORD_MAX_BYTES)
    except FileNotFoundError:
        raise UsageError(
            f"no local job record at {_path(job_dir)}; check the job name and config.output_path; "
            "if it ran on another driver, pass --train-driver NAME"
        ) from None
    except Refused as exc:
        if exc.path == _path(job_dir):
            raise
        raise BadRecord(_path(job_dir), exc.reason) from None
    except OSError as exc:
        path = _path(job_dir) / RECORD
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # the way to the record, not the record
            raise ConfigError(f"cannot reach {path} ({exc.strerror}): a folder on the way, or "
                              "config.output_path, is not a usable folder; fix it or choose another") from None
        if exc.errno in (errno.EACCES, errno.EPERM):  # the user's to fix, not a broken record
            raise EnvironmentProblem(f"cannot read {path} ({exc.strerror}); make it readable to you, or "
                                     "choose another config.output_path") from None
        raise BadRecord(_path(job_dir), f"cannot be read ({exc.strerror})") from None
    job_dir = _path(job_dir)
    try:
        record = json.loads(raw.decode("utf-8"))
        # JSON may escape half of a UTF-16 pair alone ("\ud800"): no text, and printing it fails.
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord(job_dir, "holds an escaped lone surrogate (such as \\ud800), which is not text") from None
    except UnicodeDecodeError:
        raise BadRecord(job_dir, "is not UTF-8 text") from None
    except RecursionError:
        raise BadRecord(job_dir, "nests too deeply to be a job record") from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer too long to convert
        raise BadRecord(job_dir, f"is not valid JSON ({' '.join(str(exc).split())})") from None
    _check_record(job_dir, record)
    return record


def _kind(value) -> str:
    """A value as an error message shows it: short, and never a repr of a deep structure."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_record(job_dir: Path, record) -> None:
    if not isinstance(record, dict):
        raise BadRecord(job_dir, f"holds {_kind(record)}, not a job record (a JSON object)")
    for key in ("job_name", "model_tag", "status", "image"):
        if key not in record:
            raise BadRecord(job_dir, f"lacks {key!r}")

    def wrong(key: str, expected: str) -> BadRecord:
        return BadRecord(job_dir, f"has {key} = {_kind(record[key])}, not {expected}")

    if record["job_name"] != job_dir.name:
        raise wrong("job_name", f"its folder's name {job_dir.name!r}")
    try:
        names.validate_model_tag(record["model_tag"])
    except UsageError:
        raise wrong("model_tag", "a model image tag like 'foo/model'") from None
    if record["status"] not in _STATES:
        raise wrong("status", f"one of {', '.join(_STATES)}")
    if not isinstance(record["image"], str) or not record["image"]:
        raise wrong("image", "an image reference")
    for key in _TEXT_FIELDS:
        if key in record and not isinstance(record[key], str):
            raise wrong(key, "a string")
    for key in _TIME_FIELDS:
        value = record.get(key)
        if key in record and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                              or not 0 <= value <= _LATEST_TIME):
            raise wrong(key, "a time in seconds since 1970")
    count = record.get("instance_count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INSTANCE_COUNT:
        raise wrong("instance_count", f"a number of hosts from 1 to {MAX_INSTANCE_COUNT}")
    for key in _MAP_FIELDS:
        value = record.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong(key, "an object of strings")
    if not isinstance(record.get("stop_requested", False), (bool, str)):
        raise wrong("stop_requested", "true, false or the reason of the stop")
    if record.get("unfinished", FOLLOW) not in (FOLLOW, CLEANUP):
        raise wrong("unfinished", f"{FOLLOW!r} or {CLEANUP!r}")
    pid = record.get("follower", 1)
    if isinstance(pid, bool) or not isinstance(pid, int) or not 1 <= pid < 2**31:
        raise wrong("follower", "a process id")
    memory = record.get("memory", 0)
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 0:
        raise wrong("memory", "a memory limit in bytes")
    cpus = record.get("cpus", 0.0)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not math.isfinite(cpus) or cpus < 0:
        raise wrong("cpus", "a number of CPUs")
    if record.get("notify"):
        # fahr writes the URL it checked; an edited one must not make fahr open what urllib opens
        # besides http(s) (a file:// or ftp:// URL) when the job ends.
        from fahr_core import notify
        try:
            notify.check_url(record["notify"], "notify")
        except UsageError:
            raise wrong("notify", "an http:// or https:// URL") from None
    if not isinstance(record.get("notified", False), bool):
        raise wrong("notified", "true or false")
    if not isinstance(record.get("model_empty", False), bool):
        raise wrong("model_empty", "true or false")
    checkpoints = record.get("checkpoint_path", "")
    if checkpoints:
        # fahr writes the absolute path it checked: the folder it replaces at the job's end. An
        # edited one must not make that replace the jobs' folder or the home folder.
        if not os.path.isabs(checkpoints) or "\x00" in checkpoints:
            raise wrong("checkpoint_path", "an absolute folder path")
        folder = Path(os.path.normpath(checkpoints))
        for kept in (job_dir.absolute(), Path.home()):
            if folder == kept or folder in kept.parents:
                raise wrong("checkpoint_path", f"a folder of checkpoints (it holds {kept})")


def _path(job_dir: Path | Folder) -> Path:
    return job_dir.path if isinstance(job_dir, Folder) else job_dir


@contextlib.contextmanager
def _opened(job_dir: Path | Folder):
    """The job's folder opened (see fahr_core.jobfolder), or kept open when it already is."""
    if isinstance(job_dir, Folder):
        yield job_dir
    else:
        with Folder.open(job_dir) as folder:
            yield folder


def _write_record(job_dir: Path | Folder, record: dict) -> None:
    """Replace the record whole: a full disk leaves the previous one, never a cut one. Mode 0600:
    it holds the job's environment (``--env``)."""
    with _opened(job_dir) as folder:
        folder.write(RECORD, json.dumps(record, indent=2, sort_keys=True).encode("utf-8"))


@contextlib.contextmanager
def _locked(job_dir: Path):
    """One process at a time finishes a job (a `fit` following it and a `fahr stop`, say).

    The lock is taken on the job's folder itself, opened read-only: a lock file would have to be
    created, and a full or read-only disk must still let fahr say what it cannot write. Yields
    the folder opened (never through a link): what is read and written under the lock goes
    through it.
    """
    with Folder.open(job_dir) as folder:
        fcntl.flock(folder.fd, fcntl.LOCK_EX)
        yield folder


def _ended(record: dict) -> bool:
    """Whether the record's status is the job's real end (not a lost fit's provisional Failed)."""
    return record["status"] in FINAL_STATES and record.get("unfinished") != FOLLOW


def _request_stop(job_dir: Path, reason: str) -> None:
    """Note the stop before it is made: whoever finishes the job later records it Stopped."""
    with _locked(job_dir) as folder:
        record = _read_record(folder)
        if record.get("stop_requested"):
            return
        record["stop_requested"] = reason
        with contextlib.suppress(OSError):  # a full disk: the stop goes on, the finish reports it
            _write_record(folder, record)


def _mark_unfinished(job_dir: Path | Folder, reason: str, stop_requested: str = "") -> None:
    """Record a job fahr lost sight of (the caller holds the lock)."""
    record = _read_record(job_dir)
    if _ended(record):
        return  # another process (a `fahr stop`) finished it meanwhile
    record.update(status=FAILED, failure_reason=reason, failure_kind=PLATFORM, unfinished=FOLLOW)
    if stop_requested:
        record.setdefault("stop_requested", stop_requested)
    record.pop("secondary_status", None)
    with contextlib.suppress(OSError):  # a full disk: the record stays as it was, InProgress
        _write_record(job_dir, record)


def _fix(exc: OSError) -> str:
    if exc.errno in _NO_ROOM:
        return "free space"
    if exc.errno in _READ_ONLY:
        return "make it writable"
    return "fix that"


def _command(verb: str, job_name: str, config) -> str:
    """The exact ``fahr wait|stop JOB`` that reaches this job from any folder."""
    line = {"wait": wait_command, "stop": stop_command}[verb]
    return line(job_name, NAME, str(_job_dir(config, job_name).parent))


# -- the record as the values the hooks return --------------------------------------------


def _container_job(record: dict, config):
    from fahr_core.contract import ContainerJob

    return ContainerJob(
        job_name=record["job_name"],
        image=record["image"],
        hyperparameters=record.get("hyperparameters", {}),
        channels={k: Path(v) for k, v in record.get("channels", {}).items()},
        environment=record.get("environment", {}),
        execution_environment=NAME,
        instance_count=record.get("instance_count", 1),
        instance_type=record.get("instance_type", "local"),
        gpus=record.get("gpus", ""),
        memory=record.get("memory", 0),
        cpus=record.get("cpus", 0.0),
        stop_timeout=config["stop_timeout"],
        checkpoints=Path(record["checkpoint_path"]) if record.get("checkpoint_path") else None,
    )


def _result(job: JobHandle, job_dir: Path, record: dict) -> JobResult:
    seconds = None
    if record.get("started") and record.get("ended"):
        seconds = round(record["ended"] - record["started"], 3)
    return JobResult(
        job=job,
        status=record["status"],
        failure_reason=record.get("failure_reason", ""),
        model_artifact=record.get("model_artifact", ""),
        output_artifact=record.get("output_artifact", ""),
        training_seconds=seconds,
        billable_seconds=seconds,
        model_empty=record.get("model_empty"),
        failure_kind=_failure_kind(record),
        price=local_price(record.get("instance_count", 1), record.get("memory", 0), record.get("cpus", 0.0)),
    )


def local_price(hosts: int, memory: int, cpus: float):
    """A local job's price: nothing, on the resources it was given (plugin API 1.6: Price)."""
    from fahr_core import ui
    from fahr_core.values import Price

    limits = [f"{hosts} host{'s' * (hosts != 1)}"]
    if cpus:
        limits.append(f"cpus {cpus:g} each")
    if memory:
        limits.append(f"memory {ui.size(memory)} each")
    return Price(per_hour=0.0, instances=hosts, source="local jobs run on this machine and cost nothing",
                 resources=", ".join(limits))


def _failure_kind(record: dict) -> str:
    """Why an ended job did not complete (fahr_core.values.FAILURE_KINDS), as its record says;
    a record of before fahr 0.5, which does not say, failed or was stopped by its own doing."""
    if record["status"] not in (FAILED, STOPPED):
        return ""
    kind = record.get("failure_kind", "")
    return kind if kind in FAILURE_KINDS else USER


def _info(job_dir: Path, record: dict):
    from fahr_core.values import JobInfo

    seconds = None
    if _ended(record) and record.get("started") and record.get("ended"):
        seconds = round(record["ended"] - record["started"], 3)
    artifact = ""
    if record["status"] == COMPLETED:
        # The job folder's own archive, as fetch reads it: the record's field is a file anyone may edit.
        artifact = str(job_dir / "output" / "model.tar.gz")
    return JobInfo(
        job_name=record["job_name"], model_tag=record["model_tag"], driver=NAME, status=record["status"],
        secondary_status=record.get("secondary_status", ""), created=record.get("created"),
        started=record.get("started"), ended=record.get("ended") if _ended(record) else None,
        training_seconds=seconds, billable_seconds=seconds,
        failure_reason=record.get("failure_reason", "")[:1024], model_artifact=artifact,
        project=record.get("project", ""), git_commit=record.get("git_commit", ""),
        hyperparameters=dict(record.get("hyperparameters", {})),
        metric_definitions=tuple(record.get("metric_definitions", {}).items()),
        sweep=record.get("sweep", ""),
        failure_kind=_failure_kind(record),
        attempt_of=record.get("attempt_of", ""),
        price=local_price(record.get("instance_count", 1), record.get("memory", 0), record.get("cpus", 0.0)),
    )


# -- the jobs of a folder ----------------------------------------------------------------------


def _kind_of(location: Path) -> str | None:
    """What ``location`` is: "file", "folder", or None (nothing usable there). A location fahr may
    not look at is one line naming it (exit 3), not a PermissionError."""
    try:
        mode = os.stat(location).st_mode
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise EnvironmentProblem(f"cannot look at {location} ({exc.strerror}); make it readable to you, "
                                     "or choose another folder of jobs (config.output_path)") from None
        return None
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else None


def _records(location: Path):
    """``(record file, record)`` of every job folder in ``location``, in name order. A record that
    cannot be read is skipped with one warning line: one broken job must not hide the others."""
    try:
        names = sorted(os.listdir(location))
    except OSError as exc:
        raise EnvironmentProblem(f"cannot list the jobs in {location} ({exc.strerror}); make it readable to you, "
                                 "or choose another folder of jobs (config.output_path)") from None
    for name in names:
        job_dir = location / name
        if not os.path.isdir(job_dir):
            continue  # not a job's folder
        try:
            record = _read_record(job_dir)
        except BadRecord as exc:
            ui.warn(f"skipping {exc.job_dir}: its {RECORD} {exc.reason}")
            continue
        except Refused as exc:  # the job's folder is a link: what it leads to is no job of here
            ui.warn(f"skipping {exc.path}: it {exc.reason}")
            continue
        except EnvironmentProblem as exc:  # a job folder fahr may not read: the others may be readable
            ui.warn(f"skipping {job_dir}: {exc.message}")
            continue
        except UsageError:  # no job's folder (no record), or gone since the listing
            continue
        yield job_dir / RECORD, record


def _newest_completed(location: Path, model_tag: str) -> tuple[Path, dict]:
    """The newest completed job of ``model_tag`` in ``location``, and its record.

    A record that cannot be read is skipped with a warning: one broken job must not hide the others.
    """
    best: tuple[float, str, Path, dict] | None = None
    for record_file, record in _records(location):
        if record["model_tag"] == model_tag and record["status"] == COMPLETED:
            key = (record.get("created", 0.0), record_file.parent.name, record_file.parent, record)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        raise UsageError(f"no completed job of {model_tag!r} in {location}; train it first with 'fahr fit'")
    return best[2], best[3]


def list_jobs(query, config):
    root = _output_root(config)
    if _kind_of(root) != "folder":
        return []  # no job has run here yet
    found: list[tuple[float, str, object]] = []
    for record_file, record in _records(root):
        if query.model_tag and record["model_tag"] != query.model_tag:
            continue
        if query.status and record["status"] != query.status:
            continue
        # A record of before plugin API 1.4 has no project: it is of none (JobQuery.project).
        if query.project and record.get("project") != query.project:
            continue
        if getattr(query, "sweep", None) and record.get("sweep") != query.sweep:
            continue
        found.append((record.get("created", 0.0), record["job_name"], _info(record_file.parent, record)))
    found.sort(key=lambda item: item[:2], reverse=True)
    infos = [info for _, _, info in found]
    return infos[:query.limit] if query.limit is not None else infos
