"""The sagemaker driver says why a job did not complete (plugin API 1.6, ``failure_kind``), from
DescribeTrainingJob's status, secondary status and FailureReason (docs/sagemaker.md, "Why a job
did not complete"): in the failure line of ``fahr fit`` and in ``fahr jobs --json``.

The unit cases classify records as SageMaker documents them; the end-to-end cases run the real
``fahr`` against the emulated AWS, whose jobs fail as each test injects (FAHR_EMU_INJECT, read by
tests/aws_emulator/sagemaker_server.py), their answers validated against botocore's model.
"""

from __future__ import annotations

import json

import pytest

from aws_emulator.fixtures import BUCKET, job_name_of, run_fahr, sagemaker_args, write_model
from fahr_sagemaker.failures import failure_kind

# `mode` says what the job does: fail (its script's own error), sleep (until stopped), oom (use
# more than 64 MiB), reclaim (ask the emulator for a spot reclaim, then sleep), else complete.
SCRIPT = """\
import json, sys, time
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
mode = hp.get("mode", "")
print("mode", mode, flush=True)
if mode == "fail":
    sys.exit(3)
if mode == "oom":
    kept = [b"\\x01" * (16 * 1024 * 1024) for _ in range(64)]
if mode == "reclaim":
    print("fahr-emu: reclaim", flush=True)
if mode in ("sleep", "reclaim"):
    time.sleep(120)
"""


# -- the classification, as SageMaker documents its answers ---------------------------------------------


@pytest.mark.parametrize("record, kind", [
    ({"TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"}, ""),
    ({"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}, ""),
    ({"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: exit code 1"}, "user"),
    ({"TrainingJobStatus": "Failed", "FailureReason": "ClientError: cannot pull the image"}, "user"),
    ({"TrainingJobStatus": "Failed", "FailureReason": "CapacityError: Unable to provision requested ML compute "
                                                      "capacity. Please retry using a different ML instance type."},
     "capacity"),
    ({"TrainingJobStatus": "Failed", "FailureReason": "InsufficientCapacityError: pending for 2 days"}, "capacity"),
    ({"TrainingJobStatus": "Failed", "FailureReason": "ResourceLimitExceeded: account-level service limit"},
     "capacity"),
    ({"TrainingJobStatus": "Failed", "FailureReason": "OutOfMemoryError: Please use an instance type with more "
                                                      "memory"}, "out_of_memory"),
    ({"TrainingJobStatus": "Failed", "FailureReason": "InternalServerError: We encountered an internal error."},
     "platform"),
    ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded"}, "timeout"),
    ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxWaitTimeExceeded"}, "capacity"),
    ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "Interrupted"}, "interrupted"),
    ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped",
      "SecondaryStatusTransitions": [{"Status": "Training"}, {"Status": "Interrupted"}, {"Status": "Stopped"}]},
     "interrupted"),
    ({"TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped",
      "SecondaryStatusTransitions": [{"Status": "Training"}, {"Status": "Stopping"}, {"Status": "Stopped"}]}, "user"),
    ({"TrainingJobStatus": "Failed", "FailureReason": "something SageMaker never said"}, "user"),
])
def test_sagemaker_s_answers_are_classified(record, kind):
    assert failure_kind(record) == kind


def test_train_instance_type_lists_the_types_tried_in_order():
    from fahr_core import ConfigError
    from fahr_sagemaker import aws

    config = {"train_instance_type": "ml.g5.xlarge, ml.g4dn.xlarge"}
    assert [aws.instance_type_for(config, n) for n in range(4)] == [
        "ml.g5.xlarge", "ml.g4dn.xlarge", "ml.g4dn.xlarge", "ml.g4dn.xlarge"]
    assert aws.instance_type_for({"train_instance_type": "ml.m5.large"}, 3) == "ml.m5.large"
    bad = {"train_instance_type": "ml.g5.xlarge,ml.g4dn.xlarg", "output_path": "s3://my-bucket/p", "train_instance_count": 1}
    with pytest.raises(ConfigError, match="'ml.g4dn.xlarg' is not a SageMaker training instance type; did you mean"):
        aws.check_local(bad)


# -- end to end, on the emulated SageMaker --------------------------------------------------------------


