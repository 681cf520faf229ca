"""The contracts the hookspecs state and the core honours, through the real `fahr` command and the
installed drivers: which driver a location belongs to, the job name printed from the handle,
the fetch command after `fahr wait JOB`, keys required per command.

Two installed drivers claim `s3://…` here: `sagemaker` always, `testdrv` when its config says
`claim_s3` (tests/plugins/fahr_testdriver). Neither reaches AWS: the tests read which driver was
chosen from the test driver's record of its steps, or from the sagemaker driver's own error.
"""

from __future__ import annotations

import json
import re

import pluggy
import pytest

from conftest import one_line_error, run_fahr

LOCATION = "s3://some-bucket/models"


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No AWS region, profile or credentials: the sagemaker driver stops at its first AWS call."""
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "FAHR_DRIVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def record(tmp_path, monkeypatch):
    folder = tmp_path / "rec"
    monkeypatch.setenv("FAHR_TESTDRV_RECORD_DIR", str(folder))
    return folder


def steps(folder):
    path = folder / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fetch(tmp_path, *args, env=None, cwd=None):
    return run_fahr("fetch", tmp_path / "out", "proj/train", LOCATION, *args, env=env, cwd=cwd or tmp_path)


def fetched_by_testdrv(record_dir) -> bool:
    return [s["location"] for s in steps(record_dir) if s["step"] == "fetch"] == [LOCATION]


def fetched_by_sagemaker(proc) -> bool:
    # Its first AWS call needs a region: the sagemaker driver was the one asked to fetch.
    return proc.returncode == 2 and "no AWS region" in proc.stderr


# -- location claims -----------------------------------------------------------------------------


def test_one_claimant_is_chosen_even_if_it_takes_only_location(no_aws, record, tmp_path):
    # The sagemaker driver's claims_location takes `location` alone, the spec's older signature.
    proc = fetch(tmp_path)
    assert fetched_by_sagemaker(proc), proc.stderr
    assert not fetched_by_testdrv(record)


def test_two_claimants_exit_2_naming_both_and_how_to_choose(no_aws, record, tmp_path, monkeypatch):
    monkeypatch.setenv("FAHR_TESTDRV_CLAIM_S3", "true")
    line = one_line_error(fetch(tmp_path), 2)
    assert line == (f"fahr error: {LOCATION} is claimed by several installed drivers ('sagemaker', 'testdrv'); "
                    "choose one with --train-driver NAME, or set FAHR_DRIVER=NAME")
    assert not steps(record)
    # A driver FAHR_DRIVER names that does not claim the location does not choose: the claimants rule.
    assert "claimed by several installed drivers" in one_line_error(fetch(tmp_path, env={"FAHR_DRIVER": "local"}), 2)


def test_fahr_driver_chooses_among_claimants(no_aws, record, tmp_path, monkeypatch):
    monkeypatch.setenv("FAHR_TESTDRV_CLAIM_S3", "true")
    proc = fetch(tmp_path, env={"FAHR_DRIVER": "testdrv"})
    assert fetched_by_testdrv(record), proc.stderr
    proc = fetch(tmp_path, env={"FAHR_DRIVER": "sagemaker"})
    assert fetched_by_sagemaker(proc), proc.stderr
    assert len(steps(record)) == 1  # testdrv was not asked again


def test_fahr_toml_driver_chooses_among_claimants(no_aws, record, tmp_path, monkeypatch):
    monkeypatch.setenv("FAHR_TESTDRV_CLAIM_S3", "true")
    (tmp_path / "fahr.toml").write_text('driver = "testdrv"\n')
    proc = fetch(tmp_path)
    assert fetched_by_testdrv(record), proc.stderr
    # The environment beats the file, as for every other choice of driver.
    assert fetched_by_sagemaker(fetch(tmp_path, env={"FAHR_DRIVER": "sagemaker"}))


def test_claims_are_asked_with_the_drivers_resolved_config(no_aws, record, tmp_path, monkeypatch):
    # claim_s3 from fahr.toml's [testdrv] table and from --config.claim_s3 (a key only testdrv declares).
    (tmp_path / "fahr.toml").write_text("[testdrv]\nclaim_s3 = true\n")
    assert "claimed by several installed drivers" in one_line_error(fetch(tmp_path), 2)
    (tmp_path / "fahr.toml").unlink()
    assert "claimed by several installed drivers" in one_line_error(fetch(tmp_path, "--config.claim_s3=true"), 2)
    # And when testdrv's config says no, sagemaker alone claims it.
    assert fetched_by_sagemaker(fetch(tmp_path, env={"FAHR_TESTDRV_CLAIM_S3": "false"}))


def test_train_driver_wins_over_every_claim(no_aws, record, tmp_path, monkeypatch):
    monkeypatch.setenv("FAHR_TESTDRV_CLAIM_S3", "true")
    proc = fetch(tmp_path, "--train-driver", "testdrv", env={"FAHR_DRIVER": "sagemaker"})
    assert fetched_by_testdrv(record), proc.stderr
    monkeypatch.setenv("FAHR_TESTDRV_CLAIM_S3", "false")
    proc = fetch(tmp_path, "--train-driver", "testdrv")  # not a claimant at all
    assert len(steps(record)) == 2, proc.stderr


def test_claims_location_implementations_with_or_without_config():
    """pluggy passes each implementation only the arguments it names: old ones keep working."""
    from fahr_core import hookimpl, hookspecs

    class Old:
        @hookimpl
        def claims_location(self, location):
            return True if location.startswith("old://") else None

    class New:
        seen = []

        @hookimpl
        def claims_location(self, location, config):
            self.seen.append(config)
            return True if location.startswith("new://") and config["mine"] else None

    pm = pluggy.PluginManager("fahr")
    pm.add_hookspecs(hookspecs)
    pm.register(Old())
    pm.register(New())
    assert pm.hook.claims_location(location="old://x", config={"mine": False}) is True
    assert pm.hook.claims_location(location="new://x", config={"mine": True}) is True
    assert pm.hook.claims_location(location="new://x", config={"mine": False}) is None
    assert New.seen == [{"mine": False}, {"mine": True}, {"mine": False}]  # the config reached it each time


# -- job names, the fetch command after `fahr wait JOB`, keys required per command ----------------


def test_job_name_is_printed_after_launch_from_the_handle(project, record):
    proc = run_fahr("fit", project / "train.py", "--train-driver", "testdrv", check=0)
    [launch] = [s for s in steps(record) if s["step"] == "launch"]
    before = "launching a job of proj/train on driver 'testdrv'"
    after = f"launching job {launch['job_name']} on driver 'testdrv': accepted"
    assert before in proc.stderr and after in proc.stderr
    assert proc.stderr.index(before) < proc.stderr.index(after)
    # What the test helpers parse finds the handle's name, once.
    assert re.findall(r"launching job (\S+)", proc.stderr) == [launch["job_name"]]


def test_wait_by_name_never_prints_an_empty_tag(project, record, tmp_path):
    # testdrv's wait does not fill in the model tag of a handle rebuilt from a name: the core
    # prints the placeholder MODEL_TAG, and says so, instead of `fahr fetch ./model '' …`.
    proc = run_fahr("wait", "proj-train-20260101-000000-000", "--train-driver", "testdrv", cwd=tmp_path, check=0)
    assert "fahr fetch ./model ''" not in proc.stderr
    assert "fahr fetch ./model MODEL_TAG --train-driver testdrv --job proj-train-20260101-000000-000" in proc.stderr
    assert ("driver 'testdrv' did not report the model tag of job proj-train-20260101-000000-000; "
            "fetch it with the command below, MODEL_TAG replaced by the tag it trained") in proc.stderr


def test_keys_required_to_fit_are_worded_by_the_core(no_aws, project, tmp_path):
    line = one_line_error(run_fahr("fit", project / "train.py", "--train-driver", "sagemaker",
                                   "--config.role_name=r", cwd=tmp_path), 2)
    assert line.startswith("fahr error: driver 'sagemaker' needs config.output_path to fit (S3 folder for artifacts")
    assert line.endswith("pass --config.output_path=VALUE, set FAHR_SAGEMAKER_OUTPUT_PATH, or add it to fahr.toml")
    line = one_line_error(run_fahr("fit", project / "train.py", "--train-driver", "sagemaker",
                                   f"--config.output_path={LOCATION}", cwd=tmp_path), 2)
    assert line.startswith("fahr error: driver 'sagemaker' needs config.role_name to fit (IAM execution role")
    # wait and stop do not need them: the driver goes on to AWS (and meets the missing region).
    for command in ("wait", "stop"):
        proc = run_fahr(command, "some-job", "--train-driver", "sagemaker", cwd=tmp_path)
        assert proc.returncode == 2 and "no AWS region" in proc.stderr and "needs config" not in proc.stderr
