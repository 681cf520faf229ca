"""`fahr fit --secret NAME` on the real local driver: the job's process gets $NAME, and the value
is nowhere else (README "Secrets"): not job.json or any file fahr wrote, not `fahr jobs --json` or
`fahr logs`, not the image, not `docker inspect` of the containers, not a command line. One image
(the project i17secret/train.py) for the module; the refusals cost no build."""

from __future__ import annotations

import json
import os
import re
import secrets as random_secrets
import subprocess

import pytest

from conftest import FAHR, one_line_error, run_fahr
from secret_witness import SCRIPT, Witness, digest, files_holding, image_holds

pytestmark = pytest.mark.docker

NAME = "I17_SECRET_TOKEN"
TAG = "i17secret/train"


@pytest.fixture(scope="module")
def secret_job(tmp_path_factory, docker_engine):
    """One job given a fresh secret, watched while it runs; what it printed and left."""
    root = tmp_path_factory.mktemp("i17secret")
    project = root / "i17secret"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT.format(name=NAME))
    value = "i17-" + random_secrets.token_hex(16)
    env = {**os.environ, "NO_COLOR": "1", "FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs"), NAME: value}
    witness = Witness(docker_engine, "i17secret-train-", value)
    witness.start()
    try:
        proc = subprocess.run([str(FAHR), "fit", str(project / "train.py"), "--secret", NAME],
                              env=env, cwd=root, capture_output=True, text=True, timeout=600)
    finally:
        witness.stop()
    assert proc.returncode == 0, proc.stderr
    job = re.search(r"launching job (\S+) on driver 'local': accepted", proc.stderr).group(1)
    return {"root": root, "project": project, "value": value, "proc": proc, "job": job, "witness": witness,
            "env": {"FAHR_LOCAL_OUTPUT_PATH": str(root / "jobs")}}


def test_the_job_gets_the_secret_in_its_environment_and_no_file_of_it(secret_job):
    out = secret_job["proc"].stdout + secret_job["proc"].stderr
    assert f"secret sha256 {digest(secret_job['value'])}" in out
    assert "secret files left: False" in out  # the launcher removed them before the script ran


def test_the_value_is_in_no_file_fahr_wrote(secret_job):
    job_dir = secret_job["root"] / "jobs" / secret_job["job"]
    record = json.loads((job_dir / "job.json").read_text())
    assert record["secrets"] == [NAME]  # the name is recorded, never the value
    assert NAME not in record["environment"]
    assert files_holding(secret_job["value"], secret_job["root"], os.environ["XDG_CACHE_HOME"]) == []


def test_the_value_is_not_in_what_fahr_prints(secret_job):
    value, env = secret_job["value"], secret_job["env"]
    assert value not in secret_job["proc"].stdout + secret_job["proc"].stderr
    listing = run_fahr("jobs", "--json", env=env, cwd=secret_job["root"], check=0)
    assert secret_job["job"] in listing.stdout and value not in listing.stdout + listing.stderr
    logs = run_fahr("logs", secret_job["job"], env=env, cwd=secret_job["root"], check=0)
    assert "secret sha256" in logs.stdout + logs.stderr and value not in logs.stdout + logs.stderr


def test_the_value_is_not_in_the_containers_configuration_or_any_command_line(secret_job):
    witness = secret_job["witness"]
    assert witness.inspected > 0 and witness.topped > 0 and witness.cmdlines > 0  # it looked while the job ran
    assert witness.hits == set()


def test_the_value_is_not_in_the_image(secret_job, docker_engine):
    assert image_holds(docker_engine, f"{TAG}:latest", secret_job["value"]) == []


def test_a_secret_missing_or_empty_is_one_line_before_any_build(tmp_path, docker_engine):
    project = tmp_path / "i17secretmissing"
    project.mkdir()
    (project / "train.py").write_text("print('never runs')\n")
    env = {"FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "jobs")}
    missing = run_fahr("fit", project / "train.py", "--secret", "I17_NOT_SET", env=env, cwd=tmp_path)
    assert "$I17_NOT_SET is not set in fahr's environment" in one_line_error(missing, 2)
    empty = run_fahr("fit", project / "train.py", "--secret", "I17_EMPTY", env={**env, "I17_EMPTY": ""}, cwd=tmp_path)
    assert "$I17_EMPTY is empty" in one_line_error(empty, 2)
    both = run_fahr("fit", project / "train.py", "--secret", "I17_X", "--env", "I17_X=1",
                    env={**env, "I17_X": "v"}, cwd=tmp_path)
    assert "give the variable one way" in one_line_error(both, 2)
    assert not (project / "Dockerfile").exists()  # nothing was built (fahr writes it first)
    assert not docker_engine.images.list(name="i17secretmissing/train")
    assert not (tmp_path / "jobs").exists()


def test_your_own_container_is_refused_secrets_in_one_line(tmp_path, docker_engine):
    project = tmp_path / "i17secretbyoc"
    project.mkdir()
    (project / "Dockerfile").write_text("FROM python:3.11-slim\n")
    proc = run_fahr("fit", project, "--secret", NAME, env={NAME: "v", "FAHR_LOCAL_OUTPUT_PATH": str(tmp_path / "j")},
                    cwd=tmp_path)
    assert "your own container has no fahr launcher" in one_line_error(proc, 2)
    assert not docker_engine.images.list(name="i17secretbyoc/container")


def test_the_grep_finds_a_value_given_with_env(secret_job, docker_engine):
    """The same job given the value with --env, as README once advised: the places above show it
    (job.json, docker inspect), so their silence for --secret means something."""
    value = "i17-env-" + random_secrets.token_hex(8)
    root = secret_job["root"]
    witness = Witness(docker_engine, "i17secret-train-", value)
    witness.start()
    try:
        run_fahr("fit", secret_job["project"] / "train.py", "--env", f"{NAME}={value}",
                 env={**secret_job["env"], "I17_SECRET_SLEEP": "2"}, cwd=root, check=0)
    finally:
        witness.stop()
    assert any(hit.endswith("job.json") for hit in files_holding(value, root / "jobs"))
    assert any(hit.startswith("docker inspect") for hit in witness.hits)


def test_the_python_api_gives_the_same_secret(secret_job, monkeypatch, capfd):
    import fahr_core

    value = "i17-api-" + random_secrets.token_hex(8)
    monkeypatch.setenv(NAME, value)
    monkeypatch.setenv("I17_SECRET_SLEEP", "0")
    job = fahr_core.fit(secret_job["project"] / "train.py", secrets=[NAME],
                        config={"output_path": str(secret_job["root"] / "jobs")})
    assert job.status == "Completed"
    out, err = capfd.readouterr()
    assert f"secret sha256 {digest(value)}" in out and value not in out + err
    assert files_holding(value, secret_job["root"] / "jobs" / job.name) == []
