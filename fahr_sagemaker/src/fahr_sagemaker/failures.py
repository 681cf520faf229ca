"""Why a training job did not complete, read from what DescribeTrainingJob (and Search) report.

SageMaker gives no failure kind of its own; it gives a status, a secondary status and, for a
failed job, a FailureReason whose first word names the error (docs/sagemaker.md, "Why a job did
not complete", says where each rule comes from):

- Stopped with SecondaryStatus ``MaxRuntimeExceeded``: ``timeout`` (StoppingCondition's
  MaxRuntimeInSeconds, fahr's ``max_run``);
- SecondaryStatus ``Interrupted`` (a managed spot job whose instances were reclaimed), at the end
  or as the last transition before it: ``interrupted``;
- Stopped with ``MaxWaitTimeExceeded`` (a spot job that got no capacity within ``max_wait``), or
  a FailureReason starting ``CapacityError`` or ``InsufficientCapacityError``, or naming
  ``ResourceLimitExceeded`` (a quota): ``capacity``;
- FailureReason ``OutOfMemoryError``: ``out_of_memory``;
- FailureReason ``InternalServerError``: ``platform``;
- anything else that failed (``AlgorithmError``: the script; ``ClientError``: the job's image,
  data or configuration) or was stopped by StopTrainingJob: ``user``, which no retry repeats.
"""

from __future__ import annotations

from fahr_core import CAPACITY, FAILED, INTERRUPTED, OUT_OF_MEMORY, PLATFORM, STOPPED, TIMEOUT, USER

#: FailureReason's first word -> kind (the reason is "ErrorName: message").
_BY_ERROR = {
    "CapacityError": CAPACITY,
    "InsufficientCapacityError": CAPACITY,
    "OutOfMemoryError": OUT_OF_MEMORY,
    "InternalServerError": PLATFORM,
}


def failure_kind(record: dict) -> str:
    """The failure kind (fahr_core.FAILURE_KINDS) of a DescribeTrainingJob answer or a Search
    record; '' for a job that completed or has not ended."""
    status = record.get("TrainingJobStatus", "")
    if status not in (FAILED, STOPPED):
        return ""
    secondary = record.get("SecondaryStatus", "")
    transitions = [t.get("Status", "") for t in record.get("SecondaryStatusTransitions") or []]
    ended_by = [s for s in transitions if s not in ("Stopping", "Stopped", "Failed", "Uploading")]
    if secondary == "MaxRuntimeExceeded":
        return TIMEOUT
    if secondary == "Interrupted" or (ended_by and ended_by[-1] == "Interrupted"):
        return INTERRUPTED
    if secondary == "MaxWaitTimeExceeded":
        return CAPACITY
    reason = (record.get("FailureReason") or "").strip()
    error = reason.split(":", 1)[0].strip()
    if error in _BY_ERROR:
        return _BY_ERROR[error]
    if "ResourceLimitExceeded" in reason:
        return CAPACITY
    return USER


