"""The sagemaker driver's job listing, with a recording stand-in for the SageMaker client: the
requests it makes (one Search per page, never DescribeTrainingJob) and the JobInfo it builds."""

from __future__ import annotations

from datetime import datetime, timezone

import botocore.session

from fahr_core import JobQuery

from fahr_sagemaker import aws, jobs


class RecordingSageMaker:
    """Answers Search from a list of records, ``page`` at a time; records every call. Anything
    else (DescribeTrainingJob…) is an AttributeError, so a per-job describe would fail loudly."""

    def __init__(self, records, page):
        self.records, self.page, self.calls = records, page, []

    def search(self, **request):
        self.calls.append(request)
        start = int(request.get("NextToken", 0))
        size = min(self.page, request["MaxResults"])
        out = {"Results": [{"TrainingJob": r} for r in self.records[start:start + size]]}
        if start + size < len(self.records):
            out["NextToken"] = str(start + size)
        return out


def _record(i: int, status: str = "Completed") -> dict:
    at = datetime(2026, 1, 1, 12, 0, i, tzinfo=timezone.utc)
    return {"TrainingJobName": f"job-{i}", "TrainingJobStatus": status, "SecondaryStatus": status,
            "CreationTime": at, "ModelArtifacts": {"S3ModelArtifacts": f"s3://b/p/job-{i}/output/model.tar.gz"},
            "Tags": [{"Key": "fahr:model-tag", "Value": "m/train"}, {"Key": "fahr:version", "Value": "0.1.0"}]}


def _stub(monkeypatch, records, page):
    client = RecordingSageMaker(records, page)
    monkeypatch.setattr(aws, "client", lambda config, service: client if service == "sagemaker" else None)
    return client


def test_limit_stops_the_paging(monkeypatch):
    client = _stub(monkeypatch, [_record(i) for i in range(9, -1, -1)], page=3)
    found = jobs.list_jobs({}, JobQuery(limit=4), "sagemaker")
    assert [j.job_name for j in found] == ["job-9", "job-8", "job-7", "job-6"]
    assert len(client.calls) == 2  # the second page gave the 4th job: no third Search
    assert client.calls[1]["NextToken"] == "3"


def test_every_page_without_a_limit(monkeypatch):
    client = _stub(monkeypatch, [_record(i) for i in range(5)], page=2)
    assert len(jobs.list_jobs({}, JobQuery(), "sagemaker")) == 5
    assert len(client.calls) == 3
    assert client.calls[0]["MaxResults"] == 100


def test_request_is_valid_for_botocore_and_filters_as_asked():
    request = jobs.search_request(JobQuery(model_tag="m/train", status="Failed", limit=7))
    assert request["SearchExpression"]["Filters"] == [
        {"Name": "Tags.fahr:version", "Operator": "Exists"},
        {"Name": "Tags.fahr:model-tag", "Operator": "Equals", "Value": "m/train"},
        {"Name": "TrainingJobStatus", "Operator": "Equals", "Value": "Failed"},
    ]
    assert (request["SortBy"], request["SortOrder"], request["MaxResults"]) == ("CreationTime", "Descending", 7)
    # botocore's own client-side validation of the request (its shapes, enums, ranges).
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(request, model.operation_model("Search").input_shape)
    assert not report.has_errors(), report.generate_report()


def test_job_info_fields():
    record = {**_record(3, "Failed"), "FailureReason": "AlgorithmError: boom", "BillableTimeInSeconds": 4,
              "TrainingTimeInSeconds": 13, "TrainingStartTime": datetime(2026, 1, 1, 12, 0, 5, tzinfo=timezone.utc),
              "TrainingEndTime": datetime(2026, 1, 1, 12, 0, 18, tzinfo=timezone.utc)}
    info = jobs.job_info(record, "sagemaker")
    assert info.model_tag == "m/train" and info.status == "Failed" and info.failure_reason == "AlgorithmError: boom"
    assert info.model_artifact == ""  # only a Completed job's model is worth fetching
    assert info.ended - info.started == 13.0 and info.created == datetime(2026, 1, 1, 12, 0, 3,
                                                                          tzinfo=timezone.utc).timestamp()
    assert (info.training_seconds, info.billable_seconds) == (13.0, 4.0)
    env_only = jobs.job_info({"TrainingJobName": "x", "TrainingJobStatus": "InProgress",
                              "Environment": {"FAHR_MODEL_TAG": "e/train"}}, "sagemaker")
    assert env_only.model_tag == "e/train" and env_only.started is None and env_only.training_seconds is None


def test_a_project_is_stored_in_a_tag_value_aws_accepts_and_compared_the_same_way():
    import re

    from fahr_core import ImageRef, JobSpec

    aws_value = re.compile(r"^[\w\s.:/=+\-@]*$")  # botocore's TagValue pattern, as Python's re reads it
    plain = "/home/me/proj A/src"
    assert jobs.tag_value(plain) == plain
    for odd in ("/home/me/proj (copy)/src", "/p/" + "x" * 300, "/p/\udcff/src", "/p/~me,1/src"):
        value = jobs.tag_value(odd)
        assert value.startswith("=") and len(value) <= 256 and aws_value.match(value), value
        assert value == jobs.tag_value(odd)  # the same folder, the same value: filtered by it
    assert jobs.tag_value("/p/a(b)/src") != jobs.tag_value("/p/a)b(/src")  # told apart by their hash
    spec = JobSpec(job_name="j", model_tag="m/train", image=ImageRef(name="m/train"), project="/p/(x)",
                   git_commit="a" * 40 + "-dirty")
    tags = {t["Key"]: t["Value"] for t in jobs.job_tags(spec)}
    assert tags == {"fahr:project": jobs.tag_value("/p/(x)"), "fahr:git-commit": "a" * 40 + "-dirty"}
    assert jobs.job_tags(JobSpec(job_name="j", model_tag="m/train", image=ImageRef(name="m/train"))) == []
    request = jobs.search_request(JobQuery(model_tag="m/train", project="/p/(x)", limit=1))
    assert {"Name": "Tags.fahr:project", "Operator": "Equals", "Value": jobs.tag_value("/p/(x)")} \
        in request["SearchExpression"]["Filters"]
    record = {**_record(1), "Tags": [*_record(1)["Tags"], *jobs.job_tags(spec)]}
    info = jobs.job_info(record, "sagemaker")
    assert (info.project, info.git_commit) == (jobs.tag_value("/p/(x)"), "a" * 40 + "-dirty")
    assert jobs.job_info(_record(2), "sagemaker").project == ""  # a job of before: no project
