"""The ``local`` driver: train in containers on the local Docker engine, under the same container
contract as SageMaker, and keep the artifacts in SageMaker's layout in a local folder:

    <output_path>/<job>/output/model.tar.gz
    <output_path>/<job>/output/output.tar.gz
    <output_path>/<job>/job.json          (fahr's record of the job: status, reason, times)

so that a model that trains here trains on SageMaker unchanged, and ``fahr fetch`` works alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import os
import shutil
import stat
import time
from pathlib import Path
from urllib.parse import urlparse

from fahr_core import hookimpl, names, ui
from fahr_core.config import ConfigKey
from fahr_core.errors import ConfigError, EnvironmentProblem, UsageError
from fahr_core.jobs import (COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, STOPPED, STOPPING, JobHandle,
                            JobResult)

NAME = "local"
RECORD = "job.json"
#: The most hosts one local job may have. Each is a container on this machine: more is a typo (or
#: a billion), refused before anything is built or allocated.
MAX_INSTANCE_COUNT = 64
#: The largest job.json fahr reads: what it writes is a few kilobytes.
_RECORD_MAX_BYTES = 16 * 1024 * 1024


def default_output_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fahr", "jobs")


@hookimpl
def config_keys():
    return [
        ConfigKey("output_path", str, default_output_path(),
                  "Folder that receives <job>/output/model.tar.gz and output.tar.gz."),
        ConfigKey("instance_count", int, 1,
                  f"Containers (hosts algo-1..algo-N, 1-{MAX_INSTANCE_COUNT}) on a private network, "
                  "to rehearse distributed training."),
        ConfigKey("instance_type", str, "local", "Reported to the container in resourceconfig.json."),
        ConfigKey("gpus", str, "", "GPUs to pass through: 'all', a count, or device ids '0,1'. Empty: none."),
        ConfigKey("stop_timeout", int, 10, "Seconds between SIGTERM and SIGKILL when a job is stopped."),
    ]


@hookimpl
def claims_location(location):
    parsed = urlparse(location)
    if parsed.scheme == "file" or (not parsed.scheme and Path(location).exists()):
        return True
    return None


# -- the job record ----------------------------------------------------------------------------


def _output_root(config) -> Path:
    raw = str(config["output_path"])
    if not raw.strip():
        raise ConfigError("config.output_path is empty; give a folder for the jobs' artifacts")
    if "\x00" in raw:
        raise ConfigError(f"config.output_path={raw!r} holds a NUL character; give a folder for the jobs' artifacts")
    return Path(os.path.abspath(os.path.expanduser(raw)))


def _job_dir(config, job_name: str) -> Path:
    return _output_root(config) / job_name


class BadRecord(UsageError):
    """A job.json fahr cannot use (exit 2): ``reason`` says what is wrong with it."""

    def __init__(self, job_dir: Path, reason: str):
        self.job_dir, self.reason = job_dir, reason
        super().__init__(f"{job_dir / RECORD} {reason}; restore it, or remove the job's folder {job_dir}")


_STATES = (IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED)
_TEXT_FIELDS = ("failure_reason", "model_artifact", "output_artifact", "instance_type", "gpus", "secondary_status")
_TIME_FIELDS = ("created", "started", "ended")
_MAP_FIELDS = ("hyperparameters", "channels", "environment")


def _read_record(job_dir: Path) -> dict:
    """The job's record, checked: every reader goes through here, since anyone may have edited it.

    A missing record is a :class:`UsageError`; one that is not a regular file, not UTF-8 JSON, or
    whose fields have the wrong type, a :class:`BadRecord`. Both exit 2.
    """
    path = job_dir / RECORD
    try:
        # O_NOFOLLOW: fahr writes the record as a file; a link could lead anywhere (/dev/zero).
        # O_NONBLOCK: a FIFO under the name must not hang fahr; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UsageError(f"no local job record at {job_dir}; check the job name and config.output_path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadRecord(job_dir, "is a symbolic link, not the file fahr wrote") from None
        raise BadRecord(job_dir, f"cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise BadRecord(job_dir, "is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise BadRecord(job_dir, "is not a regular file")
        if info.st_size > _RECORD_MAX_BYTES:
            raise BadRecord(job_dir, f"is {info.st_size} bytes, larger than any record fahr writes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read(_RECORD_MAX_BYTES + 1)
    except OSError as exc:
        raise BadRecord(job_dir, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    try:
        record = json.loads(raw.decode("utf-8"))
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
        if key in record and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise wrong(key, "a time in seconds")
    count = record.get("instance_count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INSTANCE_COUNT:
        raise wrong("instance_count", f"a number of hosts from 1 to {MAX_INSTANCE_COUNT}")
    for key in _MAP_FIELDS:
        value = record.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong(key, "an object of strings")
    if not isinstance(record.get("stop_requested", False), bool):
        raise wrong("stop_requested", "true or false")


def _write_record(job_dir: Path, record: dict) -> None:
    tmp = job_dir / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(job_dir / RECORD)


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
        stop_timeout=config["stop_timeout"],
    )


def _channel_path(channel: str, value: str) -> Path:
    parsed = urlparse(value)
    if parsed.scheme not in ("", "file"):
        raise UsageError(
            f"--input {channel}={value}: the local driver reads local folders or file:// URIs, "
            f"not {parsed.scheme}:// (download the data first, or use a cloud driver)"
        )
    path = Path(parsed.path if parsed.scheme == "file" else value).expanduser()
    if not path.exists():
        raise UsageError(f"--input {channel}={value}: {path} does not exist")
    return path.resolve()


# -- the steps ---------------------------------------------------------------------------------


@hookimpl
def check_run(config, inputs):
    _check_output_path(config)
    if not 1 <= config["instance_count"] <= MAX_INSTANCE_COUNT:
        raise ConfigError(
            f"config.instance_count={config['instance_count']}: must be 1 to {MAX_INSTANCE_COUNT} "
            "(each host is a container on this machine)"
        )
    if config["stop_timeout"] < 0:
        raise ConfigError(f"config.stop_timeout={config['stop_timeout']}: must be 0 or more")
    for name, value in inputs.items():
        _channel_path(name, value)


def _check_output_path(config) -> None:
    """Refuse, before anything is built, an output_path no job folder can be made in."""
    root = _output_root(config)
    setting = f"config.output_path={config['output_path']}"
    probe = root
    while True:  # the nearest existing folder on the way up decides
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
        raise ConfigError(f"{setting} {where}, not a folder; choose a folder for the jobs' artifacts")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}: {probe} is not writable; choose a folder you can write to")


@hookimpl
def launch(spec, config):
    from fahr_core.contract import ContractRun

    check_run(config, spec.inputs)
    channels = {name: str(_channel_path(name, value)) for name, value in spec.inputs.items()}
    job_dir = _job_dir(config, spec.job_name)
    try:
        job_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise UsageError(f"job {spec.job_name} already exists in {job_dir.parent}; choose another name") from None
    except OSError as exc:
        raise ConfigError(f"config.output_path={config['output_path']}: cannot create {job_dir} ({exc.strerror})") from None
    record = {
        "job_name": spec.job_name,
        "model_tag": spec.model_tag,
        "image": spec.image.reference,
        "hyperparameters": dict(spec.hyperparameters),
        "channels": channels,
        "environment": dict(spec.environment),
        "instance_count": config["instance_count"],
        "instance_type": config["instance_type"],
        "gpus": config["gpus"],
        "status": IN_PROGRESS,
        "secondary_status": "Starting",
        "created": time.time(),
    }
    _write_record(job_dir, record)
    run = ContractRun(_container_job(record, config))
    try:
        run.start(on_status=lambda status: ui.status_change(spec.job_name, status))
    except BaseException as exc:  # start() removed what it had created; record how it ended
        if isinstance(exc, KeyboardInterrupt):
            record.update(status=STOPPED, failure_reason="Interrupted while starting")
        else:
            record.update(status=FAILED, failure_reason=f"Could not start: {exc}")
        record.pop("secondary_status", None)
        record["ended"] = time.time()
        _write_record(job_dir, record)
        raise
    record["started"] = time.time()
    _write_record(job_dir, record)
    return JobHandle(driver=NAME, job_name=spec.job_name, model_tag=spec.model_tag,
                     details={"job_dir": str(job_dir), "hosts": config["instance_count"]})


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
    )


@hookimpl
def wait(job, config):
    from fahr_core.contract import ContractRun

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if not job.model_tag:  # re-attached by name (`fahr wait JOB`): the record knows the tag
        job = dataclasses.replace(job, model_tag=record["model_tag"])
    if record["status"] in FINAL_STATES:
        _replay_logs(job_dir, record)  # as SageMaker's wait prints a finished job's logs
        return _result(job, job_dir, record)
    run = ContractRun(_container_job(record, config))
    if not run.containers():
        record = _finish(run, job_dir, FAILED, "Its containers are gone (removed outside fahr)")
        return _result(job, job_dir, record)
    several = record.get("instance_count", 1) > 1
    try:
        outcome = run.follow(lambda host, line: ui.log_line(line, host if several else None),
                             started_at=record.get("started"))
    except KeyboardInterrupt:
        run.reconnect()
        codes = run.exit_codes()
        if codes is None:
            ui.status_change(job.job_name, "Stopping", f"SIGTERM, then SIGKILL after {config['stop_timeout']} s")
            run.stop()
            record = _finish(run, job_dir, STOPPED, "Stopped by the user (interrupt)")
        else:  # every host had already ended: record how, rather than calling it stopped
            failed = sorted(h for h, c in codes.items() if c != 0)
            reason = run.failure_reason(failed[0], codes[failed[0]]) if failed else ""
            record = _finish(run, job_dir, FAILED if failed else COMPLETED, reason)
        ui.status_change(job.job_name, record["status"])
        raise
    record = _finish(run, job_dir, outcome.status, outcome.failure_reason)
    ui.status_change(job.job_name, record["status"])
    return _result(job, job_dir, record)


def _replay_logs(job_dir: Path, record: dict) -> None:
    several = record.get("instance_count", 1) > 1
    for log in sorted((job_dir / "logs").glob("*.log")):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            ui.log_line(line, log.stem if several else None)


@contextlib.contextmanager
def _locked(job_dir: Path):
    """One process at a time finishes a job (a `fit` following it and a `fahr stop`, say)."""
    with open(job_dir / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _finish(run, job_dir: Path, status: str, reason: str) -> dict:
    """Pack the artifacts in SageMaker's layout, record the end, remove containers and network.

    Idempotent: a job another process has finished is left as it is. Returns the final record.
    """
    with _locked(job_dir):
        record = _read_record(job_dir)
        if record["status"] in FINAL_STATES:
            run.cleanup()
            return record
        if record.get("stop_requested") and status != COMPLETED:
            status, reason = STOPPED, "Stopped by 'fahr stop'"
        try:
            run.save_logs(job_dir / "logs")
            out = job_dir / "output"
            out.mkdir(exist_ok=True)
            if status == COMPLETED:
                ui.status_change(record["job_name"], "Uploading", str(out))
                record["model_artifact"] = str(run.pack("/opt/ml/model", out / "model.tar.gz"))
            # Output data comes back whatever the ending: it is where a failed run leaves its clues.
            record["output_artifact"] = str(run.pack("/opt/ml/output/data", out / "output.tar.gz"))
        except KeyboardInterrupt:
            run.reconnect()
            status, reason = STOPPED, "Interrupted while packing the artifacts"
            record.pop("model_artifact", None)
            raise
        finally:
            record.update(status=status, failure_reason=reason, ended=time.time())
            record.pop("secondary_status", None)
            _write_record(job_dir, record)
            run.cleanup()
    return record


@hookimpl
def stop(job, config):
    from fahr_core.contract import ContractRun

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if record["status"] in FINAL_STATES:
        return False
    run = ContractRun(_container_job(record, config))
    if run.exit_codes() is not None:
        return False  # it has ended already; `fahr wait` records how
    with _locked(job_dir):
        record = _read_record(job_dir)
        record["stop_requested"] = True
        _write_record(job_dir, record)
    run.stop()
    _finish(run, job_dir, STOPPED, "Stopped by 'fahr stop'")
    return True


@hookimpl
def fetch(request, config):
    location = Path(os.path.expanduser(request.location or config["output_path"]))
    if request.location and urlparse(request.location).scheme == "file":
        location = Path(urlparse(request.location).path)
    target = Path(request.download_dir) / "model.tar.gz"
    if location.is_file():  # an archive the user named
        _copy(location, target, follow=True)
        return target
    if not location.is_dir():
        raise UsageError(f"{location} is not a folder of local jobs; pass the output_path the job used")
    if request.job_name:
        job_dir = location / request.job_name
        record = _read_record(job_dir)
    else:
        job_dir, record = _newest_completed(location, request.model_tag)
    if record["model_tag"] != request.model_tag:
        raise UsageError(f"job {job_dir.name} trained {record['model_tag']!r}, not {request.model_tag!r}")
    if record["status"] != COMPLETED:
        hint = f"; follow it with 'fahr wait {job_dir.name}'" if record["status"] == IN_PROGRESS else ""
        raise UsageError(f"job {job_dir.name} is {record['status']}, it has no model to fetch{hint}")
    # Only the job folder's own archive, whatever the record's model_artifact says: the record is
    # a file anyone may have edited, and fetch must copy nothing from outside the job's folder.
    output = job_dir / "output"
    if output.is_symlink():
        raise UsageError(f"{output} is a symbolic link, not the folder the job wrote; refusing to fetch through it")
    _copy(output / "model.tar.gz", target, follow=False)
    return target


def _copy(archive: Path, target: Path, *, follow: bool) -> None:
    """Copy a regular file; with ``follow=False`` never through a symbolic link at its name."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(archive, flags)
    except FileNotFoundError:
        raise UsageError(f"{archive} is missing; was the job's folder changed by hand?") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{archive} is a symbolic link, not the archive the job wrote; refusing to fetch it") from None
        raise UsageError(f"cannot read {archive} ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{archive} is not a regular file; it is not a model archive")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as source, open(target, "xb") as sink:
            shutil.copyfileobj(source, sink, 1024 * 1024)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        hint = "; free space there and retry" if full else ""
        raise EnvironmentProblem(f"cannot copy {archive} to {target.parent} ({exc.strerror}){hint}") from None
    finally:
        os.close(fd)


def _newest_completed(location: Path, model_tag: str) -> tuple[Path, dict]:
    """The newest completed job of ``model_tag`` in ``location``, and its record.

    A record that cannot be read is skipped with a warning: one broken job must not hide the others.
    """
    best: tuple[float, str, Path, dict] | None = None
    for record_file in sorted(location.glob(f"*/{RECORD}")):
        try:
            record = _read_record(record_file.parent)
        except BadRecord as exc:
            ui.warn(f"skipping {exc.job_dir}: its {RECORD} {exc.reason}")
            continue
        except UsageError:  # gone since the listing
            continue
        if record["model_tag"] == model_tag and record["status"] == COMPLETED:
            key = (record.get("created", 0.0), record_file.parent.name, record_file.parent, record)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        raise UsageError(f"no completed job of {model_tag!r} in {location}; train it first with 'fahr fit'")
    return best[2], best[3]