@pytest.fixture(scope="module")
def ended(stack, tmp_path_factory):
    """One job of each kind, made by ``fahr fit`` (one image); ``fahr jobs --json`` after them."""
    root = tmp_path_factory.mktemp("failkinds-sm")
    model = write_model(root, "i19failkindssm", SCRIPT)
    base = [str(model), *sagemaker_args("failkinds"), "--config.train_instance_type=ml.m5.large"]
    runs = {
        "user": [*base, "--hp", "mode=fail"],
        "capacity": [*base, "--env", "FAHR_EMU_INJECT=capacity@ml.m5.large"],
        "platform": [*base, "--env", "FAHR_EMU_INJECT=platform"],
        "out_of_memory": [*base, "--hp", "mode=oom", "--env", "FAHR_EMU_INJECT=memory@64m"],
        "timeout": [*base, "--hp", "mode=sleep", "--config.max_run=3"],
        "interrupted": [*base, "--hp", "mode=reclaim", "--env", "FAHR_EMU_INJECT=interrupted", "--config.spot=true",
                        "--config.max_wait=600", "--config.max_run=300", f"--config.checkpoint_s3_uri=s3://{BUCKET}/failkinds-ckpt"],
    }
    results = {kind: run_fahr(stack, "fit", *args, cwd=root) for kind, args in runs.items()}
    listed = run_fahr(stack, "jobs", "i19failkindssm/train", "--json", "--train-driver=sagemaker", cwd=root)
    assert listed.code == 0, listed.output
    return results, {job["job_name"]: job for job in json.loads(listed.stdout)}


@pytest.mark.docker
@pytest.mark.parametrize("kind, status", [("user", "failed"), ("capacity", "failed"), ("platform", "failed"),
                                          ("out_of_memory", "failed"), ("timeout", "stopped"),
                                          ("interrupted", "stopped")])
def test_each_kind_is_told_by_fit_and_listed(ended, kind, status):
    results, listed = ended
    result = results[kind]
    assert result.code == 1, result.output
    [line] = result.error_lines()
    assert f" {status} ({kind})" in line, line
    assert listed[job_name_of(result)]["failure_kind"] == kind, listed[job_name_of(result)]
    if kind == "out_of_memory":  # the limit is named
        assert "OutOfMemoryError: the host used more than its memory limit of 64.0 MiB" in line, line


# -- fit --retry: a failure a retry can help with is launched again, linked to the first ----------------

