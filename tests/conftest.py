"""Shared fixtures: the real `fahr` console script, a real Docker engine, an isolated job folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# The emulated AWS, one per session for every module that uses it: defined once, here (a fixture
# imported into two test modules would be two session fixtures, and two registries on port 443).
from aws_emulator.fixtures import stack  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
FAHR = Path(sys.executable).parent / "fahr"
EXAMPLE = ROOT / "examples" / "hello" / "train.py"

# The test-only plugins (tests/plugins/*) are not in the environment (the one `make demo` points
# users at): scripts/install-dev.sh puts their metadata in tests/plugins/.site. This session finds
# them there, their code in their own folders, and so does every process it starts (PYTHONPATH).
PLUGINS_SITE = ROOT / "tests" / "plugins" / ".site"
if not PLUGINS_SITE.is_dir():
    raise pytest.UsageError(f"the test plugins are not installed in {PLUGINS_SITE}: run `make venv`")
_PLUGIN_PATH = [*sorted(str(p.parent) for p in PLUGINS_SITE.parent.glob("*/pyproject.toml")), str(PLUGINS_SITE)]
sys.path[:0] = _PLUGIN_PATH
os.environ["PYTHONPATH"] = os.pathsep.join(_PLUGIN_PATH + [p for p in [os.environ.get("PYTHONPATH")] if p])

# The MLflow tracker (fahr_mlflow/, installed by `make venv`) records no job of the suite but those
# of tests/test_mlflow.py, which turns it on: MLflow's import costs each followed job a second.
os.environ["FAHR_MLFLOW"] = "off"

# fahr keeps per-project file hashes in $XDG_CACHE_HOME/fahr: the suite's hundreds of temporary
# projects get a cache of their own, removed at the end, instead of filling the user's. pip keeps
# using the user's cache (the wheel tests install into fresh virtualenvs).
_USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
os.environ.setdefault("PIP_CACHE_DIR", str(_USER_CACHE / "pip"))
_SUITE_CACHE = tempfile.mkdtemp(prefix="fahr-test-cache-")
os.environ["XDG_CACHE_HOME"] = _SUITE_CACHE


def pytest_unconfigure(config):
    shutil.rmtree(_SUITE_CACHE, ignore_errors=True)


def run_fahr(*args, env=None, cwd=None, timeout=600, check=None):
    """Run the installed `fahr` console script as a real process."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    for variable in ("FAHR_DEBUG", "FAHR_TRACE_PLUGINS"):  # the suite's own shell may set them; a test's env may
        full_env.pop(variable, None)
    full_env.update(env or {})
    proc = subprocess.run([str(FAHR), *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}"
    return proc



def one_line_error(proc, code):
    """The single ``fahr error:`` line of a command that must fail with exit ``code`` and print
    nothing else on stderr (no traceback)."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]

@pytest.fixture
def fahr():
    return run_fahr


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine and the base image, brought up by the project's own scripts."""
    for script in ("ensure-docker.sh", "ensure-base-image.sh"):
        subprocess.run(["bash", str(ROOT / "scripts" / script)], check=True)
    import docker

    client = docker.from_env()
    client.ping()
    return client


@pytest.fixture
def jobs_dir(tmp_path, monkeypatch):
    """An output_path of its own for the local driver, through the documented env variable."""
    path = tmp_path / "jobs"
    monkeypatch.setenv("FAHR_LOCAL_OUTPUT_PATH", str(path))
    return path


@pytest.fixture
def project(tmp_path):
    """A project folder `proj` holding a trivial train.py (model tag proj/train)."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "train.py").write_text("print('hi')\n")
    return folder


@pytest.fixture
def model_dir(tmp_path):
    """A copy of the example model in a folder named `hello` (model tag hello/train)."""
    folder = tmp_path / "hello"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "train.py")
    return folder


def remove_local_jobs(jobs: Path, engine, image: str) -> None:
    """What a module's local jobs left (a failed test's): their followers killed, their containers
    and the module's image removed."""
    import contextlib
    import json
    import signal

    for job in jobs.iterdir() if jobs.exists() else ():
        with contextlib.suppress(Exception):
            pid = json.loads((job / "job.json").read_text()).get("follower")
            if pid:
                os.kill(pid, signal.SIGKILL)
        for container in engine.containers.list(all=True, filters={"label": f"fahr.job={job.name}"}):
            container.remove(force=True)
    subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)
