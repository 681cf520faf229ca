"""Bake every built-in template with cookiecutter's API, with defaults and with other answers;
check the exact files and run each generated project's own tests."""

import importlib.util
import json
import py_compile
import subprocess
import sys
import tomllib

import pytest
from cookiecutter.main import cookiecutter

import fahr_core
from fahr_core.image import DOCKERIGNORE, dockerfile_text
from fahr_core.scaffold import builtin_dir
from fahrcli import isolated_home  # noqa: F401 (a fixture)

PROJECT_FILES = {
    "model": {".dockerignore", "Dockerfile", "README.md", "fahr.toml", "requirements.txt", "train.py",
              "tests/test_train.py"},
    "notebook": {".dockerignore", "Dockerfile", "README.md", "fahr.toml", "requirements.txt", "train.ipynb",
                 "tests/test_notebook.py"},
    "torch": {".dockerignore", "Dockerfile", "README.md", "fahr.toml", "requirements.txt", "train.py",
              "tests/test_train.py"},
}


def bake(template, tmp_path, **answers):
    out = tmp_path / "out"
    project = cookiecutter(str(builtin_dir() / template), no_input=True, output_dir=str(out),
                           extra_context=answers)
    return out, __import__("pathlib").Path(project)


def files_of(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def run_own_tests(project):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


CASES = [
    ("model", {}, "digits-model", "python:3.11-slim", "local"),
    ("model", {"project_name": "Handwriting Recogniser", "base_image": "python:3.12-slim", "driver": "sagemaker"},
     "handwriting-recogniser", "python:3.12-slim", "sagemaker"),
    ("notebook", {}, "digits-notebook", "python:3.11-slim", "local"),
    ("notebook", {"project_name": "Digits In A Notebook", "base_image": "python:3.12-slim", "driver": "sagemaker"},
     "digits-in-a-notebook", "python:3.12-slim", "sagemaker"),
    ("torch", {}, "torch-model", "python:3.11-slim", "local"),
    ("torch", {"project_name": "Big DDP", "base_image": "python:3.12-slim", "driver": "sagemaker"},
     "big-ddp", "python:3.12-slim", "sagemaker"),
]


@pytest.mark.parametrize("template, answers, slug, base, driver", CASES,
                         ids=["model-defaults", "model-answers", "notebook-defaults", "notebook-answers",
                              "torch-defaults", "torch-answers"])
def test_project_templates_bake_and_their_tests_pass(tmp_path, isolated_home, template, answers, slug, base,
                                                    driver):
    out, project = bake(template, tmp_path, **answers)
    assert [p.name for p in out.iterdir()] == [slug]
    assert files_of(project) == PROJECT_FILES[template]
    artifact = "train.ipynb" if template == "notebook" else "train.py"
    assert (project / "Dockerfile").read_text() == dockerfile_text(artifact, base, has_requirements=True)
    assert (project / ".dockerignore").read_text() == DOCKERIGNORE
    assert tomllib.loads((project / "fahr.toml").read_text())["driver"] == driver
    readme = (project / "README.md").read_text()
    assert f"fahr fit {slug}/{artifact}" in readme and "--train-driver sagemaker" in readme
    if template == "torch":
        # Runs as written under torchrun: no host flag, the launcher's PET_* variables give them.
        source = (project / "train.py").read_text()
        assert '"-m", "torch.distributed.run"' in source and 'f"--nproc-per-node={per_node}"' in source
        assert "--nnodes" not in source and "--master-addr" not in source
        requirements = (project / "requirements.txt").read_text().splitlines()
        assert [line for line in requirements if not line.startswith("#")] == ["torch>=2.2", "numpy"]
        if importlib.util.find_spec("torch") is None:  # its torch tests run where torch is (make test-torch)
            assert "1 passed, 2 skipped" in run_own_tests(project)
            return
    if template in ("model", "torch"):
        source = (project / "train.py").read_text()
        assert "/opt/ml/model.h5" not in source and 'OPT_ML / "model"' in source
        # The README's "the next run resumes" holds on local: a checkpoint folder of the project's,
        # which .dockerignore keeps out of the image (tests/test_templates_e2e.py runs it).
        assert tomllib.loads((project / "fahr.toml").read_text())["local"]["checkpoint_path"] == ".fahr/checkpoints"
        assert ".fahr" in DOCKERIGNORE.splitlines() and "resumes from it" in readme
    else:
        nb = json.loads((project / "train.ipynb").read_text())
        assert nb["nbformat"] == 4 and (answers.get("project_name") or slug) in "".join(nb["cells"][0]["source"])
    assert "passed" in run_own_tests(project)


@pytest.mark.parametrize("answers, slug, package, name", [
    ({}, "fahr-example", "fahr_example", "example"),
    ({"driver_name": "acme_batch", "author": "Ada", "description": "Runs jobs on Acme Batch."},
     "fahr-acme-batch", "fahr_acme_batch", "acme_batch"),
], ids=["driver-defaults", "driver-answers"])
def test_driver_template_bakes_a_package(tmp_path, isolated_home, answers, slug, package, name):
    out, project = bake("driver", tmp_path, **answers)
    assert [p.name for p in out.iterdir()] == [slug]
    assert files_of(project) == {"README.md", "pyproject.toml", f"{package}/__init__.py",
                                 "tests/test_conformance.py", "tests/test_driver.py"}
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["name"] == slug
    assert meta["project"]["entry-points"]["fahr.drivers"] == {name: package}
    # One major version of the plugin API, as docs/writing-a-driver.md advises.
    assert meta["project"]["dependencies"] == ["fahr>=0.5,<1"]
    for source in project.rglob("*.py"):
        py_compile.compile(str(source), doraise=True)
    assert f'return "{name}"' in (project / "tests" / "test_conformance.py").read_text()
    # A new driver keeps every conformance rule of this fahr: its tests target the current level.
    assert f'api_level = "{fahr_core.PLUGIN_API_VERSION}"' in (project / "tests" / "test_conformance.py").read_text()
    # Its own tests (which need it installed) run in tests/test_wheel.py, in a fresh virtualenv.


def test_a_bad_name_stops_plain_cookiecutter_too(tmp_path, isolated_home):
    from cookiecutter.exceptions import FailedHookException

    with pytest.raises(FailedHookException):
        bake("model", tmp_path, project_name="???")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