# Resumes from its checkpoint when it finds one; with `reclaim`, saves one and asks the emulator to
# reclaim its spot instances (then sleeps until they are); with `fail`, fails; else completes.
RESUMES = """\
import json, sys, time
from pathlib import Path
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
saved = Path("/opt/ml/checkpoints/epoch.txt")
if saved.exists():
    print("resumed from epoch", saved.read_text(), flush=True)
    sys.exit(0)
if hp.get("mode") == "fail":
    sys.exit(3)
if hp.get("mode") == "reclaim":
    saved.write_text("2")
    print("saved epoch 2", flush=True)
    print("fahr-emu: reclaim", flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope="module")
def retried(stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("retry-sm")
    model = write_model(root, "i19retrysm", RESUMES)
    base = [str(model), *sagemaker_args("retry")]
    runs = {
        "capacity": [*base, "--retry", "2", "--config.train_instance_type=ml.m5.large,ml.m5.xlarge",
                     "--env", "FAHR_EMU_INJECT=capacity@ml.m5.large"],
        "interrupted": [*base, "--retry", "1", "--hp", "mode=reclaim", "--env", "FAHR_EMU_INJECT=interrupted",
                        "--config.spot=true", "--config.max_wait=600", "--config.max_run=300",
                        f"--config.checkpoint_s3_uri=s3://{BUCKET}/retry-ckpt"],
        "user": [*base, "--retry", "2", "--hp", "mode=fail"],
    }
    results = {kind: run_fahr(stack, "fit", *args, cwd=root) for kind, args in runs.items()}
    listed = run_fahr(stack, "jobs", "i19retrysm/train", "--json", "--train-driver=sagemaker", cwd=root)
    assert listed.code == 0, listed.output
    return results, json.loads(listed.stdout), root


def _created(result) -> list[str]:
    return [line.split("training job ", 1)[1].split()[0] for line in result.stderr.splitlines()
            if "training job " in line and " created in " in line]


@pytest.mark.docker
def test_a_capacity_failure_is_retried_on_the_fallback_type_and_succeeds(retried, stack):
    results, listed, _ = retried
    result = results["capacity"]
    assert result.code == 0, result.output
    first, second = _created(result)
    assert "retrying (capacity): attempt 2 of at most 3" in result.stderr, result.output
    by_name = {job["job_name"]: job for job in listed}
    assert by_name[first]["failure_kind"] == "capacity" and by_name[first]["attempt_of"] == ""
    assert by_name[second]["status"] == "Completed" and by_name[second]["attempt_of"] == first
    sm = stack.client("sagemaker")
    types = [sm.describe_training_job(TrainingJobName=name)["ResourceConfig"]["InstanceType"] for name in (first, second)]
    assert types == ["ml.m5.large", "ml.m5.xlarge"]


@pytest.mark.docker
def test_a_spot_interruption_resumes_from_its_checkpoints(retried):
    results, listed, _ = retried
    result = results["interrupted"]
    assert result.code == 0, result.output
    first, second = _created(result)
    assert "saved epoch 2" in result.stdout and "resumed from epoch 2" in result.stdout, result.output
    by_name = {job["job_name"]: job for job in listed}
    assert by_name[first]["status"] == "Stopped" and by_name[first]["failure_kind"] == "interrupted"
    assert by_name[second]["status"] == "Completed" and by_name[second]["attempt_of"] == first


@pytest.mark.docker
def test_a_user_failure_is_not_retried(retried):
    results, listed, _ = retried
    result = results["user"]
    assert result.code == 1, result.output
    [job] = _created(result)
    assert "retrying" not in result.stderr
    [line] = result.error_lines()
    assert f"job {job} failed (user)" in line, line
    assert not [entry for entry in listed if entry["attempt_of"] == job]


@pytest.mark.docker
def test_fahr_jobs_shows_the_attempts(retried, stack):
    results, _, root = retried
    first, second = _created(results["capacity"])
    table = run_fahr(stack, "jobs", "i19retrysm/train", "--train-driver=sagemaker", cwd=root)
    assert table.code == 0, table.output
    [row] = [line for line in table.stdout.splitlines() if line.startswith(second)]
    assert f"{second} (retry of {first})" in row and "Completed" in row, table.stdout
    [row] = [line for line in table.stdout.splitlines() if line.startswith(first + " ")]
    assert "Failed (capacity)" in row, table.stdout


@pytest.mark.docker
def test_a_sweep_retries_each_point_on_the_fallback_type(stack, tmp_path_factory):
    """``fahr sweep --retry``: each point's job that finds no capacity is launched again, on the
    next instance type, linked to the point's first job; the leaderboard holds the attempts that
    completed."""
    root = tmp_path_factory.mktemp("retry-sweep")
    model = write_model(root, "i19retrysweep", RESUMES)
    result = run_fahr(stack, "sweep", str(model), *sagemaker_args("retry"), "--hp", "x=1,2", "--retry", "1",
                      "--parallel", "2", "--config.train_instance_type=ml.m5.large,ml.m5.xlarge",
                      "--env", "FAHR_EMU_INJECT=capacity@ml.m5.large", "--json", cwd=root)
    assert result.code == 0, result.output
    board = json.loads(result.stdout)["leaderboard"]
    assert [row["status"] for row in board] == ["Completed", "Completed"], board
    swept = json.loads(result.stdout)["sweep"]
    listed = run_fahr(stack, "jobs", "--sweep", swept, "--json", "--train-driver=sagemaker", cwd=root)
    assert listed.code == 0, listed.output
    jobs = {job["job_name"]: job for job in json.loads(listed.stdout)}
    sm = stack.client("sagemaker")
    for row in board:
        second = jobs[row["job"]]
        first = jobs[second["attempt_of"]]
        assert first["failure_kind"] == "capacity" and first["attempt_of"] == "", first
        assert first["hyperparameters"]["x"] == second["hyperparameters"]["x"]
        types = [sm.describe_training_job(TrainingJobName=job["job_name"])["ResourceConfig"]["InstanceType"]
                 for job in (first, second)]
        assert types == ["ml.m5.large", "ml.m5.xlarge"]
    assert len(jobs) == 4, sorted(jobs)  # every attempt is one of the sweep's jobs
