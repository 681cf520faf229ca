"""Warm restarts on sagemaker (issue 19 item 1): ``keep_alive`` keeps a finished job's instances
(ResourceConfig.KeepAlivePeriodInSeconds), a matching re-fit starts on them, and fahr says so.

The emulator's warm pools follow SageMaker's guide (docs/sagemaker.md, "Warm pools"): the unit
cases check its matching rules and expiry and the driver's reading of WarmPoolStatus; the
end-to-end case runs the real ``fahr fit`` twice against the emulated AWS and checks, on the
emulator's own records, that the second job took the first one's pool and skipped provisioning.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from aws_emulator.fixtures import job_name_of, run_fahr, sagemaker_args, write_model
from fahr_core import ConfigError
from fahr_sagemaker import aws, pools

sys.path.insert(0, str(Path(__file__).parent / "aws_emulator"))
import sagemaker_server as emu  # noqa: E402  (the emulator's module, offline: no job is run)

KEEP = 600
PROVISION = 1.5


def _request(name: str, **changes) -> dict:
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "OutputDataConfig": {"S3OutputPath": "s3://my-bucket/p"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30,
                           "VolumeKmsKeyId": "k1", "KeepAlivePeriodInSeconds": KEEP},
        "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        where = request
        for part in parents:
            where = where[part]
        where[leaf] = value
    return request


def _ended(api: emu.SageMaker, name: str, status: str = "Completed", reason: str = "", **changes) -> emu.Job:
    """A job of ``api`` that ran and ended ``status`` (its pool, if any, Available from now)."""
    job = emu.Job(_request(name, **changes))
    api.jobs[name] = job
    job.started = job.created
    job.finish(status, reason)
    return job


def _valid_pool(job: emu.Job, now: float | None = None) -> dict:
    status = job.warm_pool_status(now)
    errors: list[str] = []
    emu.validate(emu.MODEL.shape_for("WarmPoolStatus"), status, "WarmPoolStatus", errors)
    assert not errors, errors
    return status


# -- the emulator's pools, as SageMaker's guide says ------------------------------------------------


def test_a_matching_job_takes_the_pool_and_the_old_one_says_by_whom():
    api = emu.SageMaker()
    first = _ended(api, "first")
    assert _valid_pool(first, first.ended + 5) == {"Status": "Available", "ResourceRetainedBillableTimeInSeconds": 5}
    second = emu.Job(_request("second"))
    assert api.claim_pool(second, now=first.ended + 7) == "first"
    assert _valid_pool(first) == {"Status": "Reused", "ResourceRetainedBillableTimeInSeconds": 7,
                                  "ReusedByJob": "second"}
    assert _valid_pool(second) == {"Status": "InUse"} and second.warm_from == "first"
    third = emu.Job(_request("third"))
    assert api.claim_pool(third) == ""  # a pool is taken once


@pytest.mark.parametrize("field, value", [
    ("RoleArn", "arn:aws:iam::123456789012:role/other"),
    ("ResourceConfig.InstanceCount", 2),
    ("ResourceConfig.InstanceType", "ml.m5.xlarge"),
    ("ResourceConfig.VolumeKmsKeyId", "k2"),
    ("ResourceConfig.VolumeSizeInGB", 31),
    ("VpcConfig.SecurityGroupIds", ["sg-2"]),
    ("VpcConfig.Subnets", ["subnet-1", "subnet-2"]),
    ("EnableInterContainerTrafficEncryption", True),
    ("EnableNetworkIsolation", True),
    # SageMaker's "Considerations": no warm pool for spot instances nor a heterogeneous cluster
    ("EnableManagedSpotTraining", True),
    ("ResourceConfig.InstanceGroups", [{"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                        "InstanceGroupName": "g"}]),
])
def test_a_job_that_differs_in_a_matching_field_gets_no_pool(field, value):
    api = emu.SageMaker()
    first = _ended(api, "first")
    other = emu.Job(_request("other", **{field: value}))
    assert api.claim_pool(other, now=first.ended + 1) == ""
    assert first.pool_state(first.ended + 1) == "Available" and not other.warm_from
    same = emu.Job(_request("same", **{"Environment": {"A": "b"}, "HyperParameters": {"lr": "2"}}))
    assert api.claim_pool(same, now=first.ended + 1) == "first"  # what is not matched may change


def test_a_pool_expires_after_its_keep_alive_billed_for_all_of_it():
    api = emu.SageMaker()
    first = _ended(api, "first")
    assert _valid_pool(first, first.ended + KEEP - 1)["Status"] == "Available"
    assert _valid_pool(first, first.ended + KEEP) == {"Status": "Terminated",
                                                      "ResourceRetainedBillableTimeInSeconds": KEEP}
    assert api.claim_pool(emu.Job(_request("late")), now=first.ended + KEEP + 1) == ""


@pytest.mark.parametrize("status, reason, kept", [
    ("Completed", "", True),
    ("Stopped", "", True),
    ("Failed", "AlgorithmError: exit code 3", True),
    ("Failed", "InternalServerError: We encountered an internal error.", False),
])
def test_a_pool_is_kept_when_the_cluster_stayed_healthy(status, reason, kept):
    job = _ended(emu.SageMaker(), "first", status, reason)
    assert job.pool_state() == ("Available" if kept else "Terminated")


def test_no_keep_alive_no_pool():
    job = _ended(emu.SageMaker(), "first", **{"ResourceConfig.KeepAlivePeriodInSeconds": 0})
    assert job.warm_pool_status() is None


# -- what the driver reads and checks ----------------------------------------------------------------


def test_the_driver_reads_warm_pool_status():
    record = {"TrainingJobName": "b", "TrainingEndTime": 1000.0, "ResourceConfig": {"KeepAlivePeriodInSeconds": 60},
              "WarmPoolStatus": {"Status": "Available", "ResourceRetainedBillableTimeInSeconds": 12}}
    pool = pools.warm_pool(record, reused_from="a")
    assert (pool.status, pool.billable_seconds, pool.expires, pool.reused_from) == ("Available", 12.0, 1060.0, "a")
    old = {"TrainingJobName": "a", "WarmPoolStatus": {"Status": "Reused", "ReusedByJob": "b"}}
    assert pools.warm_pool(old).reused_by == "b" and pools.warm_pool(old).expires is None
    assert pools.takers([old, record]) == {"b": "a"}
    assert pools.warm_pool({"TrainingJobName": "c"}) is None  # no pool: nothing to say


@pytest.mark.parametrize("values, message", [
    ({"keep_alive": -1}, "config.keep_alive=-1: must be 0 to 3600 seconds"),
    ({"keep_alive": 3601}, "config.keep_alive=3601: must be 0 to 3600 seconds"),
    ({"keep_alive": 60, "spot": True, "max_wait": 90000}, "cannot be used with config.spot=true"),
])
def test_keep_alive_is_checked(values, message):
    config = {"output_path": "s3://my-bucket/p", "train_instance_type": "ml.m5.large", "train_instance_count": 1,
              "volume_size": 30, "max_run": 600, "spot": False, "max_wait": 0, **values}
    with pytest.raises(ConfigError, match=message):
        aws.check_local(config)
    aws.check_local({**config, "keep_alive": 3600, "spot": False, "max_wait": 0})


def test_a_bad_keep_alive_is_one_line_before_anything_is_built(tmp_path):
    from conftest import one_line_error, run_fahr as fahr

    model = write_model(tmp_path, "i19warmpoolbad", "print('never')\n")
    proc = fahr("fit", model, "--train-driver=sagemaker", "--config.output_path=s3://my-bucket/p", "--config.role_name=r",
                "--config.keep_alive=7200", cwd=tmp_path, env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                                                               "AWS_DEFAULT_REGION": "us-east-1"})
    line = one_line_error(proc, 2)
    assert line == ("fahr error: config.keep_alive=7200: must be 0 to 3600 seconds (how long SageMaker keeps a "
                    "finished job's instances warm)")
    assert "build" not in proc.stdout.lower()


# -- end to end: the second fit starts on the first one's pool ---------------------------------------


def _starting_seconds(info: dict) -> float:
    """How long the job was Starting (waiting for its instances), from the emulator's record."""
    starting = next(t for t in info["SecondaryStatusTransitions"] if t["Status"] == "Starting")
    return (starting["EndTime"] - starting["StartTime"]).total_seconds()


