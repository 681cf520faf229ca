"""A local job's life: launched as containers on this machine's engine, followed, stopped.

``launch`` records the job, starts its hosts (fahr_core.contract runs them under SageMaker's
container contract) and the job's follower (fahr_core.drivers.local.follower), which finishes the
job when they exit if nobody else does; ``wait`` follows them to their end and finishes the job
(fahr_core.drivers.local.finish) first; ``stop`` and an interrupt stop them first. When fahr loses
sight of a job (the engine went away), its record says so and names the command that reconciles it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

from fahr_core import interrupts, jobfolder, ui
from fahr_core.drivers.local import checkpoint_folders, metricfile
from fahr_core.drivers.local.checkpoint_folders import GIVEN, _checkpoint_root, _claim, _release, _write_given
from fahr_core.drivers.local.finish import _finish, _lost_sight, _notify_once, _remove_left
from fahr_core.drivers.local.logstream import _replay_logs
from fahr_core.drivers.local.records import (CLEANUP, MAX_INSTANCE_COUNT, NAME, RECORD, _check_output_path,
                                              _command, _container_job, _ended, _fix, _job_dir, _locked,
                                              _NO_ROOM, _read_record, _request_stop, _result,
                                              _write_record)
from fahr_core.errors import ConfigError, EnvironmentProblem, UsageError, first_line
from fahr_core.jobfolder import Folder, Refused
from fahr_core.values import COMPLETED, FAILED, IN_PROGRESS, PLATFORM, STOPPED, USER, JobHandle


def check_run(config, inputs):
    _check_output_path(config)
    if not 1 <= config["instance_count"] <= MAX_INSTANCE_COUNT:
        raise ConfigError(
            f"config.instance_count={config['instance_count']}: must be 1 to {MAX_INSTANCE_COUNT} "
            "(each host is a container on this machine)"
        )
    if config["stop_timeout"] < 0:
        raise ConfigError(f"config.stop_timeout={config['stop_timeout']}: must be 0 or more")
    _checkpoint_root(config)
    for name, value in inputs.items():
        _channel_path(name, value)


#: The engine's smallest memory limit (Docker refuses less than 6 MiB).
MEMORY_MIN = 6 * 1024**2
#: The largest: the engine's limit is a signed 64-bit count of bytes (more fails the job's start).
MEMORY_MAX = 2**63 - 1


def memory_limit(value: str) -> int:
    """config.memory in bytes; 0 for no limit (checked by :func:`memory_problem` when read)."""
    from fahr_core.config import parse_size

    return parse_size(value) or 0 if value.strip() else 0


def memory_problem(value: str) -> str | None:
    """Why config.memory is not a memory limit, or None."""
    from fahr_core.config import parse_size

    if not value.strip():
        return None
    size = parse_size(value)
    if size is None:
        return "is not a size: give bytes or a number with K, M, G (powers of 1024) such as 512m or 4G, or '' for no limit"
    if size < MEMORY_MIN:
        return f"is less than the engine's smallest memory limit, {ui.size(MEMORY_MIN)}: give at least 6m, or '' for no limit"
    if size > MEMORY_MAX:
        return f"is more than the engine's largest memory limit: give at most {MEMORY_MAX // 1024**4}T, or '' for no limit"
    return None


def cpus_problem(value: float) -> str | None:
    """Why config.cpus is not a share of this machine's CPUs, or None."""
    available = os.cpu_count() or 1
    if value == 0 or 0.01 <= value <= available:
        return None
    return f"is not a number of CPUs from 0.01 to {available} (this machine's), or 0 for no limit"


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


