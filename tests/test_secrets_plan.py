"""`--secret NAME` before anything is built: the names and values read from fahr's environment,
refused in one line that never shows a value; a driver that does not take secrets refuses them
rather than launch a job without (hookspec check_run, plugin API 1.4)."""

from __future__ import annotations

import pytest

from conftest import one_line_error, run_fahr
from fahr_core import api
from fahr_core.errors import UsageError
from fahr_core.plan import plan_fit
from fahr_core.values import JobSpec, ImageRef

VALUE = "s3cr3t-never-shown"


@pytest.fixture
def script(tmp_path):
    (tmp_path / "proj").mkdir()
    path = tmp_path / "proj" / "train.py"
    path.write_text("print('hi')\n")
    return path


def test_the_values_are_read_once_from_the_environment_given(script):
    plan = plan_fit(script, secrets=["TOK", "OTHER", "TOK"], environ={"TOK": VALUE, "OTHER": "b"})
    assert dict(plan.secrets) == {"TOK": VALUE, "OTHER": "b"}
    assert VALUE not in repr(plan)  # a trace or traceback shows no value


@pytest.mark.parametrize("names, environ, environment, says", [
    (["TOK"], {}, {}, "--secret TOK: $TOK is not set in fahr's environment"),
    (["TOK"], {"TOK": ""}, {}, "--secret TOK: $TOK is empty in fahr's environment"),
    (["1TOK"], {"1TOK": VALUE}, {}, "--secret 1TOK: a variable name is letters, digits and '_'"),
    (["TOK"], {"TOK": VALUE}, {"TOK": "x"}, "--secret TOK and --env TOK=…: give the variable one way"),
    (["TOK"], {"TOK": VALUE + "\x00"}, {}, "--secret TOK: the value of $TOK holds a NUL character"),
    (["TOK"], {"TOK": "\udcff" + VALUE}, {}, "--secret TOK: the value of $TOK is not UTF-8 text"),
    (["TOK"], {"TOK": "v" * 200000}, {}, "--secret TOK: the variable is 200005 bytes"),
    # Over what one Secrets Manager secret holds, together (the sagemaker driver makes one of them all)
    (["TOK", "TOK2"], {"TOK": "é" * 20000, "TOK2": "v" * 30000}, {}, "--secret: the secrets are 70023 bytes together"),
    # fahr's own variables: a secret would override the hosts or the job's name in the launcher
    (["MASTER_ADDR"], {"MASTER_ADDR": VALUE}, {}, "--secret MASTER_ADDR: fahr sets MASTER_ADDR in every job itself"),
    (["FAHR_SECRETS_ARN"], {"FAHR_SECRETS_ARN": VALUE}, {}, "--secret FAHR_SECRETS_ARN: fahr sets"),
    (["SM_HOSTS"], {"SM_HOSTS": VALUE}, {}, "--secret SM_HOSTS: fahr sets"),
    (["TRAINING_JOB_NAME"], {"TRAINING_JOB_NAME": VALUE}, {}, "--secret TRAINING_JOB_NAME: fahr sets"),
    (["PET_NNODES"], {"PET_NNODES": VALUE}, {}, "--secret PET_NNODES: fahr sets"),
    (["WORLD_SIZE"], {"WORLD_SIZE": VALUE}, {}, "--secret WORLD_SIZE: fahr sets"),
])
def test_a_secret_that_cannot_be_given_is_refused_without_its_value(script, names, environ, environment, says):
    with pytest.raises(UsageError) as caught:
        plan_fit(script, secrets=names, environ=environ, environment=environment)
    assert str(caught.value).startswith(says)
    assert VALUE not in str(caught.value) and "vvvv" not in str(caught.value)


def test_the_job_spec_shows_no_value():
    spec = JobSpec(job_name="j", model_tag="a/b", image=ImageRef(name="a/b"), secrets={"TOK": VALUE})
    assert VALUE not in repr(spec) and spec.secrets["TOK"] == VALUE


def test_the_api_takes_a_list_of_names_not_a_str(script):
    with pytest.raises(UsageError, match=r"fit\(\): secrets must be a list of str"):
        api.fit(script, secrets="TOK")
    with pytest.raises(UsageError, match=r"fit\(\): secrets must hold str"):
        api.fit(script, secrets=[1])


