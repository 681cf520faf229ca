"""A job's metrics on the emulated SageMaker: the definitions reach CreateTrainingJob as
MetricDefinitions (DescribeTrainingJob shows them), and the metrics printed both ways (the
convention, a --metric regex) read back through the Python API as on local: from the job's
CloudWatch logs (the sagemaker driver's logs hook), with its hyperparameters.

As SageMaker does, the emulator publishes what the definitions match as CloudWatch metrics
(namespace /aws/sagemaker/TrainingJobs, dimension Host=<job>/algo-N) and fills DescribeTrainingJob's
FinalMetricDataList; the driver's metrics hook reads them for what the logs no longer give
(docs/metrics.md, docs/sagemaker.md). One job is shared by the whole module; the last tests
delete its logs."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone

import pytest

from aws_emulator.fixtures import BUCKET, ROLE, job_name_of, run_fahr, sagemaker_args, write_model

pytestmark = pytest.mark.docker

# A second between the steps: CloudWatch (and moto) hold a value a period (1 s at the finest),
# so each value has a period of its own there.
PRINTS = """\
import time
from pathlib import Path
for step in range(3):
    print(f"fahr-metric loss={1 / (step + 1)} step={step}", flush=True)
    print(f"epoch {step}: val_loss={2 / (step + 1)}", flush=True)
    time.sleep(1.1)
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/weights.txt").write_text("42")
"""
NAMESPACE = "/aws/sagemaker/TrainingJobs"
CONFIG = {"output_path": f"s3://{BUCKET}/metrics", "role_name": ROLE}
LOSS, VAL_LOSS = [1.0, 0.5, 1 / 3], [2.0, 1.0, 2 / 3]


@pytest.fixture(scope="module")
def fitted(stack, tmp_path_factory):
    """The module's job (its name) and the folder it was fitted from."""
    folder = tmp_path_factory.mktemp("i18cloudwatch")
    model = write_model(folder, "i18metricssm", PRINTS)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args("metrics"), "--hp", "alpha=0.5",
                      "--metric", r"val_loss=val_loss=(\S+)", "--metric", "loss", cwd=folder)
    assert result.code == 0, result.output
    return job_name_of(result), folder


@pytest.fixture(scope="module")
def api(stack, fitted):
    """This process set up as a `fahr` process against the stack, for the Python API."""
    with pytest.MonkeyPatch.context() as patch:
        for var in [v for v in os.environ if v.startswith(("AWS_", "FAHR_"))]:
            patch.delenv(var)
        for var, value in stack.env().items():
            patch.setenv(var, value)
        patch.chdir(fitted[1])
        _fresh_clients()
        import fahr_core

        yield fahr_core
    _fresh_clients()


def _fresh_clients():
    from fahr_sagemaker import aws

    aws._session.cache_clear()
    aws._client.cache_clear()


def _values(series: dict) -> dict:
    return {name: [p.value for p in points] for name, points in series.items()}


def test_metric_definitions_reach_sagemaker_and_the_metrics_read_back(stack, fitted, api):
    job = fitted[0]
    described = stack.client("sagemaker").describe_training_job(TrainingJobName=job)
    definitions = described["AlgorithmSpecification"]["MetricDefinitions"]
    assert [d["Name"] for d in definitions] == ["val_loss", "loss"]
    assert definitions[0]["Regex"] == r"val_loss=(\S+)"
    # `--metric loss` alone: the convention's line as one regex, which SageMaker's console reads
    assert re.search(definitions[1]["Regex"], "fahr-metric loss=0.25 step=3").group(1) == "0.25"

    read = api.job(job, driver="sagemaker", config=CONFIG)
    assert _values(read.metrics) == {"loss": LOSS, "val_loss": VAL_LOSS}
    assert [p.step for p in read.metrics["loss"]] == [0, 1, 2]  # the logs give the steps
    assert read.final_metrics == {"loss": 1 / 3, "val_loss": 2 / 3}
    assert read.hyperparameters == {"alpha": "0.5"}
    listed = api.jobs("i18metricssm/train", driver="sagemaker", config=CONFIG)[0]
    assert listed.name == job and listed.final_metrics == read.final_metrics


