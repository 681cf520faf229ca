"""A fit's plan and the session's hook calls, without Docker: the first stops of the pipeline
(docs/architecture.md) decide and refuse from the arguments alone."""

from __future__ import annotations

import warnings
from pathlib import Path

import pluggy
import pytest

from fahr_core import hookimpl
from fahr_core.errors import ConfigError, PluginError, UsageError
from fahr_core.plan import plan_fit
from fahr_core.session import Session, open_session
from fahr_core.values import Config


def _script(root: Path, folder: str = "my-model", name: str = "train.py") -> Path:
    (root / folder).mkdir(parents=True, exist_ok=True)
    script = root / folder / name
    script.write_text("print('hi')\n")
    return script


def test_a_script_s_plan_names_its_tag_and_project(tmp_path):
    script = _script(tmp_path)
    plan = plan_fit(script, hyperparameters={"lr": "0.1"}, rebuild=True)
    assert plan.model_tag == "my-model/train" and plan.project_dir == script.parent.resolve()
    assert plan.container is False and plan.rebuild is True and plan.hyperparameters == {"lr": "0.1"}
    assert list((tmp_path / "my-model").iterdir()) == [script]  # a plan writes nothing


def test_a_container_s_plan_takes_its_folder(tmp_path):
    (tmp_path / "byoc" / "container").mkdir(parents=True)
    (tmp_path / "byoc" / "container" / "Dockerfile").write_text("FROM scratch\n")
    plan = plan_fit(tmp_path / "byoc" / "container")
    assert plan.container and plan.model_tag == "byoc/container"
    assert plan.given == tmp_path / "byoc" / "container" / "Dockerfile"
    with pytest.raises(UsageError, match="--regenerate-dockerfile"):
        plan_fit(tmp_path / "byoc" / "container", regenerate_dockerfile=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"overwrite": True}, "--overwrite replaces a non-empty --fetch folder"),
    ({"wait": False, "fetch_to": "model"}, "--fetch needs the job to end"),
    ({"inputs": {"bad/name": "/data"}}, "a channel name is"),
    ({"environment": {"1X": "y"}}, "a variable name is"),
    ({"hyperparameters": {"lr": "a\x00b"}}, "NUL"),
    ({"fetch_to": "PROJECT"}, "the project of train.py"),
])
def test_a_plan_refuses_what_cannot_work_before_any_driver(tmp_path, kwargs, message):
    script = _script(tmp_path)
    if kwargs.get("fetch_to") == "PROJECT":
        kwargs = {**kwargs, "fetch_to": script.parent}
    elif "fetch_to" in kwargs:
        kwargs = {**kwargs, "fetch_to": tmp_path / kwargs["fetch_to"]}
    with pytest.raises(UsageError, match=message):
        plan_fit(script, **kwargs)


class _Silent:
    """A driver whose every hook answers None."""

    @hookimpl
    def launch(self, spec, config):
        return None

    @hookimpl
    def stop(self, job, config):
        return None

    @hookimpl
    def fetch(self, request, config):
        return None


def _session_of(plugin) -> Session:
    from fahr_core import hookspecs

    pm = pluggy.PluginManager("fahr")
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    return Session(pm, Config("silent", {}, {}))


@pytest.mark.parametrize("hook, kwargs, says", [
    ("launch", {"spec": None}, "driver 'silent' launched nothing (its launch hook returned None)"),
    ("stop", {"job": None}, "driver 'silent' cannot stop jobs"),
    ("fetch", {"request": None}, "driver 'silent' fetched nothing"),
    ("list_jobs", {"query": None}, "driver 'silent' cannot list jobs (it does not implement list_jobs)"),
    ("logs", {"job": None, "follow": False}, "driver 'silent' cannot read logs (it does not implement logs)"),
])
def test_a_hook_answering_none_is_one_plugin_error_from_one_place(hook, kwargs, says):
    with pytest.raises(PluginError) as caught:
        _session_of(_Silent()).call(hook, **kwargs)
    assert str(caught.value) == says


def test_config_overrides_stay_python_values_and_the_project_is_decided_once(tmp_path, monkeypatch):
    # A bool, an int and a dict reach config.resolve as they are (no text round trip), and a key
    # the next command needs is checked on the session already resolved.
    project = tmp_path / "proj"
    project.mkdir()
    (project / "fahr.toml").write_text('[local]\noutput_path = "from-the-project"\n')
    monkeypatch.chdir(tmp_path)
    for var in [v for v in __import__("os").environ if v.startswith("FAHR_")]:
        monkeypatch.delenv(var)
    session = open_session(None, project, {"stop_timeout": 7, "instance_count": 2}, check_required=False)
    assert session.driver == "local" and session.project_dir == project
    assert session.config["output_path"] == "from-the-project"
    assert session.config["stop_timeout"] == 7 and session.config["instance_count"] == 2
    assert session.config.sources["stop_timeout"] == "--config.stop_timeout"
    with pytest.raises(ConfigError, match="stop_timeout"):
        open_session(None, project, {"stop_timeout": "soon"}, check_required=False)
    with pytest.raises(ConfigError, match="is not a valid str"):  # never the text "True"
        open_session(None, project, {"output_path": True}, check_required=False)


