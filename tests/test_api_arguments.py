"""The Python API checks its arguments as carefully as the CLI: a wrong type is a UsageError
naming the argument and the type expected (not a TypeError from deep inside), None in a mapping
means "not set". And what a job cannot be given intact (a NUL, text that is not UTF-8) is refused
before the build, from the API and from the real `fahr` command alike. No Docker: every refusal
here comes before the build, and the jobs that do run use the recording test driver (testdrv)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import fahr_core
from conftest import one_line_error, run_fahr


class BytesPath(os.PathLike):
    def __fspath__(self):
        return b"proj/train.py"


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project (model tag i15api/train) in a folder that is the cwd; no driver can load, so a
    call that got past its argument checks fails otherwise, fast, and never reaches Docker."""
    folder = tmp_path / "i15api"
    folder.mkdir()
    (folder / "train.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAHR_DRIVER", "i15api-no-such-driver")
    return folder / "train.py"


def _job():
    return fahr_core.Job("i15api-train-1", driver="local", model_tag="i15api/train")


PATH = "must be a path (str or os.PathLike), not"
SCALAR = "must be str, int, float, bool or a path, not"
MAPPING = "must be a mapping (a dict of str to"
DRIVER = "must be a driver's name (str, e.g. 'local') or None, not"
FLAG = "must be True or False, not"
TAG = "i15api/train"

