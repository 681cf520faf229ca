"""Finishing a local job: its artifacts saved whole, its end recorded, its containers removed.

Nothing is lost on the way: the containers hold the model until every archive and the record
are written. A write that fails (a full disk) keeps the job InProgress with its containers, and
says which `fahr wait JOB` finishes it; an engine that went away leaves it ``unfinished``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from fahr_core import interrupts, ui
from fahr_core.drivers.local import metricfile
from fahr_core.drivers.local.checkpoint_folders import _among_jobs, _release, _save_checkpoints
from fahr_core.drivers.local.records import (CLEANUP, RECORD, _command, _ended, _fix, _locked, _mark_unfinished,
                                              _NO_ROOM, _read_record, _write_record)
from fahr_core.errors import EnvironmentProblem, UsageError, first_line
from fahr_core.jobfolder import Folder, Refused
from fahr_core.values import COMPLETED, IN_PROGRESS, STOPPED, USER


def _finish(run, job_dir: Path, config, status: str, reason: str, kind: str = "") -> dict:
    """Pack the artifacts in SageMaker's layout, record the end, remove containers and network.

    Nothing is lost on the way: the containers, which hold the model, are removed only once
    every archive and the record are written whole. When a local write fails (a full disk, say)
    the job stays InProgress, its secondary status says why, the containers are kept and the
    EnvironmentProblem raised names the `fahr wait JOB` that finishes it once that is fixed.
    When the engine goes away, the job is recorded Failed but ``unfinished`` (see FOLLOW).
    ``kind``: why it did not complete (fahr_core.values.FAILURE_KINDS); '' for a job stopped or
    failed by its own doing (``user``).

    Idempotent: a job another process has finished is left as it is. Returns the final record.
    Ctrl-C is deferred until it is done (a finished job's model must not be cut in half).
    """
    job_name = job_dir.name
    with interrupts.shield(f"saving the artifacts of job {job_name} and removing its containers"), \
            _locked(job_dir) as folder, contextlib.ExitStack() as opened:
        record = _read_record(folder)
        if _ended(record):
            _remove_containers(run, job_dir, config, record)
            return record
        stop_reason = record.get("stop_requested")
        if stop_reason and status != COMPLETED:
            status = STOPPED
            reason = stop_reason if isinstance(stop_reason, str) else "Stopped by 'fahr stop'"
        final = dict(record)
        out = job_dir / "output"
        step, where = "the logs", job_dir / "logs"
        try:
            logs = opened.enter_context(folder.sub("logs", create=True))
            _tidy_partials(folder)  # the logs: save_logs tidies them (a copy follow() wrote may be the log)
            run.save_logs(logs)
            step, where = "the metrics", job_dir / metricfile.FINAL
            metricfile.save(run, folder, record)
            step, where = "the output folder", out
            output = opened.enter_context(folder.sub("output", create=True))
            _tidy_partials(output)
            if status == COMPLETED:
                ui.status_change(job_name, "Uploading", str(out))
                step = "model.tar.gz"
                run.pack_into("/opt/ml/model", output, "model.tar.gz")
                final["model_artifact"] = str(out / "model.tar.gz")
                final["model_empty"] = not _holds_a_file(output, "model.tar.gz")
            # Output data comes back whatever the ending: it is where a failed run leaves its clues.
            step = "output.tar.gz"
            run.pack_into("/opt/ml/output/data", output, "output.tar.gz")
            final["output_artifact"] = str(out / "output.tar.gz")
            if record.get("checkpoint_path"):  # whatever the ending: a stopped job resumes from them
                step, where = "the checkpoints", Path(record["checkpoint_path"])
                _save_checkpoints(run, folder, where)
            # The job's times are its containers' (the engine's StartedAt/FinishedAt), whenever
            # and by whom it is finished; the clock here only when the engine does not know them.
            began, ended = run.times()
            if ended is None and record.get("upload_error"):
                ended = record.get("ended")  # a retried upload: the training ended then
            if began is not None:
                final["started"] = began
            final.update(status=status, failure_reason=reason, ended=ended or time.time(),
                         failure_kind="" if status == COMPLETED else kind or USER)
            for key in ("secondary_status", "upload_error"):
                final.pop(key, None)
            # Recorded as still to be removed until they are: a fahr killed in between leaves a
            # record that makes its follower, or a later `fahr wait`, remove them (not left forever).
            final["unfinished"] = CLEANUP
            step, where = RECORD, job_dir
            _write_record(folder, final)
            checkpoints = Path(record.get("checkpoint_path") or ".")
            if record.get("checkpoint_path") and not _among_jobs(checkpoints, job_dir):  # ended: free again
                _release(checkpoints, job_dir)
        except Exception as exc:
            problem = _not_saved(run, job_dir, config, record, exc, step, where)
            if problem is None:
                raise
            raise problem from exc
        _remove_containers(run, job_dir, config, final)
    return final


def _notify_once(job_dir: Path) -> None:
    """POST the job's end to the URL it was launched with (``notify`` in its record), once: whoever
    ends the job (a `fit` following it, a `fahr wait`, a `fahr stop`, its follower) calls this,
    and the record's lock makes the first caller after the end the one that posts; it records
    ``notified`` before letting the lock go. A job not ended, told already, or launched without a
    URL is left alone; a record that cannot be read or written is the finish's business, not this.
    """
    from fahr_core import notify
    from fahr_core.drivers.local.records import NAME, _result
    from fahr_core.errors import FahrError
    from fahr_core.values import JobHandle

    try:
        with _locked(job_dir) as folder:
            record = _read_record(folder)
            if not record.get("notify") or record.get("notified") or not _ended(record):
                return
            job = JobHandle(driver=NAME, job_name=record["job_name"], model_tag=record["model_tag"])
            body = notify.summary(_result(job, job_dir, record), attempt_of=record.get("attempt_of", ""),
                                  ended=record.get("ended"))
            # Posted under the lock (a few seconds at most): a second finisher waits, then finds it told.
            notify.post(record["notify"], body)  # a failure is a warning: told once, even if unheard
            record["notified"] = True
            with contextlib.suppress(OSError):  # a full disk: told, but a later finisher may tell again
                _write_record(folder, record)
    except (FahrError, OSError):
        return


def _holds_a_file(folder: Folder, name: str) -> bool:
    """Whether the archive fahr just packed holds anything but folders (read up to the first)."""
    import tarfile

    with folder.open_file(name) as handle, tarfile.open(fileobj=handle, mode="r:gz") as tar:
        return any(not member.isdir() for member in tar)


def _tidy_partials(*folders: Folder) -> None:
    """Remove what a fahr killed while saving this job left (the caller holds the job's lock, so
    no other fahr is writing them): the files it was writing (``.NAME.*.partial``, see
    fahr_core.jobfolder), and the checkpoints spooled on their way back (``.checkpoints.*.tar.partial``).
    They can be as large as the model."""
    for folder in folders:
        folder.tidy(r"\..+\.partial")


def _not_saved(run, job_dir: Path, config, record: dict, exc: Exception, step: str, where: Path):
    """The artifacts could not be saved: keep the containers, record why, say what to do.

    Returns the error to raise, or None to re-raise ``exc`` (a bug). The caller holds the lock.
    """
    from fahr_core.contract import engine_lost, is_engine_error

    job_name = job_dir.name
    command = _command("wait", job_name, config)
    if is_engine_error(exc):
        lost = engine_lost(exc, f"saving the artifacts of job {job_name}")
        _mark_unfinished(job_dir, f"fahr {lost.message}; '{command}' finishes the job", record.get("stop_requested", ""))
        return EnvironmentProblem(f"{lost.message}; its containers keep them: once the engine is back, "
                                  f"finish the job with: {command}")
    if isinstance(exc, Refused):  # the job's folder was tampered with: nothing written elsewhere
        _mark_unfinished(job_dir, f"fahr could not save the artifacts: {exc.path} {exc.reason}; "
                                  f"'{command}' tries again", record.get("stop_requested", ""))
        return _refused(exc, command)
    if not isinstance(exc, OSError):
        _mark_unfinished(job_dir, f"fahr could not save the artifacts ({type(exc).__name__}: {first_line(exc)}); "
                                  f"'{command}' tries again", record.get("stop_requested", ""))
        return None
    strerror = exc.strerror or str(exc)
    details = []
    source = {"model.tar.gz": "/opt/ml/model", "output.tar.gz": "/opt/ml/output/data"}.get(step)
    size = run.size_of(source) if source and exc.errno in _NO_ROOM else None
    if size is not None:
        details.append(f"about {_megabytes(size)} uncompressed")
    free = _free_bytes(where)
    if free is not None:
        details.append(f"{_megabytes(free)} free there")
    spool = Path(tempfile.gettempdir())
    if source and exc.errno in _NO_ROOM and not _same_filesystem(spool, where):
        spool_free = _free_bytes(spool)  # the engine's archive is spooled there on its way
        if spool_free is not None and (size is None or spool_free < size):
            details.append(f"fahr also spools it in {spool}, {_megabytes(spool_free)} free")
    detail = f" ({'; '.join(details)})" if details else ""
    message = (f"{strerror} writing {step} of job {job_name} in {where}{detail}; the job's containers keep "
               f"everything until it is saved: {_fix(exc)}, then finish the job with: {command}")
    # "ended": the training has ended (its containers had exited), whenever its artifacts are saved.
    kept = dict(record, status=IN_PROGRESS, secondary_status=f"Uploading failed: {strerror}", upload_error=message,
                ended=record.get("ended") or time.time())
    kept.pop("unfinished", None)  # InProgress says it already: not finished, `fahr wait` finishes it
    with contextlib.suppress(OSError):  # the disk may not even take this: the record stays InProgress
        _write_record(job_dir, kept)
    return EnvironmentProblem(message)


def _refused(exc: Refused, command: str) -> UsageError:
    """What fahr says when it found the job's folder not as it made it, with the job kept."""
    return UsageError(f"{exc.path} {exc.reason}: fahr writes a job's files only in the job's own folder; "
                      f"the job's containers keep everything: make it what fahr made (or remove it), then "
                      f"finish the job with: {command}")


def _remove_containers(run, job_dir: Path, config, record: dict) -> None:
    """Remove a finished job's containers and network (the caller holds the lock)."""
    from fahr_core.contract import is_engine_error

    try:
        run.cleanup()
    except Exception as exc:
        if not is_engine_error(exc):
            raise
        record["unfinished"] = CLEANUP
        with contextlib.suppress(OSError):
            _write_record(job_dir, record)
        raise EnvironmentProblem(
            f"job {job_dir.name} is {record['status']} and its artifacts are saved, but {exc}; once the "
            f"engine is back, remove its containers with: {_command('wait', job_dir.name, config)}"
        ) from exc
    if record.get("unfinished") == CLEANUP:
        record.pop("unfinished")
        with contextlib.suppress(OSError):
            _write_record(job_dir, record)


def _remove_left(run, job_dir: Path, config) -> dict:
    """Remove the containers of a job whose end is recorded but whose containers were not
    removed (``unfinished: cleanup``: the engine was gone, or the fahr finishing it was killed);
    return its record."""
    with interrupts.shield(f"removing the containers of job {job_dir.name}"), _locked(job_dir) as folder:
        record = _read_record(folder)
        if _ended(record) and record.get("unfinished") == CLEANUP:
            _remove_containers(run, job_dir, config, record)
    return record


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def _same_filesystem(a: Path, b: Path) -> bool:
    def device(path: Path):
        for folder in (path, *path.parents):
            with contextlib.suppress(OSError):
                return os.stat(folder).st_dev
        return None

    return device(a) == device(b)


def _lost_sight(job_name: str, job_dir: Path, config, exc: Exception, doing: str,
                stop_requested: str = "") -> Exception | None:
    """fahr can no longer follow the job (the engine went away, or a bug): record it Failed for
    now, ``unfinished``, with the command that reconciles it, and say so.

    Returns the error to raise, or None to re-raise ``exc`` (a bug: exit 4, but the record is
    still not left InProgress).
    """
    from fahr_core.contract import engine_lost, is_engine_error

    command = _command("stop" if stop_requested else "wait", job_name, config)
    if is_engine_error(exc):
        lost = engine_lost(exc, f"{doing} job {job_name}")
        reason = f"fahr {lost.message}; its containers may still run: '{command}' reconciles it"
        problem = EnvironmentProblem(f"{lost.message}; the job may still run: once the engine is back, "
                                     f"{'stop' if stop_requested else 'reconcile'} it with: {command}")
    elif isinstance(exc, Refused):  # the job's folder was tampered with: nothing written elsewhere
        reason = f"fahr stopped {doing} the job: {exc.path} {exc.reason}; '{command}' reconciles it"
        problem = _refused(exc, command)
    else:
        reason = f"fahr stopped {doing} the job ({type(exc).__name__}: {first_line(exc)}); '{command}' reconciles it"
        problem = None
    with _locked(job_dir) as folder:
        _mark_unfinished(folder, reason, stop_requested)
    return problem
