"""Defect: cannot follow a job it did not launch in the same process (``fahr wait JOB`` fails)."""

from fahr_brokendrivers import delegating_hooks, hookimpl, local
from fahr_core.errors import UsageError

globals().update(delegating_hooks("broken-nodetach"))


@hookimpl
def wait(job, config):
    if not job.details:  # a handle rebuilt from the job's name
        raise UsageError(f"cannot follow job {job.job_name}: it was not launched by this fahr")
    return local.wait(job, config)