# (call, the message's start): each a TypeError or an AttributeError before, or a message that
# did not say which type was expected.
CASES = {
    "fit(None)": (lambda p: fahr_core.fit(None), f"fit(): artifact {PATH} None"),
    "fit(123)": (lambda p: fahr_core.fit(123), f"fit(): artifact {PATH} int"),
    "fit(b'')": (lambda p: fahr_core.fit(b""), f"fit(): artifact {PATH} bytes"),
    "fit(PathLike of bytes)": (lambda p: fahr_core.fit(BytesPath()), f"fit(): artifact {PATH} bytes"),
    "fit('')": (lambda p: fahr_core.fit(""), "fit(): artifact is an empty path"),
    "config='x'": (lambda p: fahr_core.fit(p, config="x"), f"fit(): config {MAPPING}"),
    "config={1: 2}": (lambda p: fahr_core.fit(p, config={1: 2}), "fit(): config keys must be str, not int"),
    "hyperparameters=[...]": (lambda p: fahr_core.fit(p, hyperparameters=[("epochs", 3)]),
                              f"fit(): hyperparameters {MAPPING}"),
    "hyperparameters={'a': [1]}": (lambda p: fahr_core.fit(p, hyperparameters={"a": [1]}),
                                   f"fit(): hyperparameters['a'] {SCALAR} list"),
    "inputs=5": (lambda p: fahr_core.fit(p, inputs=5), f"fit(): inputs {MAPPING}"),
    "environment={'A': object()}": (lambda p: fahr_core.fit(p, environment={"A": object()}),
                                    f"fit(): environment['A'] {SCALAR} object"),
    "driver=123": (lambda p: fahr_core.fit(p, driver=123), f"fit(): driver {DRIVER} int"),
    "fetch_to=123": (lambda p: fahr_core.fit(p, fetch_to=123), f"fit(): fetch_to {PATH} int"),
    "wait='no'": (lambda p: fahr_core.fit(p, wait="no"), f"fit(): wait {FLAG} str"),
    "rebuild=1": (lambda p: fahr_core.fit(p, rebuild=1), f"fit(): rebuild {FLAG} int"),
    "fetch(None, ...)": (lambda p: fahr_core.fetch(None, TAG), f"fetch(): target {PATH} None"),
    "fetch(model_tag=None)": (lambda p: fahr_core.fetch("out", None),
                              "fetch(): model_tag must be a model tag (str), not None"),
    "fetch(location=123)": (lambda p: fahr_core.fetch("out", TAG, location=123),
                            "fetch(): location must be a location (str: a folder or a URI such as s3://…) "
                            "or None, not int"),
    "fetch(job=7)": (lambda p: fahr_core.fetch("out", TAG, job=7),
                     "fetch(): job must be a job's name (str) or None, not int"),
    "fetch(extract='yes')": (lambda p: fahr_core.fetch("out", TAG, extract="yes"), f"fetch(): extract {FLAG} str"),
    "Job.fetch(None)": (lambda p: _job().fetch(None), f"Job.fetch(): target {PATH} None"),
    "Job.logs(follow='yes')": (lambda p: _job().logs(follow="yes"), f"Job.logs(): follow {FLAG} str"),
    "Job(None)": (lambda p: fahr_core.Job(None), "Job(): name must be a job's name (str), not None"),
    "Job(config='x')": (lambda p: fahr_core.Job("i15api-train-1", config="x"), f"Job(): config {MAPPING}"),
    "jobs(model_tag=1)": (lambda p: fahr_core.jobs(1),
                          "jobs(): model_tag must be a model tag (str) or None, not int"),
    "jobs(config=[])": (lambda p: fahr_core.jobs(config=[]), f"jobs(): config {MAPPING}"),
    "jobs(status=1)": (lambda p: fahr_core.jobs(status=1), "jobs(): status must be str or None, not int"),
    "job(None)": (lambda p: fahr_core.job(None), "job(): name must be a job's name (str), not None"),
    "job(driver=[])": (lambda p: fahr_core.job("i15api-train-1", driver=[]), f"job(): driver {DRIVER} list"),
    # A path cannot hold a NUL: it was a ValueError from deep inside.
    "fetch_to with a NUL": (lambda p: fahr_core.fit(p, fetch_to="m\x00"), "fit(): fetch_to 'm\\x00' holds a NUL"),
    "fetch(target with a NUL)": (lambda p: fahr_core.fetch("m\x00", TAG), "fetch(): target 'm\\x00' holds a NUL"),
    "fetch(location with a NUL)": (lambda p: fahr_core.fetch("m", TAG, "jobs\x00"),
                                   "fetch(): location 'jobs\\x00' holds a NUL"),
    "Job.fetch(target with a NUL)": (lambda p: _job().fetch("m\x00"), "Job.fetch(): target 'm\\x00' holds a NUL"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_argument_is_a_usage_error_naming_it_and_its_type(proj, case):
    call, says = CASES[case]
    with pytest.raises(fahr_core.UsageError) as raised:
        call(proj)
    assert str(raised.value).startswith(says), str(raised.value)
    assert raised.value.exit_code == 2
    assert not (proj.parent / "Dockerfile").exists()  # refused before anything was prepared


def test_none_in_a_mapping_means_not_set(tmp_path, monkeypatch):
    """config={"fail_with": None} is the default (''), not the reason 'None'; a channel or a
    variable set to None is no channel, no variable; a hyperparameter None is left out."""
    project = tmp_path / "i15api"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    record = tmp_path / "rec"
    job = fahr_core.fit(project / "train.py", driver="testdrv", quiet=True,
                        config={"record_dir": record, "fail_with": None, "flavour": None},
                        inputs={"train": None}, environment={"SEED": 7, "GONE": None},
                        hyperparameters={"epochs": 3, "lr": None})
    assert job.status == "Completed"
    launch = next(step for step in map(json.loads, (record / "steps.jsonl").read_text().splitlines())
                  if step["step"] == "launch")
    assert launch["inputs"] == {}
    assert launch["environment"] == {"SEED": "7"}
    assert launch["hyperparameters"] == {"epochs": "3"}
    assert launch["config"]["fail_with"] == "" and launch["config"]["flavour"] == 1  # the defaults
    assert not (tmp_path / "None").exists()


def test_output_path_none_is_the_default_not_a_folder_named_none(tmp_path, monkeypatch):
    """`None` leaves the layers beneath it in force: here $FAHR_LOCAL_OUTPUT_PATH."""
    jobs_dir = tmp_path / "jobs"
    (jobs_dir / "i15api-train-1").mkdir(parents=True)
    (jobs_dir / "i15api-train-1" / "job.json").write_text(json.dumps(
        {"job_name": "i15api-train-1", "model_tag": "i15api/train", "status": "Completed", "image": "x:1",
         "created": 100.0}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(jobs_dir))
    assert [j.name for j in fahr_core.jobs(driver="local", config={"output_path": None})] == ["i15api-train-1"]
    assert fahr_core.job("i15api-train-1", driver="local", config={"output_path": None}).status == "Completed"
    assert not (tmp_path / "None").exists()


# -- what no job can be given, refused before the build ----------------------------------------------

NUL = "holds a NUL character"
UNPASSABLE = {
    "NUL in an environment value": ({"environment": {"A": "x\x00y"}}, f"--env A=…: the value {NUL}"),
    "NUL in a hyperparameter value": ({"hyperparameters": {"lr": "0.1\x00"}}, f"--hp lr=…: the value {NUL}"),
    "NUL in a hyperparameter name": ({"hyperparameters": {"l\x00r": "1"}}, f"--hp 'l\\x00r'=…: the name {NUL}"),
    "NUL in a channel path": ({"inputs": {"train": "/data\x00/x"}}, f"--input train=…: the value {NUL}"),
    "not UTF-8 in an environment value": ({"environment": {"A": "caf\udce9"}},
                                          "--env A=…: the value is not UTF-8 text"),
    "not UTF-8 in a hyperparameter value": ({"hyperparameters": {"name": "caf\udce9"}},
                                            "--hp name=…: the value is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(UNPASSABLE))
def test_the_api_refuses_what_no_job_can_be_given_before_the_build(tmp_path, monkeypatch, case):
    # testdrv builds nothing: before, each of these reached its launch (the local driver's runc
    # refused an environment NUL only after the build, exit 3; the others reached the job changed).
    arguments, says = UNPASSABLE[case]
    project = tmp_path / "i15api"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(fahr_core.UsageError) as raised:
        fahr_core.fit(project / "train.py", driver="testdrv", config={"record_dir": tmp_path / "rec"},
                      quiet=True, **arguments)
    assert str(raised.value).startswith(says), str(raised.value)
    assert not (project / "Dockerfile").exists() and not (tmp_path / "rec").exists()  # nothing built


@pytest.mark.parametrize("driver", ["local", "sagemaker"])
def test_the_reported_case_a_nul_in_an_environment_value_on_either_driver(tmp_path, monkeypatch, driver):
    """Before, on local: the image was built, then runc refused the container (exit 3). Now: exit
    2, no build, on either driver (sagemaker: before credentials or a bucket are even looked at)."""
    project = tmp_path / "i15apilocal"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(tmp_path / "jobs"))
    with pytest.raises(fahr_core.UsageError, match="^--env A=…: the value holds a NUL character") as raised:
        fahr_core.fit(project / "train.py", driver=driver, environment={"A": "x\x00y"}, quiet=True)
    assert raised.value.exit_code == 2
    assert not (project / "Dockerfile").exists() and not (tmp_path / "jobs").exists()


def test_a_nul_in_any_config_value_is_refused_as_it_is_read():
    from fahr_core import config as cfg

    keys = [cfg.ConfigKey("tags", dict, {}, "Tags."), cfg.ConfigKey("name", str, "", "A name.")]
    for pairs, says in (([("tags", "team=a\x00b")], "config.tags={'team': 'a\\x00b'} (from --config.tags)"),
                        ([("tags", '{"t\\u0000": "x"}')], "config.tags={'t\\x00': 'x'} (from --config.tags)"),
                        ([("name", "a\x00")], "config.name='a\\x00' (from --config.name)")):
        with pytest.raises(fahr_core.ConfigError) as raised:
            cfg.resolve("drv", keys, cfg.ProjectFile(None, {}), pairs, environ={})
        assert str(raised.value) == f"{says} holds a NUL character, which no path, argument or environment " \
                                    "variable can hold: remove it"
    # A path's bytes may be any but NUL: a name that is not UTF-8 is a valid Linux path.
    resolved = cfg.resolve("drv", keys, cfg.ProjectFile(None, {}), [("name", "caf\udce9")], environ={})
    assert resolved["name"] == "caf\udce9"


# The command line cannot carry a NUL (argv is C strings), but it can carry bytes that are not
# UTF-8 (Python sees them as lone surrogates; Docker replaced them silently), and fahr.toml can
# spell a NUL in any config value ("\u0000").
CLI = {
    "--env with bytes not UTF-8": (["--env", "A=caf\udce9"], None, "fahr error: --env A=…: the value is not UTF-8"),
    "--hp with bytes not UTF-8": (["--hp", "name=caf\udce9"], None, "fahr error: --hp name=…: the value is not UTF-8"),
    "fahr.toml gpus with a NUL": ([], '[local]\ngpus = "\\u0000"\n', "fahr error: config.gpus='\\x00' (from "),
    "fahr.toml instance_type with a NUL": ([], '[local]\ninstance_type = "lo\\u0000cal"\n',
                                           "fahr error: config.instance_type='lo\\x00cal' (from "),
}


@pytest.mark.parametrize("case", list(CLI))
def test_fahr_fit_refuses_what_no_job_can_be_given_before_the_build(tmp_path, case):
    args, toml, says = CLI[case]
    project = tmp_path / "i15apicli"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    if toml:
        (project / "fahr.toml").write_text(toml)
    jobs_dir = tmp_path / "jobs"
    proc = run_fahr("fit", project / "train.py", *args, cwd=tmp_path, env={"FAHR_LOCAL_OUTPUT_PATH": str(jobs_dir)})
    line = one_line_error(proc, 2)
    assert line.startswith(says), line
    assert "NUL character" in line or "not UTF-8" in line
    assert not (project / "Dockerfile").exists() and not jobs_dir.exists()  # no build, no job