def _record_launch(spec, config, channels: dict, checkpoints: Path | None) -> tuple[Path, dict]:
    """Make the job's folder and record (and, with checkpoints, what the hosts are given), and
    name the job in its checkpoint folder's marker; nothing is left half-made on a failure."""
    job_dir = _job_dir(config, spec.job_name)
    try:
        job_dir.parent.mkdir(parents=True, exist_ok=True)
        job_dir.mkdir(mode=jobfolder.FOLDER_MODE)  # 0700: its record holds the job's environment
    except FileExistsError:
        raise UsageError(f"job {spec.job_name} already exists in {job_dir.parent}; choose another name") from None
    except OSError as exc:
        if exc.errno in _NO_ROOM | {errno.EROFS}:
            raise EnvironmentProblem(f"cannot create {job_dir} ({exc.strerror}): {_fix(exc)} there, "
                                     "then run fahr fit again") from None
        raise ConfigError(f"config.output_path={config['output_path']}: cannot create {job_dir} ({exc.strerror})") from None
    record = {
        "job_name": spec.job_name,
        "model_tag": spec.model_tag,
        "image": spec.image.reference,
        "hyperparameters": dict(spec.hyperparameters),
        "channels": channels,
        "environment": dict(spec.environment),
        **({"secrets": sorted(spec.secrets)} if spec.secrets else {}),  # their names: the values stay in memory
        "instance_count": config["instance_count"],
        "instance_type": config["instance_type"],
        "gpus": config["gpus"],
        # each host's limits, so that whoever finishes the job names the one it went past
        **({"memory": memory_limit(config["memory"])} if memory_limit(config["memory"]) else {}),
        **({"cpus": float(config["cpus"])} if config["cpus"] else {}),
        **({"checkpoint_path": str(checkpoints)} if checkpoints else {}),
        "project": spec.project,  # where the image was built from: `fahr fetch TAG` prefers this project's
        "git_commit": spec.git_commit,
        # (plugin API 1.5) the names of its metrics by regex: whoever finishes the job reads them
        "metric_definitions": dict(getattr(spec, "metric_definitions", ())),
        **({"sweep": spec.sweep} if getattr(spec, "sweep", "") else {}),  # (plugin API 1.5) `fahr jobs --sweep`
        **({"attempt_of": spec.attempt_of} if getattr(spec, "attempt_of", "") else {}),  # (1.6) fit --retry
        # (1.6) the URL told of the job's end, by whoever ends it (finish._notify_once); checked by the core
        **({"notify": spec.notify} if getattr(spec, "notify", "") else {}),
        "status": IN_PROGRESS,
        "secondary_status": "Starting",
        "created": time.time(),
    }
    written = job_dir / RECORD
    try:
        _write_record(job_dir, record)
        if checkpoints is not None:  # what the hosts are given: the copy back is merged against it
            written = job_dir / GIVEN
            _write_given(job_dir, checkpoints)
    except OSError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)  # nothing started: no half-made job to keep
        raise EnvironmentProblem(f"cannot write {written} ({exc.strerror}): {_fix(exc)} in "
                                 f"{job_dir.parent}, then run fahr fit again; nothing was started") from None
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)  # an unreadable checkpoint: nothing started
        raise
    if checkpoints is not None:
        try:
            _claim(checkpoints, job_dir)
        except OSError as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            fix = "" if exc.errno == errno.EPERM else f"{_fix(exc)} or "
            raise ConfigError(f"config.checkpoint_path={config['checkpoint_path']}: cannot write its marker in "
                              f"{checkpoints} ({exc.strerror}); {fix}choose another folder") from None
    return job_dir, record


def launch(spec, config):
    from fahr_core.contract import ContractRun, EngineLost

    check_run(config, spec.inputs)
    channels = {name: str(_channel_path(name, value)) for name, value in spec.inputs.items()}
    checkpoints = _checkpoint_root(config)
    with checkpoint_folders.taking(checkpoints, config):
        job_dir, record = _record_launch(spec, config, channels, checkpoints)
    # Until `wait` follows the job, an interrupt stops it (start() itself cleans up after one).
    interrupts.until_followed(spec.job_name, lambda: _stop_unfollowed(spec.job_name, job_dir, config))
    # The secrets go to the containers as files (fahr_core.contract), from this process only.
    run = ContractRun(dataclasses.replace(_container_job(record, config), secrets=dict(spec.secrets)))
    def started(status: str) -> None:
        # Recorded, not printed as the job's status: the core announces the job once launch
        # returns, and wait prints its status (hookspec launch). A copy of large inputs is a step
        # of the launch, said as one.
        record.update(secondary_status=status)
        if status == "Downloading" and spec.inputs:
            ui.info(f"copying the input channel{'s' * (len(spec.inputs) > 1)} {', '.join(spec.inputs)} "
                    "into the job's containers")

    try:
        run.start(on_status=started)
    except BaseException as exc:  # start() removed what it had created; record how it ended
        lost = isinstance(exc, EngineLost)
        if isinstance(exc, KeyboardInterrupt):
            record.update(status=STOPPED, failure_reason="Interrupted while starting", failure_kind=USER)
        else:
            record.update(status=FAILED, failure_reason=f"Could not start: {exc}", failure_kind=PLATFORM)
        if lost:  # start() could not remove what it had created: `fahr wait` does, later
            record["unfinished"] = CLEANUP
        record.pop("secondary_status", None)
        record["ended"] = time.time()
        try:
            _write_record(job_dir, record)
        except OSError:
            shutil.rmtree(job_dir, ignore_errors=True)  # a record left InProgress would lie
        if checkpoints is not None:
            _release(checkpoints, job_dir)
        if lost:
            raise EnvironmentProblem(f"{exc}; once the engine is back, remove what the job left with: "
                                     f"{_command('wait', spec.job_name, config)}") from exc
        raise
    record["started"] = time.time()
    try:
        _write_record(job_dir, record)
    except OSError as exc:
        # Only the start time is lost: the record still says InProgress, which is true, and the
        # end is recorded (or the full disk reported, the job kept) when the job ends.
        ui.warn(f"could not note the start of {spec.job_name} in {job_dir / RECORD} ({exc.strerror}); "
                "it trains on, but free space there before it ends")
    if config["follower"] and _start_follower(job_dir, config, spec.secrets):
        interrupts.attended(spec.job_name)  # its terminal closing now leaves it to its follower
    return JobHandle(driver=NAME, job_name=spec.job_name, model_tag=spec.model_tag,
                     details={"job_dir": str(job_dir), "hosts": config["instance_count"]},
                     notifies=bool(getattr(spec, "notify", "")))