# -- a script that cannot compile, a notebook that is not JSON: refused by the plan ----------------------


def test_a_script_that_does_not_compile_is_refused_with_file_and_line(tmp_path, monkeypatch):
    project = tmp_path / "my-model"
    project.mkdir()
    (project / "train.py").write_text("import os\n\ndef main()\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as refused:
        plan_fit(Path("my-model/train.py"))
    assert str(refused.value).startswith("my-model/train.py:3: SyntaxError: expected ':'")
    (project / "train.py").write_text("def main():\n\treturn 1\n        pass\n")
    with pytest.raises(UsageError, match=r"^my-model/train.py:3: (IndentationError|TabError): "):
        plan_fit(Path("my-model/train.py"))
    (project / "train.py").write_bytes(b"x = 1\x00\n")
    with pytest.raises(UsageError, match=r"^my-model/train.py(:1)?: .*null"):
        plan_fit(Path("my-model/train.py"))
    assert sorted(p.name for p in project.iterdir()) == ["train.py"]  # nothing written (no __pycache__)
    # A warning is not a refusal, even when warnings are errors.
    (project / "train.py").write_text('import re\nre.match("\\d", "1")\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plan_fit(Path("my-model/train.py")).model_tag == "my-model/train"
    # A container of the user's own is the user's to check: its scripts are not compiled.
    (project / "Dockerfile").write_text("FROM scratch\n")
    assert plan_fit(project / "Dockerfile").container


def test_a_notebook_that_is_not_json_is_refused_with_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "train.ipynb").write_text('{\n "cells": [\n  {"cell_type": "code",}\n ]\n}\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as refused:
        plan_fit(Path("nb/train.ipynb"))
    assert str(refused.value).startswith("nb/train.ipynb:3: the notebook is not valid JSON (Expecting property name")


# -- a notebook's --hp that its parameters cell does not set: warned of by the plan ------------------


def _notebook(path: Path, *cells: tuple[list[str], str]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {"tags": tags}, "outputs": [], "execution_count": None, "source": source}
        for tags, source in cells]}))


def _warnings(capsys) -> list[str]:
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if line.strip()]


def test_a_notebook_s_hyperparameters_its_parameters_cell_does_not_set_are_one_warning(tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    # Magics and shell lines, annotations, unpacking: parsed with ast, never executed.
    _notebook(tmp_path / "nb" / "train.ipynb",
              ([], "import os\nepoch = 1  # not the parameters cell"),
              (["parameters"], ["%matplotlib inline\n", "!echo hi\n", "epochs = 20\n", "alpha: float = 1e-4\n",
                                "test_size, (seed, *rest) = 0.25, (0, 1)\n", "open('/tmp/never-run', 'w')\n"]),
              (["parameters"], "lr = 1  # only the first tagged cell counts, as for papermill"))
    plan = plan_fit(Path("nb/train.ipynb"), hyperparameters={"epoch": "5", "alpha": "0.1", "lr": "2"})
    assert plan.hyperparameters == {"epoch": "5", "alpha": "0.1", "lr": "2"}  # a warning, not a refusal
    assert _warnings(capsys) == [
        "fahr warning --hp epoch, lr: not parameters of nb/train.ipynb, whose cell tagged 'parameters' sets "
        "epochs, alpha, test_size, seed, rest; the notebook does not read them: check the name"]
    assert not Path("/tmp/never-run").exists()
    plan_fit(Path("nb/train.ipynb"), hyperparameters={"epoch": "5"})
    assert _warnings(capsys) == [
        "fahr warning --hp epoch: not a parameter of nb/train.ipynb, whose cell tagged 'parameters' sets "
        "epochs, alpha, test_size, seed, rest; the notebook does not read it: check the name"]
    plan_fit(Path("nb/train.ipynb"), hyperparameters={"epochs": "5", "seed": "1"})
    plan_fit(Path("nb/train.ipynb"))
    assert _warnings(capsys) == []


def test_a_notebook_without_a_parameters_cell_is_warned_of_and_one_fahr_cannot_parse_is_not(tmp_path, monkeypatch,
                                                                                           capsys):
    monkeypatch.chdir(tmp_path)
    _notebook(tmp_path / "nb" / "train.ipynb", ([], "epochs = 20\n"))
    plan_fit(Path("nb/train.ipynb"), hyperparameters={"epochs": "5"})
    assert _warnings(capsys) == [
        "fahr warning --hp epochs: nb/train.ipynb has no cell tagged 'parameters', so papermill injects the "
        "hyperparameters before its first cell, whose own assignments replace them: tag the cell that sets "
        "their defaults 'parameters'"]
    plan_fit(Path("nb/train.ipynb"))  # nothing injected: nothing to say
    assert _warnings(capsys) == []
    _notebook(tmp_path / "nb" / "train.ipynb", (["parameters"], "epochs = = 20\n"))
    plan_fit(Path("nb/train.ipynb"), hyperparameters={"epoch": "5"})  # fahr cannot tell: no guess
    assert _warnings(capsys) == []
    # A script's --hp are its own to read: no cell to compare with.
    (tmp_path / "nb" / "train.py").write_text("epochs = 20\n")
    plan_fit(Path("nb/train.py"), hyperparameters={"epoch": "5"})
    assert _warnings(capsys) == []