def test_a_driver_that_does_not_take_secrets_refuses_them_before_the_build(script, tmp_path):
    proc = run_fahr("fit", script, "--train-driver", "testdrv", f"--config.record_dir={tmp_path / 'rec'}",
                    "--secret", "TOK", env={"TOK": VALUE}, cwd=tmp_path)
    line = one_line_error(proc, 2)
    assert "driver 'testdrv' cannot give a job secrets" in line and VALUE not in line
    assert not (tmp_path / "rec").exists()  # no step ran


def test_env_cannot_name_the_secret_fahr_deletes(script):
    # FAHR_SECRETS_ARN names the job's Secrets Manager secret, which fahr deletes when the job ends:
    # through --env it could name any secret of the account.
    with pytest.raises(UsageError) as caught:
        plan_fit(script, environment={"FAHR_SECRETS_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:team/db"})
    assert str(caught.value).startswith("--env FAHR_SECRETS_ARN=…: fahr sets FAHR_SECRETS_ARN itself")


@pytest.mark.parametrize("name", ["NODE_RANK", "MASTER_ADDR", "FAHR_HOST_RANK", "PET_NNODES", "PET_NODE_RANK",
                                  "PET_MASTER_ADDR", "RANK", "WORLD_SIZE", "LOCAL_RANK"])
def test_env_cannot_set_a_host_variable(script, name):
    # The launcher sets them on every host from resourceconfig.json, over any --env: the user's
    # value would be lost (or, were it kept, give every host the same rank). Refused, not dropped.
    with pytest.raises(UsageError) as caught:
        plan_fit(script, environment={name: "7"})
    assert str(caught.value) == (f"--env {name}=…: fahr sets {name} on every host of a job from its hosts "
                                 "(docs/multi-host.md); leave it out")


def test_the_port_is_chosen_with_master_port_only(script):
    assert plan_fit(script, environment={"MASTER_PORT": "23456"}).environment == {"MASTER_PORT": "23456"}
    with pytest.raises(UsageError) as caught:
        plan_fit(script, environment={"PET_MASTER_PORT": "23456"})
    assert str(caught.value).endswith("leave it out; choose the port with --env MASTER_PORT=…")


def test_a_dockerfile_that_does_not_run_the_launcher_refuses_secrets(script):
    # The launcher hands the script its secrets: an ENTRYPOINT of the project's own would start the
    # script without them, silently. No Dockerfile (fahr writes one), one that runs the launcher,
    # or --regenerate-dockerfile: accepted.
    environ = {"TOK": VALUE}
    assert plan_fit(script, secrets=["TOK"], environ=environ).secrets
    dockerfile = script.parent / "Dockerfile"
    dockerfile.write_text('FROM python:3.11-slim\nCOPY . .\nENTRYPOINT ["python", "train.py"]\n')
    with pytest.raises(UsageError) as caught:
        plan_fit(script, secrets=["TOK"], environ=environ)
    assert str(caught.value).startswith(f"--secret TOK: {dockerfile} does not start fahr's launcher")
    assert "--regenerate-dockerfile" in str(caught.value)
    assert plan_fit(script, secrets=["TOK"], environ=environ, regenerate_dockerfile=True).secrets
    dockerfile.write_text('FROM python:3.11-slim\nENTRYPOINT ["python", "train.py"]\n'
                          'ENTRYPOINT ["python", "/opt/fahr/launcher.py", "train.py"]\n')
    assert plan_fit(script, secrets=["TOK"], environ=environ).secrets
    assert plan_fit(script, environ=environ).secrets == {}  # no --secret: any Dockerfile


def test_a_dockerfile_refused_for_secrets_through_the_cli(script):
    (script.parent / "Dockerfile").write_text('FROM python:3.11-slim\nENTRYPOINT ["python", "train.py"]\n')
    result = run_fahr("fit", script, "--secret", "TOK", env={"TOK": VALUE})
    line = one_line_error(result, 2)
    assert "does not start fahr's launcher" in line and VALUE not in result.stdout + result.stderr
