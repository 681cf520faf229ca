"""A job's metrics on the emulated SageMaker: the definitions reach CreateTrainingJob as
MetricDefinitions (DescribeTrainingJob shows them), and the metrics printed both ways (the
convention, a --metric regex) read back through the Python API as on local: from the job's
CloudWatch logs (the sagemaker driver's logs hook), with its hyperparameters."""

from __future__ import annotations

import os
import re

import pytest

from aws_emulator.fixtures import BUCKET, ROLE, job_name_of, run_fahr, sagemaker_args, write_model

pytestmark = pytest.mark.docker

PRINTS = """\
from pathlib import Path
for step in range(3):
    print(f"fahr-metric loss={1 / (step + 1)} step={step}", flush=True)
    print(f"epoch {step}: val_loss={2 / (step + 1)}", flush=True)
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/weights.txt").write_text("42")
"""


def test_metric_definitions_reach_sagemaker_and_the_metrics_read_back(stack, tmp_path, monkeypatch):
    model = write_model(tmp_path, "i18metricssm", PRINTS)
    fitted = run_fahr(stack, "fit", str(model), *sagemaker_args("metrics"), "--hp", "alpha=0.5",
                      "--metric", r"val_loss=val_loss=(\S+)", "--metric", "loss", cwd=tmp_path)
    assert fitted.code == 0, fitted.output
    job = job_name_of(fitted)
    described = stack.client("sagemaker").describe_training_job(TrainingJobName=job)
    definitions = described["AlgorithmSpecification"]["MetricDefinitions"]
    assert [d["Name"] for d in definitions] == ["val_loss", "loss"]
    assert definitions[0]["Regex"] == r"val_loss=(\S+)"
    # `--metric loss` alone: the convention's line as one regex, which SageMaker's console reads
    assert re.search(definitions[1]["Regex"], "fahr-metric loss=0.25 step=3").group(1) == "0.25"

    for var in [v for v in os.environ if v.startswith(("AWS_", "FAHR_"))]:
        monkeypatch.delenv(var)
    for var, value in stack.env().items():
        monkeypatch.setenv(var, value)
    from fahr_sagemaker import aws

    aws._session.cache_clear()
    aws._client.cache_clear()
    monkeypatch.chdir(tmp_path)
    import fahr_core

    config = {"output_path": f"s3://{BUCKET}/metrics", "role_name": ROLE}
    read = fahr_core.job(job, driver="sagemaker", config=config)
    assert {name: [p.value for p in series] for name, series in read.metrics.items()} == {
        "loss": [1.0, 0.5, 1 / 3], "val_loss": [2.0, 1.0, 2 / 3]}
    assert [p.step for p in read.metrics["loss"]] == [0, 1, 2]
    assert read.final_metrics == {"loss": 1 / 3, "val_loss": 2 / 3}
    assert read.hyperparameters == {"alpha": "0.5"}
    listed = fahr_core.jobs("i18metricssm/train", driver="sagemaker", config=config)[0]
    assert listed.name == job and listed.final_metrics == read.final_metrics
