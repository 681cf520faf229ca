"""Listing the jobs fahr launched: SageMaker's Search, page after page, newest first.

One Search page carries up to 100 whole TrainingJob records with their Tags and Environment, so
listing never calls DescribeTrainingJob once per job. Only jobs fahr launched are listed (they
carry the ``fahr:version`` tag); a model tag is matched on the ``fahr:model-tag`` tag, not on the
job's name, which ``base_job_name`` changes.
"""

from __future__ import annotations

import hashlib
import unicodedata

from fahr_core import JobInfo, JobQuery

from fahr_sagemaker import aws
from fahr_sagemaker.artifacts import MODEL_TAG_TAG, recorded_tag
from fahr_sagemaker.failures import failure_kind
from fahr_sagemaker.pools import takers, warm_pool

#: The tag every job fahr launches carries (fahr's version): what tells fahr's jobs apart.
VERSION_TAG = "fahr:version"
#: Search's largest page (botocore's model: MaxResults 1-100).
PAGE = 100
#: The tags that say where a job's image was built from (plugin API 1.4: JobSpec.project, git_commit).
PROJECT_TAG = "fahr:project"
GIT_COMMIT_TAG = "fahr:git-commit"
#: The tag of the sweep a job is a point of (plugin API 1.5: JobSpec.sweep).
SWEEP_TAG = "fahr:sweep"
#: The tag of a retried fit's attempt: the first job's name (plugin API 1.6: JobSpec.attempt_of).
ATTEMPT_OF_TAG = "fahr:attempt-of"
#: An AWS tag value's limits: at most 256 characters, letters, digits, separators and ``_.:/=+-@``.
_TAG_VALUE_MAX = 256
_TAG_VALUE_SIGNS = frozenset("_.:/=+-@")


def _fits_a_tag(char: str) -> bool:
    return unicodedata.category(char)[0] in "LNZ" or char in _TAG_VALUE_SIGNS


def tag_value(text: str) -> str:
    """``text`` as an AWS tag value can hold it: itself when it fits; else ``=HASH=TAIL``, the
    first 16 hex digits of its sha256 and its end, the characters a tag refuses as ``_``. The same
    text always gives the same value (a project is filtered by it), and a shortened value never
    looks like an absolute folder (it starts with ``=``)."""
    if len(text) <= _TAG_VALUE_MAX and all(map(_fits_a_tag, text)):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    tail = "".join(char if _fits_a_tag(char) else "_" for char in text)
    return f"={digest}={tail[-(_TAG_VALUE_MAX - len(digest) - 2):]}"


def job_tags(spec) -> list[dict]:
    """The tags of fahr's own that say where a job came from (only those it knows)."""
    return [{"Key": key, "Value": tag_value(value)}
            for key, value in ((PROJECT_TAG, spec.project), (GIT_COMMIT_TAG, spec.git_commit),
                               (SWEEP_TAG, getattr(spec, "sweep", "")),
                               (ATTEMPT_OF_TAG, getattr(spec, "attempt_of", ""))) if value]


def _tag(record: dict, key: str) -> str:
    return next((t.get("Value", "") for t in record.get("Tags") or [] if t.get("Key") == key), "")


def search_request(query: JobQuery) -> dict:
    """The Search request of ``query``: fahr's jobs, of the tag and status asked, newest first."""
    filters = [{"Name": f"Tags.{VERSION_TAG}", "Operator": "Exists"}]
    if query.model_tag:
        filters.append({"Name": f"Tags.{MODEL_TAG_TAG}", "Operator": "Equals", "Value": query.model_tag})
    if query.status:
        filters.append({"Name": "TrainingJobStatus", "Operator": "Equals", "Value": query.status})
    if query.project:  # compared as launch stored it: a long path by its hash
        filters.append({"Name": f"Tags.{PROJECT_TAG}", "Operator": "Equals", "Value": tag_value(query.project)})
    if getattr(query, "sweep", None):
        filters.append({"Name": f"Tags.{SWEEP_TAG}", "Operator": "Equals", "Value": tag_value(query.sweep)})
    size = PAGE if query.limit is None else max(1, min(PAGE, query.limit))
    return {
        "Resource": "TrainingJob",
        "SearchExpression": {"Filters": filters, "Operator": "And"},
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": size,
    }


def _seconds(value) -> float | None:
    """A Search timestamp (a datetime from boto3) as seconds since the epoch."""
    if value is None:
        return None
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def job_info(record: dict, driver: str, reused_from: str = "") -> JobInfo:
    """One Search record's TrainingJob as a :class:`JobInfo`; ``reused_from``: the job whose
    warm pool it started on, when known."""
    status = record.get("TrainingJobStatus", "")
    training = record.get("TrainingTimeInSeconds")
    billable = record.get("BillableTimeInSeconds")
    artifact = (record.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "") if status == "Completed" else ""
    return JobInfo(
        job_name=record["TrainingJobName"],
        model_tag=recorded_tag(record),
        driver=driver,
        status=status,
        secondary_status=record.get("SecondaryStatus", ""),
        created=_seconds(record.get("CreationTime")),
        started=_seconds(record.get("TrainingStartTime")),
        ended=_seconds(record.get("TrainingEndTime")),
        training_seconds=float(training) if training is not None else None,
        billable_seconds=float(billable) if billable is not None else None,
        failure_reason=record.get("FailureReason", "") or "",
        failure_kind=failure_kind(record),
        attempt_of=_tag(record, ATTEMPT_OF_TAG),
        model_artifact=artifact,
        project=_tag(record, PROJECT_TAG),
        git_commit=_tag(record, GIT_COMMIT_TAG),
        sweep=_tag(record, SWEEP_TAG),
        hyperparameters={str(k): str(v) for k, v in (record.get("HyperParameters") or {}).items()},
        warm_pool=warm_pool(record, reused_from),
        metric_definitions=tuple((d["Name"], d["Regex"]) for d in
                                 (record.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or ()
                                 if isinstance(d, dict) and "Name" in d and "Regex" in d),
    )


def list_jobs(config, query: JobQuery, driver: str) -> list[JobInfo]:
    """fahr's training jobs in the region, newest first, filtered as ``query`` says."""
    if query.limit is not None and query.limit <= 0:
        return []
    from fahr_sagemaker import secrets

    records = _records(config, query)
    secrets.forget_ended(config, records)  # the secrets of ended jobs it sees (fahr_sagemaker.secrets)
    took = takers(records)  # which listed job started on which listed job's warm pool
    infos = [job_info(record, driver, took.get(record["TrainingJobName"], "")) for record in records]
    if getattr(query, "cost", False):  # fahr jobs --cost: each job at its own type's price
        import dataclasses

        from fahr_sagemaker import pricing

        infos = [dataclasses.replace(info, price=pricing.of_job(config, record))
                 for info, record in zip(infos, records)]
    return infos


def _records(config, query: JobQuery) -> list[dict]:
    sm = aws.client(config, "sagemaker")
    request = search_request(query)
    found: list[dict] = []
    with aws.translated("listing the training jobs (sagemaker:Search)"):
        while True:
            page = sm.search(**request)
            for result in page.get("Results", []):
                record = result.get("TrainingJob")
                if not record or not record.get("TrainingJobName"):
                    continue
                found.append(record)
                if query.limit is not None and len(found) >= query.limit:
                    return found
            if not page.get("NextToken"):
                return found
            request["NextToken"] = page["NextToken"]
