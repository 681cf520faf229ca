"""`fahr fit --secret NAME` on the sagemaker driver, against the emulated AWS (tests/aws_emulator):
the job's process gets $NAME through a job-scoped Secrets Manager secret that fahr's launcher
reads with the job's credentials; the value is nowhere else (not DescribeTrainingJob, S3, the
logs, `fahr jobs --json`, the image, `docker inspect`, a command line), and the secret is deleted
once fahr sees the job ended: by `fit` itself, by the next `fahr jobs` for a detached job, at once
when the launch fails."""

from __future__ import annotations

import json
import os
import secrets as random_secrets
import time

import pytest

from aws_emulator.fixtures import BUCKET, job_name_of, run_fahr, sagemaker_args, write_model
from secret_witness import SCRIPT, Witness, digest, files_holding, image_holds

pytestmark = pytest.mark.docker

NAME = "I17_SECRET_TOKEN"
FOLDER = "i17secretsm"


def _secret_names(stack) -> set[str]:
    pages = stack.client("secretsmanager").get_paginator("list_secrets").paginate()
    return {entry["Name"] for page in pages for entry in page["SecretList"]}


@pytest.fixture(scope="module")
def sm_job(stack, tmp_path_factory, docker_engine):
    root = tmp_path_factory.mktemp("i17secretsm")
    model = write_model(root, FOLDER, SCRIPT.format(name=NAME))
    value = "i17sm-" + random_secrets.token_hex(16)
    witness = Witness(docker_engine, f"{FOLDER}-train-", value)
    witness.start()
    try:
        proc = run_fahr(stack, "fit", str(model), *sagemaker_args("i17secret"), "--secret", NAME, cwd=root,
                        env={**stack.env(), NAME: value, "NO_COLOR": "1"})
    finally:
        witness.stop()
    assert proc.code == 0, proc.output
    return {"root": root, "model": model, "value": value, "proc": proc, "job": job_name_of(proc),
            "witness": witness}


def test_the_job_reads_its_secret_with_its_own_credentials(sm_job):
    assert f"secret sha256 {digest(sm_job['value'])}" in sm_job["proc"].output
    assert sm_job["value"] not in sm_job["proc"].output


def test_the_visible_job_names_the_secret_never_its_value(sm_job, stack):
    info = stack.client("sagemaker").describe_training_job(TrainingJobName=sm_job["job"])
    arn = info["Environment"]["FAHR_SECRETS_ARN"]
    assert arn.startswith("arn:aws:secretsmanager:") and f":secret:fahr/{sm_job['job']}" in arn
    assert NAME not in info["Environment"]
    assert sm_job["value"] not in json.dumps(info, default=str)


def test_the_secret_is_deleted_when_the_job_ends(sm_job, stack):
    assert f"fahr/{sm_job['job']}" not in _secret_names(stack)


def test_the_value_is_not_in_s3_logs_listings_or_files(sm_job, stack):
    value, root = sm_job["value"], sm_job["root"]
    s3 = stack.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="i17secret/").get("Contents", [])]
    assert keys  # the job's model and output are there
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert value.encode() not in body, key
        if key.endswith(".tar.gz"):
            import gzip

            assert value.encode() not in gzip.decompress(body), key
    env = {**stack.env(), "NO_COLOR": "1"}
    listing = run_fahr(stack, "jobs", "--json", "--train-driver", "sagemaker", cwd=root, env=env)
    assert listing.code == 0 and sm_job["job"] in listing.stdout and value not in listing.output
    logs = run_fahr(stack, "logs", sm_job["job"], "--train-driver", "sagemaker", cwd=root, env=env)
    assert "secret sha256" in logs.output and value not in logs.output
    assert files_holding(value, root, os.environ["XDG_CACHE_HOME"]) == []


def test_the_value_is_not_in_the_container_a_command_line_or_the_image(sm_job, docker_engine):
    witness = sm_job["witness"]
    assert witness.inspected > 0 and witness.topped > 0 and witness.cmdlines > 0
    assert witness.hits == set()
    assert image_holds(docker_engine, f"{FOLDER}/train:latest", sm_job["value"]) == []


def _detached(sm_job, stack, env) -> str:
    """A job of the module's model given the secret, launched with --detach: its name."""
    proc = run_fahr(stack, "fit", str(sm_job["model"]), *sagemaker_args("i17secret"), "--secret", NAME, "--detach",
                    cwd=sm_job["root"], env=env)
    assert proc.code == 0, proc.output
    return job_name_of(proc)


def _detached_and_ended(sm_job, stack, env) -> str:
    job = _detached(sm_job, stack, env)
    sm = stack.client("sagemaker")
    deadline = time.monotonic() + 180
    while sm.describe_training_job(TrainingJobName=job)["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(1)
    assert f"fahr/{job}" in _secret_names(stack)  # nobody has seen it end yet
    return job


@pytest.mark.parametrize("command", ["jobs", "fetch"])
def test_a_detached_jobs_secret_goes_with_the_next_command_that_sees_it_ended(sm_job, stack, command):
    env = {**stack.env(), NAME: "i17sm-detached-" + random_secrets.token_hex(8), "NO_COLOR": "1",
           "I17_SECRET_SLEEP": "0"}
    job = _detached_and_ended(sm_job, stack, env)
    if command == "jobs":
        args = ["jobs", "--train-driver", "sagemaker"]
    else:
        args = ["fetch", str(sm_job["root"] / f"model-{job}"), f"{FOLDER}/train", f"s3://{BUCKET}/i17secret",
                "--job", job]
    seen = run_fahr(stack, *args, cwd=sm_job["root"], env=env)
    assert seen.code == 0, seen.output
    assert f"fahr/{job}" not in _secret_names(stack)


def test_a_failed_launch_deletes_the_secret(sm_job, stack):
    before = _secret_names(stack)
    env = {**stack.env(), NAME: "i17sm-refused", "NO_COLOR": "1"}
    # A tag key over SageMaker's 128 characters: CreateTrainingJob refuses the job (ValidationException).
    proc = run_fahr(stack, "fit", str(sm_job["model"]), *sagemaker_args("i17secret"), "--secret", NAME,
                    f"--config.tags={'k' * 129}=v", cwd=sm_job["root"], env=env)
    assert proc.code == 2 and "SageMaker refused the job" in proc.output, proc.output
    assert _secret_names(stack) == before


def test_a_stopped_jobs_secret_goes_with_fahr_stop(sm_job, stack):
    env = {**stack.env(), NAME: "i17sm-stopped-" + random_secrets.token_hex(8), "NO_COLOR": "1",
           "I17_SECRET_SLEEP": "120"}
    job = _detached(sm_job, stack, env)
    logs = stack.client("logs")
    deadline = time.monotonic() + 120
    while True:  # the launcher has read the secret once the script prints its hash
        assert time.monotonic() < deadline
        streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                            logStreamNamePrefix=job)["logStreams"]
        events = [e["message"] for s in streams for e in logs.get_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=s["logStreamName"])["events"]]
        if any("secret sha256" in e for e in events):
            break
        time.sleep(1)
    assert f"fahr/{job}" in _secret_names(stack)
    stopped = run_fahr(stack, "stop", job, "--train-driver", "sagemaker", cwd=sm_job["root"], env=env)
    assert stopped.code == 0, stopped.output
    assert f"fahr/{job}" not in _secret_names(stack)
