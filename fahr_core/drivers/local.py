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
import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

from fahr_core import hookimpl, ui
from fahr_core.config import ConfigKey
from fahr_core.errors import ConfigError, UsageError
from fahr_core.jobs import COMPLETED, FAILED, FINAL_STATES, IN_PROGRESS, STOPPED, JobHandle, JobResult

NAME = "local"
RECORD = "job.json"


def default_output_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fahr", "jobs")


@hookimpl
def config_keys():
    return [
        ConfigKey("output_path", str, default_output_path(),
                  "Folder that receives <job>/output/model.tar.gz and output.tar.gz."),
        ConfigKey("instance_count", int, 1,
                  "Containers (hosts algo-1..algo-N) on a private network, to rehearse distributed training."),
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


def _job_dir(config, job_name: str) -> Path:
    if not str(config["output_path"]).strip():
        raise ConfigError("config.output_path is empty; give a folder for the jobs' artifacts")
    return Path(os.path.abspath(os.path.expanduser(config["output_path"]))) / job_name


def _read_record(job_dir: Path) -> dict:
    try:
        return json.loads((job_dir / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no local job record at {job_dir}; check the job name and config.output_path") from None


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
    if not str(config["output_path"]).strip():
        raise ConfigError("config.output_path is empty; give a folder for the jobs' artifacts")
    if config["instance_count"] < 1:
        raise ConfigError(f"config.instance_count={config['instance_count']}: must be 1 or more")
    if config["stop_timeout"] < 0:
        raise ConfigError(f"config.stop_timeout={config['stop_timeout']}: must be 0 or more")
    for name, value in inputs.items():
        _channel_path(name, value)


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
    if location.is_file():
        archive = location
    else:
        if not location.is_dir():
            raise UsageError(f"{location} is not a folder of local jobs; pass the output_path the job used")
        job_dir = location / request.job_name if request.job_name else _newest_completed(location, request.model_tag)
        record = _read_record(job_dir)
        if record.get("model_tag") != request.model_tag:
            raise UsageError(f"job {job_dir.name} trained {record.get('model_tag')!r}, not {request.model_tag!r}")
        if record["status"] != COMPLETED:
            hint = f"; follow it with 'fahr wait {job_dir.name}'" if record["status"] == IN_PROGRESS else ""
            raise UsageError(f"job {job_dir.name} is {record['status']}, it has no model to fetch{hint}")
        archive = Path(record.get("model_artifact") or job_dir / "output" / "model.tar.gz")
    if not archive.is_file():
        raise UsageError(f"{archive} is missing; was the job's folder changed by hand?")
    target = Path(request.download_dir) / "model.tar.gz"
    shutil.copyfile(archive, target)
    return target


def _newest_completed(location: Path, model_tag: str) -> Path:
    best: tuple[float, Path] | None = None
    for record_file in location.glob(f"*/{RECORD}"):
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("model_tag") == model_tag and record.get("status") == COMPLETED:
            key = (record.get("created", 0.0), record_file.parent)
            if best is None or key > best:
                best = key
    if best is None:
        raise UsageError(f"no completed job of {model_tag!r} in {location}; train it first with 'fahr fit'")
    return best[1]
