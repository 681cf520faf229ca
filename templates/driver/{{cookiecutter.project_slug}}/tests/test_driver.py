"""Quick checks that need no Docker engine: the driver is installed, declared and complete."""

import json
import subprocess
import sys
from pathlib import Path

import {{ cookiecutter.package_name }} as driver
from fahr_core import REQUIRED_DRIVER_HOOKS, hookimpl

FAHR = str(Path(sys.executable).parent / "fahr")


def test_fahr_lists_the_driver():
    result = subprocess.run([FAHR, "drivers", "--json"], capture_output=True, text=True, check=True)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["{{ cookiecutter.driver_name }}"]["distribution"] == "{{ cookiecutter.project_slug }}"


def test_the_driver_implements_the_required_hooks():
    marker = hookimpl.project_name + "_impl"  # what @hookimpl sets on a function (pluggy)
    for hook in REQUIRED_DRIVER_HOOKS:
        assert callable(getattr(driver, hook, None)) and hasattr(getattr(driver, hook), marker), hook


def test_fahr_loads_the_driver(tmp_path):
    # `fahr config DRIVER` loads the driver as a run does: a missing required hook, or a hook fahr
    # does not have, is an error (exit 2) there.
    result = subprocess.run([FAHR, "config", "{{ cookiecutter.driver_name }}", "--json"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {key["name"] for key in json.loads(result.stdout)["keys"]} >= {"output_path", "stop_timeout", "docker"}


def test_config_keys_are_typed_and_documented():
    keys = {key.name: key for key in driver.config_keys()}
    assert set(keys) == {"output_path", "stop_timeout", "docker"}
    assert keys["stop_timeout"].type is int and all(key.help for key in keys.values())


def test_claims_only_folders_that_hold_its_jobs(tmp_path):
    assert driver.claims_location(str(tmp_path)) is None
    (tmp_path / driver.MARKER).touch()
    assert driver.claims_location(str(tmp_path)) is True
