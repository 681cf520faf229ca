"""The sagemaker driver's ``list_jobs`` and ``logs`` hooks, against the emulated AWS.

The jobs are made with the real ``fahr fit`` (a subprocess); the hooks are called in this process
through the plugin manager and configuration the core builds, with boto3 pointed at the stack.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from aws_emulator.fixtures import BUCKET, ROLE, job_name_of, run_fahr, sagemaker_args, write_model

pytestmark = pytest.mark.docker

PRINTS = """\
from pathlib import Path
print("first line of the job", flush=True)
print("second line of the job", flush=True)
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/model/weights.txt").write_text("42")
"""

FAILS = """\
import sys
from pathlib import Path
print("about to fail", flush=True)
Path("/opt/ml/output").mkdir(parents=True, exist_ok=True)
Path("/opt/ml/output/failure").write_text("ValueError: no data in the channel")
sys.exit(3)
"""

TICKS = """\
import time
for i in range(16):
    print(f"tick {i}", flush=True)
    time.sleep(0.5)
"""

TWO_HOSTS = """\
import json
from pathlib import Path
host = json.loads(Path("/opt/ml/input/config/resourceconfig.json").read_text())["current_host"]
print(f"hello from {host}", flush=True)
Path("/opt/ml/model").mkdir(parents=True, exist_ok=True)
"""


@pytest.fixture(scope="module")
def made(stack, tmp_path_factory):
    """Three jobs made by ``fahr fit``: two of jobsok/train (the second named with
    base_job_name=custom), then a failed one of jobsbad/train; their names, oldest first."""
    root = tmp_path_factory.mktemp("jobs")
    ok = write_model(root, "jobsok", PRINTS)
    bad = write_model(root, "jobsbad", FAILS)
    names = []
    first = run_fahr(stack, "fit", str(ok), *sagemaker_args("jobs"), cwd=root)
    assert first.code == 0, first.output
    names.append(job_name_of(first))
    second = run_fahr(stack, "fit", str(ok), *sagemaker_args("jobs"), "--config.base_job_name=custom", cwd=root)
    assert second.code == 0, second.output
    names.append(job_name_of(second))
    third = run_fahr(stack, "fit", str(bad), *sagemaker_args("jobs"), cwd=root)
    assert third.code == 1, third.output
    names.append(job_name_of(third))
    return names


@pytest.fixture
def session(stack, tmp_path, monkeypatch):
    """The core's plugin manager and configuration for the sagemaker driver, boto3 on the stack."""
    for var in [v for v in os.environ if v.startswith(("AWS_", "FAHR_"))]:
        monkeypatch.delenv(var)
    for var, value in stack.env().items():
        if var.startswith("AWS_"):
            monkeypatch.setenv(var, value)
    from fahr_core.session import open_session
    from fahr_sagemaker import aws

    aws._session.cache_clear()  # clients made before the environment was set would miss the stack
    aws._client.cache_clear()
    return open_session("sagemaker", tmp_path, {"output_path": f"s3://{BUCKET}/jobs", "role_name": ROLE,
                                                "poll_interval": 2}, check_required=False)


def _list(session, **query):
    from fahr_core import JobQuery

    return session.hook.list_jobs(query=JobQuery(**query), config=session.config)


def _logs(session, job_name: str, follow: bool = False):
    from fahr_core import JobHandle

    return list(session.hook.logs(job=JobHandle(driver="sagemaker", job_name=job_name, model_tag=""),
                                  config=session.config, follow=follow))


def test_list_newest_first_with_every_field(made, session):
    first, second, failed = made
    jobs = [j for j in _list(session) if j.job_name in made]
    assert [j.job_name for j in jobs] == [failed, second, first]  # newest first
    by_name = {j.job_name: j for j in jobs}
    assert second.startswith("custom-")
    for name in (first, second):
        info = by_name[name]
        assert info.driver == "sagemaker"
        assert info.model_tag == "jobsok/train"
        assert info.status == "Completed" and info.secondary_status == "Completed"
        assert info.failure_reason == ""
        assert info.model_artifact == f"s3://{BUCKET}/jobs/{name}/output/model.tar.gz"
        assert info.created <= info.started <= info.ended <= time.time()
        assert info.training_seconds >= 1 and info.billable_seconds == info.training_seconds
    bad = by_name[failed]
    assert bad.model_tag == "jobsbad/train"
    assert bad.status == "Failed"
    assert bad.failure_reason == "ValueError: no data in the channel"
    assert bad.model_artifact == ""  # a failed job has no model to fetch
    assert bad.created <= bad.started <= bad.ended
    assert jobs[0].created >= jobs[1].created >= jobs[2].created


def test_list_filters_by_tag_status_and_limit(made, session):
    first, second, failed = made
    # base_job_name changed the second job's name, not its tag: the tag finds both.
    assert [j.job_name for j in _list(session, model_tag="jobsok/train")] == [second, first]
    assert [j.job_name for j in _list(session, model_tag="jobsok/train", limit=1)] == [second]
    assert [j.job_name for j in _list(session, model_tag="jobsbad/train")] == [failed]
    failed_jobs = _list(session, status="Failed")
    assert failed in [j.job_name for j in failed_jobs] and all(j.status == "Failed" for j in failed_jobs)
    assert not {first, second} & {j.job_name for j in failed_jobs}
    assert _list(session, model_tag="jobsok/train", status="Failed") == []
    assert _list(session, model_tag="no-such/tag") == []
    assert len(_list(session, limit=2)) == 2


def test_list_jobs_makes_no_describe_per_job(made, stack, session):
    before = stack.describe_calls()
    listed = _list(session)
    assert set(made) <= {j.job_name for j in listed}
    assert stack.describe_calls() == before  # Search alone: not one DescribeTrainingJob


