"""A training job's metrics on SageMaker: the ``metrics`` hook (docs/metrics.md, docs/sagemaker.md).

SageMaker reads a job's log lines with its ``MetricDefinitions`` and publishes each match to
CloudWatch: namespace ``/aws/sagemaker/TrainingJobs``, the definition's name, dimension ``Host`` =
``<job>/algo-N``, at the line's time; DescribeTrainingJob's ``FinalMetricDataList`` holds each
one's last value. CloudWatch keeps less than the logs: no step, a value a minute (a second for
the first 3 hours; values within one period come back as their average), and nothing of the
convention's lines that no definition names. It keeps longer: 15 months, where a log group's
retention may drop the logs within days. So, for each job with definitions:

1. the logs, parsed by the core's parser with the convention and the definitions, give every
   point they hold, with steps, each at its line's time (what the core would read itself);
2. a defined metric the logs do not give (they expired or were deleted, or SageMaker's regex
   engine matched a line Python's did not) is read from CloudWatch (GetMetricData, per host,
   over the job's time window);
3. a defined metric CloudWatch no longer holds either is the one point ``FinalMetricDataList``
   (already in the DescribeTrainingJob read for the definitions) gives: its last value.

A metric comes from one of these only: never twice. A job without definitions gets None (the
core reads its logs; nothing is asked of CloudWatch). Without ``cloudwatch:GetMetricData``,
step 2 is skipped with one warning line a process.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from fahr_core import MetricPoint, metrics_from_logs, ui

from fahr_sagemaker import aws

#: Where SageMaker publishes training jobs' metrics (SageMaker developer guide, "SageMaker AI job
#: metrics"), and the dimension naming a job's host: ``<job>/algo-N``.
NAMESPACE = "/aws/sagemaker/TrainingJobs"
HOST_DIMENSION = "Host"
#: GetMetricData's limit on the queries of one call.
MAX_QUERIES = 500
#: The CloudWatch statistic read: a period holding one value gives that value.
STAT = "Average"
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"}
_warned = threading.Event()  # the missing permission is said once a process, not once a job


def period(start: float, now: float) -> int:
    """The finest period CloudWatch still holds for data that began at ``start``: 1 s for 3
    hours, then 1 minute for 15 days, 5 minutes for 63 days, 1 hour after (CloudWatch's
    retention, GetMetricStatistics). Several values printed within one period come back as their
    average; the logs have each."""
    age = now - start
    if age < 3 * 3600:
        return 1
    if age < 15 * 86400:
        return 60
    return 300 if age < 63 * 86400 else 3600


def _seconds(value) -> float | None:
    if value is None:
        return None
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def definitions(info: dict) -> list[tuple[str, str]]:
    """The job's MetricDefinitions as ``(name, regex)`` pairs."""
    return [(d["Name"], d["Regex"]) for d in (info.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or ()
            if isinstance(d, dict) and d.get("Name") and d.get("Regex")]


def job_metrics(config, job_name: str, logs) -> list[MetricPoint] | None:
    """The job's points (the module's docstring says from where); ``logs`` is a callable giving
    the job's LogLines. None for a job without MetricDefinitions."""
    from fahr_sagemaker import follow

    info = follow.describe(config, job_name)
    defined = definitions(info)
    if not defined:
        return None
    points = metrics_from_logs(logs(), defined)
    missing = _missing(defined, points)
    if missing:
        points += _cloudwatch_or_nothing(config, info, missing)
        points += final_values(info, _missing([(name, "") for name in missing], points))
    return points


def _missing(defined, points) -> list[str]:
    given = {point.name for point in points}
    return [name for name, _ in defined if name not in given]


def _cloudwatch_or_nothing(config, info: dict, names: list[str]) -> list[MetricPoint]:
    """:func:`cloudwatch_points`; [] and one warning a process when the caller may not read them."""
    from botocore import exceptions as bex

    with aws.translated(f"reading the metrics of {info['TrainingJobName']} (cloudwatch:GetMetricData)"):
        try:
            return cloudwatch_points(config, info, names)
        except bex.ClientError as exc:
            if aws.error_code(exc) not in _DENIED:
                raise
            if not _warned.is_set():
                _warned.set()
                ui.warn(f"cannot read CloudWatch metrics ({aws.error_code(exc)}: cloudwatch:GetMetricData "
                        "is not allowed); the jobs' metrics are read from their logs only (docs/sagemaker.md)")
            return []


def final_values(info: dict, names: list[str]) -> list[MetricPoint]:
    """``FinalMetricDataList``'s last value of each of ``names``: one point, at its time."""
    return [MetricPoint(item["MetricName"], float(item["Value"]), None, _seconds(item.get("Timestamp")), "")
            for item in info.get("FinalMetricDataList") or ()
            if item.get("MetricName") in names and item.get("Value") is not None]


def cloudwatch_points(config, info: dict, names: list[str]) -> list[MetricPoint]:
    """``names`` of each host of the job, from CloudWatch (GetMetricData, page after page, up to
    500 queries a call), over the job's time window, in time order."""
    job_name = info["TrainingJobName"]
    count = int((info.get("ResourceConfig") or {}).get("InstanceCount") or 1)
    hosts = [f"algo-{i}" for i in range(1, count + 1)]
    now = time.time()
    start = _seconds(info.get("TrainingStartTime")) or _seconds(info.get("CreationTime")) or now
    every = period(start, now)
    end = (_seconds(info.get("TrainingEndTime")) or now) + every
    start -= start % every
    queries = [(f"m{i}", name, host) for i, (name, host) in enumerate((n, h) for n in names for h in hosts)]
    found: list[MetricPoint] = []
    client = aws.client(config, "cloudwatch")
    for first in range(0, len(queries), MAX_QUERIES):
        batch = {qid: (name, host) for qid, name, host in queries[first:first + MAX_QUERIES]}
        request = {
            "MetricDataQueries": [{
                "Id": qid,
                "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": name,
                                          "Dimensions": [{"Name": HOST_DIMENSION, "Value": f"{job_name}/{host}"}]},
                               "Period": every, "Stat": STAT},
                "ReturnData": True,
            } for qid, (name, host) in batch.items()],
            "StartTime": datetime.fromtimestamp(start, timezone.utc),
            "EndTime": datetime.fromtimestamp(end, timezone.utc),
            "ScanBy": "TimestampAscending",
        }
        for page in client.get_paginator("get_metric_data").paginate(**request):
            for result in page.get("MetricDataResults", []):
                name, host = batch[result["Id"]]
                found.extend(MetricPoint(name, float(value), None, _seconds(at), host)
                             for at, value in zip(result.get("Timestamps", []), result.get("Values", [])))
    found.sort(key=lambda point: point.time or 0.0)
    return found


__all__ = ["NAMESPACE", "HOST_DIMENSION", "job_metrics", "cloudwatch_points", "definitions", "final_values",
           "period"]
