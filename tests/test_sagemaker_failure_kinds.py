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