def test_a_refit_starts_on_the_warm_pool_of_the_first(stack, tmp_path):
    write_model(tmp_path, "i19warmpool", "print('warm', flush=True)\n")
    # Each fresh job of this test waits PROVISION s for its instances (the stack's jobs wait none).
    args = ["fit", "i19warmpool/train.py", *sagemaker_args("warmpool"), f"--config.keep_alive={KEEP}",
            "--env", f"FAHR_EMU_INJECT=provision@{PROVISION}"]
    first = run_fahr(stack, *args, cwd=tmp_path)
    assert first.code == 0, first.output
    first_job = job_name_of(first)
    assert f"warm pool of job {first_job}: Available until " in first.stderr
    second = run_fahr(stack, *args, cwd=tmp_path)
    assert second.code == 0, second.output
    second_job = job_name_of(second)
    assert f"job {second_job} started on the warm pool of job {first_job}" in second.stderr

    sm = stack.client("sagemaker")
    old, new = (sm.describe_training_job(TrainingJobName=name) for name in (first_job, second_job))
    assert old["WarmPoolStatus"]["Status"] == "Reused" and old["WarmPoolStatus"]["ReusedByJob"] == second_job
    assert new["WarmPoolStatus"]["Status"] == "Available"
    assert new["ResourceConfig"]["KeepAlivePeriodInSeconds"] == KEEP
    assert stack.warm_from()[second_job] == first_job and stack.warm_from()[first_job] == ""
    assert _starting_seconds(old) >= PROVISION > _starting_seconds(new), (old, new)

    listed = run_fahr(stack, "jobs", "i19warmpool/train", "--json", "--train-driver=sagemaker", cwd=tmp_path)
    assert listed.code == 0, listed.output
    pools_of = {row["job_name"]: row["warm_pool"] for row in json.loads(listed.stdout)}
    assert pools_of[first_job]["status"] == "Reused" and pools_of[first_job]["reused_by"] == second_job
    assert pools_of[second_job]["status"] == "Available" and pools_of[second_job]["reused_from"] == first_job
    assert pools_of[second_job]["expires"] is not None
    table = run_fahr(stack, "jobs", "i19warmpool/train", "--train-driver=sagemaker", cwd=tmp_path)
    assert "WARM POOL" in table.stdout and f"Reused by {second_job}" in table.stdout