def _start_follower(job_dir: Path, config, secrets=()) -> bool:
    """Start the process that finishes the job when its containers exit, whoever watches
    (fahr_core.drivers.local.follower), without the job's secrets; record its pid. False when
    it could not be started (said in a warning)."""
    from fahr_core.drivers.local import follower

    try:
        pid = follower.start(job_dir, config, secrets)
    except (OSError, ValueError, Refused) as exc:
        why = f"{exc.path} {exc.reason}" if isinstance(exc, Refused) else first_line(exc)
        ui.warn(f"could not start the process that finishes job {job_dir.name} when it ends ({why}); "
                f"it trains on, and '{_command('wait', job_dir.name, config)}' finishes it")
        return False
    with _locked(job_dir) as folder:
        record = _read_record(folder)
        if not _ended(record):
            record["follower"] = pid
            with contextlib.suppress(OSError):  # a full disk: the follower runs all the same
                _write_record(folder, record)
    return True


def wait(job, config):
    # The job's follower lets this process finish the job while it follows it. (Imported here: the
    # follower runs as `python -m` of its module, which must not be imported before it runs.)
    from fahr_core.drivers.local import follower

    job_dir = _job_dir(config, job.job_name)
    with follower.watching(job_dir):
        try:
            return _wait(job, config)
        finally:  # ended here (or by someone before): told once, whoever ended it
            _notify_once(job_dir)


def _wait(job, config):
    from fahr_core.contract import ContractRun

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if not job.model_tag:  # re-attached by name (`fahr wait JOB`): the record knows the tag
        job = dataclasses.replace(job, model_tag=record["model_tag"])
    if _ended(record):
        _replay_logs(job_dir, record)  # as SageMaker's wait prints a finished job's logs
        if record.get("unfinished") == CLEANUP:
            record = _remove_left(ContractRun(_container_job(record, config)), job_dir, config)
        return _result(job, job_dir, record)
    run = ContractRun(_container_job(record, config))
    several = record.get("instance_count", 1) > 1
    try:
        interrupts.followed(job.job_name)  # in the try: from here on, Ctrl-C is handled below
        gone = not run.containers()
        if not gone:
            if not record.get("upload_error"):  # its containers run (or ran): a retried upload is not news
                ui.status_change(job.job_name, "Training")
            # Its output is copied into the job's logs folder as it comes: the folder as opened
            # (never a link), which the run holds until it saves the logs.
            with Folder.open(job_dir) as folder:
                logs = folder.sub("logs", create=True)
            # Its metrics are read from the output as it comes, and kept in its folder (docs/metrics.md).
            live = metricfile.Live(job_dir, record)

            def output(host, data):
                live.output(host, data)
                ui.log_output(data, host if several else None)

            try:
                outcome = run.follow(output, started_at=record.get("started"), lines=several, keep_in=logs)
            except BaseException:
                live.close()
                raise
            live.close(complete=True)
            ui.flush_output()  # the job's last output before anything fahr prints next
    except KeyboardInterrupt:
        _stop_interrupted(run, job.job_name, job_dir, config)
        raise
    except Exception as exc:
        problem = _lost_sight(job.job_name, job_dir, config, exc, "following")
        if problem is None:
            raise
        raise problem from exc
    if gone:
        record = _finish(run, job_dir, config, FAILED, "Its containers are gone (removed outside fahr)", PLATFORM)
    else:
        record = _finish(run, job_dir, config, outcome.status, outcome.failure_reason, outcome.failure_kind)
    ui.status_change(job.job_name, record["status"])
    return _result(job, job_dir, record)


