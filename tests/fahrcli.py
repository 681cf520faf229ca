"""Helpers of the init/templates/conformance tests: run the real `fahr` command of this environment.

Not a conftest.py, so that it merges with other suites' conftest without conflict; import it:
``from fahrcli import run_fahr, show, isolated_home``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FAHR = Path(sys.executable).parent / "fahr"


def run_fahr(*args, cwd, env=None, timeout=900, input=None):
    """``fahr ARGS`` in ``cwd``; never interactive unless ``input`` is given."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("FAHR_DRIVER", None)
    return subprocess.run([str(FAHR), *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, input=input if input is not None else "")


def show(result):
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """A HOME of its own, so cookiecutter's replay files and user config stay out of the real one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home
