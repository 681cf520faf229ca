"""fahr's wheel carries the templates: `fahr init` works after a plain install, outside the
checkout; and a baked driver package installs into that fresh virtualenv, appears in
`fahr drivers`, and passes its own tests, fahr's conformance suite among them (real Docker)."""

import json
import subprocess
import sys
import zipfile

import pytest

from fahr_core.testing import DriverConformance, JobsContract
from fahrcli import REPO

pytestmark = pytest.mark.docker


def sh(*args, cwd=None, timeout=900, env=None):
    import os

    # A user's environment: not the test session's PYTHONPATH (its test plugins, tests/conftest.py).
    user = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**user, **(env or {})})
    assert result.returncode == 0, f"{args}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, REPO)
    (found,) = dist.glob("fahr-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel):
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    sh(sys.executable, "-m", "venv", venv)
    sh(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, "pytest")
    return venv


def test_the_wheel_holds_the_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in ("model", "notebook", "torch", "driver"):
        assert f"fahr_core/templates/{template}/cookiecutter.json" in names
        assert f"fahr_core/templates/{template}/hooks/pre_gen_project.py" in names
    assert "fahr_core/templates/model/{{cookiecutter.project_slug}}/train.py" in names
    assert "fahr_core/templates/notebook/{{cookiecutter.project_slug}}/train.ipynb" in names
    assert "fahr_core/templates/torch/{{cookiecutter.project_slug}}/train.py" in names
    assert "fahr_core/templates/driver/{{cookiecutter.project_slug}}/{{cookiecutter.package_name}}/__init__.py" in names
    assert "fahr_core/notebook_runner.py" in names and "fahr_core/testing/__init__.py" in names
    assert "fahr_core/launcher.py" in names  # the generated images' entrypoint program
    assert not any("__pycache__" in n for n in names if n.startswith("fahr_core/templates/"))


def test_init_works_from_the_installed_wheel_outside_the_checkout(fresh_venv, tmp_path):
    where = sh(fresh_venv / "bin" / "python", "-c",
               "import fahr_core.scaffold as s; print(s.builtin_dir())", cwd=tmp_path).stdout.strip()
    assert where.startswith(str(fresh_venv)) and not where.startswith(str(REPO))
    listed = sh(fresh_venv / "bin" / "fahr", "templates", cwd=tmp_path).stdout
    assert [line.split()[0] for line in listed.splitlines()] == ["model", "notebook", "torch", "driver"]
    sh(fresh_venv / "bin" / "fahr", "init", "my-model", "--no-input", cwd=tmp_path, env={"HOME": str(tmp_path)})
    files = {str(p.relative_to(tmp_path / "my-model")) for p in (tmp_path / "my-model").rglob("*") if p.is_file()}
    assert files == {".dockerignore", "Dockerfile", "README.md", "fahr.toml", "requirements.txt", "train.py",
                     "tests/test_train.py"}


@pytest.mark.parametrize("answers, name, distribution", [
    ([], "example", "fahr-example"),
    (["--set", "driver_name=acme_batch", "--set", "author=Ada"], "acme_batch", "fahr-acme-batch"),
], ids=["driver-defaults", "driver-answers"])
def test_a_baked_driver_installs_and_passes_its_tests_and_the_conformance_suite(fresh_venv, tmp_path, answers,
                                                                              name, distribution):
    fahr = fresh_venv / "bin" / "fahr"
    sh(fahr, "init", "--template", "driver", "--no-input", *answers, cwd=tmp_path, env={"HOME": str(tmp_path)})
    package = tmp_path / distribution
    sh(fresh_venv / "bin" / "python", "-m", "pip", "install", "-q", package)
    drivers = {row["name"]: row for row in json.loads(sh(fahr, "drivers", "--json", cwd=tmp_path).stdout)}
    assert drivers[name]["distribution"] == distribution
    result = sh(fresh_venv / "bin" / "python", "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests",
                cwd=package, timeout=1200)
    passed = [line for line in result.stdout.splitlines() if " PASSED" in line]
    conformance = [line for line in passed if "test_conformance.py::TestConformance::" in line]
    suite = [name for name in dir(DriverConformance) if name.startswith("test_")]
    # The template's driver has no list_jobs or logs (optional hooks): their tests are skipped.
    optional = sorted(name for name in dir(JobsContract) if name.startswith("test_"))
    skipped = sorted(line.split("::")[-1].split()[0] for line in result.stdout.splitlines()
                      if " SKIPPED" in line and "test_conformance.py::TestConformance::" in line)
    assert skipped == optional, result.stdout[-3000:]
    assert len(conformance) == len(suite) - len(optional), result.stdout[-3000:]
    # The suite's tests that apply, and the driver's own 5.
    assert len(passed) == len(conformance) + 5 and "failed" not in result.stdout.splitlines()[-1], result.stdout[-3000:]


def test_every_package_of_fahr_core_is_listed_for_the_wheel():
    """A module split into a package (fahr_core/image/) ships as a package: pyproject.toml lists
    the packages one by one, and one it misses is shipped only as data, with a warning that a
    future setuptools leaves it out."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "fahr_core").rglob("__init__.py")}
    assert "fahr_core.image" in found and found - listed == set()


def test_the_fahr_mlflow_wheel_is_a_tracker_plugin_of_fahr(tmp_path):
    """fahr-mlflow (fahr_mlflow/, docs/trackers.md) builds from a clean checkout into a wheel that
    registers its tracker in group fahr.plugins and depends on fahr and MLflow's client only."""
    import shutil

    source = tmp_path / "source"  # built from a copy: setuptools leaves build/ where it builds
    shutil.copytree(REPO / "fahr_mlflow", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source)
    (found,) = (tmp_path / "dist").glob("fahr_mlflow-0.1.0-*.whl")
    archive = zipfile.ZipFile(found)
    names = set(archive.namelist())
    assert "fahr_mlflow/__init__.py" in names
    entry_points = archive.read("fahr_mlflow-0.1.0.dist-info/entry_points.txt").decode()
    assert "[fahr.plugins]\nmlflow = fahr_mlflow:tracker" in entry_points
    metadata = archive.read("fahr_mlflow-0.1.0.dist-info/METADATA").decode()
    requires = sorted(line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")
                      and "extra ==" not in line)
    assert [r.split(">")[0].split("<")[0] for r in requires] == ["fahr", "mlflow-skinny"]