def _stop_interrupted(run, job_name: str, job_dir: Path, config) -> None:
    """After Ctrl-C: stop the job, save what it left, remove its containers. Further Ctrl-C are
    deferred meanwhile (see fahr_core.interrupts): cut here, the job would be left running."""
    stop_command = _command("stop", job_name, config)
    interrupts.doing(f"stopping job {job_name} and removing its containers "
                     f"(if fahr is killed, '{stop_command}' does it)")
    reason = "Stopped by the user (interrupt)"
    try:
        run.reconnect()
        codes = run.exit_codes()
        if codes is None:
            ui.status_change(job_name, "Stopping", f"SIGTERM, then SIGKILL after {config['stop_timeout']} s; "
                                                   "Ctrl-C again does not abandon it")
            _request_stop(job_dir, reason)
            run.stop()
    except Exception as exc:
        problem = _lost_sight(job_name, job_dir, config, exc, "stopping", stop_requested=reason)
        if problem is None:
            raise
        raise problem from exc
    if codes is None:
        record = _finish(run, job_dir, config, STOPPED, reason)
    else:  # every host had already ended: record how, rather than calling it stopped
        failed = sorted(h for h, c in codes.items() if c != 0)
        try:
            why, kind = run.failure(failed[0], codes[failed[0]]) if failed else ("", "")
        except Exception as exc:
            problem = _lost_sight(job_name, job_dir, config, exc, "following")
            if problem is None:
                raise
            raise problem from exc
        record = _finish(run, job_dir, config, FAILED if failed else COMPLETED, why, kind)
    ui.status_change(job_name, record["status"])


def _stop_unfollowed(job_name: str, job_dir: Path, config) -> None:
    """An interrupt came after launch and before `wait` followed the job: stop it all the same."""
    from fahr_core.contract import ContractRun
    from fahr_core.drivers.local import follower

    with follower.watching(job_dir):
        record = _read_record(job_dir)
        if _ended(record):
            return  # start() was interrupted and has recorded it, or the job's follower finished it
        try:
            _stop_interrupted(ContractRun(_container_job(record, config)), job_name, job_dir, config)
        finally:
            _notify_once(job_dir)


def stop(job, config):
    from fahr_core.drivers.local import follower

    job_dir = _job_dir(config, job.job_name)
    with follower.watching(job_dir):  # as wait: the follower lets it finish the job
        try:
            return _stop(job, config)
        finally:
            _notify_once(job_dir)


def _stop(job, config):
    from fahr_core.contract import ContractRun, engine_lost, is_engine_error

    job_dir = _job_dir(config, job.job_name)
    record = _read_record(job_dir)
    if _ended(record):
        return False
    run = ContractRun(_container_job(record, config))
    reason = "Stopped by 'fahr stop'"
    with interrupts.shield(f"stopping job {job.job_name} and removing its containers"):
        try:
            codes = run.exit_codes()
            if codes is None:
                _request_stop(job_dir, reason)
                run.stop()
        except Exception as exc:
            if not is_engine_error(exc):
                raise
            lost = engine_lost(exc, f"stopping job {job.job_name}")
            raise EnvironmentProblem(f"{lost.message}; the job may still run: once the engine is back, "
                                     f"run again: {_command('stop', job.job_name, config)}") from exc
        if codes is None:
            _finish(run, job_dir, config, STOPPED, reason)
        elif record.get("stop_requested"):
            # Stopped already, but the fahr that stopped it was killed (or lost the engine) before
            # finishing: finish it as that fahr would have.
            _finish(run, job_dir, config, STOPPED, "")
        else:
            return False  # it has ended on its own; `fahr wait` records how
    return True