def test_cloudwatch_holds_what_the_definitions_matched(stack, fitted):
    """As SageMaker publishes them: namespace /aws/sagemaker/TrainingJobs, the definition's name,
    dimension Host=<job>/algo-1, each value at its line's time within the job's run."""
    job = fitted[0]
    cloudwatch = stack.client("cloudwatch")
    host = [{"Name": "Host", "Value": f"{job}/algo-1"}]
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE, Dimensions=host)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["loss", "val_loss"]
    assert all(m["Dimensions"] == host for m in listed)
    described = stack.client("sagemaker").describe_training_job(TrainingJobName=job)
    start = described["TrainingStartTime"].replace(microsecond=0)
    end = described["TrainingEndTime"] + timedelta(seconds=2)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": f"m{i}", "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": name,
                                                                      "Dimensions": host},
                                                           "Period": 1, "Stat": "Average"}}
                           for i, name in enumerate(("val_loss", "loss"))],
        StartTime=start, EndTime=end, ScanBy="TimestampAscending")
    results = {r["Id"]: r for r in answer["MetricDataResults"]}
    assert results["m0"]["Values"] == pytest.approx(VAL_LOSS)
    assert results["m1"]["Values"] == pytest.approx(LOSS)
    assert all(start <= at <= end for at in results["m0"]["Timestamps"])


def test_describe_and_search_give_the_final_metric_data_list(stack, fitted):
    """Each defined metric's last value, as botocore's model has it (the emulator checks its
    answers against the model; boto3 parses them here)."""
    job = fitted[0]
    sagemaker = stack.client("sagemaker")
    described = sagemaker.describe_training_job(TrainingJobName=job)
    finals = {m["MetricName"]: m for m in described["FinalMetricDataList"]}
    assert {name: m["Value"] for name, m in finals.items()} == pytest.approx({"val_loss": 2 / 3, "loss": 1 / 3})
    assert all(described["TrainingStartTime"] <= m["Timestamp"] <= described["TrainingEndTime"]
               for m in finals.values())
    found = sagemaker.search(Resource="TrainingJob", SearchExpression={
        "Filters": [{"Name": "TrainingJobName", "Operator": "Equals", "Value": job}]})["Results"]
    assert found[0]["TrainingJob"]["FinalMetricDataList"] == described["FinalMetricDataList"]


@pytest.fixture(scope="module")
def logs_gone(stack, fitted):
    """The job's log streams deleted (a log group's retention can drop them long before
    CloudWatch's metrics go, 15 months)."""
    logs = stack.client("logs")
    streams = logs.describe_log_streams(logGroupName=NAMESPACE, logStreamNamePrefix=fitted[0] + "/")["logStreams"]
    assert streams
    for stream in streams:
        logs.delete_log_stream(logGroupName=NAMESPACE, logStreamName=stream["logStreamName"])
    return fitted[0]


def test_without_its_logs_the_metrics_come_from_cloudwatch(stack, fitted, logs_gone, api):
    read = api.job(logs_gone, driver="sagemaker", config=CONFIG)
    assert not list(read.logs())  # nothing left to parse
    series = read.metrics
    values = _values(series)
    assert sorted(values) == ["loss", "val_loss"]
    assert values["loss"] == pytest.approx(LOSS) and values["val_loss"] == pytest.approx(VAL_LOSS)
    assert {p.host for points in series.values() for p in points} == {"algo-1"}
    assert {p.step for points in series.values() for p in points} == {None}  # CloudWatch keeps none
    assert read.final_metrics == pytest.approx({"loss": 1 / 3, "val_loss": 2 / 3})

    listed = run_fahr(stack, "jobs", "i18metricssm/train", "--json", "--train-driver=sagemaker", cwd=fitted[1])
    assert listed.code == 0, listed.output
    (row,) = [r for r in json.loads(listed.stdout) if r["job_name"] == logs_gone]
    assert row["final_metrics"] == pytest.approx({"loss": 1 / 3, "val_loss": 2 / 3})


def test_without_cloudwatch_permission_one_warning_and_the_final_values(stack, fitted, logs_gone):
    """A user who may not call cloudwatch:GetMetricData: one warning line (not one a job, no
    traceback), and what DescribeTrainingJob's FinalMetricDataList holds."""
    import subprocess
    import sys

    import boto3

    with stack.checking_moto(free_actions=3) as endpoint:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        iam.create_user(UserName="no-cloudwatch")
        iam.put_user_policy(UserName="no-cloudwatch", PolicyName="logs-only", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="no-cloudwatch")["AccessKey"]
        env = {**stack.env(), "AWS_ENDPOINT_URL_CLOUDWATCH": endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        code = ("import fahr_core, json, sys\n"
                f"config = {CONFIG!r}\n"
                f"for _ in range(2):\n"
                f"    job = fahr_core.job({logs_gone!r}, driver='sagemaker', config=config)\n"
                "    print(json.dumps(job.final_metrics))\n")
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=fitted[1], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("fahr warning")]
    assert len(warnings) == 1 and "cloudwatch:GetMetricData" in warnings[0], done.stderr
    finals = [json.loads(line) for line in done.stdout.splitlines()]
    assert finals == [pytest.approx({"loss": 1 / 3, "val_loss": 2 / 3})] * 2
