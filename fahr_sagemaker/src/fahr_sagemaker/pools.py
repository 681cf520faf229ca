"""Warm pools: SageMaker keeps a finished job's instances for ``keep_alive`` seconds
(``ResourceConfig.KeepAlivePeriodInSeconds``), and a matching next job starts on them.

What fahr reads (docs/sagemaker.md, "Warm pools"): the job's ``WarmPoolStatus`` (``Status``,
``ResourceRetainedBillableTimeInSeconds``, ``ReusedByJob``), in DescribeTrainingJob and in
Search's records. SageMaker records a reuse on the job whose pool was taken (``ReusedByJob``), not
on the job that took it: which pool a job started on is found by looking for that record.
"""

from __future__ import annotations

from fahr_core import POOL_AVAILABLE, WarmPool

#: The longest keep-alive SageMaker's warm pools document (60 minutes).
MAX_KEEP_ALIVE = 3600


def warm_pool(record: dict, reused_from: str = "") -> WarmPool | None:
    """The :class:`WarmPool` of a DescribeTrainingJob answer or a Search record; None for a job
    that has none (no keep-alive, and no pool taken over)."""
    from fahr_sagemaker.jobs import _seconds  # jobs imports this module
    status = record.get("WarmPoolStatus") or {}
    if not status.get("Status") and not reused_from:
        return None
    billed = status.get("ResourceRetainedBillableTimeInSeconds")
    expires = None
    keep_alive = (record.get("ResourceConfig") or {}).get("KeepAlivePeriodInSeconds")
    ended = _seconds(record.get("TrainingEndTime"))
    if status.get("Status") == POOL_AVAILABLE and keep_alive and ended is not None:
        expires = ended + keep_alive  # the pool waits from the job's end (docs/sagemaker.md)
    return WarmPool(status=status.get("Status", ""), billable_seconds=float(billed) if billed is not None else None,
                    expires=expires, reused_by=status.get("ReusedByJob", "") or "", reused_from=reused_from)


def takers(records: list[dict]) -> dict[str, str]:
    """Job name -> the job whose pool it took over, as far as ``records`` tell."""
    return {(r.get("WarmPoolStatus") or {})["ReusedByJob"]: r["TrainingJobName"] for r in records
            if (r.get("WarmPoolStatus") or {}).get("ReusedByJob") and r.get("TrainingJobName")}


def reused_from(config, info: dict) -> str:
    """The job whose warm pool the job of ``info`` started on ('' when none, or when SageMaker's
    Search cannot tell): one Search for the record naming it ``ReusedByJob``. Only a job that
    has a pool status asks (a job without one took no pool)."""
    if not (info.get("WarmPoolStatus") or {}).get("Status"):
        return ""
    from botocore import exceptions as bex

    from fahr_sagemaker import aws

    name = info["TrainingJobName"]
    request = {"Resource": "TrainingJob", "MaxResults": 1,
               "SearchExpression": {"Filters": [{"Name": "WarmPoolStatus.ReusedByJob", "Operator": "Equals",
                                                 "Value": name}]}}
    try:
        results = aws.client(config, "sagemaker").search(**request).get("Results", [])
    except (bex.ClientError, bex.BotoCoreError):  # no sagemaker:Search, or AWS unreachable: the
        return ""  # job has ended all the same, and the rest of the report stands
    return next((r["TrainingJob"]["TrainingJobName"] for r in results
                 if (r.get("TrainingJob") or {}).get("TrainingJobName")), "")