def test_logs_of_a_finished_job(made, session):
    lines = _logs(session, made[0])
    texts = [line.text for line in lines]
    assert texts.index("first line of the job") < texts.index("second line of the job")
    assert {line.host for line in lines} == {"algo-1"}
    assert all(line.timestamp and line.timestamp <= time.time() for line in lines)
    failed = [line.text for line in _logs(session, made[2])]
    assert "about to fail" in failed


def test_logs_of_a_two_host_job(stack, session, tmp_path):
    model = write_model(tmp_path, "jobstwo", TWO_HOSTS)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args("jobs"), "--config.train_instance_count=2",
                      cwd=tmp_path)
    assert result.code == 0, result.output
    lines = [line for line in _logs(session, job_name_of(result)) if line.text.startswith("hello from ")]
    assert sorted((line.host, line.text) for line in lines) == [("algo-1", "hello from algo-1"),
                                                               ("algo-2", "hello from algo-2")]


def test_logs_follow_a_running_job_to_its_end(stack, session, tmp_path):
    model = write_model(tmp_path, "jobsticks", TICKS)
    result = run_fahr(stack, "fit", str(model), *sagemaker_args("jobs"), "--detach", cwd=tmp_path)
    assert result.code == 0, result.output
    job = job_name_of(result)
    describe = stack.client("sagemaker").describe_training_job
    assert describe(TrainingJobName=job)["TrainingJobStatus"] == "InProgress"
    lines = _logs(session, job, follow=True)
    assert describe(TrainingJobName=job)["TrainingJobStatus"] == "Completed"  # returned once it ended
    assert [line.text for line in lines if line.text.startswith("tick ")] == [f"tick {i}" for i in range(16)]
    assert {line.host for line in lines} == {"algo-1"}


def test_logs_of_an_unknown_job_is_a_usage_error(stack, session):
    from fahr_core import UsageError

    with pytest.raises(UsageError, match="no training job 'no-such-job'"):
        _logs(session, "no-such-job")


# -- the same through the real commands ---------------------------------------------------------


def test_fahr_jobs_lists_filters_and_prints_json(stack, made, tmp_path):
    first, second, failed = made
    args = ["--train-driver", "sagemaker", f"--config.output_path=s3://{BUCKET}/jobs"]
    listed = run_fahr(stack, "jobs", "--json", *args, cwd=tmp_path)
    assert listed.code == 0, listed.output
    rows = [row for row in json.loads(listed.stdout) if row["job_name"] in made]
    assert [row["job_name"] for row in rows] == [failed, second, first]  # newest first
    assert [row["status"] for row in rows] == ["Failed", "Completed", "Completed"]
    assert "no data in the channel" in rows[0]["failure_reason"]
    tagged = run_fahr(stack, "jobs", "jobsok/train", "--json", *args, cwd=tmp_path)
    assert [row["job_name"] for row in json.loads(tagged.stdout)] == [second, first]  # base_job_name found
    failed_only = run_fahr(stack, "jobs", "--status", "Failed", "--json", *args, cwd=tmp_path)
    assert failed in [row["job_name"] for row in json.loads(failed_only.stdout)]
    assert {row["status"] for row in json.loads(failed_only.stdout)} == {"Failed"}
    table = run_fahr(stack, "jobs", "jobsok/train", *args, cwd=tmp_path)
    assert table.code == 0, table.output
    lines = [line for line in table.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines[1:]] == [second, first]  # a header, then newest first


def test_fahr_logs_replays_and_follows(stack, made, tmp_path):
    first, _, _ = made
    args = ["--train-driver", "sagemaker", f"--config.output_path=s3://{BUCKET}/jobs", "--config.poll_interval=2"]
    replay = run_fahr(stack, "logs", first, *args, cwd=tmp_path)
    assert replay.code == 0, replay.output
    assert "first line of the job\nsecond line of the job" in replay.stdout
    model = write_model(tmp_path, "jobsfollow", TICKS)
    launched = run_fahr(stack, "fit", str(model), *sagemaker_args("jobs"), "--detach", cwd=tmp_path)
    assert launched.code == 0, launched.output
    job = job_name_of(launched)
    followed = run_fahr(stack, "logs", job, "--follow", *args, cwd=tmp_path)
    assert followed.code == 0, followed.output
    assert [l for l in followed.stdout.splitlines() if l.startswith("tick ")] == [f"tick {i}" for i in range(16)]
    status = stack.client("sagemaker").describe_training_job(TrainingJobName=job)["TrainingJobStatus"]
    assert status == "Completed"  # --follow returned once the job had ended


def test_the_python_api_fits_fetches_and_lists_on_sagemaker(stack, session, tmp_path, monkeypatch):
    """``fit(...).fetch(dir)`` and ``jobs(tag)[0]`` in this process, on the emulated SageMaker
    (``session`` has pointed boto3 at the stack)."""
    import fahr_core

    for var, value in stack.env().items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    model = write_model(tmp_path, "jobsapi", PRINTS)
    config = {"output_path": f"s3://{BUCKET}/jobs", "role_name": ROLE, "poll_interval": 2}
    job = fahr_core.fit(model, driver="sagemaker", config=config, quiet=True)
    assert job.status == "Completed" and job.model_tag == "jobsapi/train"
    fetched = job.fetch(tmp_path / "model")
    assert (fetched / "weights.txt").read_text() == "42"
    newest = fahr_core.jobs("jobsapi/train", driver="sagemaker", config=config)[0]
    assert newest.name == job.name and newest.status == "Completed"
    assert [line for line in newest.logs() if "first line" in line] == ["first line of the job"]
