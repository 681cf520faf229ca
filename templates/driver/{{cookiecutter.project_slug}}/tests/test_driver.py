"""Quick checks that need no Docker engine: the driver is installed, declared and complete."""

import json
import subprocess
import sys
from pathlib import Path

import {{ cookiecutter.package_name }} as driver
from fahr_core import plugins
from fahr_core.hookspecs import REQUIRED_DRIVER_HOOKS

FAHR = str(Path(sys.executable).parent / "fahr")


def test_fahr_lists_the_driver():
    result = subprocess.run([FAHR, "drivers", "--json"], capture_output=True, text=True, check=True)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["{{ cookiecutter.driver_name }}"]["distribution"] == "{{ cookiecutter.project_slug }}"


def test_the_driver_loads_with_its_required_hooks():
    pm = plugins.manager_for("{{ cookiecutter.driver_name }}")
    for hook in REQUIRED_DRIVER_HOOKS:
        assert any(impl.plugin is driver for impl in getattr(pm.hook, hook).get_hookimpls()), hook


def test_config_keys_are_typed_and_documented():
    keys = {key.name: key for key in driver.config_keys()}
    assert set(keys) == {"output_path", "stop_timeout", "docker"}
    assert keys["stop_timeout"].type is int and all(key.help for key in keys.values())


def test_claims_only_folders_that_hold_its_jobs(tmp_path):
    assert driver.claims_location(str(tmp_path)) is None
    (tmp_path / driver.MARKER).touch()
    assert driver.claims_location(str(tmp_path)) is True
