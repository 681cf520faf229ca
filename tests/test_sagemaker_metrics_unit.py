"""The sagemaker driver's metrics hook against botocore's Stubber (the requests checked against
botocore's model): the logs first, CloudWatch only for a defined metric they do not give,
FinalMetricDataList for what CloudWatch no longer holds, one warning without the permission.
The end-to-end cases are in test_metrics_sagemaker.py."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber

from fahr_core import LogLine, ui

from fahr_sagemaker import aws
from fahr_sagemaker import cloudwatch as native

JOB = "i18cw-train-20261203-170000-0001"
NOW = time.time()
START = datetime.fromtimestamp(NOW - 60, timezone.utc)
END = datetime.fromtimestamp(NOW - 30, timezone.utc)
REGEX = r"val_loss=(\S+)"


def _described(definitions=(("val_loss", REGEX),), finals=()):
    return {
        "TrainingJobName": JOB, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}, "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed", "CreationTime": START, "TrainingStartTime": START, "TrainingEndTime": END,
        "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img",
                                   "MetricDefinitions": [{"Name": n, "Regex": r} for n, r in definitions]},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "FinalMetricDataList": [{"MetricName": n, "Value": v, "Timestamp": END} for n, v in finals],
    }


@pytest.fixture
def clients(monkeypatch):
    """Stubbed sagemaker and cloudwatch clients in place of the driver's."""
    made = {service: boto3.client(service, region_name="us-east-1", aws_access_key_id="x",
                                  aws_secret_access_key="x") for service in ("sagemaker", "cloudwatch")}
    stubs = {service: Stubber(client) for service, client in made.items()}
    monkeypatch.setattr(aws, "client", lambda config, service: made[service])
    monkeypatch.setattr(native, "_warned", type(native._warned)())
    for stub in stubs.values():
        stub.activate()
    yield stubs
    for stub in stubs.values():
        stub.assert_no_pending_responses()


def _lines(*texts, host="algo-1"):
    return lambda: iter([LogLine(host=host, text=text, timestamp=NOW - 50 + i) for i, text in enumerate(texts)])


def test_a_job_without_definitions_is_left_to_the_core(clients):
    clients["sagemaker"].add_response("describe_training_job", _described(definitions=()), {"TrainingJobName": JOB})
    assert native.job_metrics({}, JOB, _lines("fahr-metric loss=1 step=0")) is None  # no GetMetricData


def test_the_logs_give_every_point_and_step_and_cloudwatch_is_not_asked(clients):
    clients["sagemaker"].add_response("describe_training_job", _described(), {"TrainingJobName": JOB})
    points = native.job_metrics({}, JOB, _lines("fahr-metric loss=1 step=0", "val_loss=2", "val_loss=1"))
    assert [(p.name, p.value, p.step, p.host) for p in points] == [
        ("loss", 1.0, 0, "algo-1"), ("val_loss", 2.0, None, "algo-1"), ("val_loss", 1.0, None, "algo-1")]


def test_a_defined_metric_the_logs_lack_comes_from_cloudwatch_per_host_once(clients):
    clients["sagemaker"].add_response("describe_training_job", _described(), {"TrainingJobName": JOB})
    expected = {
        "MetricDataQueries": [
            {"Id": f"m{i}", "ReturnData": True,
             "MetricStat": {"Metric": {"Namespace": "/aws/sagemaker/TrainingJobs", "MetricName": "val_loss",
                                       "Dimensions": [{"Name": "Host", "Value": f"{JOB}/algo-{i + 1}"}]},
                            "Period": 1, "Stat": "Average"}} for i in range(2)],
        "StartTime": ANY, "EndTime": ANY, "ScanBy": "TimestampAscending"}
    at = [datetime.fromtimestamp(NOW - 55 + i, timezone.utc) for i in range(2)]
    clients["cloudwatch"].add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "m0", "Label": "val_loss", "Timestamps": at, "Values": [2.0, 1.0], "StatusCode": "Complete"},
        {"Id": "m1", "Label": "val_loss", "Timestamps": at[:1], "Values": [3.0], "StatusCode": "Complete"}],
        "NextToken": "more"}, expected)
    clients["cloudwatch"].add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "m0", "Label": "val_loss", "Timestamps": [], "Values": [], "StatusCode": "Complete"}]},
        {**expected, "NextToken": "more"})
    points = native.job_metrics({}, JOB, _lines("fahr-metric loss=1 step=4"))
    assert [(p.name, p.value, p.step, p.host) for p in points] == [
        ("loss", 1.0, 4, "algo-1"), ("val_loss", 2.0, None, "algo-1"), ("val_loss", 3.0, None, "algo-2"),
        ("val_loss", 1.0, None, "algo-1")]


def test_without_the_permission_one_warning_and_the_final_values(clients, monkeypatch):
    said = []
    monkeypatch.setattr(ui, "warn", said.append)
    for _ in range(2):
        clients["sagemaker"].add_response("describe_training_job", _described(finals=[("val_loss", 0.5)]),
                                          {"TrainingJobName": JOB})
        clients["cloudwatch"].add_client_error("get_metric_data", "AccessDenied", "not authorized", 403)
        points = native.job_metrics({}, JOB, _lines("nothing here"))
        assert [(p.name, p.value, p.time) for p in points] == [("val_loss", 0.5, END.timestamp())]
    assert len(said) == 1 and "cloudwatch:GetMetricData" in said[0]


def test_another_cloudwatch_error_is_one_fahr_error(clients):
    from fahr_core import FahrError

    clients["sagemaker"].add_response("describe_training_job", _described(), {"TrainingJobName": JOB})
    clients["cloudwatch"].add_client_error("get_metric_data", "InvalidParameterValue", "bad period", 400)
    with pytest.raises(FahrError, match="cloudwatch:GetMetricData"):
        native.job_metrics({}, JOB, _lines())


@pytest.mark.parametrize("age, period", [(0, 1), (3 * 3600 - 1, 1), (3 * 3600, 60), (15 * 86400, 300),
                                         (63 * 86400, 3600)])
def test_the_finest_period_cloudwatch_still_holds(age, period):
    assert native.period(NOW - age, NOW) == period