# -- what fahr says of a pool, and says nothing of for a driver without pools ------------------------


def test_fit_and_wait_say_whose_pool_a_job_took_and_what_its_own_costs():
    from fahr_core import WarmPool
    from fahr_core.report import warm_pool_lines

    lines = warm_pool_lines("b", WarmPool(status="Available", billable_seconds=3.0, expires=2e9, reused_from="a"))
    assert lines[0] == "job b started on the warm pool of job a (no wait for new instances)"
    assert lines[1].startswith("warm pool of job b: Available until ")
    assert lines[1].endswith(" for a matching job to start on, billed at the instances' price meanwhile (3 s so far)")
    assert warm_pool_lines("a", WarmPool(status="Reused", billable_seconds=7.0, reused_by="b")) == [
        "warm pool of job a: Reused by b, billed 7 s"]
    assert warm_pool_lines("c", None) == []


def test_the_jobs_table_has_a_warm_pool_column_only_when_a_job_has_a_pool(capsys):
    from fahr_core import WarmPool
    from fahr_core.api import Job
    from fahr_core.cli import _print_table

    job = Job("j-1", driver="local", model_tag="m/train")
    job.status = "Completed"
    _print_table([job])
    assert "WARM POOL" not in capsys.readouterr().out
    job.warm_pool = WarmPool(status="Terminated", billable_seconds=600.0)
    _print_table([job])
    out = capsys.readouterr().out
    assert "WARM POOL" in out and "Terminated, billed 600 s" in out


def test_whose_pool_is_best_effort(monkeypatch):
    from botocore.exceptions import ClientError

    asked = []

    class Refusing:
        def search(self, **request):
            asked.append(request)
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Search")

    monkeypatch.setattr(aws, "client", lambda config, service: Refusing())
    assert pools.reused_from({}, {"TrainingJobName": "b", "WarmPoolStatus": {"Status": "InUse"}}) == ""
    assert len(asked) == 1
    assert pools.reused_from({}, {"TrainingJobName": "c"}) == "" and len(asked) == 1  # no pool: not asked
