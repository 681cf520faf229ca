"""How fahr tells the end of a step: a job launched to run on, a job ended, a model placed.

The lines the user acts on: the command that follows a detached job, the one that fetches a
completed job's model, the one-line error of a failed job, the warning of an empty model.
"""

from __future__ import annotations

from fahr_core import ui
from fahr_core.commandlines import MODEL_TAG_PLACEHOLDER, fetch_command, wait_command
from fahr_core.errors import JobFailed
from fahr_core.values import JobHandle, JobResult


def detached(job: JobHandle, session) -> None:
    """A job launched to run on (``fit --detach``): how to follow it and fetch its model."""
    ui.success(f"job {job.job_name} launched; follow it with:")
    ui.command(wait_command(job.job_name, job.driver, session.chosen_location))
    ui.info("and once it has completed, fetch its model with:")
    ui.command(fetch_command(job.job_name, job.model_tag, job.driver, session.location))


def ended(result: JobResult, session) -> JobResult:
    """Print how a job ended; raise :class:`JobFailed` unless it completed."""
    job = result.job
    timing = ""
    if result.training_seconds is not None:
        timing = f" in {result.training_seconds:.1f} s"
        if result.billable_seconds is not None and result.billable_seconds != result.training_seconds:
            timing += f" (billable {result.billable_seconds:.0f} s)"
    if not result.succeeded:
        # One line: the job's output was streamed above, the full reason is in the job's record.
        reason = " ".join(result.failure_reason.split()) or "no reason given"
        if len(reason) > 400:
            reason = reason[:400] + " …"
        raise JobFailed(f"job {job.job_name} {result.status.lower()}{timing}: {reason}")
    ui.success(f"job {job.job_name} completed{timing}; model at {result.model_artifact}")
    driver = job.driver or session.driver
    if result.model_empty:
        ui.warn(empty_model_warning(job.job_name, driver))
    if job.model_tag:
        ui.info("fetch it with:")
    else:  # a driver that does not honour the wait hook's contract: say so rather than print ''
        ui.warn(f"driver {session.driver!r} did not report the model tag of job {job.job_name}; "
                f"fetch it with the command below, {MODEL_TAG_PLACEHOLDER} replaced by the tag it trained")
    ui.command(fetch_command(job.job_name, job.model_tag, job.driver, session.location))
    return result


def empty_model_warning(job_name: str, driver: str) -> str:
    """The one line for a job that completed with nothing in /opt/ml/model.

    The usual cause is a script that saves to /opt/ml/model only when FAHR_EXECUTION_ENVIRONMENT
    is one driver's name (the seed's own snippet tested for 'sagemaker'): under another driver it
    saved to its working folder, which is thrown away with the container.
    """
    return (f"job {job_name} saved no model: /opt/ml/model was empty when it ended. Did the script "
            f"save elsewhere, or save to /opt/ml/model only when FAHR_EXECUTION_ENVIRONMENT is one "
            f"driver's name (it is {driver!r} here)? Test that the variable is set, whatever its "
            f"value, and save under /opt/ml/model")
