"""The job-name and model-tag contracts with the sagemaker driver, against the emulated AWS:
``base_job_name`` renames the job, and fahr still prints its real name and fetches it by tag;
``fahr wait JOB`` on a detached job prints the fetch command with the job's tag.

Run under ``flock /tmp/fahr-emulator.lock`` like every test of the ``stack`` fixture.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from aws_emulator.fixtures import BUCKET, job_name_of, run_fahr, sagemaker_args, write_model

pytestmark = pytest.mark.docker

HELLO = (Path(__file__).resolve().parent.parent / "examples" / "hello" / "train.py").read_text()


def _slope(folder: Path) -> float:
    return json.loads((folder / "model.json").read_text())["slope"]


def test_base_job_name_the_real_name_is_printed_and_fetch_by_tag_finds_it(stack, tmp_path):
    from fahr_core.testing import _job_name  # the conformance suite's parser must find it too

    model = write_model(tmp_path, "renamed", HELLO)
    fit = run_fahr(stack, "fit", str(model), *sagemaker_args("renamed"), "--config.base_job_name=custom",
                   "--hp", "slope=6", cwd=tmp_path)
    assert fit.code == 0, fit.output
    job = job_name_of(fit)  # the driver's own "training job X created" line
    assert job.startswith("custom-")
    assert stack.client("sagemaker").describe_training_job(TrainingJobName=job)["TrainingJobStatus"] == "Completed"
    # The core names the job only once launch returned it, with the handle's (real) name.
    assert re.findall(r"launching job (\S+)", fit.stderr) == [job]
    assert fit.stderr.index(f"training job {job} created") < fit.stderr.index(f"launching job {job} ")
    assert "renamed-train-" not in fit.stderr
    assert _job_name(fit) == job

    # A newer job of another tag, same base_job_name and folder: never the one fetched for this tag.
    other = write_model(tmp_path, "other", HELLO)
    later = run_fahr(stack, "fit", str(other), *sagemaker_args("renamed"), "--config.base_job_name=custom",
                     "--hp", "slope=1", cwd=tmp_path)
    assert later.code == 0, later.output

    # No --job and no base_job_name: the job is found by the model tag it recorded.
    fetched = run_fahr(stack, "fetch", str(tmp_path / "m"), "renamed/train", f"s3://{BUCKET}/renamed", cwd=tmp_path)
    assert fetched.code == 0, fetched.output
    assert f"fetching the model of job {job}" in fetched.stderr
    assert abs(_slope(tmp_path / "m") - 6.0) < 0.1


def test_wait_by_name_prints_the_fetch_command_with_the_tag(stack, tmp_path):
    model = write_model(tmp_path, "waited", HELLO)
    launched = run_fahr(stack, "fit", str(model), *sagemaker_args("waited"), "--detach", cwd=tmp_path)
    assert launched.code == 0, launched.output
    job = job_name_of(launched)
    # Follow the commands fit printed, word for word: first the wait, then the fetch it prints.
    [wait_line] = [l.strip() for l in launched.stderr.splitlines() if l.strip().startswith("fahr wait ")]
    assert shlex.split(wait_line)[:3] == ["fahr", "wait", job]
    waited = run_fahr(stack, *shlex.split(wait_line)[1:], "--config.poll_interval=1", cwd=tmp_path)
    assert waited.code == 0, waited.output
    fetch_lines = [l.strip() for l in waited.stderr.splitlines() if l.strip().startswith("fahr fetch ./")]
    assert fetch_lines == [f"fahr fetch ./model waited/train s3://{BUCKET}/waited --train-driver sagemaker "
                           f"--job {job}"], waited.stderr
    fetched = run_fahr(stack, *shlex.split(fetch_lines[0])[1:], cwd=tmp_path)
    assert fetched.code == 0, fetched.output
    assert abs(_slope(tmp_path / "model") - 3.0) < 0.1
